"""``vlaa-data run``: every step in order, one progress display, one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text

from vlaa_data.cli.app import (
    Json,
    Shard_,
    Workspace_,
    app,
    command_line,
    err,
    exit_on_interrupt,
    new_table,
    note_recovered,
    out,
    print_json,
)
from vlaa_data.steps.registry import run_steps


@app.command()
def run(
    steps: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated steps to run [default: all: {','.join(run_steps())}]."),
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start at this step.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Stop after this step.")] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Send every LLM step to this OpenAI-compatible endpoint (vllm serve), or "
            "spread it over several separated by commas (a fleet), over each step's base_url "
            "in vlaa.toml and $OPENAI_BASE_URL."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Each LLM step takes at most N samples.")
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option(min=0.0, help="What each LLM step may spend (USD) [default: vlaa.toml]."),
    ] = None,
    rules_only: Annotated[
        bool, typer.Option("--rules-only", help="verify without the judge (no open-ended).")
    ] = False,
    release: Annotated[
        str | None, typer.Option(help="The release split makes [default: vlaa.toml, v1].")
    ] = None,
    export_format: Annotated[
        str | None,
        typer.Option("--format", help="hf, vlaa-json or sharegpt [default: vlaa.toml, hf]."),
    ] = None,
    export_out: Annotated[
        Path | None,
        typer.Option("--out", help="Export folder [default: WORKSPACE/releases/NAME/FORMAT]."),
    ] = None,
    shard: Shard_ = None,
    executor: Annotated[
        str | None,
        typer.Option(
            help="Run the per-sample steps as --tasks shards on datatrove: local (processes "
            "here), slurm (a job array) or ray (a Ray cluster); then merge them here and "
            "split and export [default: one process, no shards].",
            show_default=False,
        ),
    ] = None,
    tasks: Annotated[int, typer.Option(min=1, help="Shards, with --executor.")] = 2,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Tasks at once, with --executor [default: all].", show_default=False
        ),
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help="The Slurm partition, with --executor slurm.")
    ] = None,
    slurm_time: Annotated[
        str, typer.Option("--time", help="Each Slurm task's time limit.")
    ] = "24:00:00",
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Run the pipeline in order: collect, caption, distill, rewrite, verify, the aha filter,
    split, export; with the models, budgets and sources in vlaa.toml.

    Each step does only what is not done yet, so running it again after a crash, Ctrl-C or a
    budget stop goes on where it stopped, paying for nothing twice. Without an API key or
    --base-url for the LLM steps it stops after collect, saying what to set.

    Example: OPENAI_API_KEY=... DEEPSEEK_API_KEY=... vlaa-data run

    Example: vlaa-data run --base-url http://gpu-box:8000/v1 --from caption --to verify

    Example: vlaa-data run --executor local --tasks 8 --workers 2 --base-url http://gpu:8000/v1
    """
    from vlaa_data.errors import VlaaError
    from vlaa_data.pipeline import RunOptions, run_pipeline, select_steps
    from vlaa_data.workspace import Workspace

    chosen = select_steps(steps.split(",") if steps else None, start, end)
    options = RunOptions(
        steps=chosen,
        base_url=base_url,
        limit=limit,
        budget_usd=budget_usd,
        rules_only=rules_only,
        release=release,
        export_format=export_format,
        export_out=export_out.expanduser().resolve() if export_out else None,
        command=command_line(),
        shard=shard,
    )
    if executor is not None:
        _run_distributed(options, executor, tasks, workers, partition, slurm_time, json_, workspace)
        return
    progress = Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=json_ or not err.is_terminal,
    )
    bars: dict[str, TaskID] = {step: progress.add_task(step, total=None) for step in chosen}

    def show(step: str, finished: int, total: int | None) -> None:
        for earlier in chosen[: chosen.index(step)]:  # a step that started ends the ones before
            task = progress.tasks[bars[earlier]]
            if not task.finished:
                whole = max(int(task.completed), 1)
                progress.update(bars[earlier], completed=whole, total=whole)
        progress.update(bars[step], completed=finished, total=total)

    with exit_on_interrupt(), Workspace.open(workspace, write=True) as ws, progress:
        note_recovered(ws.recovered_replies)
        report = run_pipeline(ws, options, on_progress=show)
    if json_:
        print_json(report.to_dict())
    else:
        _print(report)
    if report.stopped:
        raise VlaaError(report.stopped)


def _run_distributed(
    options,
    executor: str,
    tasks: int,
    workers: int | None,
    partition: str | None,
    slurm_time: str,
    json_: bool,
    workspace: Path | None,
) -> None:
    from vlaa_data.distributed import EngineOptions, run_distributed
    from vlaa_data.errors import VlaaError
    from vlaa_data.workspace import resolve_root

    if options.shard is not None:
        raise VlaaError("--shard is one shard by hand; --executor makes the shards itself")
    engine = EngineOptions(
        executor=executor, tasks=tasks, workers=workers, partition=partition, time=slurm_time
    )
    with exit_on_interrupt():
        report = run_distributed(resolve_root(workspace), options, engine)
    if json_:
        print_json(report.to_dict())
    elif report.submitted:
        out.print(
            Text(
                f"submitted {tasks} shard tasks and the merge to Slurm; "
                f"logs in {report.logging_dir}"
            )
        )
    else:
        _print(report)
        out.print(Text(f"{executor}: {tasks} shards; logs in {report.logging_dir}"))
    if report.stopped:
        raise VlaaError(report.stopped)


def _print(report) -> None:
    columns = ("step", "done>", "rejected>", "failed>", "pending>", "calls>", "tokens>", "cost>")
    table = new_table("vlaa-data run", *columns, "time>")
    for outcome in report.steps:
        table.add_row(
            outcome.step,
            str(outcome.done),
            str(outcome.rejected),
            str(outcome.failed),
            str(outcome.pending),
            str(outcome.requests),
            f"{outcome.tokens_in + outcome.tokens_out:,}",
            f"${outcome.cost_usd:.2f}",
            f"{outcome.seconds:.1f}s",
        )
    out.print(table)
    for outcome in report.steps:
        if outcome.note:
            out.print(Text(f"{outcome.step}: {outcome.note}"))
