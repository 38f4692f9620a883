"""Trainer callbacks: the paper anneals GRPO's KL coefficient from 1e-3 to 5e-4."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["BetaAnnealing", "annealed_beta"]


def annealed_beta(start: float, final: float, step: int, max_steps: int) -> float:
    """The KL coefficient at optimizer step ``step`` of ``max_steps``: linear from ``start``
    (step 0) to ``final`` (the last step)."""
    if max_steps <= 1:
        return final
    progress = min(max(step / (max_steps - 1), 0.0), 1.0)
    return start + (final - start) * progress


class BetaAnnealing(TrainerCallback):
    """Sets ``trainer.beta`` (read by GRPOTrainer's loss at every step) before each step.

    A callback cannot reach its trainer through TRL's hooks, so it holds it. Resuming works:
    the value depends only on the global step.
    """

    def __init__(self, trainer: Any, start: float, final: float) -> None:
        self.trainer = trainer
        self.start = start
        self.final = final

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.beta = annealed_beta(
            self.start, self.final, state.global_step, state.max_steps
        )

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        # Trainer.log appends its record to log_history before calling back: note beta in both.
        if logs is not None and "loss" in logs:
            logs["beta"] = self.trainer.beta
            if state.log_history:
                state.log_history[-1]["beta"] = self.trainer.beta
