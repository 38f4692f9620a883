"""``filter aha --method model``: a model judges each keyword hit (RECIPE.md, step 6).

The keyword pass of ``filters.aha`` (same keywords, match and scope) finds the hits. A sample
without one scores 0 and costs no request. A sample with hits goes to the aha judge
(``steps.aha_judge``) through the LLM runner, so the request cache, budget, dry run, journal
and every backend apply: one request lists its first ``MAX_HITS`` hits, each with
``CONTEXT_CHARS`` characters either side; hits past the cap are counted ``not_judged``. The
judgement is a result of step ``aha`` whose parent is the text's result, so a new rewrite
makes it stale, and a judgement of the same text and hits is reused without a request (unless
``redo``; the cache still applies then, ``no_cache`` pays again).

Score ``aha_model`` is then written for every sample with a text: the number of hits judged
genuine, with each hit's keyword, offset and verdict, the model and the prompt's hash. It is
NULL, never a guess, where a sample has hits but no usable judgement: the call failed or was
cut at max_tokens, ``limit`` or the budget left it unjudged, or no line of the reply could be
read (detail ``state`` says which); split then reports it missing. An interrupted run writes
no scores: the next one reuses what was judged and writes them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from vlaa_data import __version__
from vlaa_data.filters.aha import AhaOptions, Hit, checked_keywords, find_hits, scoped_text
from vlaa_data.steps.aha_judge import VERDICTS
from vlaa_data.steps.llm_runner import preflight, run_llm_step
from vlaa_data.steps.llm_step import LlmOptions, LlmReport, Progress
from vlaa_data.store.llm import StepResult
from vlaa_data.workspace import Workspace

__all__ = [
    "CONTEXT_CHARS",
    "MAX_HITS",
    "AhaModelOptions",
    "AhaModelReport",
    "hit_context",
    "run_aha_model",
]

# Enough for any trace the keywords hit sparingly; a trace with more is mostly filler, and
# one request stays far below every context window.
MAX_HITS = 24
CONTEXT_CHARS = 100  # on either side of the keyword: about a sentence each way
_BATCH = 20_000


@dataclass
class AhaModelOptions:
    """``aha`` says which hits (keywords, match, scope, sources); ``judge`` the model and the
    LLM flags (its ``limit`` counts samples with hits sent to the judge)."""

    aha: AhaOptions = field(default_factory=AhaOptions)
    judge: LlmOptions = field(default_factory=LlmOptions)


@dataclass
class AhaModelReport:
    run_id: str | None = None
    scored: int = 0  # samples with a current text
    with_hits: int = 0
    sent: int = 0  # samples with hits handed to the judge (the rest reused a judgement)
    judged: int = 0  # samples with hits whose score holds a judgement
    with_genuine: int = 0
    hits: Counter[str] = field(default_factory=Counter)  # genuine, filler, unclear, not_judged
    unscored: Counter[str] = field(default_factory=Counter)  # state -> samples scored NULL
    judge: LlmReport | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "scored": self.scored,
            "with_hits": self.with_hits,
            "sent": self.sent,
            "judged": self.judged,
            "with_genuine": self.with_genuine,
            "hits": {k: self.hits[k] for k in (*VERDICTS, "not_judged")},
            "unscored": dict(sorted(self.unscored.items())),
            "judge": self.judge.to_dict() if self.judge else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Found:
    """A sample's text result and the hits the judge is shown."""

    result_id: int
    hits: list[dict[str, Any]]  # keyword, offset, context
    not_judged: int
    sha: str  # of the hits as shown: a judgement of other hits is not this one's

    def parent_output(self) -> dict[str, Any]:
        return {"hits": self.hits, "not_judged": self.not_judged, "hits_sha": self.sha}


def hit_context(text: str, hit: Hit) -> str:
    """The hit in ``CONTEXT_CHARS`` characters either side, on one line, keyword in [[ ]]."""
    start, end = max(0, hit.offset - CONTEXT_CHARS), min(len(text), hit.end + CONTEXT_CHARS)
    window = f"{text[start : hit.offset]}[[{text[hit.offset : hit.end]}]]{text[hit.end : end]}"
    window = " ".join(window.split())  # the prompt lists one hit a line
    return ("…" if start else "") + window + ("…" if end < len(text) else "")


def run_aha_model(
    ws: Workspace,
    options: AhaModelOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> AhaModelReport:
    """Judge the keyword hits of every sample with a current text and score them; see the
    module docstring. ``options.judge.dry_run`` prices the requests and writes nothing."""
    aha, llm = options.aha, options.judge
    started = time.monotonic()
    report = AhaModelReport()
    zero, found = _keyword_pass(ws, aha, checked_keywords(aha), report)
    current = ws.store.current_step_results("aha", sources=aha.sources, shard=aha.shard)
    wanted = [s for s, f in found.items() if llm.redo or _state(current.get(s), f) not in _JUDGED]
    wanted = wanted[: llm.limit]
    samples = []
    if wanted:
        chosen = set(wanted)
        # Every sample as the runner knows it (attempts, current reply key), so that a cached
        # reply that changes nothing is not recorded again; the text is set as each one's parent.
        ready = ws.store.ready_samples(
            "aha", parent_step=None, sources=aha.sources, shard=aha.shard, redo=True
        )
        samples = [
            replace(s, parent_id=found[s.id].result_id, parent_output=found[s.id].parent_output())
            for s in ready
            if s.id in chosen
        ]
    report.sent = len(samples)
    judge_options = replace(llm, limit=None)
    if llm.dry_run:
        report.judge = run_llm_step(ws, "aha", judge_options, samples=samples)
        report.seconds = time.monotonic() - started
        return report
    if samples:
        preflight(ws, "aha", llm)  # a missing key or preset fails before the run starts
    command = llm.command or aha.command or "vlaa-data filter aha --method model"
    with ws.store.run(command, __version__, _run_settings(aha, llm, ws)) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        try:
            ws.store.write_scores(
                [_row(s, r, 0.0, _detail(aha, state="no_hits"), run.id) for s, r in zero]
            )
            if samples:
                report.judge = run_llm_step(
                    ws,
                    "aha",
                    judge_options,
                    on_progress=on_progress,
                    samples=samples,
                    run_id=run.id,
                )
                run.stopped = report.judge.stopped
            current = ws.store.current_step_results("aha", sources=aha.sources, shard=aha.shard)
            ws.store.write_scores(
                [_score(s, f, current.get(s), aha, report) for s, f in found.items()]
            )
        finally:
            report.seconds = time.monotonic() - started
    return report


_JUDGED = ("done", "rejected")  # a judgement that stands: every hit read, or none readable


def _keyword_pass(
    ws: Workspace, aha: AhaOptions, keywords: list[str], report: AhaModelReport
) -> tuple[list[tuple[str, int]], dict[str, _Found]]:
    """(sample, text result) of the samples without a hit, and the hits of the others."""
    zero: list[tuple[str, int]] = []
    found: dict[str, _Found] = {}
    for texts in ws.store.iter_scored_texts(sources=aha.sources, shard=aha.shard, batch=_BATCH):
        for text in texts:
            body = scoped_text(text.reasoning, text.response, aha.scope)
            hits = find_hits(body, keywords, aha.match)
            report.scored += 1
            if not hits:
                zero.append((text.sample_id, text.result_id))
                continue
            shown = [
                {"keyword": h.keyword, "offset": h.offset, "context": hit_context(body, h)}
                for h in hits[:MAX_HITS]
            ]
            not_judged = len(hits) - len(shown)
            sha = hashlib.sha256(json.dumps([shown, not_judged]).encode()).hexdigest()[:16]
            found[text.sample_id] = _Found(text.result_id, shown, not_judged, sha)
    report.with_hits = len(found)
    return zero, found


def _state(current: StepResult | None, found: _Found) -> str:
    """done / rejected (a judgement of these hits), failed / truncated, or pending."""
    if current is None or current.parent_id != found.result_id:
        return "pending"
    if current.status in _JUDGED:
        same = (current.output or {}).get("hits_sha") == found.sha
        return current.status if same else "pending"
    return current.status


def _score(
    sample_id: str,
    found: _Found,
    current: StepResult | None,
    aha: AhaOptions,
    report: AhaModelReport,
) -> dict[str, Any]:
    state = _state(current, found)
    assert report.run_id is not None
    if state not in _JUDGED:
        report.unscored[state] += 1
        return _row(sample_id, found.result_id, None, _detail(aha, state=state), report.run_id)
    assert current is not None and current.output is not None
    output = current.output
    for verdict in VERDICTS:
        report.hits[verdict] += output.get(verdict, 0)
    report.hits["not_judged"] += found.not_judged
    judgement = {
        key: output.get(key)
        for key in ("hits", "not_judged", *VERDICTS, "preset", "model", "prompt_sha")
    }
    detail = _detail(aha, state="judged" if state == "done" else "unclear", **judgement)
    detail["judgement_id"] = current.id
    if state == "rejected":  # no line of the reply could be read
        report.unscored["unclear"] += 1
        return _row(sample_id, found.result_id, None, detail, report.run_id)
    report.judged += 1
    report.with_genuine += output.get("genuine", 0) > 0
    return _row(sample_id, found.result_id, float(output.get("genuine", 0)), detail, report.run_id)


def _detail(aha: AhaOptions, **extra: Any) -> dict[str, Any]:
    return {"match": aha.match, "scope": aha.scope, **extra}


def _row(
    sample_id: str, result_id: int, value: float | None, detail: dict[str, Any], run_id: str
) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "name": "aha_model",
        "value": value,
        "detail": detail,
        "result_id": result_id,
        "run_id": run_id,
    }


def _run_settings(aha: AhaOptions, llm: LlmOptions, ws: Workspace) -> dict[str, Any]:
    return {
        "method": "model",
        "keywords": list(aha.keywords),
        "match": aha.match,
        "scope": aha.scope,
        "judge": llm.model or ws.settings.aha.model,
        "backend": llm.backend,
        "max_hits": MAX_HITS,
        "context_chars": CONTEXT_CHARS,
        "redo": llm.redo,
        "shard": str(aha.shard) if aha.shard else None,
    }
