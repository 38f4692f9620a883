"""Step 5, verify: is the (rewritten) answer right? Rules first, a judge only where they cannot
decide, and every verdict says how it was reached.

Closed-form samples (digit, choice, math, iou) are decided by the reward functions
(``rewards.verdict``), math through a pool of killable Math-Verify workers. What rules cannot
decide, and every open-ended sample, goes to the LLM judge (``steps.judge``) through the usual
LLM runner: cached, journaled, budgeted. With ``rules_only`` no model is called and those
samples are recorded ``unverifiable``. Verdicts are recorded as results: correct is done,
incorrect and unverifiable are rejected with the verdict as the reason; the output keeps the
method and the extracted answer. Only done samples go on to split.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vlaa_data import __version__
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.verdict import RULE_TYPES, Case, RuleVerifier
from vlaa_data.steps.judge import verdict_outcome
from vlaa_data.steps.llm_runner import leaves_scripted, preflight, run_llm_step
from vlaa_data.steps.llm_step import LlmOptions, LlmReport, Progress, result_row, waiting_hint
from vlaa_data.store.llm import ReadySample
from vlaa_data.workspace import Workspace

__all__ = ["VerifyOptions", "VerifyReport", "run_verify"]

_CHUNK = 2000  # samples decided and written per transaction


@dataclass
class VerifyOptions:
    """``judge`` carries the judge's model and the selection flags (limit, sources, shard,
    redo)."""

    judge: LlmOptions = field(default_factory=LlmOptions)
    rules_only: bool = False
    iou_threshold: float | None = None
    math_deadline_s: float | None = None
    math_workers: int | None = None


@dataclass
class VerifyReport:
    run_id: str | None
    selected: int = 0
    # (verdict, method) -> samples; judged samples appear with method judge:<model>
    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)
    decided_by_rules: int = 0
    sent_to_judge: int = 0  # samples rules left undecided that went to the judge
    rules_only: bool = False
    judge: LlmReport | None = None
    seconds: float = 0.0
    waiting: int = 0  # samples not ready because rewrite has not done them

    def waiting_hint(self) -> str | None:
        return waiting_hint("rewrite", self.waiting)

    def to_dict(self) -> dict[str, Any]:
        by_verdict: Counter[str] = Counter()
        for (verdict, _), n in self.verdicts.items():
            by_verdict[verdict] += n
        return {
            "step": "verify",
            "run_id": self.run_id,
            "selected": self.selected,
            "verdicts": dict(sorted(by_verdict.items())),
            "by_method": {
                f"{verdict}:{method}": n for (verdict, method), n in sorted(self.verdicts.items())
            },
            "decided_by_rules": self.decided_by_rules,
            "sent_to_judge": self.sent_to_judge,
            "rules_only": self.rules_only,
            "judge": self.judge.to_dict() if self.judge else None,
            "waiting": {"rewrite": self.waiting},
            "seconds": round(self.seconds, 3),
        }


def run_verify(
    ws: Workspace,
    options: VerifyOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> VerifyReport:
    """Verify every sample whose rewrite is done and whose verdict is missing or stale."""
    options = _with_settings(ws, options)
    llm = options.judge
    judging = not options.rules_only
    samples = ws.store.ready_samples(
        "verify",
        parent_step="rewrite",
        sources=llm.sources,
        shard=llm.shard,
        redo=llm.redo,
        retry_truncated=llm.retry_truncated,
        limit=llm.limit,
        # A real judge redoes the verdicts of the scripted stand-in's.
        redo_scripted=judging and leaves_scripted(ws, "verify", llm),
    )
    report = VerifyReport(
        run_id=None,
        selected=len(samples),
        rules_only=options.rules_only,
        waiting=ws.store.waiting_for_parent(
            "verify", "rewrite", sources=llm.sources, shard=llm.shard
        ),
    )
    started = time.monotonic()
    if judging and not llm.dry_run and not samples.reward_types() <= set(RULE_TYPES):
        preflight(ws, "verify", llm)  # open-ended samples will need the judge: its key, now
    if llm.dry_run:  # nothing is written, nor recorded as a run
        _verify(ws, options, samples, report, on_progress, started)
        return report
    command = llm.command or "vlaa-data verify"
    with ws.store.run(command, __version__, _run_settings(ws, options)) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        _verify(ws, options, samples, report, on_progress, started)
        run.stopped = report.judge.stopped if report.judge else None
    return report


def _verify(
    ws: Workspace,
    options: VerifyOptions,
    samples: Sequence[ReadySample],
    report: VerifyReport,
    on_progress: Callable[[Progress], None] | None,
    started: float,
) -> None:
    """Rules, then the judge for what they leave undecided; ``report`` counts both."""
    judging = not options.rules_only
    try:
        undecided = _apply_rules(ws, options, samples, report, on_progress)
        report.sent_to_judge = len(undecided) if judging else 0
        if undecided and judging:
            report.judge = run_llm_step(
                ws,
                "verify",
                replace(options.judge, limit=None),
                on_progress=on_progress,
                samples=undecided,
                run_id=report.run_id,
            )
            for label, n in report.judge.outcomes.items():
                report.verdicts[_judge_label(label, report.judge.model)] += n
    finally:
        report.seconds = time.monotonic() - started


def _apply_rules(
    ws: Workspace,
    options: VerifyOptions,
    samples: Sequence[ReadySample],
    report: VerifyReport,
    on_progress: Callable[[Progress], None] | None,
) -> list[ReadySample]:
    """Record every verdict rules reach; returns the samples they leave undecided (recorded
    unverifiable instead when no judge is allowed)."""
    assert options.math_deadline_s is not None and options.iou_threshold is not None
    progress = Progress(total=len(samples))
    undecided: list[ReadySample] = []
    workers = options.math_workers or os.cpu_count() or 1
    with MathVerifier(workers=workers, deadline_s=options.math_deadline_s) as math:
        rules = RuleVerifier(math, iou_threshold=options.iou_threshold)
        for start in range(0, len(samples), _CHUNK):
            chunk = samples[start : start + _CHUNK]
            verdicts = rules.decide_many([_case(s) for s in chunk])
            rows = []
            for sample, verdict in zip(chunk, verdicts, strict=True):
                if not verdict.decided and not options.rules_only:
                    undecided.append(sample)
                    continue
                report.verdicts[(verdict.verdict, verdict.method)] += 1
                report.decided_by_rules += verdict.decided
                if report.run_id is not None:
                    outcome = verdict_outcome(verdict)
                    rows.append(
                        result_row(
                            sample, "verify", outcome, method=verdict.method, run_id=report.run_id
                        )
                    )
            if rows:
                ids = ws.store.allocate_result_ids(len(rows))
                for row, result_id in zip(rows, ids, strict=True):
                    row["id"] = result_id
                ws.store.write_llm_batch(results=rows, calls=[])
            progress.finished += len(chunk)
            if on_progress is not None:
                on_progress(progress)
    return undecided


def _case(sample: ReadySample) -> Case:
    answer = str((sample.parent_output or {}).get("answer") or "")
    size = (sample.width, sample.height) if sample.width and sample.height else None
    return Case(sample.reward_type, answer, sample.answer, size, sample.question)


def _judge_label(label: str, model: str) -> tuple[str, str]:
    """The runner's outcome label (done, rejected:incorrect, failed:timeout, ...) as a
    (verdict, method) pair; failures and truncations keep their label as the verdict."""
    method = f"judge:{model}"
    if label in ("done", "done:cached"):
        return "correct", method
    if label.startswith("rejected:"):
        return label.split(":", 1)[1], method
    return label, method


def _with_settings(ws: Workspace, options: VerifyOptions) -> VerifyOptions:
    """``options`` with every rule setting a flag left unset taken from ``[verify]``."""
    settings = ws.settings.verify
    workers = options.math_workers if options.math_workers is not None else settings.math_workers
    return replace(
        options,
        iou_threshold=options.iou_threshold or settings.iou_threshold,
        math_deadline_s=options.math_deadline_s or settings.math_deadline_s,
        math_workers=workers,
    )


def _run_settings(ws: Workspace, options: VerifyOptions) -> dict[str, Any]:
    judge = options.judge.model or ws.settings.verify.model
    return {
        "judge": None if options.rules_only else judge,
        "rules_only": options.rules_only,
        "iou_threshold": options.iou_threshold,
        "math_deadline_s": options.math_deadline_s,
        "redo": options.judge.redo,
        "shard": str(options.judge.shard) if options.judge.shard else None,
    }
