"""``train sft`` and ``train grpo``: TRL trainers on an ``hf`` export."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vlaa_data.cli.app import (
    Json,
    Judge,
    JudgeBaseUrl,
    RewardBeta,
    RewardModel,
    app,
    err,
    exit_on_interrupt,
    new_table,
    out,
    print_json,
)
from vlaa_data.errors import VlaaError

if TYPE_CHECKING:
    from vlaa_data.train.run import TrainOptions, TrainReport

train_app = typer.Typer(
    help="Train a vision-language model on an hf export with TRL (SFT or GRPO).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

Data = Annotated[
    Path,
    typer.Option(help="An hf export (vlaa-data export NAME --format hf --out DIR)."),
]
Model = Annotated[
    str,
    typer.Option(
        help="The model to train: a local folder or a Hub id; a LoRA adapter folder stands for "
        "its base model with the adapter."
    ),
]
Recipe = Annotated[
    Path | None,
    typer.Option("--config", help="A TOML or YAML recipe of config fields [default: shipped]."),
]
Output = Annotated[
    Path | None,
    typer.Option("--output", help="Output dir [default: KIND-MODEL, the model's last name part]."),
]
LearningRate = Annotated[float | None, typer.Option(help="Peak learning rate.")]
Epochs = Annotated[float | None, typer.Option(help="Epochs (num_train_epochs).")]
MaxSteps = Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")]
PerDevice = Annotated[
    int | None, typer.Option(help="per_device_train_batch_size (GRPO: completions).")
]
Seed = Annotated[int | None, typer.Option(help="Random seed.")]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue from the last checkpoint in the output dir.")
]
TrainVision = Annotated[
    bool, typer.Option("--train-vision", help="Train the vision encoder too (frozen by default).")
]
Lora = Annotated[bool, typer.Option("--lora", help="Train LoRA adapters (lora_* fields).")]
Merge = Annotated[
    bool,
    typer.Option(
        "--merge",
        help="With --lora: save the merged model in the output dir (a plain model folder), "
        "the adapter in its adapter/ folder.",
    ),
]
Settings = Annotated[
    list[str] | None,
    typer.Option("--set", help="Set any config field: KEY=VALUE, parsed by its type (repeatable)."),
]


def _options(
    data: Path,
    model: str,
    recipe: Path | None,
    settings: list[str] | None,
    resume: bool,
    output: Path | None,
    epochs: float | None,
    per_device_batch_size: int | None,
    vllm: str | None = None,
    json_: bool = False,
    **values: Any,
) -> TrainOptions:
    """The command's parameters as ``TrainOptions``: flags named after config fields go to
    ``values`` as they are, the others under their field's name."""
    from vlaa_data.train.run import TrainOptions

    for flag in ("train_vision", "lora", "merge"):
        values[flag] = values[flag] or None  # an absent switch leaves the recipe's value
    values.update(
        output_dir=None if output is None else str(output),
        num_train_epochs=epochs,
        per_device_train_batch_size=per_device_batch_size,
    )
    if vllm is not None:
        values.update(use_vllm=True, vllm_mode=vllm)
    return TrainOptions(data, model, recipe, values, settings or (), resume)


def _check_data(data: Path, split: str) -> None:
    """A folder that is not an export fails now, not after torch and TRL load (seconds)."""
    from vlaa_data.train.data import split_files

    split_files(data, split)


def _train(run: Callable[[TrainOptions], TrainReport], options: TrainOptions, json_: bool) -> None:
    """Run, then print the report. With --json the trainer's own prints (its log lines) go to
    stderr, so that stdout holds the JSON report alone."""
    quiet = contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext()
    with exit_on_interrupt(), quiet:
        report = run(options)
    if not report.main_process:
        return
    if json_:
        print_json(report.to_dict())
        return
    for note in report.notes:
        err.print(f"note: {note}")
    table = new_table(f"train {report.kind}", "steps>", "final loss>", "rows>", "output")
    loss = "-" if report.final_loss is None else f"{report.final_loss:.4f}"
    table.add_row(str(report.steps), loss, str(report.rows), str(report.output_dir))
    out.print(table)
    if report.resumed_from is not None:
        out.print(f"resumed from step {report.resumed_from}")


@train_app.command()
def sft(
    data: Data,
    model: Model,
    recipe: Recipe = None,
    output: Output = None,
    learning_rate: LearningRate = None,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    per_device_batch_size: PerDevice = None,
    seed: Seed = None,
    resume: Resume = False,
    train_vision: TrainVision = False,
    lora: Lora = False,
    merge: Merge = False,
    settings: Settings = None,
    json_: Json = False,
) -> None:
    """Supervised fine-tuning on the export's sft split (TRL SFTTrainer).

    The shipped recipe holds the paper's settings: global batch 128, one epoch, vision
    encoder frozen (the projector trains), loss on the assistant turn only. Saves model,
    processor and vlaa_train.json (config, data digest) to the output dir.

    Example: vlaa-data train sft --data releases/v1/hf --model Qwen/Qwen2.5-VL-3B-Instruct

    Example: accelerate launch -m vlaa_data train sft --data DIR --model M --lora
    """
    _check_data(data, "sft")
    options = _options(**locals())  # every parameter: flags, or config fields by name
    from vlaa_data.train.sft import run_sft

    _train(run_sft, options, json_)


@train_app.command()
def grpo(
    data: Data,
    model: Model,
    recipe: Recipe = None,
    output: Output = None,
    learning_rate: LearningRate = None,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    per_device_batch_size: PerDevice = None,
    seed: Seed = None,
    resume: Resume = False,
    train_vision: TrainVision = False,
    lora: Lora = False,
    merge: Merge = False,
    judge: Judge = None,
    judge_base_url: JudgeBaseUrl = None,
    reward_model: RewardModel = None,
    reward_beta: RewardBeta = None,
    vllm: Annotated[
        str | None,
        typer.Option(help="Generate with vLLM: colocate (in the trainer) or server."),
    ] = None,
    settings: Settings = None,
    json_: Json = False,
) -> None:
    """GRPO on the export's rl split with the mixed reward (TRL GRPOTrainer).

    Rewards route by each row's reward_type (digit, choice, math, iou, open) and are logged
    per type (rewards/TYPE/mean). Open-ended rows need --judge or --reward-model, else they
    are left out. The shipped recipe holds the paper's settings: G=4, temperature 0.8, cosine
    LR to 5e-7 with 3% warm-up, KL 1e-3 annealed to 5e-4, rollout 512 / train 256 prompts.

    Example: vlaa-data train grpo --data releases/v1/hf --model Qwen/Qwen2.5-VL-3B-Instruct
    --judge gpt-4o-mini

    Example: accelerate launch -m vlaa_data train grpo --data DIR --model M --vllm colocate
    """
    if vllm not in (None, "colocate", "server"):
        raise VlaaError(f"--vllm is colocate or server, not {vllm!r}")
    if judge and reward_model:
        raise VlaaError("pass --judge or --reward-model, not both")
    _check_data(data, "rl")
    options = _options(**locals())
    from vlaa_data.train.grpo import run_grpo

    _train(run_grpo, options, json_)
