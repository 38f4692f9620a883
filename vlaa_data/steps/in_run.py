"""How ``vlaa-data run`` runs each built-in step: the step's own entry function with the
workspace's settings and the run's flags, as ``run(ws, options, on_progress) -> StepOutcome``.

Each is what the command of the same name does with no flags; the step table
(``vlaa_data.steps.registry``) names these functions, so ``pipeline.py`` is a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlaa_data.errors import EmptyRelease
from vlaa_data.steps.llm_step import LlmOptions, LlmReport, Progress
from vlaa_data.steps.registry import RunOptions, StepOutcome, StepProgress
from vlaa_data.workspace import Workspace

__all__ = ["release_name", "run_aha", "run_collect", "run_export", "run_llm", "run_split"]


def release_name(ws: Workspace, options: RunOptions) -> str:
    """The release split makes and export writes: the run's, else ``[run] release``."""
    return options.release or ws.settings.run.release


def llm_options(options: RunOptions, step: str) -> LlmOptions:
    """The step's own settings from vlaa.toml, less what the run's flags override."""
    return LlmOptions(
        base_url=options.base_url,
        limit=options.limit,
        budget_usd=options.budget_usd,
        command=f"{options.command} ({step})",
        shard=options.shard,
    )


def _add_llm(outcome: StepOutcome, llm: LlmReport | None) -> StepOutcome:
    """Add a step's requests, tokens and cost; stop the run where the step's command would
    exit 1: a budget reached, an endpoint unreachable, or no request brought back a reply."""
    if llm is None:
        return outcome
    outcome.requests += llm.progress.requests
    outcome.tokens_in += llm.progress.tokens_in
    outcome.tokens_out += llm.progress.tokens_out
    outcome.cost_usd += llm.progress.cost_usd
    outcome.stopped = llm.stop_line()
    return outcome


def _each(on_progress: StepProgress) -> Callable[[Progress], None]:
    return lambda p: on_progress(p.finished, p.total)


def run_collect(ws: Workspace, options: RunOptions, on_progress: StepProgress) -> StepOutcome:
    from vlaa_data.sources import SourceOptions, default_name, open_source
    from vlaa_data.steps.collect import collect

    outcome = StepOutcome("collect")
    entries = ws.settings.run.collect
    if not entries:
        outcome.note = "no [[run.collect]] sources in vlaa.toml: took the samples already here"
        return outcome
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
            on_progress(before + rows, None)

        result = collect(
            ws,
            source,
            name=name,
            on_progress=counted,
            command=f"{options.command} (collect)",
            shard=options.shard,
        )
        collected += result.collected + result.already_present + sum(result.rejected.values())
    return outcome


def run_llm(step: str) -> Callable[[Workspace, RunOptions, StepProgress], StepOutcome]:
    """The runner of ``llm`` step ``step`` (caption, distill, rewrite, or one registered)."""

    def run(ws: Workspace, options: RunOptions, on_progress: StepProgress) -> StepOutcome:
        from vlaa_data.steps.llm_runner import run_llm_step

        llm = run_llm_step(ws, step, llm_options(options, step), on_progress=_each(on_progress))
        return _add_llm(StepOutcome(step, ran=True), llm)

    return run


def run_verify(ws: Workspace, options: RunOptions, on_progress: StepProgress) -> StepOutcome:
    from vlaa_data.steps.verify import VerifyOptions, run_verify

    verify_options = VerifyOptions(
        judge=llm_options(options, "verify"), rules_only=options.rules_only
    )
    verified = run_verify(ws, verify_options, on_progress=_each(on_progress))
    return _add_llm(StepOutcome("verify", ran=True), verified.judge)


def run_aha(ws: Workspace, options: RunOptions, on_progress: StepProgress) -> StepOutcome:
    from vlaa_data.filters.aha import AhaOptions, run_aha

    scored = run_aha(ws, AhaOptions(command=f"{options.command} (aha)", shard=options.shard))
    return StepOutcome(
        "aha", ran=True, done=scored.scored, note=f"{scored.with_aha} with an aha moment"
    )


def run_split(ws: Workspace, options: RunOptions, on_progress: StepProgress) -> StepOutcome:
    from vlaa_data.steps.split import SplitOptions, run_split

    outcome = StepOutcome("split", ran=True)
    # The release is rebuilt each time: a resumed run may have verified more samples since.
    split = SplitOptions(name=release_name(ws, options), replace=True, command=options.command)
    try:
        made = run_split(ws, split)
    except EmptyRelease as exc:  # nothing verified correct yet: no release, and no stop
        outcome.note = str(exc)
        return outcome
    counts = made.counts
    outcome.note = (
        f"release {made.name}: {counts['sft']} sft, {counts['rl']} rl, {counts['test']} test"
    )
    return outcome


def run_export(ws: Workspace, options: RunOptions, on_progress: StepProgress) -> StepOutcome:
    from vlaa_data.release.export import default_out, export_release

    outcome = StepOutcome("export")
    name = release_name(ws, options)
    fmt = options.export_format or ws.settings.run.export_format
    counts = ws.store.release_counts()
    if name not in counts:
        split = any(o.step == "split" and o.ran for o in options.outcomes)
        why = "the split made none" if split else "run the split step first"
        outcome.note = f"no release {name!r} to export: {why}"
        return outcome
    if not any(counts[name].values()):
        outcome.note = f"release {name!r} holds no samples (none verified correct): no export"
        return outcome
    outcome.ran = True
    out = options.export_out or default_out(ws, name, fmt)
    exported = export_release(ws, name, fmt, out, command=f"{options.command} (export)")
    outcome.export = str(exported.out)
    outcome.done = sum(exported.rows.values())
    outcome.note = f"{fmt} in {exported.out}"
    return outcome
