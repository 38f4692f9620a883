"""The backend registry: a backend registered by name alone serves an LLM step, eval's
generation and the open-ended judge, and an unknown name's error lists the registered ones."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import query
from tests.evaluation.conftest import GOLD, hf_export  # noqa: F401 (a fixture)
from tests.llm.conftest import run_step
from vlaa_data.errors import SettingsError, VlaaError
from vlaa_data.evaluation import EvalOptions, GenerationSettings, run_eval
from vlaa_data.evaluation.generate import check_backend
from vlaa_data.llm.backend import Backend
from vlaa_data.llm.backends import (
    BACKENDS,
    BackendSpec,
    backend_help,
    backend_names,
    register_backend,
)
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.rewards.open_scorers import JudgeScorer, OpenCase
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.workspace import Workspace


def toy_answer(text: str) -> str:
    """A judge's grade, eval's gold answer in the R1 format, or a caption."""
    if "Answer to grade: " in text:
        return "7"
    question = re.search(r"Question (\w+):", text)
    if question:
        gold = next(g for key, g in GOLD.items() if key.endswith(f"/{question.group(1)}"))
        return f"<think>I can see it.</think><answer>{gold}</answer>"
    return "A toy caption."


class ToyBackend:
    """Answers every request from its text, in this process, and remembers what it saw."""

    name = "toy"

    def __init__(self, spec: BackendSpec, seen: list[ChatRequest]) -> None:
        self.spec = spec
        self.seen = seen

    async def complete(self, request: ChatRequest) -> ChatReply:
        self.seen.append(request)
        texts = []
        for message in request.messages:
            content = message["content"]
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(part.get("text", "") for part in content)
        content = toy_answer("\n".join(texts))
        raw = {"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}
        return ChatReply(content, None, "stop", tokens_in=10, tokens_out=3, raw=raw)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def toy() -> Iterator[list[ChatRequest]]:
    """Registers backend ``toy`` for one test; yields the requests it is sent."""
    seen: list[ChatRequest] = []

    @register_backend("toy", summary="a test's stand-in", in_process=True)
    def make_toy(spec: BackendSpec, on_retry: Callable[[str], None] | None) -> Backend:
        return ToyBackend(spec, seen)

    try:
        yield seen
    finally:
        del BACKENDS["toy"]


def test_a_registered_backend_runs_a_step_by_name(workspace: Path, toy: list) -> None:
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, open_source("synthetic", None, SourceOptions(limit=3, seed=1)), name="syn")

    report = run_step(workspace, "caption", backend="toy", model="toy-model")

    assert report.outcomes == {"done": 3} and report.backend == "toy"
    assert len(toy) == 3 and {request.model for request in toy} == {"toy-model"}
    rows = query(workspace, "SELECT DISTINCT output FROM current_results WHERE step = 'caption'")
    assert rows == [('{"caption": "A toy caption."}',)]
    assert query(workspace, "SELECT DISTINCT backend FROM llm_calls") == [("toy",)]


def test_a_registered_backend_runs_eval_by_name(
    hf_export: Path,  # noqa: F811
    tmp_path: Path,
    toy: list,
) -> None:
    settings = GenerationSettings(backend="toy", batch_size=2)
    output = tmp_path / "eval.jsonl"
    options = EvalOptions("toy-model", hf_export, limit=4, generation=settings, output=output)

    report = run_eval(options)

    assert len(toy) == 4 and report.overall.n == 4
    assert report.overall.mean_reward == 1.0  # the toy answers with the gold


def test_a_registered_backend_runs_the_judge_by_name(toy: list) -> None:
    judge = JudgeScorer.from_preset("toy-judge", backend="toy")
    cases = [OpenCase("What is it?", "an umbrella", "an umbrella")] * 2

    assert judge.score_many(cases) == [0.7, 0.7]
    assert judge.requests == 1  # identical requests are sent once
    assert toy[0].model == "toy-judge"


def test_an_unknown_backend_lists_the_registered_names(workspace: Path, toy: list) -> None:
    assert backend_names() == ("openai", "batch", "transformers", "vllm", "toy")
    assert "toy (a test's stand-in)" in backend_help()
    listed = "use one of openai, batch, transformers, vllm, toy"
    with pytest.raises(SettingsError, match=f"unknown backend 'nope'; {listed}$"):
        run_step(workspace, "caption", backend="nope", model="gpt-4o")
    with pytest.raises(VlaaError, match=f"unknown backend 'nope'; {listed}$"):
        check_backend(GenerationSettings(backend="nope"))
    with pytest.raises(VlaaError, match=f"unknown backend 'nope'; {listed}$"):
        JudgeScorer.from_preset("gpt-4o", backend="nope")


def test_registering_a_name_twice_fails(toy: list) -> None:
    with pytest.raises(ValueError, match="'toy' is registered twice"):
        register_backend("toy", summary="again")(lambda spec, on_retry: ToyBackend(spec, []))


def test_options_default_to_a_registered_backend() -> None:
    assert LlmOptions().backend in BACKENDS
    assert GenerationSettings().backend in BACKENDS
