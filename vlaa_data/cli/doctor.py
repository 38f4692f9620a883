"""``vlaa-data doctor``: print the checks of ``vlaa_data.doctor`` and exit 1 if any failed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from vlaa_data.cli.app import Json, Workspace_, app, err, new_table, out, print_json

_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@app.command()
def doctor(
    offline: Annotated[
        bool, typer.Option("--offline", help="Check keys by name only; contact no endpoint.")
    ] = False,
    base_url: Annotated[
        str | None,
        typer.Option(help="Check this endpoint for every step, as a step's --base-url would."),
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Read every step's API key from this variable.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each endpoint has to answer GET /models.")
    ] = 5.0,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Check the environment, the workspace and the model endpoints, and say what to fix.

    Versions and optional extras, the GPU, vlaa.toml, the database (opened read-only), a stale
    lock or unwritten replies, each LLM step's preset, its API key variable (shown by name,
    never its value) and GET /models on each distinct endpoint. Exits 1 when a check failed;
    warnings do not fail.

    Example: vlaa-data doctor

    Example: vlaa-data doctor --offline --json
    """
    from vlaa_data.doctor import run_doctor

    report = run_doctor(
        workspace, offline=offline, base_url=base_url, api_key_env=api_key_env, timeout_s=timeout
    )
    if json_:
        print_json(report.to_dict())
    else:
        table = new_table(f"vlaa-data doctor: {report.root}", "check", "status", "detail", "fix")
        for column in table.columns:
            column.overflow = "fold"  # a URL or a path cut with "…" is no use
        group = None
        for check in report.checks:
            if group is not None and check.group != group:
                table.add_section()
            group = check.group
            status = Text(check.status, style=_STYLES[check.status])
            table.add_row(Text(check.name), status, Text(check.detail), Text(check.fix))
        out.print(table)
        out.print(", ".join(f"{n} {status}" for status, n in report.counts().items() if n))
    if report.failed:
        names = ", ".join(check.name for check in report.failed)
        err.print(f"doctor: {len(report.failed)} failed: {names}", markup=False, highlight=False)
        raise typer.Exit(1)
