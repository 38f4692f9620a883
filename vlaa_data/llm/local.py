"""In-process backends: a Hugging Face transformers model, or a vLLM engine, in this process.

Both batch on their own: ``complete`` puts its request on a queue and awaits a future; one worker
takes up to ``batch_size`` queued requests, runs one batched generation in a dedicated thread (so
the event loop stays free), and resolves the futures. The pipeline's engine, which awaits up to
``concurrency`` calls at once, thereby fills the batches without knowing about them.

A request's ``params`` are its whole sampling spec, as for ``vllm.SamplingParams``: what it does
not set takes OpenAI's defaults (temperature 1, top_p 1), never the model's
``generation_config``, so the two backends sample alike. Read are ``max_tokens`` (default 512),
``temperature`` (0: greedy), ``top_p``, ``top_k``, ``repetition_penalty`` and ``seed``.

Replies carry an OpenAI-shaped ``chat.completion`` body in ``raw``, so the ledger stores one
shape whichever backend ran. Inline ``<think>`` stays in the content for the caller to split.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import io
import time
import uuid
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from vlaa_data.errors import VlaaError
from vlaa_data.hf import load_model_and_processor, require, set_max_pixels
from vlaa_data.llm.image_encoding import encode_data_url
from vlaa_data.llm.reply import CallFailed, ChatReply, parse_completion
from vlaa_data.llm.request import ChatRequest, ImagePart

__all__ = ["TransformersBackend", "VllmBackend"]

DEFAULT_MAX_TOKENS = 512

_Queued = tuple[ChatRequest, Hashable, "asyncio.Future[ChatReply]"]


class _BatchingBackend:
    """The queue, worker and futures both backends share.

    Subclasses implement ``_prepare`` (one request, in the worker thread) and ``_run`` (one
    batched generation).
    """

    name = "local"

    def __init__(self, model: str, batch_size: int, max_pixels: int | None) -> None:
        if batch_size < 1:
            raise VlaaError(f"batch_size: must be at least 1, got {batch_size}")
        self.model = str(model)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        # How many batched generations ran: tests assert batching with it, reports may show it.
        self.batches = 0
        # One thread runs every generation: the engines are not thread-safe, and vLLM's engine
        # client is meant to stay on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vlaa-{self.name}")
        self._queue: asyncio.Queue[_Queued] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def complete(self, request: ChatRequest) -> ChatReply:
        if self._closed:
            raise CallFailed("backend_error", f"the {self.name} backend is closed")
        try:
            key = self._batch_key(request)
        except (TypeError, ValueError) as exc:
            raise CallFailed("bad_request", f"invalid sampling params: {exc}") from None
        future: asyncio.Future[ChatReply] = asyncio.get_running_loop().create_future()
        self._ensure_worker().put_nowait((request, key, future))
        return await future

    async def aclose(self) -> None:
        """Fail whatever is still queued or running, and let go of the model."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            if worker.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        while self._queue is not None and not self._queue.empty():
            _, _, future = self._queue.get_nowait()
            _fail(future, "the backend was closed")
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._release()

    def _batch_key(self, request: ChatRequest) -> Hashable:
        """Requests with equal keys may share a generation."""
        return None

    def _prepare(self, request: ChatRequest) -> Any:
        """Turn one request into what the engine takes; raise CallFailed if it cannot be."""
        raise NotImplementedError

    def _run(self, requests: list[ChatRequest], prepared: list[Any]) -> list[ChatReply]:
        """One batched generation over prepared requests; one reply each, in order."""
        raise NotImplementedError

    def _generate(self, requests: list[ChatRequest]) -> list[ChatReply | CallFailed]:
        """Run one batch (in the worker thread); a request that cannot be prepared fails alone."""
        results: list[ChatReply | CallFailed | None] = [None] * len(requests)
        rows, ready, prepared = [], [], []
        for index, request in enumerate(requests):
            try:
                prepared.append(self._prepare(request))
            except CallFailed as exc:
                results[index] = exc
                continue
            except Exception as exc:
                results[index] = CallFailed("backend_error", f"{type(exc).__name__}: {exc}")
                continue
            rows.append(index)
            ready.append(request)
        if ready:
            for index, reply in zip(rows, self._run(ready, prepared), strict=True):
                results[index] = reply
        return results  # type: ignore[return-value]

    def _image_cap(self, request: ChatRequest) -> int | None:
        return request.max_pixels if request.max_pixels is not None else self.max_pixels

    def _release(self) -> None:
        """Drop the model or engine."""

    def _ensure_worker(self) -> asyncio.Queue[_Queued]:
        # A backend may outlive an event loop (``asyncio.run`` twice): start afresh in a new one.
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue))
        assert self._queue is not None
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Queued]) -> None:
        while True:
            pending = [await queue.get()]
            while len(pending) < self.batch_size and not queue.empty():
                pending.append(queue.get_nowait())
            groups: dict[Hashable, list[_Queued]] = {}
            for item in pending:
                groups.setdefault(item[1], []).append(item)
            try:
                for group in groups.values():
                    live = [(request, future) for request, _, future in group if not future.done()]
                    if live:
                        await self._run_batch(live)
            except asyncio.CancelledError:
                for _, _, future in pending:
                    _fail(future, "the backend was closed")
                raise

    async def _run_batch(self, live: list[tuple[ChatRequest, asyncio.Future[ChatReply]]]) -> None:
        loop = asyncio.get_running_loop()
        requests = [request for request, _ in live]
        self.batches += 1
        started = time.monotonic()
        try:
            results = await loop.run_in_executor(self._executor, self._generate, requests)
            if len(results) != len(requests):
                raise RuntimeError(f"{len(results)} results for {len(requests)} requests")
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            results = [CallFailed("backend_error", detail) for _ in requests]
        latency = time.monotonic() - started
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, CallFailed):
                future.set_exception(result)
            else:
                result.latency_s = latency
                future.set_result(result)


class TransformersBackend(_BatchingBackend):
    """A Hugging Face model (VLM or text-only) generating in this process with ``generate``.

    ``model`` is a local folder or Hub id, loaded by ``vlaa_data.hf.load_model_and_processor``
    on ``device`` in ``dtype`` (defaults: CUDA in bf16 when available, else CPU in float32).
    Batches are left-padded; requests with different sampling settings go in separate
    batches. A ``seed`` seeds torch before its batch, so a sampled reply also depends on what
    else is in the batch; greedy replies (temperature 0) do not, beyond padding. Images are
    downscaled to the request's ``max_pixels``, else the backend's; ``processor_max_pixels``
    sets the processor's own resizing limit instead (Qwen2-VL's ``max_pixels``), which resizes
    once, as the model was trained.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
        max_pixels: int | None = None,
        processor_max_pixels: int | None = None,
    ) -> None:
        self._torch = require("torch", "train", "the transformers backend")
        require("transformers", "train", "the transformers backend")
        super().__init__(model, batch_size, max_pixels)
        self._model, self._processor = load_model_and_processor(model, device=device, dtype=dtype)
        set_max_pixels(self._processor, processor_max_pixels)
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer
        self._is_vlm = self._processor is not tokenizer
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = self._model.generation_config.pad_token_id
        self._pad_id = pad if pad is not None else tokenizer.pad_token_id

    def _batch_key(self, request: ChatRequest) -> Hashable:
        return tuple(sorted(_sampling(request.params).items()))

    def _prepare(self, request: ChatRequest) -> tuple[str, list[Image.Image]]:
        cap = self._image_cap(request)
        images: list[Image.Image] = []

        def to_pil(part: ImagePart) -> dict[str, Any]:
            images.append(_pil_image(part, cap))
            return {"type": "image"}

        messages = _convert_images(request.messages, to_pil)
        if not self._is_vlm:
            if images:
                raise CallFailed(
                    "bad_request", f"{self.model} is a text-only model and the request has images"
                )
            # Text-only chat templates expect a string, as vLLM's "string" content format gives.
            messages = [{**m, "content": _joined_text(m.get("content"))} for m in messages]
        prompt = self._processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return prompt, images

    def _run(
        self, requests: list[ChatRequest], prepared: list[tuple[str, list[Image.Image]]]
    ) -> list[ChatReply]:
        torch = self._torch
        sampling = _sampling(requests[0].params)  # the same for the batch: see _batch_key
        prompts = [prompt for prompt, _ in prepared]
        images = [image for _, request_images in prepared for image in request_images]
        extra = {"images": images} if images else {}
        # The chat template wrote the special tokens already.
        inputs = self._processor(
            text=prompts, padding=True, add_special_tokens=False, return_tensors="pt", **extra
        ).to(self._model.device)
        settings: dict[str, Any] = {"do_sample": sampling["temperature"] > 0}
        if settings["do_sample"]:
            # Set even at their "off" values, or the model's generation_config fills them in.
            settings.update(
                temperature=sampling["temperature"],
                top_p=sampling["top_p"],
                top_k=sampling["top_k"],
            )
        if sampling["seed"] is not None:
            torch.manual_seed(sampling["seed"])
        with torch.inference_mode():
            output = self._model.generate(
                **inputs,
                **settings,
                max_new_tokens=sampling["max_tokens"],
                repetition_penalty=sampling["repetition_penalty"],
                pad_token_id=self._pad_id,
                eos_token_id=sorted(self._eos_ids),
            )
        prompt_length = inputs["input_ids"].shape[1]
        tokens_in = inputs["attention_mask"].sum(dim=1).tolist()
        replies = []
        for row, new_tokens in enumerate(output[:, prompt_length:].tolist()):
            end = next((i for i, t in enumerate(new_tokens) if t in self._eos_ids), None)
            if end is None:
                finish_reason, kept, tokens_out = "length", new_tokens, len(new_tokens)
            else:
                finish_reason, kept, tokens_out = "stop", new_tokens[:end], end + 1
            text = self._tokenizer.decode(kept, skip_special_tokens=True)
            replies.append(_reply(self.model, text, finish_reason, int(tokens_in[row]), tokens_out))
        return replies

    def _release(self) -> None:
        on_cuda = str(self._model.device).startswith("cuda") if self._model is not None else False
        self._model = self._processor = self._tokenizer = None
        gc.collect()
        if on_cuda:
            self._torch.cuda.empty_cache()


class VllmBackend(_BatchingBackend):
    """A vLLM engine in this process: ``vllm.LLM(model=model, **engine_kwargs)``.

    Each batch is one ``LLM.chat`` call with one ``SamplingParams`` per request, so requests
    with different settings share batches and a ``seed`` gives the same reply whatever the
    batch. Images go as ``image_url`` data URLs, downscaled to the request's ``max_pixels``,
    else the backend's. ``engine`` passes an engine built elsewhere (anything with vLLM's
    ``chat`` signature) instead of building one.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 256,
        max_pixels: int | None = None,
        engine: Any = None,
        **engine_kwargs: Any,
    ) -> None:
        vllm = require("vllm", "gpu", "the vllm backend")
        super().__init__(model, batch_size, max_pixels)
        self._sampling_params = vllm.SamplingParams
        self._engine = engine if engine is not None else vllm.LLM(model=model, **engine_kwargs)

    def _batch_key(self, request: ChatRequest) -> Hashable:
        _sampling(request.params)  # refuse bad params in ``complete``, not in the batch
        return None

    def _run(self, requests: list[ChatRequest], prepared: list[Any]) -> list[ChatReply]:
        sampling_params = [self._sampling_params_for(request.params) for request in requests]
        outputs = self._engine.chat(prepared, sampling_params, use_tqdm=False)
        replies = []
        for output in outputs:
            completion = output.outputs[0]
            replies.append(
                _reply(
                    self.model,
                    completion.text,
                    completion.finish_reason,
                    len(output.prompt_token_ids or ()),
                    len(completion.token_ids),
                )
            )
        return replies

    def _prepare(self, request: ChatRequest) -> list[dict[str, Any]]:
        cap = self._image_cap(request)

        def to_url(part: ImagePart) -> dict[str, Any]:
            return {"type": "image_url", "image_url": {"url": encode_data_url(part, cap)}}

        return _convert_images(request.messages, to_url)

    def _sampling_params_for(self, params: dict[str, Any]) -> Any:
        sampling = _sampling(params)
        top_k = sampling.pop("top_k")
        if top_k:  # vLLM's "off" has been -1, then 0 too: leave it at its default
            sampling["top_k"] = top_k
        return self._sampling_params(**sampling)

    def _release(self) -> None:
        self._engine = None
        gc.collect()


def _sampling(params: dict[str, Any]) -> dict[str, Any]:
    """The sampling settings of ``params``, OpenAI's defaults for what they leave out."""

    def get(key: str, default: Any) -> Any:
        value = params.get(key)
        return default if value is None else value

    seed = params.get("seed")
    return {
        "max_tokens": int(
            params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        ),
        "temperature": float(get("temperature", 1.0)),
        "top_p": float(get("top_p", 1.0)),
        "top_k": int(get("top_k", 0)),
        "repetition_penalty": float(get("repetition_penalty", 1.0)),
        "seed": None if seed is None else int(seed),
    }


def _convert_images(
    messages: list[dict[str, Any]], convert: Callable[[ImagePart], dict[str, Any]]
) -> list[dict[str, Any]]:
    """``messages`` with each image part replaced by ``convert(part)``."""
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [convert(p["image"]) if p.get("type") == "image" else p for p in content]
        converted.append({**message, "content": content})
    return converted


def _joined_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content or ""


def _pil_image(part: ImagePart, max_pixels: int | None) -> Image.Image:
    """The image as the HTTP backend would send it (``encode_data_url``), decoded to RGB."""
    url = encode_data_url(part, max_pixels)
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _reply(
    model: str, content: str, finish_reason: str | None, tokens_in: int, tokens_out: int
) -> ChatReply:
    """A reply whose ``raw`` is the chat.completion body an OpenAI-compatible server sends."""
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }
    return parse_completion(body)


def _fail(future: asyncio.Future[ChatReply], detail: str) -> None:
    if not future.done():
        future.set_exception(CallFailed("backend_error", detail))
