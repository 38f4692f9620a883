"""VizWiz VQA: an annotation JSON list of ``{image, question, answers, answer_type,
answerable}``, ``answers`` being ten ``{answer, answer_confidence}`` from crowd workers.

The answer is the most frequent one; a tie goes to the answer given with confidence "yes"
more often, then to the one seen first. Images sit beside the JSON or under ``--images``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from vlaa_data.sources.base import RawSample, register_source
from vlaa_data.sources.conversations import image_name
from vlaa_data.sources.row_adapter import MalformedRow, RowAdapter

__all__ = ["VizWiz", "majority_answer"]


def majority_answer(answers: list[Any]) -> tuple[str | None, list[str]]:
    """The majority answer and the distinct answers in the order first given."""
    votes: dict[str, list[int]] = {}  # answer -> [count, "yes" count, -first position]
    for position, item in enumerate(answers):
        text, confidence = (
            (item.get("answer"), item.get("answer_confidence"))
            if isinstance(item, Mapping)
            else (item, None)
        )
        if isinstance(text, str) and text.strip():
            vote = votes.setdefault(text.strip(), [0, 0, -position])
            vote[0] += 1
            vote[1] += confidence == "yes"
    return (max(votes, key=votes.__getitem__) if votes else None), list(votes)


@register_source
class VizWiz(RowAdapter):
    name = "vizwiz"

    def sample(self, row: dict[str, Any]) -> RawSample:
        answers = self.value(row, "answer", "answers") or []
        if not isinstance(answers, list):
            raise MalformedRow(f"answers is a {type(answers).__name__}, not a list")
        answer, distinct = majority_answer(answers)
        question = self.value(row, "question")
        image = self.image(row)
        name = image_name(self.value(row, "image"))
        own = self.own_id(row) or (name and PurePosixPath(name).stem)
        source_id = own or self.source_id(row, image, question)
        context = {
            "answers": distinct,
            "answer_type": row.get("answer_type"),
            "answerable": row.get("answerable"),
        }
        return RawSample(source_id, question, answer, image, context, "open", row=row)
