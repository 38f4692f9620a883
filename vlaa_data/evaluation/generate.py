"""Generating one completion per row with the backends the pipeline's LLM steps use.

Any registered backend serves (``vlaa_data.llm.backends``): ``transformers`` and ``vllm`` run
the model in this process and batch on their own (``vlaa_data.llm.local``); ``openai`` sends
each row to an OpenAI-compatible endpoint, such as a checkpoint served with ``vllm serve``
(``vlaa_data.llm.http``). The prompt is the export's own (RECIPE.md's system prompt, then the
image and the question), so a model is evaluated on exactly what it was trained to answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vlaa_data.errors import VlaaError
from vlaa_data.evaluation.data import EvalRow
from vlaa_data.hf import DEFAULT_MAX_PIXELS, adapter_base
from vlaa_data.llm.backend import Backend
from vlaa_data.llm.backends import BackendSpec, backend_kind, endpoint_for, make_backend
from vlaa_data.llm.fanout import complete_all
from vlaa_data.llm.presets import load_presets
from vlaa_data.llm.reply import CallFailed
from vlaa_data.llm.request import ChatRequest, image_part

__all__ = [
    "Generation",
    "GenerationSettings",
    "check_backend",
    "generate",
    "open_backend",
    "request_for",
]


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are generated. Temperature 0 is greedy: a rerun gives the same text.

    ``batch_size`` is the rows per batched generation for in-process backends and the
    requests in flight for ``openai``; ``dtype`` applies to in-process models, ``device`` to
    ``transformers`` (vLLM places its engine itself). ``max_pixels`` caps each image: the
    in-process model's processor resizes to it (Qwen2-VL's ``max_pixels``), and images sent
    to an endpoint are downscaled to it; None leaves the model's own limit.
    """

    backend: str = "transformers"
    batch_size: int = 8
    max_new_tokens: int = 2048
    temperature: float = 0.0
    device: str | None = None
    dtype: str | None = None
    base_url: str | None = None
    timeout_s: float = 600.0
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def params(self) -> dict[str, Any]:
        return {"max_tokens": self.max_new_tokens, "temperature": self.temperature}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Generation:
    """One row's completion; ``error`` says why there is none (the backend gave up)."""

    completion: str
    reasoning: str | None = None  # a separate reasoning field, when the endpoint sends one
    finish_reason: str | None = None
    tokens_out: int | None = None
    error: str | None = None


def check_backend(settings: GenerationSettings) -> None:
    """Fail now, before data or model are loaded, when the backend's packages are missing."""
    kind = backend_kind(settings.backend)
    kind.refuse_deferred("eval")
    kind.check()
    if not kind.in_process and not settings.base_url:
        raise VlaaError(
            f"the {kind.name} backend needs --base-url (the endpoint serving the model)"
        )
    for name, value, least in (
        ("batch_size", settings.batch_size, 1),
        ("max_new_tokens", settings.max_new_tokens, 1),
        ("temperature", settings.temperature, 0),
        ("max_pixels", 1 if settings.max_pixels is None else settings.max_pixels, 1),
    ):
        if value < least:
            raise VlaaError(f"{name}: must be at least {least}, got {value}")


def open_backend(model: str, settings: GenerationSettings) -> tuple[Backend, str]:
    """The backend that generates with ``model``, and the model name its requests carry."""
    if settings.backend == "vllm" and adapter_base(model) is not None:
        raise VlaaError(
            f"{model} is a LoRA adapter: evaluate it with --backend transformers, or train "
            "with --merge and evaluate the merged model with vllm"
        )
    check_backend(settings)
    in_process = backend_kind(settings.backend).in_process
    endpoint = endpoint_for(settings.backend, model, load_presets(), base_url=settings.base_url)
    spec = BackendSpec(
        kind=settings.backend,
        endpoint=endpoint,
        timeout_s=settings.timeout_s,
        max_retries=6,
        # An in-process model's processor resizes once, as the model was trained; an endpoint
        # gets images already downscaled.
        max_pixels=None if in_process else settings.max_pixels,
        batch_size=settings.batch_size,
        device=settings.device,
        dtype=settings.dtype,
        processor_max_pixels=settings.max_pixels,
    )
    try:
        return make_backend(spec), endpoint.preset.model
    except ValueError as exc:  # a base URL that is not http(s)
        raise VlaaError(str(exc)) from None


def request_for(row: EvalRow, model: str, params: dict[str, Any]) -> ChatRequest:
    """The export's prompt as a ChatRequest: the image part points at the row's image file.

    A message of text parts only becomes a string, which every chat template reads (text-only
    templates take nothing else).
    """
    width, height = row.image_size
    messages = []
    for message in row.prompt:
        parts = []
        for part in message["content"]:
            if part.get("type") == "image":
                parts.append(image_part(row.image_sha, row.image_path, width, height))
            else:
                parts.append({"type": "text", "text": part.get("text") or ""})
        if all(p["type"] == "text" for p in parts):
            messages.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
        else:
            messages.append({"role": message["role"], "content": parts})
    return ChatRequest(model=model, messages=messages, params=dict(params), sample_id=row.id)


def generate(
    rows: Sequence[EvalRow],
    backend: Backend,
    model: str,
    settings: GenerationSettings,
    on_done: Callable[[int, int], None] | None = None,
) -> list[Generation]:
    """One completion per row, in row order; ``on_done(finished, total)`` after each.

    The backend is closed at the end (it frees the model): one backend serves one evaluation.
    """
    # In-process backends batch what is queued: keep a second batch waiting while one runs.
    in_flight = settings.batch_size * (2 if backend_kind(settings.backend).in_process else 1)
    params = settings.params()
    requests = [request_for(row, model, params) for row in rows]
    replies = complete_all(backend, requests, concurrency=in_flight, on_done=on_done)
    return [
        Generation("", error=str(reply))
        if isinstance(reply, CallFailed)
        else Generation(reply.content, reply.reasoning, reply.finish_reason, reply.tokens_out)
        for reply in replies
    ]
