"""The in-process backends: transformers with a tiny real Qwen2-VL, vLLM with a stand-in engine."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import png_bytes
from vlaa_data.errors import VlaaError
from vlaa_data.llm.local import TransformersBackend, VllmBackend
from vlaa_data.llm.reply import CallFailed, ChatReply
from vlaa_data.llm.request import ChatRequest, image_part

GREEDY = {"max_tokens": 5, "temperature": 0}


@pytest.fixture
def image(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes(size=(40, 30)))
    return image_part("ab" * 32, path, 40, 30)


@pytest.fixture(scope="module")
def backend(tiny_vlm: Path):
    backend = TransformersBackend(str(tiny_vlm), batch_size=8)
    yield backend
    asyncio.run(backend.aclose())


def ask(text: str, params: dict[str, Any], *parts: dict[str, Any]) -> ChatRequest:
    content = [*parts, {"type": "text", "text": text}] if parts else text
    return ChatRequest("tiny", [{"role": "user", "content": content}], dict(params))


def complete_all(backend, requests: list[ChatRequest]) -> list[ChatReply]:
    async def run() -> list[ChatReply]:
        return await asyncio.gather(*(backend.complete(r) for r in requests))

    return asyncio.run(run())


def test_transformers_batches_concurrent_requests(backend, image) -> None:
    requests = [
        ask("How many red circles?", GREEDY, image),
        ask("Describe the chart.", GREEDY),
        ChatRequest(
            "tiny",
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": [{"type": "text", "text": "Area of the triangle?"}]},
            ],
            dict(GREEDY),
        ),
    ]
    before = backend.batches
    replies = complete_all(backend, requests)
    assert backend.batches == before + 1
    for reply in replies:
        assert isinstance(reply.content, str)
        assert reply.reasoning is None
        # A random model rarely emits its EOS within five tokens.
        assert (reply.finish_reason, reply.tokens_out) == ("length", 5)
        assert reply.tokens_in > 0
        assert reply.raw["object"] == "chat.completion"
        assert reply.raw["model"] == backend.model
        assert reply.raw["choices"][0]["message"]["content"] == reply.content
        assert reply.raw["usage"]["completion_tokens"] == 5
    # The image's vision tokens count as prompt tokens.
    assert replies[0].tokens_in > len(backend._tokenizer("How many red circles?").input_ids) + 10
    # Greedy replies do not depend on what else was in the batch.
    alone = [complete_all(backend, [request])[0] for request in requests]
    assert [r.content for r in alone] == [r.content for r in replies]


def test_transformers_sampling_with_a_seed_repeats(backend) -> None:
    seeded = {"max_tokens": 8, "temperature": 1.0, "seed": 7}
    first, second = (complete_all(backend, [ask("hi", seeded)])[0] for _ in range(2))
    assert first.content == second.content
    greedy = [complete_all(backend, [ask("hi", GREEDY)])[0].content for _ in range(2)]
    assert greedy[0] == greedy[1]


def test_transformers_splits_batches_by_size_and_settings(tiny_vlm: Path) -> None:
    backend = TransformersBackend(str(tiny_vlm), batch_size=2)
    try:
        requests = [ask(f"question {i}", GREEDY) for i in range(3)]
        requests.append(ask("other settings", {"max_tokens": 2, "temperature": 0}))
        replies = complete_all(backend, requests)
        # [q0, q1] then [q2, other] split in two by their settings.
        assert backend.batches == 3
        assert [r.tokens_out for r in replies] == [5, 5, 5, 2]
    finally:
        asyncio.run(backend.aclose())


def test_transformers_generation_error_fails_the_batch_only(backend, monkeypatch) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend._model, "generate", broken)

    async def run() -> list[Any]:
        requests = [ask("a", GREEDY), ask("b", GREEDY)]
        return await asyncio.gather(
            *(backend.complete(r) for r in requests), return_exceptions=True
        )

    failures = asyncio.run(run())
    assert all(isinstance(f, CallFailed) and f.reason == "backend_error" for f in failures)
    assert "out of memory" in failures[0].detail
    monkeypatch.undo()
    assert complete_all(backend, [ask("a", GREEDY)])[0].tokens_out == 5


def test_transformers_unreadable_image_fails_its_request_only(backend, image) -> None:
    missing = image_part("cd" * 32, Path("/nonexistent/image.png"), 4, 4)

    async def run() -> list[Any]:
        requests = [ask("a", GREEDY, missing), ask("b", GREEDY, image)]
        return await asyncio.gather(
            *(backend.complete(r) for r in requests), return_exceptions=True
        )

    failed, replied = asyncio.run(run())
    assert isinstance(failed, CallFailed) and failed.reason == "image_unreadable"
    assert isinstance(replied, ChatReply) and replied.tokens_out == 5


def test_transformers_text_only_model(tiny_vlm: Path, tmp_path: Path, image) -> None:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    backend = TransformersBackend(str(tmp_path / "lm"))
    try:
        assert not backend._is_vlm
        reply = complete_all(backend, [ask("Describe the chart.", {"max_tokens": 3})])[0]
        assert reply.tokens_out == 3
        with pytest.raises(CallFailed) as failed:
            complete_all(backend, [ask("How many?", GREEDY, image)])
        assert failed.value.reason == "bad_request"
    finally:
        asyncio.run(backend.aclose())


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[Completion]


@dataclass
class StandInLLM:
    """Answers like ``vllm.LLM.chat`` and records each call."""

    model: str
    kwargs: dict[str, Any]
    calls: list[tuple[list[Any], list[Any]]] = field(default_factory=list)

    def chat(self, messages, sampling_params, use_tqdm=True) -> list[RequestOutput]:
        assert use_tqdm is False
        self.calls.append((messages, sampling_params))
        outputs = []
        for conversation, params in zip(messages, sampling_params, strict=True):
            text = conversation[-1]["content"]
            text = text if isinstance(text, str) else text[-1]["text"]
            # Three tokens, then EOS: "length" when max_tokens stops it first.
            produced = min(params.max_tokens, 3)
            finish_reason = "length" if params.max_tokens <= 3 else "stop"
            completion = Completion(f"echo {text}", list(range(produced)), finish_reason)
            outputs.append(RequestOutput(list(range(len(text))), [completion]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.LLM = lambda model, **kwargs: StandInLLM(model, kwargs)
    module.SamplingParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_vllm_batches_with_per_request_sampling(fake_vllm, image) -> None:
    backend = VllmBackend("org/tiny-vl", batch_size=3, max_pixels=100, gpu_memory_utilization=0.5)
    engine = backend._engine
    assert (engine.model, engine.kwargs) == ("org/tiny-vl", {"gpu_memory_utilization": 0.5})
    missing = image_part("cd" * 32, Path("/nonexistent/image.png"), 4, 4)
    requests = [
        ask("look", {"max_tokens": 4, "temperature": 0.6, "seed": 1}, image),
        ask("plain", {"temperature": 0}),
        ask("broken", {}, missing),
        ask("fourth", {"max_tokens": 2, "top_k": 20}),
    ]

    async def run() -> list[Any]:
        replies = await asyncio.gather(
            *(backend.complete(r) for r in requests), return_exceptions=True
        )
        await backend.aclose()
        return replies

    look, plain, broken, fourth = asyncio.run(run())
    # Three requests made the first batch, but the unreadable image never reached the engine.
    assert backend.batches == 2
    assert [len(messages) for messages, _ in engine.calls] == [2, 1]
    first_params = engine.calls[0][1]
    assert vars(first_params[0]) == {
        "max_tokens": 4,
        "temperature": 0.6,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "seed": 1,
    }
    assert (first_params[1].max_tokens, first_params[1].temperature) == (512, 0.0)
    assert vars(engine.calls[1][1][0])["top_k"] == 20
    image_content = engine.calls[0][0][0][0]["content"][0]
    assert image_content["type"] == "image_url"
    url = image_content["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.width * sent.height <= 100  # the backend's max_pixels applied

    assert (look.content, look.finish_reason, look.tokens_in, look.tokens_out) == (
        "echo look",
        "stop",
        4,
        3,
    )
    assert look.raw["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    assert (plain.finish_reason, plain.tokens_out) == ("stop", 3)
    assert isinstance(broken, CallFailed) and broken.reason == "image_unreadable"
    assert (fourth.finish_reason, fourth.tokens_out) == ("length", 2)


def test_vllm_engine_error_fails_the_batch_and_closed_backend_refuses(fake_vllm) -> None:
    class Broken:
        def chat(self, *args: Any, **kwargs: Any) -> None:
            raise ValueError("CUDA error")

    backend = VllmBackend("org/tiny-vl", engine=Broken())

    async def run() -> list[Any]:
        failures = await asyncio.gather(
            *(backend.complete(ask(t, {})) for t in "ab"), return_exceptions=True
        )
        await backend.aclose()
        with pytest.raises(CallFailed, match="closed"):
            await backend.complete(ask("c", {}))
        return failures

    failures = asyncio.run(run())
    assert [(f.reason, f.detail) for f in failures] == [
        ("backend_error", "ValueError: CUDA error")
    ] * 2
    assert backend.batches == 1


def test_vllm_aclose_fails_requests_in_flight_and_queued(fake_vllm) -> None:
    started, release = threading.Event(), threading.Event()

    class Slow:
        def chat(self, *args: Any, **kwargs: Any) -> list[RequestOutput]:
            started.set()
            release.wait(10)
            return []

    backend = VllmBackend("org/tiny-vl", batch_size=1, engine=Slow())

    async def run() -> list[Any]:
        calls = [asyncio.ensure_future(backend.complete(ask(t, {}))) for t in "ab"]
        await asyncio.to_thread(started.wait, 10)
        await backend.aclose()
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        failures = asyncio.run(run())
    finally:
        release.set()
    assert [(f.reason, f.detail) for f in failures] == [
        ("backend_error", "the backend was closed")
    ] * 2


def test_bad_sampling_params_are_a_bad_request(fake_vllm) -> None:
    backend = VllmBackend("org/tiny-vl")
    with pytest.raises(CallFailed) as failed:
        asyncio.run(backend.complete(ask("a", {"temperature": "hot"})))
    assert failed.value.reason == "bad_request"


def test_missing_packages_name_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(VlaaError, match=r"pip install 'vlaa-data\[gpu\]'"):
        VllmBackend("org/tiny-vl")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(VlaaError, match=r"pip install 'vlaa-data\[train\]'"):
        TransformersBackend("org/tiny-vl")


@pytest.mark.gpu
def test_transformers_on_cuda_in_bf16(tiny_vlm: Path, image) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    backend = TransformersBackend(str(tiny_vlm))
    try:
        assert backend._model.dtype == torch.bfloat16
        assert backend._model.device.type == "cuda"
        replies = complete_all(backend, [ask("How many?", GREEDY, image), ask("Hi", GREEDY)])
        assert [r.tokens_out for r in replies] == [5, 5]
    finally:
        asyncio.run(backend.aclose())
