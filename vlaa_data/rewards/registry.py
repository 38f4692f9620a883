"""The rewards, one per reward type, behind one signature; and the mixed reward for TRL.

Every scorer takes the extracted final answer (never None: a completion without one scores 0
before any scorer runs, the implicit format rule) and the gold answer, and returns a float in
[0, 1], or None when the gold itself cannot be read (never 1.0 for an unreadable gold).

``MixedReward`` has TRL's reward signature ``f(prompts, completions, **columns)`` and routes
each row by its ``reward_type`` column, so ``GRPOTrainer(reward_funcs=[MixedReward()])``
works as is. A row whose type has no scorer (``open`` without a judge or reward model) gets
None, which TRL ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from vlaa_data.answers import normalise_choice
from vlaa_data.rewards.extract import (
    final_answer,
    read_box,
    read_choice,
    read_number,
    split_completion,
)
from vlaa_data.rewards.math_pool import MathCheck, MathVerifier
from vlaa_data.rewards.open_scorers import OpenCase

__all__ = ["SCORERS", "MixedReward", "Scorer", "iou", "math_reward", "score"]

Box = tuple[float, float, float, float]


class Scorer(Protocol):
    def __call__(
        self, answer: str, gold: str, *, image_size: tuple[int, int] | None = None
    ) -> float | None: ...


def digit(answer: str, gold: str, *, image_size: tuple[int, int] | None = None) -> float | None:
    expected = read_number(gold)
    if expected is None:
        return None
    got = read_number(answer)
    return float(got is not None and abs(got - expected) < 1e-9)


def choice(answer: str, gold: str, *, image_size: tuple[int, int] | None = None) -> float | None:
    expected = normalise_choice(gold)
    if expected is None:
        return None
    return float(read_choice(answer) == expected)


def iou_reward(
    answer: str, gold: str, *, image_size: tuple[int, int] | None = None
) -> float | None:
    expected = read_box(gold)
    if expected is None or not _proper(expected):
        return None
    got = read_box(answer)
    if got is None or not _proper(got):
        return 0.0
    pair = _comparable(got, expected, image_size)
    return None if pair is None else iou(*pair)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0 for degenerate ones."""
    if not (_proper(a) and _proper(b)):
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _proper(box: Box) -> bool:
    return box[2] > box[0] and box[3] > box[1]


def _comparable(a: Box, b: Box, size: tuple[int, int] | None) -> tuple[Box, Box] | None:
    """Both boxes in one space: normalised when all values are <= 1, else pixels."""
    a_unit, b_unit = max(a) <= 1, max(b) <= 1
    if a_unit == b_unit:
        return a, b  # IoU does not care which space, as long as it is the same one
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None  # one in pixels, one normalised, and no image size to relate them

    def unit(box: Box) -> Box:
        w, h = size
        return box[0] / w, box[1] / h, box[2] / w, box[3] / h

    return (a if a_unit else unit(a)), (b if b_unit else unit(b))


def math_reward(check: MathCheck) -> float | None:
    """A Math-Verify check as a reward: None only for an unreadable gold; undecided is 0."""
    return None if check.reason == "gold_unparseable" else float(bool(check.equal))


SCORERS: dict[str, Scorer] = {"digit": digit, "choice": choice, "iou": iou_reward}


def score(
    reward_type: str,
    completion: str,
    gold: str,
    *,
    reasoning: str | None = None,
    image_size: tuple[int, int] | None = None,
    math: MathVerifier | None = None,
    open_scorer: Scorer | None = None,
) -> float | None:
    """The reward of one completion; see the module docstring."""
    answer = final_answer(split_completion(completion, reasoning).answer)
    if reward_type == "math":
        if math is None:
            raise ValueError("math rewards need a MathVerifier")
        if answer is None:
            return 0.0
        return math_reward(math.check(gold, answer))
    scorer = open_scorer if reward_type == "open" else SCORERS.get(reward_type)
    if scorer is None:
        if reward_type == "open":
            return None
        raise ValueError(f"unknown reward type {reward_type!r}")
    if answer is None:
        return 0.0
    return scorer(answer, gold, image_size=image_size)


class MixedReward:
    """The mixed reward as a TRL reward function, routing rows by ``reward_type``.

    Gold comes from the ``solution`` column (our RL export), else ``answer``; ``image_size``
    is optional. Math checks run in one batch through the worker pool; so do open-ended rows
    when the open scorer grades batches (``score_many``: a judge, a reward model), each with
    its prompt as the question.
    """

    __name__ = "mixed_reward"  # TRL logs reward functions by name

    def __init__(
        self,
        *,
        math: MathVerifier | None = None,
        open_scorer: Scorer | None = None,
    ) -> None:
        self.math = math or MathVerifier()
        self.open_scorer = open_scorer

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        types: Sequence[str] = columns["reward_type"]
        golds: Sequence[str] = columns.get("solution") or columns["answer"]
        sizes: Sequence[Any] = columns.get("image_size") or [None] * len(completions)
        texts = [_text(c) for c in completions]
        rewards: list[float | None] = [None] * len(texts)
        batched: dict[str, list[tuple[int, str]]] = {"math": [], "open": []}
        for i, (kind, text, gold, size) in enumerate(zip(types, texts, golds, sizes, strict=True)):
            if kind in batched and (kind == "math" or hasattr(self.open_scorer, "score_many")):
                answer = final_answer(split_completion(text).answer)
                if answer is None:
                    rewards[i] = 0.0
                else:
                    batched[kind].append((i, answer))
                continue
            rewards[i] = score(
                kind, text, str(gold), image_size=_size(size), open_scorer=self.open_scorer
            )
        checks = self.math.check_many([(str(golds[i]), answer) for i, answer in batched["math"]])
        for (i, _), check in zip(batched["math"], checks, strict=True):
            rewards[i] = math_reward(check)
        if batched["open"]:
            cases = [OpenCase(_text(prompts[i]), a, str(golds[i])) for i, a in batched["open"]]
            scores = self.open_scorer.score_many(cases)  # type: ignore[union-attr]
            for (i, _), value in zip(batched["open"], scores, strict=True):
                rewards[i] = value
        return rewards

    def close(self) -> None:
        self.math.close()


def _text(completion: Any) -> str:
    # TRL passes plain strings, or for conversational data a list of messages.
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            # an image part carries "text": None (our hf export's parts share one struct type)
            return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        return str(content)
    return str(completion)


def _size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None
