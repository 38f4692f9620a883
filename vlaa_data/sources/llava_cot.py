"""LLaVA-CoT (Xkev/LLaVA-CoT-100k): ``train.jsonl`` rows ``{id, image:
"coco/train2017/000000123.jpg", conversations: [human, gpt, ...]}``, the gpt turn written as
``<SUMMARY>…</SUMMARY> <CAPTION>…</CAPTION> <REASONING>…</REASONING> <CONCLUSION>…</CONCLUSION>``.

Only the first human/gpt pair is used. The answer is the CONCLUSION (the whole reply when it
has none); a box answer ``[x1, y1, x2, y2]`` is a grounding sample with the IoU reward. The
subset (first folder of the image path: coco, vg, ...) is kept so users can select COCO and
VisualGenome as the paper did.
"""

from __future__ import annotations

import re
from typing import Any

from vlaa_data.answers import is_box
from vlaa_data.sources.base import RawSample, register_source
from vlaa_data.sources.conversations import first_exchange
from vlaa_data.sources.row_adapter import RowAdapter

__all__ = ["LlavaCot"]


def _tagged(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL | re.IGNORECASE)
    return match.group(1).strip() if match else None


@register_source
class LlavaCot(RowAdapter):
    name = "llava-cot"

    def sample(self, row: dict[str, Any]) -> RawSample:
        question, reply = first_exchange(row, self.column("conversations", "conversations"))
        text = reply if isinstance(reply, str) else ""
        answer = _tagged(text, "CONCLUSION")
        if answer is None:
            answer = text.strip() if text else reply
        context: dict[str, Any] = {}
        value = self.value(row, "image")
        if isinstance(value, str) and "/" in value.strip("/"):
            context["subset"] = value.strip("/").split("/")[0]
        if caption := _tagged(text, "CAPTION"):
            context["caption"] = caption
        reward_type = "iou" if isinstance(answer, str) and is_box(answer) else None
        image = self.image(row)
        source_id = self.source_id(row, image, question)
        return RawSample(source_id, question, answer, image, context, reward_type, row=row)
