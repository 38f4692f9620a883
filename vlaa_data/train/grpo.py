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
from vlaa_data.train.batches import fit_batches
from vlaa_data.train.callbacks import AdaptiveKl, BetaAnnealing
from vlaa_data.train.config import GrpoTrainConfig
from vlaa_data.train.data import grpo_dataset, load_split
from vlaa_data.train.resume import exact_resume
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
    fitted = fit_batches(config, len(dataset))
    if fitted is not None:
        notes.append(fitted)
    model, processor = load_policy(options.model, config)
    mixed = MixedReward(
        math=MathVerifier(deadline_s=config.math_deadline_s),
        open_scorer=open_scorer,
        strict=config.strict_format,
    )
    try:
        trainer = exact_resume(trl.GRPOTrainer)(
            model=model,
            reward_funcs=type_rewards(dataset["reward_type"], mixed),
            args=config,
            train_dataset=dataset,
            processing_class=processor,
            peft_config=peft_config(config, model),
        )
    except BaseException:
        mixed.close()
        raise
    kl_callback = _kl_callback(trainer, config)
    if kl_callback is not None:
        trainer.add_callback(kl_callback)
    return trainer, checkpoint, mixed, notes


def _kl_callback(trainer: Any, config: GrpoTrainConfig) -> Any:
    """The callback that moves the KL coefficient as ``kl_control`` says (None: fixed)."""
    if config.kl_control == "linear":
        assert config.beta_final is not None  # the config checks it
        return BetaAnnealing(trainer, config.beta, config.beta_final)
    if config.kl_control == "adaptive":
        assert config.kl_target is not None  # the config checks it
        completions = (
            trainer.args.per_device_train_batch_size
            * trainer.args.gradient_accumulation_steps
            * trainer.args.world_size
        )
        return AdaptiveKl(trainer, config.beta, config.kl_target, config.kl_horizon, completions)
    return None


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
