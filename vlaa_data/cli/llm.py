"""``vlaa-data caption``, ``distill``, ``rewrite`` and every other ``llm`` step of the step
table: one command each, one set of options."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

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
    Shard_,
    Workspace_,
    app,
    command_line,
    err,
    exit_on_interrupt,
    note_recovered,
    out,
    print_json,
)
from vlaa_data.errors import VlaaError
from vlaa_data.llm.backends import backend_help
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.steps.registry import StepInfo, get_step, steps


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


def _llm_flags(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="A preset (see `vlaa-data presets`) or a model id."),
    ] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            help="The endpoint. Repeat it, or separate URLs with commas, to spread the "
            "requests over a fleet (each endpoint takes --concurrency at a time, and one that "
            "fails passes its requests to the others) [default: the step's base_url in "
            "vlaa.toml, else $OPENAI_BASE_URL for a preset on api.openai.com, else the preset's]."
        ),
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Read the API key from this variable.")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(help=f"{backend_help()}. In-process, --model is a path or Hub id."),
    ] = "openai",
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight, per endpoint (default: 64).")
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
        int | None,
        typer.Option(
            min=1, help="Batch size of an in-process backend; requests per job of batch (1000)."
        ),
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
    shard: Shard_ = None,
    json_: Json = False,
    workspace: Workspace_ = None,
) -> None:
    """The flags every LLM step takes (a signature only; see ``llm_command``)."""


def llm_command(
    name: str,
    help: str,
    *,
    extra: Callable[..., None] | None = None,
    drop: tuple[str, ...] = (),
    group: typer.Typer | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``body(**flags)`` as command ``name`` (of ``group``, else of the app) with the
    shared LLM flags, less ``drop``, plus (or overriding by name) the parameters of ``extra``'s
    signature."""
    shared = inspect.signature(_llm_flags, eval_str=True).parameters
    added = inspect.signature(extra, eval_str=True).parameters if extra else {}
    params = [p for n, p in shared.items() if n not in drop and n not in added]
    tail = [p for p in params if p.name in ("json_", "workspace")]
    params = [p for p in params if p not in tail] + list(added.values()) + tail

    def register(body: Callable[..., None]) -> Callable[..., None]:
        def command(**flags: Any) -> None:
            body(**flags)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__name__ = name.replace("-", "_")
        (group or app).command(name=name, help=help)(command)
        return body

    return register


def llm_options(flags: dict[str, Any], **extra: Any) -> LlmOptions:
    """The step options from parsed flags (``None`` keeps the workspace setting)."""
    prompt = flags.get("prompt")
    return LlmOptions(
        model=flags.get("model"),
        base_url=flags.get("base_url"),
        api_key_env=flags.get("api_key_env"),
        backend=flags.get("backend", "openai"),
        concurrency=flags.get("concurrency"),
        rpm=flags.get("rpm"),
        tpm=flags.get("tpm"),
        timeout_s=flags.get("timeout"),
        max_retries=flags.get("max_retries"),
        max_tokens=flags.get("max_tokens"),
        max_pixels=flags.get("max_pixels"),
        batch_size=flags.get("batch_size"),
        prompt=str(prompt) if prompt else None,
        limit=flags.get("limit"),
        sources=tuple(flags.get("source") or ()),
        redo=flags.get("redo", False),
        retry_truncated=flags.get("retry_truncated", False),
        no_cache=flags.get("no_cache", False),
        dry_run=flags.get("dry_run", False),
        budget_usd=flags.get("budget_usd"),
        shard=flags.get("shard"),
        command=command_line(),
        **extra,
    )


@contextlib.contextmanager
def progress_bar(step: str, disabled: bool) -> Iterator[Callable[[Any], None]]:
    """A Rich bar on stderr; yields the callback a run reports its ``Progress`` to."""
    progress, task = _progress_bar(step, disabled)
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

    with progress:
        yield show


def _run_step(step: str, options: LlmOptions, json_: bool, workspace: Path | None) -> None:
    from vlaa_data.steps.llm_runner import run_llm_step
    from vlaa_data.workspace import Workspace

    disabled = json_ or options.dry_run or not err.is_terminal
    with exit_on_interrupt(), Workspace.open(workspace, write=not options.dry_run) as ws:
        note_recovered(ws.recovered_replies)
        with progress_bar(step, disabled) as show:
            report = run_llm_step(ws, step, options, on_progress=show)
    if json_:
        print_json(report.to_dict())
    elif report.estimate is not None:
        print_estimate(report)
    else:
        print_report(report)
    note_waiting(report.waiting_hint())
    raise_if_stopped(report)


def raise_if_stopped(report) -> None:
    """Print the run's notes (endpoints of a fleet skipped, lost, back), then exit 1 with one
    line when the step did not do its work: a budget stop, an unreachable endpoint, or
    requests sent of which none brought back a reply."""
    for note in report.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    line = report.stop_line()
    if line is not None:
        raise VlaaError(line)


def note_waiting(hint: str | None) -> None:
    """``N samples wait for caption: run caption first``, on stderr (stdout may be JSON)."""
    if hint:
        err.print(f"note: {hint}", markup=False, highlight=False, soft_wrap=True)


def step_help(step: StepInfo) -> str:
    """A step's command help: what it does, its default model, then its examples."""
    default = f" (default: {step.default_model})" if step.default_model else ""
    return "\n\n".join(part for part in (f"{step.summary}{default}.", step.help) if part)


def _register(step: StepInfo) -> None:
    @llm_command(step.name, step_help(step))
    def body(*, json_: bool, workspace: Path | None, **flags: Any) -> None:
        _run_step(step.name, llm_options(flags), json_, workspace)


def _rewrite_flags(
    max_word_diff: Annotated[
        int | None,
        typer.Option(
            min=0, help="Reject a rewrite that changes more words than this (default: 15)."
        ),
    ] = None,
) -> None:
    """Flags only the rewrite step takes."""


@llm_command("rewrite", step_help(get_step("rewrite")), extra=_rewrite_flags, drop=("max_pixels",))
def _rewrite(*, json_: bool, workspace: Path | None, max_word_diff: int | None, **flags) -> None:
    _run_step("rewrite", llm_options(flags, max_word_diff=max_word_diff), json_, workspace)


# Every llm step of the step table has a command of its own name, rewrite with its own flag.
for _step in steps():
    if _step.kind == "llm" and _step.name != "rewrite":
        _register(_step)


def print_report(report) -> None:
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
    if report.endpoints:
        split = ", ".join(f"{url} {n}" for url, n in report.endpoints.items())
        out.print(f"replies by endpoint: {split}", markup=False, highlight=False, soft_wrap=True)


def print_estimate(report) -> None:
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
