"""``filter aha`` and ``filter ppl``: the scores split chooses by."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from vlaa_data.cli.app import (
    Json,
    MaxPixels,
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
from vlaa_data.cli.llm import (
    llm_command,
    llm_options,
    print_estimate,
    progress_bar,
    raise_if_stopped,
)
from vlaa_data.errors import VlaaError
from vlaa_data.hf import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from vlaa_data.filters.aha import AhaOptions
    from vlaa_data.filters.aha_model import AhaModelReport
    from vlaa_data.steps.llm_step import LlmOptions
    from vlaa_data.store.shards import Shard

filter_app = typer.Typer(
    help="Score samples (aha moments, perplexity) for split to use.", no_args_is_help=True
)
app.add_typer(filter_app, name="filter")

Sources = Annotated[
    list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")
]


_AHA_HELP = (
    "Count aha moments (self-reflective keywords) in each sample's current text, or have a "
    "model judge each one.\n\n"
    '--method keywords (the paper\'s) stores the count and the keywords hit as score "aha"; '
    "a rerun replaces them. --method model finds the same hits and asks a model (default: "
    "gpt-4o-mini) whether each is genuine self-correction or filler, one request per sample "
    "with hits (at most 24 hits each), through the usual LLM runner: cached, budgeted, "
    "--dry-run to price it, --backend vllm in-process. The number of genuine hits is stored "
    'as score "aha_model" (NULL where no judgement could be had). split\'s default rule sends '
    "samples with an aha moment to RL, the others to SFT; --aha-score picks the score.\n\n"
    "Example: vlaa-data filter aha --match word --scope reasoning\n\n"
    "Example: vlaa-data filter aha --method model --model gpt-4o-mini --budget-usd 5"
)


def _aha_flags(
    method: Annotated[
        str,
        typer.Option(help="keywords (count hits: score aha) or model (judge them: aha_model)."),
    ] = "keywords",
    keywords: Annotated[
        str | None,
        typer.Option(help="Comma-separated keywords [default: the paper's eight]."),
    ] = None,
    match: Annotated[
        str, typer.Option(help="substring (the paper's) or word (whole words only).")
    ] = "substring",
    scope: Annotated[
        str, typer.Option(help="all (reasoning and answer, the paper's), reasoning or answer.")
    ] = "all",
    limit: Annotated[
        int | None, typer.Option(min=1, help="--method model: judge at most N samples.")
    ] = None,
    shard: Shard_ = None,
) -> None:
    """Flags only filter aha takes."""


@llm_command(
    "aha", _AHA_HELP, extra=_aha_flags, drop=("max_pixels", "retry_truncated"), group=filter_app
)
def _filter_aha(
    *,
    method: str,
    keywords: str | None,
    match: str,
    scope: str,
    shard: Shard | None,
    json_: bool,
    workspace: Path | None,
    **flags: Any,
) -> None:
    from vlaa_data.filters.aha import PAPER_KEYWORDS, AhaOptions

    if method not in ("keywords", "model"):
        raise VlaaError(f"unknown method {method!r} (choose from keywords, model)")
    options = AhaOptions(
        keywords=keywords.split(",") if keywords else PAPER_KEYWORDS,
        match=match,
        scope=scope,
        sources=flags.get("source") or (),
        command=command_line(),
        shard=shard,
    )
    if method == "model":
        _filter_aha_model(options, replace(llm_options(flags), shard=shard), json_, workspace)
        return
    judge_only = [
        f"--{name.replace('_', '-')}"
        for name, value in flags.items()
        if name != "source" and value not in (None, False, "openai")
    ]
    if judge_only:
        raise VlaaError(f"{', '.join(judge_only)}: only with --method model")
    _filter_aha_keywords(options, json_, workspace)


def _filter_aha_keywords(options: AhaOptions, json_: bool, workspace: Path | None) -> None:
    from vlaa_data.filters.aha import run_aha
    from vlaa_data.workspace import Workspace

    with Workspace.open(workspace, write=True) as ws:
        report = run_aha(ws, options)
    if json_:
        print_json(report.to_dict())
        return
    share = report.with_aha / report.scored if report.scored else 0.0
    out.print(f"{report.scored} samples scored, {report.with_aha} with an aha moment ({share:.1%})")
    if report.keywords:
        table = new_table("samples per keyword", "keyword", "samples>")
        for keyword, n in report.keywords.most_common():
            table.add_row(Text(keyword), str(n))
        out.print(table)


def _filter_aha_model(
    options: AhaOptions, judge: LlmOptions, json_: bool, workspace: Path | None
) -> None:
    from vlaa_data.filters.aha_model import AhaModelOptions, run_aha_model
    from vlaa_data.workspace import Workspace

    disabled = json_ or judge.dry_run or not err.is_terminal
    with exit_on_interrupt(), Workspace.open(workspace, write=not judge.dry_run) as ws:
        note_recovered(ws.recovered_replies)
        with progress_bar("aha", disabled) as show:
            report = run_aha_model(ws, AhaModelOptions(options, judge), on_progress=show)
    if json_:
        print_json(report.to_dict())
    elif report.judge is not None and report.judge.estimate is not None:
        out.print(
            f"{report.scored} samples, {report.with_hits} with keyword hits, "
            f"{report.sent} to judge (dry run: nothing sent, nothing written)"
        )
        print_estimate(report.judge)
    else:
        _print_aha_model(report)
    if report.judge is not None:
        raise_if_stopped(report.judge)


def _print_aha_model(report: AhaModelReport) -> None:
    hits = report.hits
    out.print(
        f"{report.scored} samples scored, {report.with_hits} with keyword hits, "
        f"{report.judged} judged ({report.sent} sent to the judge), "
        f"{report.with_genuine} with a genuine aha moment"
    )
    out.print(
        f"hits: {hits['genuine']} genuine, {hits['filler']} filler, {hits['unclear']} unclear, "
        f"{hits['not_judged']} past the cap (not judged)"
    )
    if report.unscored:
        states = ", ".join(f"{n} {state}" for state, n in sorted(report.unscored.items()))
        out.print(Text(f"scored NULL (no judgement): {states}"))
    line = f"run {report.run_id}, {report.seconds:.1f}s"
    if report.judge is not None:
        p = report.judge.progress
        line = (
            f"{p.requests} requests, {p.cached} from cache, ${p.cost_usd:.4f} with "
            f"{report.judge.model}; {line}"
        )
    out.print(Text(line))


@filter_app.command("ppl")
def filter_ppl(
    model: Annotated[
        list[str], typer.Option("--model", help="A model path or Hub id (repeatable: averaged).")
    ],
    target: Annotated[
        str, typer.Option(help="response (reasoning and answer) or answer.")
    ] = "response",
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per forward pass.")] = 8,
    backend: Annotated[str, typer.Option(help="transformers, or vllm on a GPU.")] = "transformers",
    device: Annotated[
        str | None, typer.Option(help="cuda, cpu, ... [default: cuda when available].")
    ] = None,
    source: Sources = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score at most N samples per model.")
    ] = None,
    redo: Annotated[bool, typer.Option(help="Score again samples already scored.")] = False,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    shard: Shard_ = None,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """Perplexity of each sample's response under one or more VLMs, given image and question.

    Stored as score "ppl:MODEL" per model (samples_view.ppl is their average); resumable:
    a rerun scores only what is missing. split --ppl-top K keeps the K hardest SFT samples.

    Example: vlaa-data filter ppl --model Qwen/Qwen2-VL-2B-Instruct --model ./my-vlm
    """
    from vlaa_data.filters.ppl import PplOptions, run_ppl
    from vlaa_data.workspace import Workspace

    options = PplOptions(
        models=model,
        target=target,
        batch_size=batch_size,
        sources=source or [],
        limit=limit,
        redo=redo,
        backend=backend,
        device=device,
        max_pixels=max_pixels or None,
        command=command_line(),
        shard=shard,
    )
    with Workspace.open(workspace, write=True) as ws:
        report = run_ppl(ws, options)
    if json_:
        print_json(report.to_dict())
        return
    table = new_table("perplexity", "model", "score", "scored>", "failed>", "tokens/s>", "mean>")
    for entry in report.to_dict()["models"]:
        mean = "-" if entry["mean_ppl"] is None else f"{entry['mean_ppl']:.2f}"
        speed = "-" if entry["tokens_per_s"] is None else f"{entry['tokens_per_s']:,.0f}"
        table.add_row(
            Text(entry["model"]),
            Text(entry["score"]),
            str(entry["scored"]),
            str(entry["failed"]),
            speed,
            mean,
        )
    out.print(table)
    for failure in report.failures[:10]:
        out.print(Text(f"failed: {failure['sample_id']} ({failure['reason']})"))
