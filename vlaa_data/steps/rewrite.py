"""Step 4, rewrite: minimal edits so the distilled text speaks of the image, not of a caption.

The reasoning model answered from a caption, so its text may say "the caption mentions ...".
A cheap model (the paper: GPT-3.5-turbo) rewrites such phrases to refer to the image. A text
that never refers to a caption, description, rationale or given text needs no call: it is
recorded done with method ``unchanged``. A rewrite is rejected when it changes more than
``max_word_diff`` words (a word-level diff, the paper's rule of 15), when it loses or adds line
breaks, or when it drops the ``</think>`` tag between reasoning and answer.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from vlaa_data.answers import split_reasoning
from vlaa_data.llm.presets import Preset
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.llm.templates import render
from vlaa_data.steps.llm_step import LlmOptions, LlmStep, Outcome, Skip
from vlaa_data.store.llm import ReadySample
from vlaa_data.workspace import Workspace

__all__ = ["RewriteStep", "mentions_given_text", "words_changed"]

# "caption", "description", "rationale" in any form; "text" only as the text given ("the
# text", "the provided text"), not as text seen in the image ("the text on the sign").
_REFERENCE = re.compile(
    r"\b(?:captions?|captioned|descriptions?|rationales?)\b"
    r"|\b(?:the|this|that|given|provided)\s+(?:given\s+|provided\s+|above\s+)?text\b"
    r"(?!\s+(?:in|on|of|at|from|written|printed|shown|visible)\b)",
    re.IGNORECASE,
)
_WORD = re.compile(r"\S+")


def mentions_given_text(text: str) -> bool:
    """Whether ``text`` refers to a caption, description, rationale or given text."""
    return _REFERENCE.search(text) is not None


def words_changed(before: str, after: str) -> int:
    """Words changed by a rewrite: for each differing run of a word-level diff, the longer
    side's length (a replaced word counts once; an insertion or deletion counts each word)."""
    a, b = _WORD.findall(before), _WORD.findall(after)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
    )


def _compose(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n{answer}" if reasoning else answer


def _lines(text: str) -> int:
    return text.strip().count("\n")


class RewriteStep(LlmStep):
    name = "rewrite"
    needs_vision = False

    def __init__(self, template: str, *, max_word_diff: int = 15) -> None:
        super().__init__(template)
        self.max_word_diff = max_word_diff

    @classmethod
    def build(cls, template: str, ws: Workspace, options: LlmOptions) -> RewriteStep:
        limit = options.max_word_diff
        return cls(
            template, max_word_diff=ws.settings.rewrite.max_word_diff if limit is None else limit
        )

    def plan(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], max_pixels: int | None
    ) -> ChatRequest | Skip:
        reasoning, answer = _distilled(sample)
        if not (mentions_given_text(reasoning) or mentions_given_text(answer)):
            return Skip("unchanged", {"reasoning": reasoning, "answer": answer})
        prompt = render(self.template, {"text": _compose(reasoning, answer)})
        return self.ask(sample, preset, params, prompt)

    def interpret(self, sample: ReadySample, reply: ChatReply, preset: Preset) -> Outcome:
        reasoning, answer = _distilled(sample)
        text = reply.content.strip()
        if reply.finish_reason == "length":
            return Outcome("truncated", {"rewrite": text}, "length")
        if not text:
            return Outcome("failed", {"rewrite": ""}, "empty_reply")
        if reasoning:
            if "</think>" not in text:
                return Outcome("rejected", {"rewrite": text}, "think_tag_lost")
            new_reasoning, new_answer = split_reasoning(text)
        else:
            new_reasoning, new_answer = "", text
        changed = words_changed(_compose(reasoning, answer), _compose(new_reasoning, new_answer))
        output: dict[str, Any] = {"words_changed": changed}
        if changed > self.max_word_diff:
            output.update(max_word_diff=self.max_word_diff, rewrite=text)
            return Outcome("rejected", output, "too_many_words_changed")
        if (_lines(new_reasoning), _lines(new_answer)) != (_lines(reasoning), _lines(answer)):
            output.update(rewrite=text)
            return Outcome("rejected", output, "line_breaks_changed")
        return Outcome("done", {"reasoning": new_reasoning, "answer": new_answer, **output})


def _distilled(sample: ReadySample) -> tuple[str, str]:
    output = sample.parent_output or {}
    return str(output.get("reasoning") or ""), str(output.get("answer") or "")
