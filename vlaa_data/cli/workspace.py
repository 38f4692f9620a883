"""Workspace commands: init, status, sql."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from vlaa_data.cli.app import Json, Workspace_, app, new_table, out, print_json


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
        print_json(report.to_dict())
        return
    table = Table(title=f"{report.samples} samples")
    table.add_column("source")
    table.add_column("step")
    for state in STATES:
        table.add_column(state, justify="right")
    for source, steps in report.by_source.items():
        for step, counts in steps.items():
            table.add_row(Text(source), step, *(str(counts[s]) for s in STATES))
        table.add_section()
    out.print(table)
    if report.llm:
        ledger = new_table("LLM calls (the ledger)", "step", "models", "calls>", "tokens>", "cost>")
        for step, entry in report.llm.items():
            ledger.add_row(
                step,
                ", ".join(entry["models"]),
                str(entry["calls"]),
                f"{entry['tokens_in']:,} / {entry['tokens_out']:,}",
                f"${entry['cost_usd']:,.4f}",
            )
        out.print(ledger)
    if report.endpoints:
        origins = new_table(
            "where current results came from", "step", "endpoint", "results>", "scripted>"
        )
        for step, endpoints in report.endpoints.items():
            for endpoint, counts in endpoints.items():
                origins.add_row(
                    step, Text(endpoint), str(counts["results"]), str(counts["scripted"])
                )
        out.print(origins)
    if report.scripted:
        per_step = ", ".join(f"{step} {n}" for step, n in report.scripted.items())
        out.print(
            f"[bold yellow]warning:[/] {sum(report.scripted.values())} current results "
            f"({per_step}) came from the scripted stand-in server: placeholders, not a model's; "
            "run those steps against a real endpoint to redo them"
        )
    if report.rejects:
        rejects = new_table("not done, by reason", "step", "reason", "samples>")
        for step, reasons in report.rejects.items():
            for reason, count in reasons.items():
                rejects.add_row(step, Text(reason), str(count))
        out.print(rejects)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.", show_default=False)],
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Run a read-only SQL query on the workspace (samples_view, samples, images, results,
    current_results, llm_calls, scores, releases, release_samples, collect_rejects, runs).

    Example: vlaa-data sql "SELECT source, avg(reasoning_tokens) FROM samples_view GROUP BY 1"
    """
    from vlaa_data.workspace import Workspace

    with Workspace.open(workspace, write=False) as ws:
        ws.store.confine()
        result = ws.store.query(query)
    if json_:
        print_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
        return
    table = Table()
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        # Text, not markup: a value such as "[x1, y1, x2, y2]" must print as it is.
        table.add_row(*(Text("NULL" if v is None else str(v)) for v in row))
    out.print(table)
    out.print(f"{len(result.rows)} rows")


@app.command()
def presets(json_: Json = False, workspace: Workspace_ = None) -> None:
    """List the model presets: built-in ones and those in the workspace's vlaa.toml.

    Example: vlaa-data presets
    """
    from vlaa_data.llm.presets import load_presets, preset_base_url, redact_url
    from vlaa_data.settings import load_settings
    from vlaa_data.workspace import CONFIG_NAME, resolve_root

    config = resolve_root(workspace) / CONFIG_NAME
    known = load_presets(load_settings(config if config.exists() else None).presets)
    if json_:
        print_json(
            {
                name: {**preset.model_dump(), "endpoint": redact_url(preset_base_url(preset))}
                for name, preset in known.items()
            }
        )
        return
    table = Table(title="model presets (add or override them under \\[presets.NAME] in vlaa.toml)")
    for column in ("preset", "model", "endpoint", "key variable", "reasoning", "images"):
        table.add_column(column, overflow="fold")
    table.add_column("$/M in / out", justify="right")
    for name, preset in sorted(known.items()):
        table.add_row(
            name,
            preset.model,
            _endpoint(preset, preset_base_url(preset), redact_url),
            preset.api_key_env or "(none)",
            preset.reasoning,
            "yes" if preset.vision else "no",
            f"{preset.price_input:g} / {preset.price_output:g}",
        )
    out.print(table)


def _endpoint(preset: Any, used: str | None, redact: Any) -> str:
    """The URL requests go to; where $OPENAI_BASE_URL moved the preset, it says so."""
    if used and used != preset.base_url:
        return f"{redact(used)} ($OPENAI_BASE_URL)"
    return preset.base_url or ""
