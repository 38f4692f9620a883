"""Rule verdicts: is a distilled answer right, decided by the reward functions, no model.

The verify step and the rewards share one implementation: a verdict is the reward of the
answer against the ground truth, read as correct (reward 1; IoU at or above the threshold),
incorrect (reward 0) or undecided. Undecided covers what rules cannot settle: open-ended
questions, a gold the rules cannot read, an answer in a form the type's reader does not know
(a choice answered with the option's text, a count in words past twenty, an expression
Math-Verify cannot parse), and a Math-Verify check that ran out of time. Those go to the
judge, or stay ``unverifiable`` without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlaa_data.rewards.extract import final_answer, read_box, read_choice, read_number
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.registry import SCORERS

__all__ = ["RULE_TYPES", "Case", "RuleVerifier", "Verdict"]

RULE_TYPES = ("digit", "choice", "math", "iou")
VERDICTS = ("correct", "incorrect", "unverifiable")


@dataclass(frozen=True)
class Case:
    """One answer to verify: ``answer`` is the answer text, its reasoning already split off."""

    reward_type: str
    answer: str
    gold: str
    image_size: tuple[int, int] | None = None


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


# Whether the type's reader finds anything in an answer; when it does not, the answer is in a
# form rules do not know, which is not the same as wrong.
_READERS = {"digit": read_number, "choice": read_choice, "iou": read_box}


class RuleVerifier:
    """Verdicts for batches of cases; math goes through ``math`` (a worker pool) in one batch."""

    def __init__(self, math: MathVerifier, *, iou_threshold: float = 0.5) -> None:
        if not 0 < iou_threshold <= 1:
            raise ValueError("iou_threshold must be in (0, 1]")
        self.math = math
        self.iou_threshold = iou_threshold

    def decide(self, case: Case) -> Verdict:
        return self.decide_many([case])[0]

    def decide_many(self, cases: Sequence[Case]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(cases)
        math_rows: list[tuple[int, str]] = []
        for i, case in enumerate(cases):
            extracted = final_answer(case.answer)
            if case.reward_type not in RULE_TYPES:
                verdicts[i] = Verdict("unverifiable", "rules", extracted, note="open_ended")
            elif extracted is None:
                verdicts[i] = Verdict("incorrect", case.reward_type, None, 0.0, "no_answer")
            elif case.reward_type == "math":
                math_rows.append((i, extracted))
            else:
                verdicts[i] = self._by_scorer(case, extracted)
        checks = self.math.check_many([(cases[i].gold, pred) for i, pred in math_rows])
        for (i, pred), check in zip(math_rows, checks, strict=True):
            if check.equal is None or check.reason == "pred_unparseable":
                verdicts[i] = Verdict("unverifiable", "math", pred, note=check.reason)
            else:
                verdicts[i] = _scored("math", pred, float(check.equal))
        return [v for v in verdicts if v is not None]

    def _by_scorer(self, case: Case, extracted: str) -> Verdict:
        kind = case.reward_type
        score = SCORERS[kind](extracted, case.gold, image_size=case.image_size)
        if score is None:
            note = "gold_unreadable" if _READERS[kind](case.gold) is None else "not_comparable"
            return Verdict("unverifiable", kind, extracted, note=note)
        if score == 0 and kind != "iou" and _READERS[kind](extracted) is None:
            return Verdict("unverifiable", kind, extracted, note=f"no_{kind}_in_answer")
        if kind == "iou":
            correct = score >= self.iou_threshold
            verdict = "correct" if correct else "incorrect"
            note = None if correct else ("no_box" if read_box(extracted) is None else "low_iou")
            return Verdict(verdict, kind, extracted, score, note)
        return _scored(kind, extracted, score)


def _scored(method: str, extracted: str, score: float) -> Verdict:
    return Verdict("correct" if score == 1 else "incorrect", method, extracted, score)
