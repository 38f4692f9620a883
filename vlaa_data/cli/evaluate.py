"""``vlaa-data eval``: evaluate a model on a split of an hf export with the GRPO rewards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from vlaa_data.cli.app import (
    Json,
    Judge,
    JudgeBaseUrl,
    MaxPixels,
    RewardBeta,
    RewardModel,
    app,
    err,
    exit_on_interrupt,
    new_table,
    out,
    print_json,
)
from vlaa_data.hf import DEFAULT_MAX_PIXELS
from vlaa_data.llm.backends import backend_help

_COLUMNS = ("group", "n>", "scored>", "accuracy>", "mean reward>", "no answer>", "truncated>")


@app.command("eval")
def evaluate(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="A model folder (a LoRA adapter folder too) or Hub id; with --base-url, the "
            "model name the endpoint serves.",
        ),
    ],
    data: Annotated[Path, typer.Option(help="An hf export folder (export NAME --format hf).")],
    split: Annotated[
        str | None,
        typer.Option(
            help="test, rl or sft [default: test, the held-out part; rl, with a note, where "
            "the export has none].",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N rows, in export order.")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help=f"{backend_help()} [default: openai with --base-url, else transformers]."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="Evaluate the model an OpenAI-compatible endpoint serves (vllm serve)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Rows per batched generation (openai: requests in flight).")
    ] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per completion.")] = 2048,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="0 is greedy: a rerun gives the same completions.")
    ] = 0.0,
    device: Annotated[
        str | None, typer.Option(help="cuda, cpu, ... [default: cuda when available].")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="bf16, fp16 or fp32 [default: bf16 on CUDA, else fp32].")
    ] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Per-sample JSONL [default: ./eval-MODEL-SPLIT.jsonl].",
        ),
    ] = None,
    judge: Judge = None,
    judge_base_url: JudgeBaseUrl = None,
    reward_model: RewardModel = None,
    reward_beta: RewardBeta = None,
    iou_threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="An iou row is correct from this IoU (verify's default)."
        ),
    ] = 0.5,
    json_: Json = False,
) -> None:
    """Generate with the training system prompt and score with the rewards GRPO uses.

    Prints accuracy and mean reward per reward type and per source, and writes every
    completion with its extracted answer and reward to --output. digit, choice and math
    count a reward of 1 as correct; iou counts IoU >= --iou-threshold (its mean reward is the mean
    IoU);
    open rows get a mean score with --judge or --reward-model, and are unscored without.
    "no answer" counts completions with no extractable answer (format failures).

    Example: vlaa-data eval --model ./checkpoints/grpo --data releases/v1/hf --limit 200

    Example: vlaa-data eval --model my-vlm --base-url http://localhost:8000/v1 --batch-size 64
    """
    from vlaa_data.evaluation import EvalOptions, GenerationSettings, run_eval
    from vlaa_data.evaluation.data import default_split

    if split is None:  # said before the model loads, not after a long generation
        note = default_split(data)[1]
        if note:
            err.print(Text(f"note: {note}"), soft_wrap=True)
    settings = GenerationSettings(
        backend=backend or ("openai" if base_url else "transformers"),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        device=device,
        dtype=dtype,
        base_url=base_url,
        max_pixels=max_pixels or None,
    )
    options = EvalOptions(
        model=model,
        data=data,
        split=split,
        limit=limit,
        generation=settings,
        output=output,
        judge=judge,
        judge_base_url=judge_base_url,
        reward_model=reward_model,
        reward_beta=1.0 if reward_beta is None else reward_beta,
        iou_threshold=iou_threshold,
    )
    progress = Progress(
        TextColumn("eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=json_ or not err.is_terminal,
    )
    task = progress.add_task("", total=None)
    with exit_on_interrupt(), progress:
        report = run_eval(
            options,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if json_:
        print_json(report.to_dict())
        return
    table = new_table(f"eval: {report.model} on {report.data} ({report.split})", *_COLUMNS)
    groups = [("all", report.overall)]
    groups += [(f"type {name}", stats) for name, stats in sorted(report.by_type.items())]
    groups += [(f"source {name}", stats) for name, stats in sorted(report.by_source.items())]
    for name, stats in groups:
        table.add_row(
            Text(name),
            str(stats.n),
            str(stats.scored),
            _share(stats.accuracy),
            "-" if stats.mean_reward is None else f"{stats.mean_reward:.3f}",
            str(stats.no_answer),
            str(stats.truncated),
        )
    out.print(table)
    if report.overall.failed:
        failed = report.overall.failed
        out.print(f"rows without a completion: {failed} (the backend gave up; see their note)")
    if "iou" in report.by_type:
        out.print(
            f"iou: accuracy counts IoU >= {report.iou_threshold:g}; its mean reward is the mean IoU"
        )
    open_rows = report.by_type.get("open")
    if open_rows is not None and not open_rows.scored:
        out.print("open rows are unscored: pass --judge PRESET or --reward-model PATH")
    speed = report.samples_per_s
    out.print(
        Text(
            f"{report.overall.n} samples in {report.seconds:.1f}s"
            + (f" ({speed:.2f} samples/s generating)" if speed else "")
            + f"; per-sample output: {report.output}"
        )
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
