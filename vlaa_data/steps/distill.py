"""Step 3, distill: a reasoning model answers from the caption, question and extra context.

The reply is stored as reasoning and answer, whichever way the endpoint returns them: a
separate ``reasoning_content`` field (DeepSeek's API), ``<think>…</think>`` inline, or only a
closing ``</think>`` (self-hosted R1 often omits the opening tag).
"""

from __future__ import annotations

import json
from typing import Any

from vlaa_data.answers import split_reasoning
from vlaa_data.llm.presets import Preset
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.llm.templates import render
from vlaa_data.steps.llm_step import LlmStep, Outcome, Skip
from vlaa_data.store.llm import ReadySample

__all__ = ["DistillStep", "render_context"]

# Context keys that are bookkeeping, or that the prompt already shows in another place.
_NOT_FOR_THE_MODEL = {"caption", "origin", "subset", "meta", "rl_only"}
_LABELS = {
    "scene": "Objects in the scene",
    "text_question": "The question as text",
}


def render_context(context: dict[str, Any]) -> str:
    """The sample's extra context as prompt text (CLEVR objects, Math PUMA's text question)."""
    blocks = []
    for key, value in context.items():
        if key in _NOT_FOR_THE_MODEL or key.startswith("_") or value in (None, "", [], {}):
            continue
        label = _LABELS.get(key, key.replace("_", " ").capitalize())
        blocks.append(f"{label}:\n{_as_text(value)}")
    return "\n\n".join(blocks)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return "\n".join(f"- {_as_line(item)}" for item in value)
    return json.dumps(value, ensure_ascii=False)


def _as_line(item: Any) -> str:
    if isinstance(item, dict):
        return ", ".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


class DistillStep(LlmStep):
    name = "distill"
    needs_vision = False

    def plan(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], max_pixels: int | None
    ) -> ChatRequest | Skip:
        caption = (sample.parent_output or {}).get("caption") or ""
        prompt = render(
            self.template,
            {
                "caption": caption.strip(),
                "context": render_context(sample.context),
                "question": sample.question.strip(),
            },
        )
        return self.ask(sample, preset, params, prompt)

    def interpret(self, sample: ReadySample, reply: ChatReply, preset: Preset) -> Outcome:
        content = reply.content
        if reply.reasoning is not None:
            reasoning, answer = reply.reasoning.strip(), content.strip()
            if "</think>" in answer:  # a server that also echoes the tags inline
                extra, answer = split_reasoning(answer)
                reasoning = "\n\n".join(part for part in (reasoning, extra) if part)
        else:
            reasoning, answer = split_reasoning(content)
        output = {"reasoning": reasoning, "answer": answer}
        if reply.finish_reason == "length":
            return Outcome("truncated", output, "length")
        if not answer:
            return Outcome("failed", output, "no_answer")
        if not reasoning and preset.reasoning != "none":
            return Outcome("failed", output, "no_reasoning")
        return Outcome("done", output)
