"""Scorers for open-ended answers, where no rule can compare answer and reference.

Two kinds, one interface (``score_many`` over ``OpenCase``s, a float in [0, 1] or None each):

- ``JudgeScorer``: an LLM, through any preset and registered backend, grades the answer
  against the reference from 0 to 10 (``prompts/judge_score.md``); the grade divided by 10 is
  the score.
  A reply that is not a whole number from 0 to 10 gives None (no reward), never a guess.
- ``RewardModelScorer``: the paper's formula over a reward model S that scores a response to a
  question: ``1 - exp(-beta * (S(pred) - S(ref)))`` when ``S(pred) > S(ref)``, else 0. Any
  object with ``scores(cases) -> list[float]`` is a reward model; ``TransformersRewardModel``
  loads a sequence-classification checkpoint (the usual reward-model format) when first used.

A scorer is also a ``Scorer`` (``scorer(answer, gold, image_size=...)``) for one answer
without its question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vlaa_data.answers import split_reasoning
from vlaa_data.errors import VlaaError
from vlaa_data.hf import require, resolve_device
from vlaa_data.llm.backends import BackendSpec, backend_kind, endpoint_for, make_backend
from vlaa_data.llm.fanout import complete_all
from vlaa_data.llm.presets import load_presets
from vlaa_data.llm.reply import CallFailed
from vlaa_data.llm.request import ChatRequest
from vlaa_data.llm.templates import load_template, render

__all__ = [
    "JudgeScorer",
    "OpenCase",
    "OpenScorer",
    "RewardModel",
    "RewardModelScorer",
    "TransformersRewardModel",
    "open_scorer_from",
    "read_grade",
]

_GRADE = re.compile(r"^[\s*_`\"']*(\d{1,2})(?:\s*/\s*10)?[\s*_`\"'.]*$")


@dataclass(frozen=True)
class OpenCase:
    question: str
    answer: str  # the extracted final answer
    gold: str


class OpenScorer(Protocol):
    def score_many(self, cases: Sequence[OpenCase]) -> list[float | None]: ...


class _SingleCall:
    """``scorer(answer, gold)``: the ``Scorer`` signature, one case without a question."""

    def score_many(self, cases: Sequence[OpenCase]) -> list[float | None]:
        raise NotImplementedError

    def __call__(
        self, answer: str, gold: str, *, image_size: tuple[int, int] | None = None
    ) -> float | None:
        return self.score_many([OpenCase("", answer, gold)])[0]


def read_grade(reply: str) -> float | None:
    """A 0-10 grade ("7", "**7**", "7/10") as a score in [0, 1]; None for anything else."""
    match = _GRADE.match(reply)
    if match is None or int(match.group(1)) > 10:
        return None
    return int(match.group(1)) / 10


def open_scorer_from(
    judge: str | None = None,
    *,
    base_url: str | None = None,
    reward_model: str | None = None,
    beta: float = 1.0,
) -> JudgeScorer | RewardModelScorer | None:
    """The open-ended scorer the options name: a judge preset, a reward-model checkpoint, or
    neither (None: open-ended rows get no reward). ``reward``, ``train grpo`` and ``eval``
    take the same options."""
    if judge and reward_model:
        raise VlaaError("pass a judge or a reward model for open-ended rows, not both")
    if judge:
        return JudgeScorer.from_preset(judge, base_url=base_url)
    if reward_model:
        return RewardModelScorer(TransformersRewardModel(reward_model), beta=beta)
    return None


class JudgeScorer(_SingleCall):
    """Grades with an LLM; requests run concurrently and identical ones are sent once."""

    def __init__(
        self,
        spec: BackendSpec,
        *,
        template: str,
        params: dict[str, Any] | None = None,
        concurrency: int = 16,
    ) -> None:
        self.spec = spec
        self.template = template
        self.params = dict(params or {})
        self.concurrency = concurrency
        self.requests = 0
        self._cache: dict[str, float | None] = {}

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        presets: dict[str, Any] | None = None,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        backend: str = "openai",
    ) -> JudgeScorer:
        """A judge through preset (or raw model id) ``name`` on ``backend`` (a registered
        name); fails at once without its key."""
        backend_kind(backend).refuse_deferred("the judge of open-ended answers")
        endpoint = endpoint_for(backend, name, load_presets(presets), base_url=base_url)
        spec = BackendSpec(
            kind=backend, endpoint=endpoint, timeout_s=timeout_s, max_retries=6, max_pixels=None
        )
        params = {**endpoint.preset.params, "max_tokens": 16}
        if endpoint.preset.reasoning != "none":
            params.pop("max_tokens")  # a reasoning model needs room to think first
        return cls(spec, template=load_template("judge_score"), params=params)

    def score_many(self, cases: Sequence[OpenCase]) -> list[float | None]:
        requests = [
            ChatRequest(
                model=self.spec.endpoint.preset.model,
                messages=[{"role": "user", "content": render(self.template, _values(case))}],
                params=self.params,
            )
            for case in cases
        ]
        keys = [request.key() for request in requests]
        todo = {
            key: request
            for key, request in zip(keys, requests, strict=True)
            if key not in self._cache
        }
        replies = complete_all(
            make_backend(self.spec), list(todo.values()), concurrency=self.concurrency
        )
        for key, reply in zip(todo, replies, strict=True):
            if isinstance(reply, CallFailed):
                continue  # not cached: a later batch may ask again
            self.requests += 1
            text = reply.content
            if "</think>" in text:
                text = split_reasoning(text)[1]
            self._cache[key] = None if reply.finish_reason == "length" else read_grade(text)
        return [self._cache.get(key) for key in keys]


def _values(case: OpenCase) -> dict[str, str]:
    return {
        "question": case.question.strip() or "(not given)",
        "gold": case.gold.strip(),
        "answer": case.answer.strip(),
    }


class RewardModel(Protocol):
    def scores(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """S for each ``(question, response)``."""
        ...


class RewardModelScorer(_SingleCall):
    """The paper's open-ended reward: how far the answer's score exceeds the reference's."""

    def __init__(self, model: RewardModel, *, beta: float = 1.0) -> None:
        if beta <= 0:
            raise ValueError("beta must be > 0")
        self.model = model
        self.beta = beta

    def score_many(self, cases: Sequence[OpenCase]) -> list[float | None]:
        if not cases:
            return []
        items = [(c.question, c.answer) for c in cases] + [(c.question, c.gold) for c in cases]
        values = self.model.scores(items)
        predicted, reference = values[: len(cases)], values[len(cases) :]
        return [self.reward(p, r) for p, r in zip(predicted, reference, strict=True)]

    def reward(self, predicted: float, reference: float) -> float:
        gap = predicted - reference
        return 1.0 - math.exp(-self.beta * gap) if gap > 0 else 0.0


class TransformersRewardModel:
    """A sequence-classification reward model (one logit per text), loaded on first use.

    The text is the tokenizer's chat template over a user turn (question) and an assistant
    turn (response) when it has one, else question and response on two lines.
    """

    def __init__(self, path: str, *, batch_size: int = 8, device: str | None = None) -> None:
        self.path = path
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        require("torch", "train", "a reward model")
        transformers = require("transformers", "train", "a reward model")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.path)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(self.path)
        except OSError as exc:
            raise VlaaError(f"reward model {self.path}: {exc}") from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model = model.to(resolve_device(self.device)).eval()
        self._tokenizer = tokenizer

    def text(self, question: str, response: str) -> str:
        if self._tokenizer is None:
            self._load()
        if self._tokenizer.chat_template:
            messages = [
                {"role": "user", "content": question},
                {"role": "assistant", "content": response},
            ]
            return self._tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{question}\n{response}"

    def scores(self, items: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        texts = [self.text(question, response) for question, response in items]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[start : start + self.batch_size], return_tensors="pt", padding=True
            ).to(self._model.device)
            with torch.no_grad():
                logits = self._model(**batch).logits
            out.extend(float(value) for value in logits[:, 0])
        return out
