"""Trainer callbacks that move GRPO's KL coefficient (``kl_control``).

The paper adapts OpenRLHF, whose KL coefficient starts at 1e-3 and is steered by an adaptive
controller towards a KL target of 5e-4 (``AdaptiveKl``); ``BetaAnnealing`` anneals it linearly
instead. Both set ``trainer.beta``, which GRPOTrainer's loss reads at every step (a callback
cannot reach its trainer through TRL's hooks, so it holds it), and note the coefficient as
``beta`` in each logged record.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["AdaptiveKl", "BetaAnnealing", "adaptive_beta", "annealed_beta"]


def annealed_beta(start: float, final: float, step: int, max_steps: int) -> float:
    """The KL coefficient at optimizer step ``step`` of ``max_steps``: linear from ``start``
    (step 0) to ``final`` (the last step)."""
    if max_steps <= 1:
        return final
    progress = min(max(step / (max_steps - 1), 0.0), 1.0)
    return start + (final - start) * progress


def adaptive_beta(beta: float, kl: float, target: float, n_steps: int, horizon: int) -> float:
    """OpenRLHF's ``AdaptiveKLController.update`` (Ziegler et al., 2019): the coefficient after
    ``n_steps`` samples whose KL was ``kl``, ``beta * (1 + clip(kl / target - 1, ±0.2) *
    n_steps / horizon)``."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_steps / horizon)


def _note_beta(state: Any, logs: Any, beta: float) -> None:
    # Trainer.log appends its record to log_history before calling back: note beta in both.
    logs["beta"] = beta
    if state.log_history:
        state.log_history[-1]["beta"] = beta


class BetaAnnealing(TrainerCallback):
    """``kl_control = "linear"``: sets ``trainer.beta`` before each step. Resuming works: the
    value depends only on the global step."""

    def __init__(self, trainer: Any, start: float, final: float) -> None:
        self.trainer = trainer
        self.start = start
        self.final = final

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.beta = annealed_beta(
            self.start, self.final, state.global_step, state.max_steps
        )

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs is not None and "loss" in logs:
            _note_beta(state, logs, self.trainer.beta)


class AdaptiveKl(TrainerCallback):
    """``kl_control = "adaptive"``: after each logged step, ``adaptive_beta`` of the mean KL
    that GRPOTrainer logged since the last one, ``n_steps`` being the completions trained on
    meanwhile (OpenRLHF counts samples too, once per rollout; per logging step, the same
    multiplier to first order).

    Every process sees the same logged KL (TRL gathers it), so all move alike. The record's
    ``beta`` is the coefficient the logged steps used; on resuming, the coefficient is worked
    out again from the checkpoint's last record.
    """

    def __init__(
        self, trainer: Any, start: float, target: float, horizon: int, samples_per_step: int
    ) -> None:
        self.trainer = trainer
        self.start = start
        self.target = target
        self.horizon = horizon
        self.samples_per_step = samples_per_step
        self.last_step = 0  # the global step of the last update

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.beta, self.last_step = self.start, 0
        records = [r for r in state.log_history if "beta" in r and "step" in r]
        if records:  # resuming: redo the last record's update
            last = records[-1]
            previous = records[-2]["step"] if len(records) > 1 else 0
            self.trainer.beta, self.last_step = last["beta"], previous
            self._update(last.get("kl"), last["step"])

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs is None or "loss" not in logs:
            return
        _note_beta(state, logs, self.trainer.beta)
        self._update(logs.get("kl"), state.global_step)

    def _update(self, kl: float | None, step: int) -> None:
        if kl is None or step <= self.last_step:  # no KL measured (all NaN): keep the value
            return
        n_steps = (step - self.last_step) * self.samples_per_step
        self.trainer.beta = adaptive_beta(
            self.trainer.beta, float(kl), self.target, n_steps, self.horizon
        )
        self.last_step = step
