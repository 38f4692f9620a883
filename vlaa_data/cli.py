"""The ``vlaa-data`` command line: parses options, calls the library, prints reports."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vlaa_data import __version__
from vlaa_data.errors import VlaaError

app = typer.Typer(
    name="vlaa-data",
    help="Build, curate, publish and train on R1-style multimodal reasoning datasets "
    "(the VLAA-Thinking recipe). Every command works on one workspace directory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

Workspace_ = Annotated[
    Path | None,
    typer.Option(
        "-w",
        "--workspace",
        help="Workspace directory [default: $VLAA_WORKSPACE, else the current directory].",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _rate(done: int, started: float) -> str:
    elapsed = time.monotonic() - started
    return f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else ""


def _version(value: bool) -> None:
    if value:
        out.print(f"vlaa-data {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Build, curate, publish and train on R1-style multimodal reasoning datasets."""


@app.command()
def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to create it [default: -w, else here].")
    ] = None,
    workspace: Workspace_ = None,
) -> None:
    """Create a workspace: vlaa.toml, vlaa.duckdb, images/.

    Example: vlaa-data init my-data
    """
    from vlaa_data.workspace import init_workspace

    root = init_workspace(directory or workspace)
    out.print(f"workspace ready at {root}")


def _parse_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise VlaaError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. question=query")
        mapping[field.strip()] = column.strip()
    return mapping


@app.command()
def collect(
    source: Annotated[
        str,
        typer.Argument(
            help="An adapter (clevr-math, math-puma, arxivqa, docvqa, vizwiz, allava-laion, "
            "llava-cot, geoqa170k, vlaa-thinking), synthetic[:kind], a file "
            "(.jsonl .json .parquet .csv), a dataset folder, or a Hub dataset id.",
            show_default=False,
        ),
    ],
    path: Annotated[
        str | None, typer.Argument(help="The dataset file or folder, for an adapter.")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(help="Root for relative image paths [default: the file's folder]."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="FIELD=COLUMN",
            help="Name the column of a field: id, question, answer, image, reward_type, "
            "or context.KEY. Repeatable.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Source name for these samples [default: adapter/file].")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Take at most N rows (synthetic: generate N).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="With --limit, a reproducible random N rows; synthetic: the seed."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split [default: train].")] = None,
    keep_duplicate_images: Annotated[
        bool,
        typer.Option(
            "--keep-duplicate-images", help="Keep several samples of a source with one image."
        ),
    ] = False,
    max_pixels: Annotated[
        int | None, typer.Option(min=1, help="Reject larger images [default: vlaa.toml].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="Image worker processes (0 = one per core).")
    ] = None,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Collect samples from a source into the workspace (step 1).

    Bad rows are recorded as rejected with their reason; the collect goes on.
    Collecting the same source again adds nothing.

    Example: vlaa-data collect synthetic --limit 200 --seed 0
    """
    from vlaa_data.sources import SourceOptions, default_name, open_source
    from vlaa_data.steps.collect import collect as run_collect
    from vlaa_data.workspace import Workspace

    options = SourceOptions(
        images=images.expanduser().resolve() if images else None,
        mapping=_parse_map(map_ or []),
        split=split,
        limit=limit,
        seed=seed,
    )
    src = open_source(source, path, options)
    with Workspace.open(workspace, write=True) as ws:
        if max_pixels is not None:
            ws.settings.collect.max_pixels = max_pixels
        if workers is not None:
            ws.settings.collect.workers = workers
        progress = Progress(
            TextColumn("collect {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=json_ or not err.is_terminal,
        )
        source_name = name or default_name(source, src)
        started = time.monotonic()
        with progress:
            task = progress.add_task(source_name, total=limit, rate="")
            report = run_collect(
                ws,
                src,
                name=source_name,
                keep_duplicate_images=keep_duplicate_images,
                on_progress=lambda n: progress.update(task, completed=n, rate=_rate(n, started)),
                command=" ".join(["vlaa-data", *sys.argv[1:]]),
            )
    if json_:
        _print_json(report.to_dict())
        return
    table = Table(title=f"collect {report.source}", show_header=True)
    table.add_column("outcome")
    table.add_column("samples", justify="right")
    table.add_row("collected", str(report.collected))
    table.add_row("already present", str(report.already_present))
    for reason, count in sorted(report.rejected.items()):
        table.add_row(f"rejected: {reason}", str(count))
    out.print(table)
    out.print(
        f"{report.collected} collected, {report.rejected_total} rejected "
        f"in {report.seconds:.1f}s (run {report.run_id})"
    )


@app.command()
def status(json_: Json = False, workspace: Workspace_ = None) -> None:
    """Show samples per source and step, and rejections by reason.

    Example: vlaa-data status --json
    """
    from vlaa_data.status import STATES, build_status
    from vlaa_data.workspace import Workspace

    with Workspace.open(workspace, write=False) as ws:
        report = build_status(ws.store)
    if json_:
        _print_json(report.to_dict())
        return
    table = Table(title=f"{report.samples} samples")
    table.add_column("source")
    table.add_column("step")
    for state in STATES:
        table.add_column(state, justify="right")
    for source, steps in report.by_source.items():
        for step, counts in steps.items():
            table.add_row(source, step, *(str(counts[s]) for s in STATES))
        table.add_section()
    out.print(table)
    if report.rejects:
        rejects = Table(title="not done, by reason")
        rejects.add_column("step")
        rejects.add_column("reason")
        rejects.add_column("samples", justify="right")
        for step, reasons in report.rejects.items():
            for reason, count in reasons.items():
                rejects.add_row(step, reason, str(count))
        out.print(rejects)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.", show_default=False)],
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Run a read-only SQL query on the workspace (tables: samples, images, results,
    current_results, collect_rejects, runs).

    Example: vlaa-data sql "SELECT source, count(*) FROM samples GROUP BY source"
    """
    from vlaa_data.workspace import Workspace

    with Workspace.open(workspace, write=False) as ws:
        result = ws.store.query(query)
    if json_:
        _print_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
        return
    table = Table()
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    out.print(table)
    out.print(f"{len(result.rows)} rows")


def main() -> None:
    """Entry point: user errors print one line and exit 1 (VLAA_DATA_DEBUG=1: traceback)."""
    try:
        app()
    except VlaaError as exc:
        if os.environ.get("VLAA_DATA_DEBUG"):
            raise
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted: work written so far is kept; run the command again to resume")
        sys.exit(130)
