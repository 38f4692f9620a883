"""The aha judge: a model says, for each keyword hit in a sample's text, whether it marks a
genuine self-correction or filler (the paper's "pseudo aha moments").

``filters.aha_model`` finds the hits and hands each sample in with them as its parent output
(``hits``: keyword, offset and context of each; ``not_judged``: hits past the cap;
``hits_sha``: which hits these are); one request lists them all, numbered. The reply must give
one line per hit, ``N: genuine`` or ``N: filler``; a hit whose line is missing, repeated with
another verdict, or says anything else is ``unclear``, never guessed. A reply with no readable
line is recorded rejected (reason ``unclear``) with the reply kept.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from vlaa_data.llm.presets import Preset
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.llm.templates import render
from vlaa_data.steps.llm_step import LlmStep, Outcome, Skip
from vlaa_data.store.llm import ReadySample

__all__ = ["VERDICTS", "AhaJudgeStep", "read_verdicts"]

VERDICTS = ("genuine", "filler", "unclear")
# "1: genuine", "- 2) Filler", "**3.** genuine", "Hit 4 - filler": a number, then the verdict
# as the first word after it; markdown emphasis is dropped before matching.
_LINE = re.compile(r"^\s*(?:[-*>•]\s*)?(?:hit\s*)?#?(\d+)\s*[:.)\]=-]?\s*(genuine|filler)\b", re.I)


def read_verdicts(reply: str, count: int) -> list[str]:
    """The verdict of hits 1..``count`` in ``reply``: genuine, filler or unclear."""
    said: dict[int, set[str]] = {}
    for line in reply.splitlines():
        match = _LINE.match(line.replace("*", "").replace("_", "").replace("`", ""))
        if match:
            said.setdefault(int(match.group(1)), set()).add(match.group(2).lower())
    return [
        next(iter(said[n])) if len(said.get(n, ())) == 1 else "unclear" for n in range(1, count + 1)
    ]


class AhaJudgeStep(LlmStep):
    name = "aha"
    # The text it judges is the rewrite's, else the distilled one: the caller selects the
    # samples and sets each one's parent to that text's result.
    needs_vision = False

    def __init__(self, template: str) -> None:
        super().__init__(template)
        self.prompt_sha = hashlib.sha256(template.encode()).hexdigest()[:16]

    def plan(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], max_pixels: int | None
    ) -> ChatRequest | Skip:
        hits = _hits(sample)
        if not hits:
            return Skip("no_hits", self._output([], [], "", preset, sample))
        listing = "\n".join(f"{n}. {hit['context']}" for n, hit in enumerate(hits, 1))
        prompt = render(
            self.template,
            {"question": sample.question.strip(), "count": str(len(hits)), "hits": listing},
        )
        return self.ask(sample, preset, params, prompt)

    def interpret(self, sample: ReadySample, reply: ChatReply, preset: Preset) -> Outcome:
        text = reply.final_text()  # a reasoning model may think inline
        if reply.finish_reason == "length":
            return Outcome("truncated", {"reply": text}, "length")
        hits = _hits(sample)
        verdicts = read_verdicts(text, len(hits))
        output = self._output(hits, verdicts, text, preset, sample)
        if hits and all(v == "unclear" for v in verdicts):
            return Outcome("rejected", output, "unclear")
        return Outcome("done", output)

    def _output(
        self,
        hits: list[dict[str, Any]],
        verdicts: list[str],
        reply: str,
        preset: Preset,
        sample: ReadySample,
    ) -> dict[str, Any]:
        return {
            "hits": [
                {"keyword": h["keyword"], "offset": h["offset"], "verdict": v}
                for h, v in zip(hits, verdicts, strict=True)
            ],
            "not_judged": (sample.parent_output or {}).get("not_judged", 0),
            # which hits were judged: the caller reuses a judgement only for the same ones
            "hits_sha": (sample.parent_output or {}).get("hits_sha"),
            **{verdict: verdicts.count(verdict) for verdict in VERDICTS},
            "reply": reply,
            "preset": preset.name,
            "model": preset.model,
            "prompt_sha": self.prompt_sha,
        }


def _hits(sample: ReadySample) -> list[dict[str, Any]]:
    return list((sample.parent_output or {}).get("hits") or [])
