"""Scoring given completions with the rewards ``verify`` and ``train grpo`` use.

Kept apart from generation so that known completions can be scored (and tested) without a
model. Rewards come from ``MixedReward``, the GRPO reward function itself, so an evaluation
and a training run can never disagree on what a completion earns.

A row is *correct* when its reward is 1 (digit, choice, math), or for ``iou`` when the boxes
overlap with IoU >= 0.5, the usual grounding threshold (the rule table in
``rewards.registry``, which verify uses too); ``open`` rows have a score, not a
right or wrong, so ``correct`` stays None for them.

Answers are read strictly, in the training format: only the last ``<answer>`` block after
``</think>`` counts, and a completion without one is a format failure (note "no answer").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlaa_data.evaluation.data import EvalRow
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.open_scorers import OpenScorer
from vlaa_data.rewards.registry import REWARD_TYPES as TYPE_TABLE
from vlaa_data.rewards.registry import Graded, MixedReward, is_correct

__all__ = ["IOU_CORRECT", "NO_ANSWER", "SampleScore", "is_correct", "score_completions"]

IOU_CORRECT = TYPE_TABLE["iou"].correct_from
NO_ANSWER = "no answer"  # the note of a format failure: nothing could be extracted


@dataclass(frozen=True)
class SampleScore:
    """A completion's extracted answer, reward (None: unscored), correctness and why."""

    answer: str | None
    reward: float | None
    correct: bool | None
    note: str | None = None


def score_completions(
    rows: Sequence[EvalRow],
    completions: Sequence[str | None],
    *,
    math: MathVerifier | None = None,
    open_scorer: OpenScorer | None = None,
    iou_threshold: float | None = None,
) -> list[SampleScore]:
    """Score ``completions[i]`` against ``rows[i]``; None means the row has no completion.

    Open-ended rows without ``open_scorer`` are unscored (reward None), not wrong; an iou row
    is correct from ``iou_threshold`` (default: the reward-type table's, 0.5).
    """
    own_math = math is None
    reward = MixedReward(math=math, open_scorer=open_scorer)
    known = [
        i
        for i, (row, text) in enumerate(zip(rows, completions, strict=True))
        if text is not None and row.reward_type in TYPE_TABLE
    ]
    graded: list[Graded] = []
    try:
        if known:  # MixedReward reads the gold from "answer" when "solution" is empty
            graded = reward.grade(
                [rows[i].question for i in known],
                [completions[i] for i in known],
                reward_type=[rows[i].reward_type for i in known],
                solution=[rows[i].gold for i in known],
                image_size=[rows[i].image_size for i in known],
            )
    finally:
        if own_math:
            reward.close()
    by_row = dict(zip(known, graded, strict=True))
    scores = []
    for i, (row, text) in enumerate(zip(rows, completions, strict=True)):
        if text is None:
            scores.append(SampleScore(None, None, None, "no completion"))
        elif i not in by_row:
            scores.append(SampleScore(None, None, None, f"unknown reward type {row.reward_type!r}"))
        else:
            grade = by_row[i]
            scores.append(
                SampleScore(
                    grade.answer,
                    grade.reward,
                    is_correct(row.reward_type, grade.reward, iou_threshold=iou_threshold),
                    _note(row.reward_type, grade, open_scorer is not None),
                )
            )
    return scores


def _note(reward_type: str, grade: Graded, can_grade: bool) -> str | None:
    if grade.note == "no_answer":
        return NO_ANSWER
    if grade.reward is not None:
        return None
    if reward_type == "open":
        return "no grade" if can_grade else "no scorer for open answers"
    return "gold unreadable"
