"""DocVQA: the original ``{"dataset_name", "data": [{questionId, question, image, docId,
answers, ...}]}`` (images as ``documents/xyz.png``) or the Hugging Face parquet layout with the
same columns and ``image`` as ``{"bytes", "path"}``.

The first of the reference answers is the answer; all of them stay in the context.
"""

from __future__ import annotations

from typing import Any

from vlaa_data.sources.base import RawSample, register_source
from vlaa_data.sources.row_adapter import MalformedRow, RowAdapter

__all__ = ["DocVQA"]


@register_source
class DocVQA(RowAdapter):
    name = "docvqa"
    id_column = "questionId"

    def sample(self, row: dict[str, Any]) -> RawSample:
        question = self.value(row, "question")
        answers = self.value(row, "answer", "answers")
        if isinstance(answers, str):
            answers = [answers]
        if answers is not None and not isinstance(answers, list):
            raise MalformedRow(f"answers is a {type(answers).__name__}, not a list")
        answers = answers or []
        image = self.image(row)
        context = {"answers": answers, "doc_id": row.get("docId")}
        source_id = self.source_id(row, image, question)
        answer = answers[0] if answers else None
        return RawSample(source_id, question, answer, image, context, "open", row=row)
