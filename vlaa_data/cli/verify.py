"""``vlaa-data verify``: rule verdicts first, the LLM judge only where rules cannot decide."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from vlaa_data.cli.app import (
    Shard_,
    err,
    exit_on_interrupt,
    new_table,
    note_recovered,
    out,
    print_json,
)
from vlaa_data.cli.llm import (
    llm_command,
    llm_options,
    note_waiting,
    print_estimate,
    progress_bar,
    raise_if_stopped,
)
from vlaa_data.store.shards import Shard

_HELP = (
    "Check each rewritten answer against the ground truth (step 5); only correct samples go "
    "on to split.\n\n"
    "digit, choice, math (Math-Verify, with a deadline) and iou samples are decided by rule; "
    "open-ended samples, and those rules cannot decide, go to the judge (default: "
    "gpt-3.5-turbo), which must answer Yes or No. Each verdict (correct, incorrect, "
    "unverifiable) records its method and the extracted answer.\n\n"
    "Example: vlaa-data verify --rules-only\n\n"
    "Example: vlaa-data verify --rules-only --shard 0/4 -w ws-0\n\n"
    "Example: OPENAI_API_KEY=... vlaa-data verify --judge gpt-4o-mini --budget-usd 5"
)


def _verify_flags(
    model: Annotated[
        str | None,
        typer.Option("--judge", "-m", help="The judge: a preset or a model id."),
    ] = None,
    rules_only: Annotated[
        bool,
        typer.Option(
            "--rules-only", help="Never call a model: what rules cannot decide is unverifiable."
        ),
    ] = False,
    iou_threshold: Annotated[
        float | None,
        typer.Option(min=0.01, max=1.0, help="IoU a box needs to be correct (default: 0.5)."),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds one math check may take (default: 2)."),
    ] = None,
    math_workers: Annotated[
        int | None,
        typer.Option(min=1, help="Math-Verify processes (default: one per core)."),
    ] = None,
    shard: Shard_ = None,
) -> None:
    """Flags only verify takes."""


@llm_command("verify", _HELP, extra=_verify_flags, drop=("max_pixels",))
def _verify(
    *,
    json_: bool,
    workspace: Path | None,
    rules_only: bool,
    iou_threshold: float | None,
    deadline: float | None,
    math_workers: int | None,
    shard: Shard | None,
    **flags: Any,
) -> None:
    from vlaa_data.steps.verify import VerifyOptions, run_verify
    from vlaa_data.workspace import Workspace

    options = VerifyOptions(
        judge=replace(llm_options(flags), shard=shard),
        rules_only=rules_only,
        iou_threshold=iou_threshold,
        math_deadline_s=deadline,
        math_workers=math_workers,
    )
    dry_run = options.judge.dry_run
    with exit_on_interrupt(), Workspace.open(workspace, write=not dry_run) as ws:
        note_recovered(ws.recovered_replies)
        with progress_bar("verify", json_ or dry_run or not err.is_terminal) as show:
            report = run_verify(ws, options, on_progress=show)
    if json_:
        print_json(report.to_dict())
    elif report.judge is not None and report.judge.estimate is not None:
        _print_verdicts(report)
        print_estimate(report.judge)
    else:
        _print_verdicts(report)
    note_waiting(report.waiting_hint())
    if report.judge is not None:
        raise_if_stopped(report.judge)


def _print_verdicts(report) -> None:
    title = f"verify: {report.selected} samples" + (" (dry run)" if report.run_id is None else "")
    table = new_table(title, "verdict", "method", "samples>")
    for (verdict, method), n in sorted(report.verdicts.items()):
        table.add_row(verdict, method, str(n))
    out.print(table)
    judge = report.judge
    line = f"{report.decided_by_rules} decided by rules, {report.sent_to_judge} needed the judge"
    if report.rules_only:
        line += " (--rules-only: recorded unverifiable)"
    if judge is not None and judge.estimate is None:
        p = judge.progress
        line += (
            f": {p.requests} requests, {p.cached} from cache, ${p.cost_usd:.4f} with {judge.model}"
        )
        if judge.left_pending:
            line += f", {judge.left_pending} left pending"
    out.print(f"{line}; {report.seconds:.1f}s (run {report.run_id})")
