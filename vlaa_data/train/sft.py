"""``train sft``: supervised fine-tuning on the ``sft`` split of an ``hf`` export (TRL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlaa_data.hf import require
from vlaa_data.train.data import load_split, sft_dataset
from vlaa_data.train.resume import exact_resume
from vlaa_data.train.run import (
    TrainOptions,
    TrainReport,
    load_policy,
    peft_config,
    prepare,
    run_trainer,
)

__all__ = ["build_sft_trainer", "run_sft"]


def build_sft_trainer(options: TrainOptions) -> tuple[Any, Path | None]:
    """The ``SFTTrainer`` for ``options`` and the checkpoint to resume from (or None).

    Rows are in TRL's prompt-completion format with their image, so its vision collator puts
    the loss on the assistant turn (``completion_only_loss``, the recipe's default).
    """
    trl = require("trl", "train", "training")
    config, checkpoint = prepare("sft", options)
    dataset = sft_dataset(load_split(options.data, "sft"))
    model, processor = load_policy(options.model, config)
    trainer = exact_resume(trl.SFTTrainer)(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(config, model),
    )
    return trainer, checkpoint


def run_sft(options: TrainOptions) -> TrainReport:
    """Train, save the model and processor and a run record to the output dir."""
    trainer, checkpoint = build_sft_trainer(options)
    report = TrainReport("sft", trainer.args.output_dir, rows=len(trainer.train_dataset))
    return run_trainer(trainer, report, options, checkpoint)
