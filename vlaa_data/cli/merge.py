"""``vlaa-data merge``: fold shard workspaces into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlaa_data.cli.app import (
    Json,
    Shard_,
    app,
    command_line,
    exit_on_interrupt,
    new_table,
    out,
    print_json,
)


@app.command()
def merge(
    target: Annotated[
        Path,
        typer.Argument(
            help="The workspace to merge into (created when missing).", show_default=False
        ),
    ],
    shards: Annotated[
        list[Path],
        typer.Argument(
            help="The workspaces to merge, in this order: shard workspaces, or with --shard, "
            "any workspace (one that holds the target too).",
            show_default=False,
        ),
    ],
    shard: Shard_ = None,
    json_: Json = False,
) -> None:
    """Fold shard workspaces into one: samples, images, results and their history, the LLM
    ledger, scores and runs, without duplicates.

    Each shard is merged in one transaction; merging one again adds nothing. Where two shards
    hold results of one sample, the shard named later wins and the other's stay as history.
    Releases are not merged: run split on the merged workspace. With --shard I/N, only the
    rows of that shard's samples are taken: a shard workspace that goes on from where the
    whole one is, and merges back into it without duplicates.

    Example: vlaa-data merge ws ws-0 ws-1 ws-2 ws-3

    Example: vlaa-data merge ws/shards/0-of-4 ws --shard 0/4
    """
    from vlaa_data.merge import merge_workspaces, shard_roots
    from vlaa_data.workspace import CONFIG_NAME, Workspace, init_workspace, resolve_root

    shard_roots(resolve_root(target), shards)  # a mistyped shard creates no target
    if not (target / CONFIG_NAME).is_file():
        init_workspace(target)
    with exit_on_interrupt(), Workspace.open(target, write=True) as ws:
        report = merge_workspaces(ws, shards, shard=shard, command=command_line())
    if json_:
        print_json(report.to_dict())
        return
    table = new_table(
        f"merge into {report.target}",
        "workspace",
        "samples>",
        "results>",
        "llm calls>",
        "scores>",
        "runs>",
        "images>",
    )
    for part in report.shards:
        added = part.counts.added
        table.add_row(
            part.workspace,
            *(str(added.get(t, 0)) for t in ("samples", "results", "llm_calls", "scores", "runs")),
            str(added.get("images", 0)),
        )
    out.print(table)
    for part in report.shards:
        counts = part.counts
        if counts.samples_differing:
            out.print(
                f"{part.workspace}: {counts.samples_differing} samples differ from the target's "
                "of the same id (the target's kept)"
            )
        if counts.images_shared:
            out.print(
                f"{part.workspace}: {counts.images_shared} samples share their image with "
                "another sample of their source (collect deduplicates within a shard only)"
            )
        if counts.releases_not_merged:
            out.print(
                f"{part.workspace}: {counts.releases_not_merged} releases not merged "
                "(run split on the merged workspace)"
            )
        if part.image_files_missing:
            out.print(f"{part.workspace}: {part.image_files_missing} image files missing")
    out.print(
        f"{len(report.shards)} workspaces merged in {report.seconds:.1f}s (run {report.run_id})"
    )
