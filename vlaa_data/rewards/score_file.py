"""Score a JSONL file of completions: what ``vlaa-data reward`` runs.

Each row is ``{"completion": str, "answer": str, "reward_type": str, "image_size": [w, h]}``
(``image_size`` optional; a ``reasoning`` field is read as the reasoning, and a ``question``
field is shown to an open-ended scorer, if present). Each row
is written back with ``"reward"``: a float, or null when it cannot be scored, with
``"reward_note"`` saying why (a row that is not an object, a missing field, an unknown type,
a gold answer that cannot be read, no scorer for ``open``, a judge that gave no grade). Rows
are never dropped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data.rewards.extract import split_completion
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.open_scorers import OpenScorer
from vlaa_data.rewards.registry import REWARD_TYPES, Graded, RewardCase, grade_many

__all__ = ["RewardSummary", "TypeSummary", "score_file"]

_BATCH = 512  # math rows are checked a batch at a time through the worker pool


@dataclass
class TypeSummary:
    rows: int = 0
    scored: int = 0
    total: float = 0.0
    unscored: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def mean(self) -> float | None:
        return self.total / self.scored if self.scored else None

    def to_dict(self) -> dict[str, Any]:
        mean = None if self.mean is None else round(self.mean, 6)
        return {
            "rows": self.rows,
            "scored": self.scored,
            "mean_reward": mean,
            "unscored": dict(sorted(self.unscored.items())),
        }


@dataclass
class RewardSummary:
    rows: int = 0
    by_type: dict[str, TypeSummary] = field(default_factory=lambda: defaultdict(TypeSummary))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "by_type": {k: v.to_dict() for k, v in sorted(self.by_type.items())},
        }


def score_file(
    source: Path,
    out: Path,
    *,
    math: MathVerifier | None = None,
    open_scorer: OpenScorer | None = None,
    strict: bool = False,
) -> RewardSummary:
    """Score every row of ``source`` into ``out`` (which may be the same file); ``strict``
    reads answers as ``train grpo`` does (only the last ``<answer>`` block after ``</think>``)."""
    summary = RewardSummary()
    own_math = math is None
    math = math or MathVerifier()
    scored: list[dict[str, Any]] = []
    try:
        batch: list[dict[str, Any]] = []
        for row in _rows(source):
            batch.append(row)
            if len(batch) == _BATCH:
                scored += _score_batch(batch, math, open_scorer, summary, strict)
                batch = []
        scored += _score_batch(batch, math, open_scorer, summary, strict)
    finally:
        if own_math:
            math.close()
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        for row in scored:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)  # atomic: scoring a file in place never leaves it half written
    return summary


def _rows(source: Path) -> Iterator[dict[str, Any]]:
    with source.open("rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                yield {
                    "line": number,
                    "raw": line.decode("utf-8", "replace").rstrip("\n"),
                    "_note": f"not JSON: {exc}",
                }
                continue
            yield (
                row
                if isinstance(row, dict)
                else {"line": number, "raw": row, "_note": "not a JSON object"}
            )


def _score_batch(
    rows: list[dict[str, Any]],
    math: MathVerifier,
    open_scorer: OpenScorer | None,
    summary: RewardSummary,
    strict: bool,
) -> list[dict[str, Any]]:
    valid: list[dict[str, Any]] = []
    for row in rows:
        summary.rows += 1
        kind = row.get("reward_type")
        summary.by_type[kind if isinstance(kind, str) else "(none)"].rows += 1
        note = row.pop("_note", None) or _problem(row)
        if note is not None:
            _set(row, summary.by_type[kind if isinstance(kind, str) else "(none)"], None, note)
        else:
            valid.append(row)
    cases = [
        RewardCase(
            row["reward_type"],
            split_completion(row["completion"], row.get("reasoning"), strict=strict).answer,
            str(row["answer"]),
            row["question"] if isinstance(row.get("question"), str) else None,
            _size(row),
        )
        for row in valid
    ]
    graded = grade_many(cases, math=math, open_scorer=open_scorer, strict=strict)
    for row, grade in zip(valid, graded, strict=True):
        _set(row, summary.by_type[row["reward_type"]], grade.reward, _note(grade))
    return rows


def _note(grade: Graded) -> str | None:
    """Why a row has no reward (or what Math-Verify said); the implicit format rule's zero
    needs no note."""
    if grade.note in (None, "no_answer"):
        return None
    return {
        "gold_unreadable": "gold unreadable",
        "gold_unparseable": "gold unreadable",
        "open_ended": "no scorer for open answers",
        "no_grade": "no grade",
    }.get(grade.note, grade.note)


def _problem(row: dict[str, Any]) -> str | None:
    for name in ("completion", "answer", "reward_type"):
        if not isinstance(row.get(name), str):
            return f"missing or non-text {name!r}"
    if row["reward_type"] not in REWARD_TYPES:
        return f"unknown reward_type {row['reward_type']!r}; use one of {', '.join(REWARD_TYPES)}"
    return None


def _set(row: dict[str, Any], entry: TypeSummary, reward: float | None, note: str | None) -> None:
    row["reward"] = reward
    if note is not None:
        row["reward_note"] = note
    if reward is not None:
        entry.scored += 1
        entry.total += reward
    else:
        entry.unscored[(note or "unscored").split(":")[0]] += 1  # the kind, not the detail


def _size(row: dict[str, Any]) -> tuple[int, int] | None:
    size = row.get("image_size")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, (int, float)) for v in size):
        return int(size[0]), int(size[1])
    return None
