"""What ``train sft`` and ``train grpo`` share: options, loading the policy, running a trainer,
saving it with a record of what it was trained on."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data import __version__
from vlaa_data.errors import VlaaError
from vlaa_data.hf import (
    adapter_base,
    apply_adapter,
    load_processor,
    merge_adapter,
    require,
    set_max_pixels,
)
from vlaa_data.train.config import TrainConfig, load_config
from vlaa_data.train.data import data_digest
from vlaa_data.train.freeze import freeze_vision

__all__ = [
    "ADAPTER_DIR",
    "RECORD",
    "TrainOptions",
    "TrainReport",
    "load_policy",
    "prepare",
    "run_trainer",
]

RECORD = "vlaa_train.json"
ADAPTER_DIR = "adapter"  # with merge: where the adapter goes, the merged model being the output


@dataclass
class TrainOptions:
    """A training run as the command line gives it. ``values`` are config fields from flags
    (None: not given); ``settings`` are ``KEY=VALUE`` strings (``--set``)."""

    data: Path
    model: str
    recipe: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)
    settings: Sequence[str] = ()
    resume: bool = False


@dataclass
class TrainReport:
    kind: str
    output_dir: Path
    steps: int = 0
    final_loss: float | None = None
    rows: int = 0
    resumed_from: int | None = None  # the step of the checkpoint resumed from
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    log_history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # Under accelerate launch or torchrun every process returns a report; one prints it.
    main_process: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "output_dir": str(self.output_dir),
            "steps": self.steps,
            "final_loss": self.final_loss,
            "rows": self.rows,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


def prepare(kind: str, options: TrainOptions) -> tuple[TrainConfig, Path | None]:
    """The run's config (output dir defaulting to ``<kind>-<model folder name>``) and, with
    ``resume``, the checkpoint to resume from (a one-line error when there is none, or when it
    is already at the run's last step)."""
    values = dict(options.values)
    if values.get("output_dir") is None:
        values["output_dir"] = f"{kind}-{Path(options.model).name}"
    config = load_config(kind, options.recipe, values, options.settings)
    checkpoint = None
    if options.resume:
        from transformers.trainer_utils import get_last_checkpoint

        assert config.output_dir is not None  # values above always hold one
        output = Path(config.output_dir)
        last = get_last_checkpoint(str(output)) if output.is_dir() else None
        if last is None:
            raise VlaaError(f"--resume: no checkpoint-* folder in {output} to resume from")
        checkpoint = Path(last)
        _check_unfinished(checkpoint, config)
    return config, checkpoint


def _check_unfinished(checkpoint: Path, config: TrainConfig) -> None:
    """A one-line error when ``checkpoint`` is already at the run's last step: Trainer would
    train one step past it."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    step = int(state.get("global_step", 0))
    if config.max_steps > 0:
        last = config.max_steps
    elif state.get("num_train_epochs") == config.num_train_epochs:
        last = int(state.get("max_steps", 0))
    else:
        return
    if last > 0 and step >= last:
        raise VlaaError(
            f"--resume: {checkpoint.name} is at step {step} of {last}: nothing is left to train "
            "(raise --max-steps or --epochs to train on)"
        )


def load_policy(model: str, config: TrainConfig) -> tuple[Any, Any]:
    """The vision-language model to train, in the config's precision, and its processor; the
    vision encoder frozen unless ``train_vision`` (with LoRA, peft freezes what is not an
    adapter instead).

    An adapter folder (``train --lora`` output) is loaded as its base model with the adapter:
    with ``lora`` that adapter trains on (its own r, alpha and target modules), so the new one
    still applies to the same base; without, it is merged and the whole model trains.
    """
    transformers = require("transformers", "train", "training")
    processor = load_processor(model)  # a one-line error for a path that holds no model
    set_max_pixels(processor, config.max_pixels)  # and saved so, with the model
    base = adapter_base(model)
    source = base or model
    if Path(source).is_dir():  # an adapter saved from this run names its base wherever it runs
        source = str(Path(source).resolve())
    try:
        policy = transformers.AutoModelForImageTextToText.from_pretrained(
            source, dtype=_dtype(config)
        )
    except ValueError as exc:
        raise VlaaError(f"{model} is not a vision-language model: {_first_line(exc)}") from exc
    if config.lora and config.train_vision:
        raise VlaaError(
            "--lora trains adapters only: add the vision layers to lora_target_modules "
            "instead of --train-vision"
        )
    if config.merge and not config.lora:
        raise VlaaError("--merge merges the LoRA adapter into the model: it needs --lora")
    if base is not None:
        policy = apply_adapter(policy, model, trainable=config.lora)
    if not config.lora:
        freeze_vision(
            policy, train_vision=config.train_vision, train_projector=config.train_projector
        )
    return policy, processor


def peft_config(config: TrainConfig, model: Any = None) -> Any:
    """The LoRA config for TRL's ``peft_config``; None without ``lora``, or when ``model``
    already carries the adapter to train (``load_policy`` on an adapter folder)."""
    if not config.lora:
        return None
    peft = require("peft", "train", "LoRA training")
    if isinstance(model, peft.PeftModel):
        return None
    return peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def run_trainer(
    trainer: Any,
    report: TrainReport,
    options: TrainOptions,
    checkpoint: Path | None,
) -> TrainReport:
    """Train (from ``checkpoint`` when resuming), save model and processor to the output dir
    and write ``vlaa_train.json`` there: the resolved config, the data and its digest, the
    vlaa-data version. With ``merge`` the adapter is saved in ``adapter/`` (with the
    processor) and the output dir gets the base model with the adapter merged: a plain model
    folder."""
    started = time.monotonic()
    if checkpoint is not None:
        report.resumed_from = int(checkpoint.name.rsplit("-", 1)[-1])
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if trainer.state.global_step <= (report.resumed_from or 0):
        # An empty epoch or a finished run: saving would pass the model off as trained.
        raise VlaaError(
            f"train {report.kind}: no optimizer step was trained ({report.rows} rows, max_steps "
            f"{trainer.state.max_steps}"
            + (f", resumed at step {report.resumed_from}" if report.resumed_from else "")
            + "); nothing was saved"
        )
    output = Path(trainer.args.output_dir)
    merge = bool(getattr(trainer.args, "merge", False))
    trainer.save_model(str(output / ADAPTER_DIR if merge else output))
    report.seconds = time.monotonic() - started
    report.steps = trainer.state.global_step
    report.log_history = list(trainer.state.log_history)
    losses = [entry["loss"] for entry in report.log_history if "loss" in entry]
    report.final_loss = losses[-1] if losses else None
    report.main_process = trainer.is_world_process_zero()
    if report.main_process:
        trainer.processing_class.save_pretrained(str(output))
        if merge:
            trainer.processing_class.save_pretrained(str(output / ADAPTER_DIR))
            # From the saved adapter, not the trainer's model: under DeepSpeed or FSDP only
            # save_model sees whole weights.
            merge_adapter(output / ADAPTER_DIR, output, dtype=_dtype(trainer.args))
        record = {
            "kind": report.kind,
            "vlaa_data_version": __version__,
            "model": options.model,
            "data": {
                "folder": str(Path(options.data).resolve()),
                "sha256": data_digest(options.data),
            },
            "rows": report.rows,
            "resumed_from": report.resumed_from,
            "steps": report.steps,
            "final_loss": report.final_loss,
            "config": trainer.args.to_dict(),  # to_dict masks tokens
        }
        text = json.dumps(record, indent=2, sort_keys=True, default=str)
        (output / RECORD).write_text(text + "\n", encoding="utf-8")
    return report


def _dtype(config: Any) -> Any:
    """The torch dtype a config trains in."""
    torch = require("torch", "train", "training")
    return torch.bfloat16 if config.bf16 else torch.float16 if config.fp16 else torch.float32


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
