"""The per-sample file: one JSON line per evaluated row, in export order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlaa_data.evaluation.data import EvalRow
from vlaa_data.evaluation.generate import Generation
from vlaa_data.evaluation.scoring import SampleScore

__all__ = ["sample_record", "write_samples"]


def sample_record(row: EvalRow, generation: Generation, score: SampleScore) -> dict[str, Any]:
    """What a reader needs to see why a row scored as it did; a backend failure is its note."""
    return {
        "id": row.id,
        "source": row.source,
        "reward_type": row.reward_type,
        "question": row.question,
        "gold": row.gold,
        "completion": generation.completion,
        "reasoning": generation.reasoning,
        "finish_reason": generation.finish_reason,
        "answer": score.answer,
        "reward": score.reward,
        "correct": score.correct,
        "note": generation.error or score.note,
    }


def write_samples(
    path: Path,
    rows: Sequence[EvalRow],
    generations: Sequence[Generation],
    scores: Sequence[SampleScore],
) -> None:
    """Write the records to ``path`` through a temporary file renamed into place, so a rerun
    replaces the previous file whole and a crash never leaves half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        for row, generation, score in zip(rows, generations, scores, strict=True):
            record = sample_record(row, generation, score)
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    temporary.replace(path)
