"""The evaluation report: counts, accuracy and mean reward, overall, per reward type, per source.

``no_answer`` counts completions with nothing to extract (format failures: every reward is 0
for them), ``truncated`` those cut off at the token limit, and ``failed`` rows the backend gave
no completion for; together they tell a model that cannot answer from one that never closes
its ``<answer>``. Accuracy's denominator is the rows that can be right or wrong (scored, and
not ``open``); for ``iou`` it counts IoU >= the threshold (0.5 unless set) and the mean reward
is the mean IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vlaa_data.evaluation.data import EvalRow
from vlaa_data.evaluation.generate import Generation
from vlaa_data.evaluation.scoring import NO_ANSWER, SampleScore

__all__ = ["EvalReport", "GroupStats", "summarise"]


@dataclass
class GroupStats:
    n: int = 0
    scored: int = 0  # rows with a reward
    graded: int = 0  # rows that are right or wrong: accuracy's denominator
    correct: int = 0
    reward_total: float = 0.0
    no_answer: int = 0
    truncated: int = 0
    failed: int = 0

    def add(self, generation: Generation, score: SampleScore) -> None:
        self.n += 1
        if score.reward is not None:
            self.scored += 1
            self.reward_total += score.reward
        if score.correct is not None:
            self.graded += 1
            self.correct += score.correct
        self.no_answer += score.note == NO_ANSWER
        self.truncated += generation.finish_reason == "length"
        self.failed += generation.error is not None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def mean_reward(self) -> float | None:
        return self.reward_total / self.scored if self.scored else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "scored": self.scored,
            "accuracy": _round(self.accuracy),
            "mean_reward": _round(self.mean_reward),
            "correct": self.correct,
            "no_answer": self.no_answer,
            "truncated": self.truncated,
            "failed": self.failed,
        }


@dataclass
class EvalReport:
    """What ``run_eval`` returns and ``eval --json`` prints."""

    model: str
    data: str
    split: str
    limit: int | None
    output: str
    generation: dict[str, Any]
    open_scorer: str | None = None
    overall: GroupStats = field(default_factory=GroupStats)
    by_type: dict[str, GroupStats] = field(default_factory=dict)
    by_source: dict[str, GroupStats] = field(default_factory=dict)
    seconds: float = 0.0  # the whole run: loading data and model, generating, scoring
    generation_seconds: float = 0.0
    note: str | None = None  # e.g. why the split is not the held-out test part
    iou_threshold: float = 0.5  # an iou row counted correct from this IoU

    @property
    def samples_per_s(self) -> float | None:
        if not self.generation_seconds:
            return None
        return self.overall.n / self.generation_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "split": self.split,
            "limit": self.limit,
            "output": self.output,
            "generation": self.generation,
            "open_scorer": self.open_scorer,
            "overall": self.overall.to_dict(),
            "by_type": {k: v.to_dict() for k, v in sorted(self.by_type.items())},
            "by_source": {k: v.to_dict() for k, v in sorted(self.by_source.items())},
            "seconds": round(self.seconds, 3),
            "generation_seconds": round(self.generation_seconds, 3),
            "samples_per_s": _round(self.samples_per_s, 3),
            "note": self.note,
            "iou_threshold": self.iou_threshold,
        }


def summarise(
    report: EvalReport,
    rows: Sequence[EvalRow],
    generations: Sequence[Generation],
    scores: Sequence[SampleScore],
) -> EvalReport:
    """Count every row into ``report``'s overall, reward-type and source groups."""
    for row, generation, score in zip(rows, generations, scores, strict=True):
        for stats in (
            report.overall,
            report.by_type.setdefault(row.reward_type, GroupStats()),
            report.by_source.setdefault(row.source, GroupStats()),
        ):
            stats.add(generation, score)
    return report


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)
