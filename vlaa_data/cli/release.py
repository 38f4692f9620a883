"""``split``, ``export`` and ``push``: curating a release and publishing it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from vlaa_data.cli.app import (
    Json,
    Workspace_,
    app,
    command_line,
    new_table,
    out,
    print_json,
)
from vlaa_data.errors import VlaaError


def _quotas(values: list[str] | None, flag: str) -> dict[str, int]:
    quotas = {}
    for value in values or []:
        source, sep, n = value.rpartition("=")
        if not sep or not source or not n.isdigit():
            raise VlaaError(f"{flag} {value!r}: expected SOURCE=N")
        quotas[source] = int(n)
    return quotas


@app.command()
def split(
    name: Annotated[str | None, typer.Argument(help="The release's name.")] = None,
    name_option: Annotated[
        str | None, typer.Option("--name", hidden=True, help="The release's name (old form).")
    ] = None,
    rule: Annotated[
        str, typer.Option(help="aha (the paper's: aha moment -> RL, else SFT) or pass (all SFT).")
    ] = "aha",
    aha_score: Annotated[
        str,
        typer.Option(
            help="The aha rule's score: aha (keyword hits) or aha_model (hits a model judged "
            "genuine; filter aha --method model)."
        ),
    ] = "aha",
    rl_quota: Annotated[
        list[str] | None, typer.Option(help="SOURCE=N: at most N RL samples of SOURCE.")
    ] = None,
    sft_quota: Annotated[
        list[str] | None, typer.Option(help="SOURCE=N: at most N SFT samples of SOURCE.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the order quotas choose in.")] = 0,
    where: Annotated[
        str | None, typer.Option(help='A SQL predicate over samples_view, e.g. "ppl < 50".')
    ] = None,
    ppl_top: Annotated[
        int | None, typer.Option(min=0, help="Keep the K highest-PPL SFT samples.")
    ] = None,
    test_size: Annotated[
        str,
        typer.Option(
            help="The held-out test part eval scores on, no image of it in SFT or RL: a count "
            "of samples (200), or a share of the images drawn by --seed (0.02 or 2%; at most "
            "1000 samples); 0 for none. [default: 2%]",
            show_default=False,
        ),
    ] = "0.02",
    replace: Annotated[bool, typer.Option(help="Rebuild a release that exists.")] = False,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Split verified samples into a named release: SFT, RL and a held-out test part, disjoint,
    no image in two of them.

    The release keeps its parameters and, for every sample considered, its split and why
    (table release_samples); the same command on the same workspace rebuilds it exactly. With
    no sample verified correct no release is made.

    Example: vlaa-data split v2 --rl-quota clevr_math=2000 --where "reasoning_tokens < 2000"
    """
    from vlaa_data.steps.split import SplitOptions, parse_test_size, run_split
    from vlaa_data.workspace import Workspace

    if name and name_option and name != name_option:
        raise VlaaError(f"two names given: {name!r} and --name {name_option!r}")
    name = name or name_option
    if not name:
        raise VlaaError("name the release: vlaa-data split NAME")
    options = SplitOptions(
        name=name,
        rule=rule,
        aha_score=aha_score,
        rl_quota=_quotas(rl_quota, "--rl-quota"),
        sft_quota=_quotas(sft_quota, "--sft-quota"),
        seed=seed,
        where=where,
        ppl_top=ppl_top,
        test_size=parse_test_size(test_size),
        replace=replace,
        command=command_line(),
    )
    with Workspace.open(workspace, write=True) as ws:
        report = run_split(ws, options)
    if json_:
        print_json(report.to_dict())
        return
    table = new_table(f"release {report.name}", "source", "sft>", "rl>", "test>")
    for source, counts in report.by_source.items():
        table.add_row(Text(source), *(str(n) for n in counts.values()))
    table.add_section()
    table.add_row("total", *(str(n) for n in report.counts.values()))
    out.print(table)
    if report.excluded:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.excluded.items()))
        out.print(Text(f"excluded: {reasons}"))


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="The release to export.")],
    format_: Annotated[
        str, typer.Option("--format", help="hf (parquet for datasets/TRL), vlaa-json or sharegpt.")
    ] = "hf",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="The folder to write [default: WORKSPACE/releases/NAME/FORMAT]."
        ),
    ] = None,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per parquet shard (hf).")] = 5000,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Write a release to disk: the same release always gives byte-identical files.

    hf: parquet shards with images embedded and a dataset card; datasets.load_dataset(DIR)
    loads splits sft, rl and test (those with rows). vlaa-json: the published VLAA-Thinking
    files and images. sharegpt: LLaMA-Factory's layout with dataset_info.json.

    Example: vlaa-data export v1 --format hf --out ./vlaa-v1
    """
    from vlaa_data.release.export import default_out, export_release
    from vlaa_data.workspace import Workspace

    with Workspace.open(workspace, write=True) as ws:
        target = out_dir or default_out(ws, name, format_)
        report = export_release(
            ws, name, format_, target, shard_rows=shard_rows, command=command_line()
        )
    if json_:
        print_json(report.to_dict())
        return
    rows = ", ".join(f"{n} {split}" for split, n in report.rows.items())
    out.print(Text(f"release {name} written to {report.out} ({format_}: {rows})"))


@app.command()
def push(
    name: Annotated[str, typer.Argument(help="The release to publish.")],
    repo_id: Annotated[str, typer.Argument(help="The dataset repo, e.g. USER/vlaa-thinking-mine.")],
    version: Annotated[
        str | None, typer.Option(help="The tag to give this version [default: NAME].")
    ] = None,
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="List every file that would be uploaded; send nothing.")
    ] = False,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Export a release (hf format, with its card) and upload it to the Hub in one commit.

    The token comes from HF_TOKEN or `hf auth login`; it is never printed or stored. The
    version is tagged, and repo, commit and tag are recorded in the workspace; a failed push
    can be run again.

    Example: HF_TOKEN=... vlaa-data push v2 me/vlaa-thinking-mine --version v2 --private
    """
    from vlaa_data.release.export import default_out, export_release
    from vlaa_data.release.push import REPLACED_FOLDERS, push_release
    from vlaa_data.workspace import Workspace

    with Workspace.open(workspace, write=True) as ws:
        folder = default_out(ws, name, "hf")
        export_release(ws, name, "hf", folder, command=command_line(), repo_id=repo_id)
        report = push_release(
            ws, name, repo_id, folder, version=version, private=private, dry_run=dry_run
        )
    if json_:
        print_json(report.to_dict())
        return
    table = new_table(f"{'would upload' if dry_run else 'uploaded'} to {repo_id}", "file", "bytes>")
    for file in report.files:
        table.add_row(Text(file.path), f"{file.size:,}")
    out.print(table)
    if dry_run:
        replaced = " and ".join(REPLACED_FOLDERS)
        out.print(
            Text(
                f"dry run: commit {report.message!r}, tag {report.tag}; the commit also deletes "
                f"the files under {replaced} that this export lacks; nothing sent"
            )
        )
        return
    if report.deleted:
        out.print(Text(f"deleted {len(report.deleted)} earlier files: {', '.join(report.deleted)}"))
    out.print(Text(f"commit {report.commit} tagged {report.tag}: {report.commit_url}"))
