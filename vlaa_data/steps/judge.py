"""The verify step's judge: an LLM says Yes or No to "does this answer match the ground truth".

It sees only the samples the rules could not decide (open-ended questions, golds or answers
the readers cannot read, Math-Verify timeouts). Its reply must be Yes or No and nothing else
(case, surrounding markdown and a final full stop aside); any other reply is recorded as an
``unverifiable`` verdict with the reply kept, never guessed at.
"""

from __future__ import annotations

import re
from typing import Any

from vlaa_data.llm.presets import Preset
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.llm.templates import render
from vlaa_data.rewards.extract import final_answer
from vlaa_data.rewards.verdict import Verdict
from vlaa_data.steps.llm_step import LlmStep, Outcome, Skip
from vlaa_data.store.llm import ReadySample

__all__ = ["JudgeStep", "read_yes_no", "verdict_outcome"]

_YES_NO = re.compile(r"^[\s*_`\"']*(yes|no)[\s*_`\"'.!]*$", re.IGNORECASE)


def read_yes_no(reply: str) -> bool | None:
    """True for Yes, False for No, None for anything else."""
    match = _YES_NO.match(reply)
    return None if match is None else match.group(1).lower() == "yes"


def verdict_outcome(verdict: Verdict, output: dict[str, Any] | None = None) -> Outcome:
    """A verdict as a step result: correct is done; incorrect and unverifiable are rejected
    with the verdict as the reason."""
    data = {**verdict.to_output(), **(output or {})}
    status = "done" if verdict.verdict == "correct" else "rejected"
    reason = None if status == "done" else verdict.verdict
    return Outcome(status, data, reason, method=verdict.method)


class JudgeStep(LlmStep):
    name = "verify"
    needs_vision = False

    def plan(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], max_pixels: int | None
    ) -> ChatRequest | Skip:
        prompt = render(
            self.template,
            {
                "question": sample.question.strip(),
                "gold": sample.answer.strip(),
                "answer": _answer(sample),
            },
        )
        return self.ask(sample, preset, params, prompt)

    def interpret(self, sample: ReadySample, reply: ChatReply, preset: Preset) -> Outcome:
        text = reply.final_text()  # a reasoning model may think inline
        method = f"judge:{preset.name}"
        extracted = final_answer(_answer(sample))
        if reply.finish_reason == "length":
            return Outcome("truncated", {"judge_reply": text}, "length", method=method)
        said = read_yes_no(text)
        if said is None:
            verdict = Verdict("unverifiable", method, extracted, note="judge_unclear")
        else:
            verdict = Verdict("correct" if said else "incorrect", method, extracted, float(said))
        return verdict_outcome(verdict, {"judge_reply": text})


def _answer(sample: ReadySample) -> str:
    return str((sample.parent_output or {}).get("answer") or "").strip()
