"""Rule verdicts: is a distilled answer right, decided by the reward functions, no model.

The verify step and the rewards share one implementation: a verdict is the reward of the
answer against the ground truth, read as correct (reward 1; IoU at or above the threshold),
incorrect (reward 0) or undecided. Undecided covers what rules cannot settle: open-ended
questions, a gold the rules cannot read, an answer in a form the type's reader does not know
(a choice answered with a value no option holds, a count stated ambiguously, an expression
Math-Verify cannot parse), and a Math-Verify check that ran out of time twice. Those go to the
judge, or stay ``unverifiable`` without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlaa_data.rewards.extract import read_box
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.registry import REWARD_TYPES, Graded, RewardCase, grade_many, is_correct

__all__ = ["RULE_TYPES", "Case", "RuleVerifier", "Verdict"]

RULE_TYPES = tuple(name for name, kind in REWARD_TYPES.items() if kind.by_rules)
VERDICTS = ("correct", "incorrect", "unverifiable")


@dataclass(frozen=True)
class Case:
    """One answer to verify: ``answer`` is the answer text, its reasoning already split off."""

    reward_type: str
    answer: str
    gold: str
    image_size: tuple[int, int] | None = None
    question: str | None = None  # its options let a choice answered by value be read


@dataclass(frozen=True)
class Verdict:
    verdict: str  # correct | incorrect | unverifiable
    method: str  # digit | choice | math | iou | judge:<model> | rules (nothing could decide)
    extracted: str | None  # the final answer read out of the text
    score: float | None = None
    note: str | None = None  # why a verdict is unverifiable, or what made it incorrect

    @property
    def decided(self) -> bool:
        return self.verdict != "unverifiable"

    def to_output(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "verdict": self.verdict,
            "method": self.method,
            "extracted": self.extracted,
        }
        if self.score is not None:
            data["score"] = round(self.score, 6)
        if self.note is not None:
            data["note"] = self.note
        return data


class RuleVerifier:
    """Verdicts for batches of cases; math goes through ``math`` (a worker pool) in one batch.

    Answers are read leniently (``verify`` checks distilled traces, not the training format):
    the same ``grade_many`` as the rewards, so a verdict and a reward never disagree.
    """

    def __init__(self, math: MathVerifier, *, iou_threshold: float = 0.5) -> None:
        if not 0 < iou_threshold <= 1:
            raise ValueError("iou_threshold must be in (0, 1]")
        self.math = math
        self.iou_threshold = iou_threshold

    def decide(self, case: Case) -> Verdict:
        return self.decide_many([case])[0]

    def decide_many(self, cases: Sequence[Case]) -> list[Verdict]:
        reward_cases = [
            RewardCase(
                c.reward_type if _by_rules(c.reward_type) else "open",
                c.answer,
                c.gold,
                c.question,
                c.image_size,
            )
            for c in cases
        ]
        graded = grade_many(reward_cases, math=self.math)
        return [self._verdict(c, g) for c, g in zip(cases, graded, strict=True)]

    def _verdict(self, case: Case, graded: Graded) -> Verdict:
        kind = case.reward_type
        if not _by_rules(kind):
            return Verdict("unverifiable", "rules", graded.answer, note="open_ended")
        if graded.note == "no_answer":
            return Verdict("incorrect", kind, graded.answer, 0.0, "no_answer")
        if not graded.decided or graded.reward is None:
            return Verdict("unverifiable", kind, graded.answer, note=graded.note)
        correct = is_correct(kind, graded.reward, iou_threshold=self.iou_threshold)
        verdict = "correct" if correct else "incorrect"
        if kind == "iou":
            note = None if correct else ("no_box" if read_box(graded.answer) is None else "low_iou")
            return Verdict(verdict, kind, graded.answer, graded.reward, note)
        return Verdict(verdict, kind, graded.answer, graded.reward, graded.note)


def _by_rules(reward_type: str) -> bool:
    kind = REWARD_TYPES.get(reward_type)
    return kind is not None and kind.by_rules
