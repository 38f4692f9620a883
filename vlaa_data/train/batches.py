"""GRPO's rollout and train batches fitted to an RL split smaller than them.

TRL's sampler makes rollouts of ``generation_batch_size / num_generations`` prompts and drops a
partial one, so a split with fewer prompts than one rollout (the shipped recipe's is 512) trains
0 steps. ``fit_batches`` lowers the rollout to the largest one the split fills, a multiple of
``num_generations`` and of the micro-batch (per-device batch x processes) as TRL requires, and
the train batch in the same ratio to it, rounded down to a multiple of the micro-batch.
"""

from __future__ import annotations

import math
from typing import Any

from vlaa_data.errors import VlaaError

__all__ = ["fit_batches"]


def fit_batches(config: Any, prompts: int) -> str | None:
    """Fit the ``GrpoTrainConfig`` ``config`` (after TRL's checks, which set
    ``steps_per_generation``) to ``prompts`` rows, in place; a note naming the new values, or
    None when one rollout fits as it is. A one-line error when not even the smallest rollout
    TRL accepts fits."""
    group = config.num_generations
    processes = config.world_size
    micro = config.per_device_train_batch_size * processes
    rollout = config.generation_batch_size
    if prompts * group >= rollout:
        return None
    unit = math.lcm(micro, group)
    fitted = prompts * group // unit * unit
    if fitted == 0:
        raise VlaaError(
            f"the rl split has {prompts} prompts, {prompts * group} completions at "
            f"num_generations {group}: less than the smallest rollout, {unit} completions (a "
            f"multiple of num_generations and of per_device_train_batch_size "
            f"{config.per_device_train_batch_size} x {processes} processes); lower "
            "per_device_train_batch_size"
        )
    train = config.gradient_accumulation_steps * micro
    fitted_train = max(micro, train * fitted // rollout // micro * micro)
    config.generation_batch_size = fitted
    config.steps_per_generation = fitted // micro
    config.gradient_accumulation_steps = fitted_train // micro
    if config.global_batch_size is not None:
        config.global_batch_size = fitted_train
    changes = f"generation_batch_size {rollout} -> {fitted}"
    if fitted_train != train:
        changes += (
            f", global_batch_size {train} -> {fitted_train} (gradient_accumulation_steps "
            f"{fitted_train // micro})"
        )
    return f"the rl split's {prompts} prompts fill no rollout of {rollout} completions: {changes}"
