"""GeoQA170K (G-LLaVA Geo170K ``qa_tuning.json``): ``{image: "geoqa_plus/1234.png",
conversations: [human, gpt]}``.

The human turn is "<image>\\nFirst perform reasoning, then finally select the question from the
choices in the following format: Answer: xxx.\\nQuestion: ...\\nChoices:\\nA:40°\\nB:50°...";
the question drops the image token and that format instruction. The answer is the letter of
the last "Answer: X" of the gpt turn, which is kept whole as the solution. Per the paper this
source feeds the RL split only (its captions hallucinated): ``context["rl_only"]`` says so.
"""

from __future__ import annotations

import re
from typing import Any

from vlaa_data.sources.base import RawSample, register_source
from vlaa_data.sources.conversations import answer_line, as_choice, first_exchange
from vlaa_data.sources.row_adapter import RowAdapter

__all__ = ["GeoQA170K"]

_INSTRUCTION = re.compile(
    r"first perform reasoning,.*?following format:\s*answer:\s*xxx\.?\s*", re.I | re.S
)
_CHOICE = re.compile(r"^[ \t]*([A-H])[ \t]*[:：.)][ \t]*(.*?)[ \t]*$", re.M)


@register_source
class GeoQA170K(RowAdapter):
    name = "geoqa170k"

    def sample(self, row: dict[str, Any]) -> RawSample:
        human, solution = first_exchange(row, self.column("conversations", "conversations"))
        question = _INSTRUCTION.sub("", human).strip() if isinstance(human, str) else human
        choices: dict[str, str] = {}
        if isinstance(question, str) and "Choices:" in question:
            choices = dict(_CHOICE.findall(question.split("Choices:", 1)[1]))
        tail = answer_line(solution)
        # "Answer: C", "Answer:C:60°", "Answer: (C)": the option is the first token.
        token = re.split(r"[\s:：]+", tail, maxsplit=1)[0] if tail else None
        answer, reward_type = as_choice(token, None)
        image = self.image(row)
        context = {"choices": choices, "solution": solution, "rl_only": True}
        source_id = self.source_id(row, image, question)
        return RawSample(source_id, question, answer, image, context, reward_type, row=row)
