"""``vlaa-data caption`` and ``vlaa-data distill``: the LLM steps, one set of options."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from vlaa_data.cli.app import (
    Json,
    Workspace_,
    app,
    err,
    exit_on_interrupt,
    note_recovered,
    out,
    print_json,
)
from vlaa_data.errors import VlaaError

_EXAMPLES = {
    "caption": "Describe each image in detail with a vision model (step 2) (default: gpt-4o).\n\n"
    "Samples that already have a caption, or whose question is self-contained text, are "
    "recorded done without a call.\n\n"
    "Example: OPENAI_API_KEY=... vlaa-data caption --limit 100\n\n"
    "Example: vlaa-data caption --model local-qwen2.5-vl --base-url http://gpu:8000/v1",
    "distill": "Have a reasoning model answer from caption, question and context (step 3) "
    "(default: deepseek-r1).\n\n"
    "Reasoning and answer are stored apart, whether the endpoint returns reasoning_content, "
    "inline <think>...</think> or a lone </think>.\n\n"
    "Example: DEEPSEEK_API_KEY=... vlaa-data distill --model deepseek-r1 --budget-usd 20\n\n"
    "Example: vlaa-data distill --model local-r1 --base-url http://gpu:8000/v1",
}


def _progress_bar(step: str, disabled: bool) -> tuple[Progress, TaskID]:
    progress = Progress(
        TextColumn(f"{step} [progress.description]{{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[tokens]}"),
        TextColumn("{task.fields[cost]}"),
        console=err,
        transient=True,
        disable=disabled,
    )
    task = progress.add_task("", total=None, rate="", tokens="", cost="")
    return progress, task


def _register(step: str) -> None:
    @app.command(name=step, help=_EXAMPLES[step])
    def command(
        model: Annotated[
            str | None,
            typer.Option("--model", "-m", help="A preset (see `vlaa-data presets`) or a model id."),
        ] = None,
        base_url: Annotated[
            str | None, typer.Option(help="The endpoint, overriding the preset's.")
        ] = None,
        api_key_env: Annotated[
            str | None, typer.Option(help="Read the API key from this variable.")
        ] = None,
        backend: Annotated[
            str,
            typer.Option(
                help="openai (any OpenAI-compatible HTTP endpoint), "
                "transformers or vllm (an in-process model: --model is a path or Hub id)."
            ),
        ] = "openai",
        concurrency: Annotated[
            int | None, typer.Option(min=1, help="Requests in flight (default: 64).")
        ] = None,
        rpm: Annotated[float | None, typer.Option(min=0.001, help="Requests per minute.")] = None,
        tpm: Annotated[float | None, typer.Option(min=1, help="Tokens per minute.")] = None,
        timeout: Annotated[
            float | None, typer.Option(min=0.001, help="Seconds per attempt (default: 600).")
        ] = None,
        max_retries: Annotated[
            int | None, typer.Option(min=0, help="Retries on 429/5xx/timeouts (default: 6).")
        ] = None,
        max_tokens: Annotated[
            int | None,
            typer.Option(min=1, help="Reply budget; a reply cut there is recorded truncated."),
        ] = None,
        max_pixels: Annotated[
            int | None, typer.Option(min=1, help="Downscale images to this many pixels.")
        ] = None,
        batch_size: Annotated[
            int | None, typer.Option(min=1, help="Batch size of an in-process backend.")
        ] = None,
        prompt: Annotated[
            Path | None, typer.Option(help="A prompt file replacing the built-in one.")
        ] = None,
        limit: Annotated[int | None, typer.Option(min=1, help="Work on at most N samples.")] = None,
        source: Annotated[
            list[str] | None, typer.Option(help="Only samples of this source. Repeatable.")
        ] = None,
        redo: Annotated[
            bool, typer.Option("--redo", help="Redo samples already done (cache still applies).")
        ] = False,
        retry_truncated: Annotated[
            bool,
            typer.Option(
                "--retry-truncated", help="Also retry truncated samples (raise --max-tokens)."
            ),
        ] = False,
        no_cache: Annotated[
            bool, typer.Option("--no-cache", help="Send even when a reply is cached.")
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Render prompts and estimate cost; send nothing."),
        ] = False,
        budget_usd: Annotated[
            float | None,
            typer.Option(min=0.0, help="Stop sending before spending more than this (USD)."),
        ] = None,
        json_: Json = False,
        workspace: Workspace_ = None,
    ) -> None:
        from vlaa_data.steps.llm_runner import run_llm_step
        from vlaa_data.steps.llm_step import LlmOptions
        from vlaa_data.workspace import Workspace

        options = LlmOptions(
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            backend=backend,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            timeout_s=timeout,
            max_retries=max_retries,
            max_tokens=max_tokens,
            max_pixels=max_pixels,
            batch_size=batch_size,
            prompt=str(prompt) if prompt else None,
            limit=limit,
            sources=tuple(source or ()),
            redo=redo,
            retry_truncated=retry_truncated,
            no_cache=no_cache,
            dry_run=dry_run,
            budget_usd=budget_usd,
            command=" ".join(["vlaa-data", *sys.argv[1:]]),
        )
        progress, task = _progress_bar(step, disabled=json_ or dry_run or not err.is_terminal)
        started = time.monotonic()

        def show(p) -> None:  # called from the run's event loop, a few times a second
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                total=p.total,
                completed=p.finished,
                rate=f"{p.requests / elapsed:,.1f} req/s",
                tokens=f"{p.tokens_in:,} in / {p.tokens_out:,} out",
                cost=f"${p.cost_usd:,.4f}",
            )

        with exit_on_interrupt(), Workspace.open(workspace, write=not dry_run) as ws:
            note_recovered(ws.recovered_replies)
            with progress:
                report = run_llm_step(ws, step, options, on_progress=show)
        if json_:
            print_json(report.to_dict())
        elif report.estimate is not None:
            _print_estimate(report)
        else:
            _print_report(report)
        if report.stopped == "budget":
            raise VlaaError(
                f"budget reached: ${report.progress.cost_usd:.4f} spent of "
                f"${report.budget_usd:.2f} (in-flight estimate included); "
                f"{report.left_pending} samples left pending; rerun with a higher --budget-usd"
            )

    command.__name__ = step


def _print_report(report) -> None:
    table = Table(title=f"{report.step} with {report.model} ({report.backend})", min_width=50)
    table.add_column("outcome")
    table.add_column("samples", justify="right")
    for outcome, count in sorted(report.outcomes.items()):
        table.add_row(outcome, str(count))
    if report.left_pending:
        table.add_row("left pending", str(report.left_pending))
    out.print(table)
    p = report.progress
    out.print(
        f"{p.requests} requests ({p.retries} retries), {p.cached} from cache, "
        f"{p.tokens_in:,} tokens in / {p.tokens_out:,} out, ${p.cost_usd:.4f} "
        f"in {report.seconds:.1f}s (run {report.run_id})"
    )


def _print_estimate(report) -> None:
    e = report.estimate
    table = Table(title=f"{report.step} with {report.model}: dry run, nothing sent")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("samples ready", str(report.selected))
    table.add_row("requests to send", str(e.requests))
    table.add_row("replies already cached", str(e.cached))
    table.add_row("skipped (no call needed)", str(e.skipped))
    table.add_row("input tokens (estimate)", f"{e.tokens_in:,}")
    table.add_row(
        "output tokens (expected / at max_tokens)",
        f"{e.tokens_out_expected:,} / {e.tokens_out_max:,}",
    )
    table.add_row(
        "cost (expected / at most)", f"${e.cost_expected_usd:,.4f} / ${e.cost_max_usd:,.4f}"
    )
    out.print(table)
    if e.example_prompt:
        out.print("first prompt:", style="bold")
        out.print(e.example_prompt, markup=False, highlight=False)


for _step in ("caption", "distill"):
    _register(_step)
