"""The mixed reward as one TRL reward function per reward type, so that each type is logged.

TRL logs ``rewards/<function>/mean`` and ``/std`` every logging step, over the rows where a
function did not return None (None becomes NaN; the total is a NaN-aware sum). One function
per reward type, each scoring its own rows through the same ``MixedReward`` and returning
None elsewhere, gives every row exactly the mixed reward, and per-type means that TRL gathers
across processes like its own metrics (and per-type columns in the completions table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlaa_data.rewards.registry import REWARD_TYPES, MixedReward

__all__ = ["TypeReward", "type_rewards"]

# The columns MixedReward reads; TRL also passes trainer_state, log_metric, completion_ids...
_GOLD_COLUMNS = ("solution", "answer", "image_size")


class TypeReward:
    """The mixed reward of the rows whose ``reward_type`` is ``kind``; None for the others."""

    def __init__(self, kind: str, mixed: MixedReward) -> None:
        self.kind = kind
        self.mixed = mixed
        self.__name__ = kind  # TRL names the logged metrics after it

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        rows = [i for i, kind in enumerate(columns["reward_type"]) if kind == self.kind]
        rewards: list[float | None] = [None] * len(completions)
        if not rows:
            return rewards
        picked = {
            key: [columns[key][i] for i in rows]
            for key in ("reward_type", *_GOLD_COLUMNS)
            if columns.get(key) is not None
        }
        scores = self.mixed([prompts[i] for i in rows], [completions[i] for i in rows], **picked)
        for i, value in zip(rows, scores, strict=True):
            rewards[i] = value
        return rewards


def type_rewards(kinds: Sequence[str], mixed: MixedReward) -> list[TypeReward]:
    """One ``TypeReward`` per reward type in ``kinds``, in the order of ``REWARD_TYPES``."""
    return [TypeReward(kind, mixed) for kind in REWARD_TYPES if kind in set(kinds)]
