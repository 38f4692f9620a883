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
from typing import Any

from vlaa_data.errors import SettingsError, VlaaError
from vlaa_data.llm.presets import load_presets, resolve_endpoint
from vlaa_data.settings import endpoint_entries
from vlaa_data.status import build_status
from vlaa_data.steps.in_run import release_name
from vlaa_data.steps.registry import (
    RunOptions,
    StepOutcome,
    counted_steps,
    get_step,
    llm_steps,
    run_steps,
)
from vlaa_data.workspace import Workspace

__all__ = [
    "RunOptions",
    "RunReport",
    "StepOutcome",
    "missing_keys_line",
    "run_pipeline",
    "select_steps",
]

# step, samples finished, samples to finish (None: not known yet); (step, 0, None) first
OnProgress = Callable[[str, int, int | None], None]


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
    order = run_steps()
    for step in [*(steps or ()), start, end]:
        if step is not None and step not in order:
            raise VlaaError(f"unknown step {step!r}; the steps are {', '.join(order)}")
    first = order.index(start) if start else 0
    last = order.index(end) if end else len(order) - 1
    if first > last:
        raise VlaaError(f"--from {start} comes after --to {end}")
    chosen = set(steps or order)
    return tuple(step for step in order[first : last + 1] if step in chosen)


def missing_keys_line(ws: Workspace, steps: Sequence[str], base_url: str | None) -> str | None:
    """One line naming every API key the LLM ``steps`` lack, and the self-hosted way out;
    None when each step can reach its endpoint. Other problems (an unknown preset, say) are
    raised as they are."""
    presets = load_presets(ws.settings.presets)
    wanted: dict[str, list[str]] = {}
    for step in steps:
        settings = ws.settings.step(step)
        # A fleet's endpoints share the preset's key: its first endpoint says whether it is needed.
        fleet = endpoint_entries(base_url or settings.base_url)
        first = fleet[0].url if fleet else None
        try:
            resolve_endpoint(
                settings.model,
                presets,
                base_url=first,
                api_key_env=settings.api_key_env,
            )
        except SettingsError:
            endpoint = resolve_endpoint(
                settings.model,
                presets,
                base_url=first,
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
    """Run ``options.steps`` (default: every step of the run) in order; stop at the first step
    that cannot go on (a missing key, a budget reached, a step's own error), keeping
    everything done before it."""
    started = time.monotonic()
    chosen = tuple(options.steps) if options.steps is not None else run_steps()
    report = RunReport(release=release_name(ws, options))
    progress = on_progress or (lambda step, finished, total: None)
    needs_llm = [step for step in chosen if step in llm_steps("llm")]
    options.outcomes = report.steps
    try:
        for step in chosen:
            if needs_llm and step == needs_llm[0]:
                report.stopped = missing_keys_line(ws, needs_llm, options.base_url)
                if report.stopped:
                    break
            progress(step, 0, None)  # the step starts: the ones before it are done
            step_started = time.monotonic()
            try:
                outcome = get_step(step).runner()(ws, options, functools.partial(progress, step))
            except VlaaError as exc:
                outcome = StepOutcome(step, ran=True, stopped=str(exc))
            outcome.seconds = time.monotonic() - step_started
            report.steps.append(outcome)
            report.export = outcome.export or report.export
            if outcome.stopped:
                report.stopped = f"{step}: {outcome.stopped}"
                break
    finally:
        _count_states(ws, report)
        report.seconds = time.monotonic() - started
    return report


def _count_states(ws: Workspace, report: RunReport) -> None:
    """Each counted step's done/rejected/failed/pending, as ``status`` shows them."""
    steps = build_status(ws.store).steps
    counted = counted_steps()
    for outcome in report.steps:
        if outcome.step in counted:
            counts = steps[outcome.step]
            outcome.done, outcome.rejected = counts["done"], counts["rejected"]
            outcome.failed, outcome.pending = counts["failed"], counts["pending"]
