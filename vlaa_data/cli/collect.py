"""``vlaa-data collect``: step 1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vlaa_data.cli.app import (
    Json,
    Shard_,
    Workspace_,
    app,
    command_line,
    err,
    exit_on_interrupt,
    note_recovered,
    out,
    print_json,
    rate,
)
from vlaa_data.errors import VlaaError
from vlaa_data.sources import adapter_names


def _parse_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise VlaaError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. question=query")
        mapping[field.strip()] = column.strip()
    return mapping


# The adapters as registered, so a new one shows in --help without touching this file.
_ADAPTERS = ", ".join(name for name in adapter_names() if not name.startswith("synthetic"))


@app.command()
def collect(
    source: Annotated[
        str,
        typer.Argument(
            help=f"An adapter ({_ADAPTERS}), synthetic[:kind], a file "
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
    shard: Shard_ = None,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Collect samples from a source into the workspace (step 1).

    Bad rows are recorded as rejected with their reason; the collect goes on.
    Collecting the same source again adds nothing.

    Example: vlaa-data collect synthetic --limit 200 --seed 0

    Example: vlaa-data collect synthetic --limit 2000 --shard 0/4 -w ws-0
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
    with exit_on_interrupt(), Workspace.open(workspace, write=True) as ws:
        note_recovered(ws.recovered_replies)
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
                on_progress=lambda n: progress.update(task, completed=n, rate=rate(n, started)),
                command=command_line(),
                shard=shard,
            )
    if json_:
        print_json(report.to_dict())
        return
    table = Table(title=f"collect {report.source}", show_header=True)
    table.add_column("outcome")
    table.add_column("samples", justify="right")
    table.add_row("collected", str(report.collected))
    table.add_row("already present", str(report.already_present))
    if report.shard is not None:
        table.add_row(f"in other shards than {report.shard}", str(report.other_shards))
    for reason, count in sorted(report.rejected.items()):
        table.add_row(f"rejected: {reason}", str(count))
    out.print(table)
    out.print(
        f"{report.collected} collected, {report.rejected_total} rejected "
        f"in {report.seconds:.1f}s (run {report.run_id})"
    )
