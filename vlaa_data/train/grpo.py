"""``train grpo``: GRPO on the ``rl`` split of an ``hf`` export with the mixed reward (TRL).

Each row is scored by its ``reward_type`` (``rewards.registry.MixedReward``, gold from
``solution``), through one reward function per type so that TRL logs ``rewards/<type>/mean``
at every logging step (``train.rewards``). Open-ended rows need a scorer (a judge preset or a
reward model); without one they are left out of the data, since a row without reward would
cost generation and teach nothing.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from vlaa_data.errors import VlaaError
from vlaa_data.hf import require
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.open_scorers import open_scorer_from
from vlaa_data.rewards.registry import MixedReward
from vlaa_data.train.callbacks import BetaAnnealing
from vlaa_data.train.config import GrpoTrainConfig
from vlaa_data.train.data import grpo_dataset, load_split
from vlaa_data.train.rewards import type_rewards
from vlaa_data.train.run import (
    TrainOptions,
    TrainReport,
    load_policy,
    peft_config,
    prepare,
    run_trainer,
)

__all__ = ["build_grpo_trainer", "run_grpo"]


def build_grpo_trainer(options: TrainOptions) -> tuple[Any, Any, MixedReward, list[str]]:
    """The ``GRPOTrainer``, the checkpoint to resume from (or None), the ``MixedReward`` to
    close when done, and notes for the user."""
    trl = require("trl", "train", "training")
    config, checkpoint = prepare("grpo", options)
    assert isinstance(config, GrpoTrainConfig)
    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise VlaaError("use_vllm needs vllm, which is not installed: pip install 'vlaa-data[gpu]'")
    if config.beta_final is not None and config.beta == 0:
        raise VlaaError("beta_final anneals the KL coefficient: it needs beta > 0")
    open_scorer = open_scorer_from(
        config.judge,
        base_url=config.judge_base_url,
        reward_model=config.reward_model,
        beta=config.reward_beta,
    )
    dataset = grpo_dataset(load_split(options.data, "rl"))
    notes = []
    if open_scorer is None and "open" in set(dataset["reward_type"]):
        before = len(dataset)
        dataset = dataset.filter(lambda kind: kind != "open", input_columns=["reward_type"])
        notes.append(
            f"{before - len(dataset)} open-ended rows left out: pass --judge or --reward-model "
            "to score them"
        )
    if len(dataset) == 0:
        raise VlaaError(f"{options.data}: no rl rows to train on")
    model, processor = load_policy(options.model, config)
    mixed = MixedReward(
        math=MathVerifier(deadline_s=config.math_deadline_s),
        open_scorer=open_scorer,
        strict=config.strict_format,
    )
    try:
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=type_rewards(dataset["reward_type"], mixed),
            args=config,
            train_dataset=dataset,
            processing_class=processor,
            peft_config=peft_config(config),
        )
    except BaseException:
        mixed.close()
        raise
    if config.beta_final is not None:
        trainer.add_callback(BetaAnnealing(trainer, config.beta, config.beta_final))
    return trainer, checkpoint, mixed, notes


def run_grpo(options: TrainOptions) -> TrainReport:
    """Train, save the model and processor and a run record; the Math-Verify workers are
    closed however the run ends."""
    trainer, checkpoint, mixed, notes = build_grpo_trainer(options)
    report = TrainReport(
        "grpo", trainer.args.output_dir, rows=len(trainer.train_dataset), notes=notes
    )
    try:
        return run_trainer(trainer, report, options, checkpoint)
    finally:
        mixed.close()
