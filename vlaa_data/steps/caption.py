"""Step 2, caption: a vision-language model describes each image in detail (default gpt-4o).

Samples that already carry a caption (ALLaVA's GPT-4V caption) or whose question is
self-contained text (Math PUMA's text version) need no call: they are recorded done, with the
method saying why. The prompt shows only the image, so one image is captioned once even when
several samples share it: the second request is a cache hit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlaa_data.answers import split_reasoning
from vlaa_data.llm.presets import Preset
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest, image_part
from vlaa_data.steps.llm_step import LlmOptions, LlmStep, Outcome, Skip
from vlaa_data.store.llm import ReadySample
from vlaa_data.workspace import Workspace

__all__ = ["CaptionStep"]


class CaptionStep(LlmStep):
    name = "caption"
    needs_vision = True

    def __init__(self, template: str, image_root: Path) -> None:
        super().__init__(template)
        self.image_root = image_root

    @classmethod
    def build(cls, template: str, ws: Workspace, options: LlmOptions) -> CaptionStep:
        return cls(template, ws.root)

    def plan(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], max_pixels: int | None
    ) -> ChatRequest | Skip:
        existing = sample.context.get("caption")
        if isinstance(existing, str) and existing.strip():
            return Skip("existing_caption", {"caption": existing.strip()})
        if sample.context.get("text_question"):
            return Skip("text_only_question", {"caption": ""})
        image = image_part(
            sample.image_sha, self.image_root / sample.image_path, sample.width, sample.height
        )
        content = [{"type": "text", "text": self.template.strip()}, image]
        return ChatRequest(
            model=preset.model,
            messages=[{"role": "user", "content": content}],
            params=params,
            max_pixels=max_pixels,
            sample_id=sample.id,
        )

    def interpret(self, sample: ReadySample, reply: ChatReply, preset: Preset) -> Outcome:
        # A reasoning VLM may think aloud first; the caption is what follows its reasoning.
        caption = reply.content
        if "</think>" in caption:
            caption = split_reasoning(caption)[1]
        caption = caption.strip()
        if reply.finish_reason == "length":
            return Outcome("truncated", {"caption": caption}, "length")
        if not caption:
            return Outcome("failed", {"caption": ""}, "empty_reply")
        return Outcome("done", {"caption": caption})
