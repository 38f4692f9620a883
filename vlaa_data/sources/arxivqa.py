"""ArxivQA (MMInstruction/ArxivQA): JSONL rows ``{id, image, options, question, label,
rationale}``, ``options`` like ``["A) ...", "B) ..."]``.

The options are appended to the question, one per line. Labels come as "A", "A)", "(a)" or
"A. text" and are stored as the bare letter; a label that names no option is kept as written,
with no reward type, so that the collect step routes it by its shape.
"""

from __future__ import annotations

from typing import Any

from vlaa_data.sources.base import RawSample, register_source
from vlaa_data.sources.conversations import as_choice
from vlaa_data.sources.row_adapter import MalformedRow, RowAdapter

__all__ = ["ArxivQA"]


@register_source
class ArxivQA(RowAdapter):
    name = "arxivqa"

    def sample(self, row: dict[str, Any]) -> RawSample:
        question = self.value(row, "question")
        options = row.get("options") or []
        if not isinstance(options, list):
            raise MalformedRow(f"options is a {type(options).__name__}, not a list")
        text = "\n".join([question, *map(str, options)]) if isinstance(question, str) else question
        answer, reward_type = as_choice(self.value(row, "answer", "label"), None)
        image = self.image(row)
        context = {"options": options, "rationale": row.get("rationale")}
        source_id = self.source_id(row, image, question)
        return RawSample(source_id, text, answer, image, context, reward_type, row=row)
