"""Math PUMA (Math-PUMA_Data_Stage2, Synthesis): a JSON list or JSONL of math problems.

Two row shapes are read. Flat: ``{question, answer, image}`` with the text-only version of
the question under ``text_question``, ``question_text`` or ``text_only_question``. LLaVA-style:
``conversations`` (the visual version) and ``text_conversations`` (the text-only version).
The answer is the final answer of the reply: its last ``\\boxed{}``, else its ``Answer:`` line.
"""

from __future__ import annotations

from typing import Any

from vlaa_data.sources.base import RawSample, register_source
from vlaa_data.sources.conversations import as_choice, final_answer, first_exchange
from vlaa_data.sources.row_adapter import RowAdapter

__all__ = ["MathPuma"]

_TEXT_COLUMNS = ("text_question", "question_text", "text_only_question")


@register_source
class MathPuma(RowAdapter):
    name = "math-puma"

    def sample(self, row: dict[str, Any]) -> RawSample:
        conversations = self.column("conversations", "conversations")
        if row.get(conversations) is not None:
            question, reply = first_exchange(row, conversations)
            text_question = None
            if row.get("text_conversations") is not None:
                text_question = first_exchange(row, "text_conversations")[0]
        else:
            question, reply = self.value(row, "question"), self.value(row, "answer")
            text_question = next((row[c] for c in _TEXT_COLUMNS if row.get(c)), None)
        if isinstance(reply, (int, float)) and not isinstance(reply, bool):
            reply = str(reply)
        answer, reward_type = as_choice(final_answer(reply) or reply, "math")
        image = self.image(row)
        context = {"text_question": text_question} if text_question else {}
        source_id = self.source_id(row, image, question)
        return RawSample(source_id, question, answer, image, context, reward_type, row=row)
