"""``vlaa-data run``: the pipeline's steps in order on one workspace, resumable at any point.

Each step is the command of the same name with the workspace's settings: it works on what is
ready and not yet done, so a run that stops (a crash, Ctrl-C, a budget) is finished by running
it again, and nothing already paid for is asked twice (the request cache and the ledger see to
that). Before the first LLM step every LLM step's endpoint is resolved: when keys are missing
the run stops after ``collect`` with one line naming every variable to set, rather than
failing one step at a time.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data.errors import EmptyRelease, SettingsError, VlaaError
from vlaa_data.llm.presets import load_presets, resolve_endpoint
from vlaa_data.status import build_status
from vlaa_data.steps.llm_step import LlmOptions, LlmReport, Progress
from vlaa_data.workspace import Workspace

__all__ = [
    "RUN_STEPS",
    "RunOptions",
    "RunReport",
    "StepOutcome",
    "missing_keys_line",
    "run_pipeline",
    "select_steps",
]

RUN_STEPS = ("collect", "caption", "distill", "rewrite", "verify", "aha", "split", "export")
_LLM_STEPS = ("caption", "distill", "rewrite")
# The steps whose per-sample states `status` counts (aha and export have none of their own).
_COUNTED = ("collect", "caption", "distill", "rewrite", "verify", "split")

# step, samples finished, samples to finish (None: not known yet); (step, 0, None) first
OnProgress = Callable[[str, int, int | None], None]


@dataclass
class RunOptions:
    """``steps`` in pipeline order; ``base_url`` sends every LLM step to one endpoint (a
    self-hosted server); ``limit`` caps the samples each LLM step takes (a quick look), and
    ``budget_usd`` what each may spend (else each step's budget_usd in vlaa.toml)."""

    steps: Sequence[str] = RUN_STEPS
    base_url: str | None = None
    limit: int | None = None
    budget_usd: float | None = None
    rules_only: bool = False
    release: str | None = None  # default: [run] release
    export_format: str | None = None  # default: [run] export_format
    export_out: Path | None = None  # default: WORKSPACE/releases/RELEASE/FORMAT
    command: str = "vlaa-data run"


@dataclass
class StepOutcome:
    step: str
    ran: bool = False
    note: str = ""
    done: int = 0
    rejected: int = 0
    failed: int = 0
    pending: int = 0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class RunReport:
    steps: list[StepOutcome] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped early, in one line
    release: str | None = None
    export: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": {outcome.step: outcome.to_dict() for outcome in self.steps},
            "stopped": self.stopped,
            "release": self.release,
            "export": self.export,
            "seconds": round(self.seconds, 3),
        }


def select_steps(
    steps: Sequence[str] | None = None, start: str | None = None, end: str | None = None
) -> tuple[str, ...]:
    """``steps`` (default: all) from ``start`` to ``end`` inclusive, in pipeline order."""
    for step in [*(steps or ()), start, end]:
        if step is not None and step not in RUN_STEPS:
            raise VlaaError(f"unknown step {step!r}; the steps are {', '.join(RUN_STEPS)}")
    first = RUN_STEPS.index(start) if start else 0
    last = RUN_STEPS.index(end) if end else len(RUN_STEPS) - 1
    if first > last:
        raise VlaaError(f"--from {start} comes after --to {end}")
    chosen = set(steps or RUN_STEPS)
    return tuple(step for step in RUN_STEPS[first : last + 1] if step in chosen)


def missing_keys_line(ws: Workspace, steps: Sequence[str], base_url: str | None) -> str | None:
    """One line naming every API key the LLM ``steps`` lack, and the self-hosted way out;
    None when each step can reach its endpoint. Other problems (an unknown preset, say) are
    raised as they are."""
    presets = load_presets(ws.settings.presets)
    wanted: dict[str, list[str]] = {}
    for step in steps:
        settings = getattr(ws.settings, step)
        try:
            resolve_endpoint(
                settings.model,
                presets,
                base_url=base_url or settings.base_url,
                api_key_env=settings.api_key_env,
            )
        except SettingsError:
            endpoint = resolve_endpoint(
                settings.model,
                presets,
                base_url=base_url or settings.base_url,
                api_key_env=settings.api_key_env,
                needs_key=False,
            )
            if not endpoint.api_key_env or os.environ.get(endpoint.api_key_env):
                raise
            wanted.setdefault(endpoint.api_key_env, []).append(f"{step}: {settings.model}")
    if not wanted:
        return None
    keys = "; ".join(f"{key} ({', '.join(uses)})" for key, uses in wanted.items())
    return (
        f"the LLM steps need an endpoint: set {keys}, or pass --base-url URL of an "
        "OpenAI-compatible server you run (e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`)"
    )


def run_pipeline(
    ws: Workspace, options: RunOptions, on_progress: OnProgress | None = None
) -> RunReport:
    """Run ``options.steps`` in order; stop at the first step that cannot go on (a missing
    key, a budget reached, a step's own error), keeping everything done before it."""
    started = time.monotonic()
    settings = ws.settings.run
    report = RunReport(release=options.release or settings.release)
    fmt = options.export_format or settings.export_format
    progress = on_progress or (lambda step, finished, total: None)
    needs_llm = [step for step in options.steps if step in _LLM_STEPS]
    runners: dict[str, Callable[[StepOutcome], None]] = {
        "collect": lambda outcome: _collect(ws, options, outcome, progress),
        "verify": lambda outcome: _verify(ws, options, outcome, progress),
        "aha": lambda outcome: _aha(ws, options, outcome),
        "split": lambda outcome: _split(ws, options, report, outcome),
        "export": lambda outcome: _export(ws, options, report, fmt, outcome),
    }
    for step in _LLM_STEPS:
        runners[step] = functools.partial(_llm, ws, step, options, progress=progress)
    try:
        for step in options.steps:
            if step in _LLM_STEPS and step == needs_llm[0]:
                report.stopped = missing_keys_line(ws, needs_llm, options.base_url)
                if report.stopped:
                    break
            outcome = StepOutcome(step)
            report.steps.append(outcome)
            progress(step, 0, None)  # the step starts: the ones before it are done
            step_started = time.monotonic()
            try:
                runners[step](outcome)
            except VlaaError as exc:
                report.stopped = f"{step}: {exc}"
            finally:
                outcome.seconds = time.monotonic() - step_started
            if report.stopped:
                break
    finally:
        _count_states(ws, report)
        report.seconds = time.monotonic() - started
    return report


def _llm_options(options: RunOptions, step: str) -> LlmOptions:
    """The step's own settings from vlaa.toml, less what the run's flags override."""
    return LlmOptions(
        base_url=options.base_url,
        limit=options.limit,
        budget_usd=options.budget_usd,
        command=f"{options.command} ({step})",
    )


def _add_llm(outcome: StepOutcome, llm: LlmReport | None) -> None:
    if llm is None:
        return
    outcome.requests += llm.progress.requests
    outcome.tokens_in += llm.progress.tokens_in
    outcome.tokens_out += llm.progress.tokens_out
    outcome.cost_usd += llm.progress.cost_usd


def _stop_if_stopped(llm: LlmReport | None) -> None:
    """Stop the run where the step's command would exit 1: a budget reached, an endpoint
    unreachable, or requests sent of which none brought back a reply."""
    line = llm.stop_line() if llm is not None else None
    if line is not None:
        raise VlaaError(line)


def _progress_of(step: str, progress: OnProgress) -> Callable[[Progress], None]:
    return lambda p: progress(step, p.finished, p.total)


def _collect(ws: Workspace, options: RunOptions, outcome: StepOutcome, progress: OnProgress):
    from vlaa_data.sources import SourceOptions, default_name, open_source
    from vlaa_data.steps.collect import collect

    entries = ws.settings.run.collect
    if not entries:
        outcome.note = "no [[run.collect]] sources in vlaa.toml: took the samples already here"
        return
    outcome.ran = True
    collected = 0
    for entry in entries:
        source_options = SourceOptions(
            images=Path(entry.images).expanduser().resolve() if entry.images else None,
            mapping=dict(entry.map),
            split=entry.split,
            limit=entry.limit,
            seed=entry.seed,
        )
        source = open_source(entry.source, entry.path, source_options)
        name = entry.name or default_name(entry.path or entry.source, source)

        def counted(rows: int, before: int = collected) -> None:
            progress("collect", before + rows, None)

        result = collect(
            ws, source, name=name, on_progress=counted, command=f"{options.command} (collect)"
        )
        collected += result.collected + result.already_present + sum(result.rejected.values())


def _llm(
    ws: Workspace, step: str, options: RunOptions, outcome: StepOutcome, progress: OnProgress
) -> None:
    from vlaa_data.steps.llm_runner import run_llm_step

    outcome.ran = True
    llm = run_llm_step(
        ws, step, _llm_options(options, step), on_progress=_progress_of(step, progress)
    )
    _add_llm(outcome, llm)
    _stop_if_stopped(llm)


def _verify(ws: Workspace, options: RunOptions, outcome: StepOutcome, progress: OnProgress):
    from vlaa_data.steps.verify import VerifyOptions, run_verify

    outcome.ran = True
    verify_options = VerifyOptions(
        judge=_llm_options(options, "verify"), rules_only=options.rules_only
    )
    verified = run_verify(ws, verify_options, on_progress=_progress_of("verify", progress))
    _add_llm(outcome, verified.judge)
    _stop_if_stopped(verified.judge)


def _aha(ws: Workspace, options: RunOptions, outcome: StepOutcome) -> None:
    from vlaa_data.filters.aha import AhaOptions, run_aha

    outcome.ran = True
    scored = run_aha(ws, AhaOptions(command=f"{options.command} (aha)"))
    outcome.done = scored.scored
    outcome.note = f"{scored.with_aha} with an aha moment"


def _split(ws: Workspace, options: RunOptions, report: RunReport, outcome: StepOutcome):
    from vlaa_data.steps.split import SplitOptions, run_split

    outcome.ran = True
    # The release is rebuilt each time: a resumed run may have verified more samples since.
    split = SplitOptions(name=report.release or "v1", replace=True, command=options.command)
    try:
        made = run_split(ws, split)
    except EmptyRelease as exc:  # nothing verified correct yet: no release, and no stop
        outcome.note = str(exc)
        return
    counts = made.counts
    outcome.note = (
        f"release {made.name}: {counts['sft']} sft, {counts['rl']} rl, {counts['test']} test"
    )


def _export(
    ws: Workspace, options: RunOptions, report: RunReport, fmt: str, outcome: StepOutcome
) -> None:
    from vlaa_data.release.export import default_out, export_release

    name = report.release or "v1"
    counts = ws.store.release_counts()
    if name not in counts:
        split = next((o for o in report.steps if o.step == "split" and o.ran), None)
        why = "the split made none" if split is not None else "run the split step first"
        outcome.note = f"no release {name!r} to export: {why}"
        return
    if not any(counts[name].values()):
        outcome.note = f"release {name!r} holds no samples (none verified correct): no export"
        return
    outcome.ran = True
    out = options.export_out or default_out(ws, name, fmt)
    exported = export_release(ws, name, fmt, out, command=f"{options.command} (export)")
    report.export = str(exported.out)
    outcome.done = sum(exported.rows.values())
    outcome.note = f"{fmt} in {exported.out}"


def _count_states(ws: Workspace, report: RunReport) -> None:
    """Each counted step's done/rejected/failed/pending, as ``status`` shows them."""
    steps = build_status(ws.store).steps
    for outcome in report.steps:
        if outcome.step in _COUNTED:
            counts = steps[outcome.step]
            outcome.done, outcome.rejected = counts["done"], counts["rejected"]
            outcome.failed, outcome.pending = counts["failed"], counts["pending"]
