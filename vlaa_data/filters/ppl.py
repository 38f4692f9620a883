"""The PPL filter: perplexity of each sample's assistant turn under one or more local VLMs.

A sample is the conversation an SFT export trains on (``chat_format``): the system prompt, the
user's image and question with its task instruction (``prompt_messages``, as the export
builds it), and the assistant's turn, ``assistant_text(reasoning, answer)`` (target
``response``) or the bare answer (target ``answer``). Its PPL is the exp of the mean negative
log-likelihood of the assistant tokens, everything the chat template writes after the
generation prompt, given the rest. Images are resized to at most ``max_pixels`` (default: the
paper's eval setting, as ``eval``). Each model writes score ``ppl:<model>`` (or
``ppl_answer:<model>``) of the sample's current text; ``samples_view.ppl`` averages the ``ppl:``
scores, the paper's average over models.

Samples go in batches sorted by length (longest first, so running out of memory shows at once),
and scores are written every few seconds and when the run stops: a rerun scores only what is
missing. Each conversation is tokenized once; for Qwen2-VL processors a batch's inputs are built
from those ids (``ppl_batches``), so that only the images go through the processor per batch.
A thread opens and processes the images of the next batch while the model runs; on a CPU too,
where a small model's forward pass leaves a core idle much of the time (``benchmarks/ppl.py``).
"""

from __future__ import annotations

import gc
import importlib.util
import math
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from vlaa_data import __version__
from vlaa_data.chat_format import assistant_text, prompt_messages
from vlaa_data.errors import VlaaError
from vlaa_data.filters.ppl_batches import can_splice, spliced_inputs
from vlaa_data.hf import (
    DEFAULT_MAX_PIXELS,
    load_model_and_processor,
    load_processor,
    require,
    set_max_pixels,
)
from vlaa_data.store.releases import ScoredText
from vlaa_data.store.shards import Shard
from vlaa_data.workspace import Workspace

__all__ = ["BACKENDS", "TARGETS", "ModelReport", "PplOptions", "PplReport", "run_ppl", "score_name"]

TARGETS = ("response", "answer")
BACKENDS = ("transformers", "vllm")
_VLLM_CHUNK = 256  # samples per vLLM call at least: it schedules its own batches
# A write costs ~10 ms whatever its size, a batch of a tiny model less: scores wait this long at
# most, so that an interrupted run loses only a few seconds of work.
_WRITE_SECONDS = 5.0


@dataclass
class PplOptions:
    """What ``vlaa-data filter ppl`` is asked to do; see the module docstring."""

    models: list[str] = field(default_factory=list)  # local folders or Hub ids
    target: str = "response"
    batch_size: int = 8
    sources: list[str] = field(default_factory=list)
    shard: Shard | None = None  # only the samples of this shard
    limit: int | None = None  # samples per model
    redo: bool = False  # score again samples that have a score of their current text
    backend: str = "transformers"
    device: str | None = None  # default: cuda when available, else cpu (transformers only)
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # per image, as eval; None: the model's own
    command: str | None = None


@dataclass
class ModelReport:
    """One model's counts; also what ``on_progress`` gets after each batch."""

    model: str
    score: str  # the score name written
    selected: int = 0
    scored: int = 0
    failed: int = 0
    tokens: int = 0  # assistant tokens scored
    load_seconds: float = 0.0
    seconds: float = 0.0  # scoring, after loading
    ppl_sum: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "ppl_sum"},
            "load_seconds": round(self.load_seconds, 3),
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens / self.seconds, 1) if self.seconds else None,
            "mean_ppl": self.ppl_sum / self.scored if self.scored else None,
        }


@dataclass
class PplReport:
    """A run: one ``ModelReport`` per model, and the samples that could not be scored."""

    run_id: str | None = None
    models: list[ModelReport] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)  # model, sample_id, reason
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "models": [m.to_dict() for m in self.models],
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
        }


class _Backend(NamedTuple):
    prepare: Callable[[list[_Item]], Any]  # in a thread: open images, process
    forward: Callable[[list[_Item], Any], list[float]]  # the mean NLL of each item
    processor: Any


@dataclass
class _Item:
    text: ScoredText
    full: str  # the whole conversation, as the chat template writes it
    ids: list[int]  # ``full`` tokenized, its image placeholder not yet widened
    targets: int  # tokens of the assistant turn: the last ``targets`` tokens of ``full``
    length: int  # tokens with the image's, to sort by


def score_name(model: str, target: str = "response") -> str:
    """``ppl:<model>`` or ``ppl_answer:<model>``; the model as given, less a trailing slash."""
    return f"{'ppl' if target == 'response' else 'ppl_answer'}:{str(model).rstrip('/')}"


def run_ppl(
    ws: Workspace,
    options: PplOptions,
    on_progress: Callable[[ModelReport], None] | None = None,
) -> PplReport:
    """Score every selected sample lacking a score of its current text, model by model."""
    _check(options)
    report = PplReport()
    settings = {k: v for k, v in asdict(options).items() if k != "command"}
    settings["shard"] = str(options.shard) if options.shard else None
    started = time.monotonic()
    with ws.store.run(options.command or "vlaa-data filter ppl", __version__, settings) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        try:
            for model in options.models:
                name = str(model).rstrip("/")
                stats = ModelReport(name, score_name(name, options.target))
                report.models.append(stats)
                _score_model(ws, options, report, stats, on_progress)
                _release_memory()
        finally:
            report.seconds = time.monotonic() - started
    return report


def _check(options: PplOptions) -> None:
    if not options.models:
        raise VlaaError("models: give at least one model")
    if options.target not in TARGETS:
        raise VlaaError(f"target: {options.target!r} is not one of {', '.join(TARGETS)}")
    if options.backend not in BACKENDS:
        raise VlaaError(f"backend: {options.backend!r} is not one of {', '.join(BACKENDS)}")
    if options.batch_size < 1:
        raise VlaaError(f"batch_size: must be at least 1, got {options.batch_size}")
    # A missing package fails now, not after the first model's samples were selected; vllm and
    # the train extra both bring transformers.
    module, extra = ("vllm", "gpu") if options.backend == "vllm" else ("torch", "train")
    if importlib.util.find_spec(module) is None:
        raise VlaaError(f"filter ppl needs {module}: pip install 'vlaa-data[{extra}]'")


def _score_model(
    ws: Workspace,
    options: PplOptions,
    report: PplReport,
    stats: ModelReport,
    on_progress: Callable[[ModelReport], None] | None,
) -> None:
    missing = None if options.redo else stats.score
    texts = ws.store.scored_texts(sources=options.sources, missing=missing, shard=options.shard)
    texts = texts[: options.limit]
    stats.selected = len(texts)
    if not texts:
        return
    started = time.monotonic()
    vllm = options.backend == "vllm"
    backend = (_vllm if vllm else _transformers)(stats.model, options, ws.root)
    stats.load_seconds = time.monotonic() - started

    def fail(item: _Item, reason: str) -> None:
        stats.failed += 1
        report.failures.append(
            {"model": stats.model, "sample_id": item.text.sample_id, "reason": reason}
        )

    items = _items(ws.root, texts, backend.processor, options.target, fail)
    items.sort(key=lambda item: -item.length)
    size = max(options.batch_size, _VLLM_CHUNK) if vllm else options.batch_size
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    rows: list[dict[str, Any]] = []
    written = time.monotonic()
    try:
        for scored in _scored_batches(batches, backend, fail):
            rows.extend(_score_rows(scored, options, report, stats))
            if time.monotonic() - written >= _WRITE_SECONDS:
                ws.store.write_scores(rows)
                rows, written = [], time.monotonic()
            stats.seconds = time.monotonic() - started - stats.load_seconds
            if on_progress is not None:
                on_progress(stats)
    finally:  # what was scored is kept, whether the run ends, fails or is interrupted
        ws.store.write_scores(rows)
        stats.seconds = time.monotonic() - started - stats.load_seconds


def _score_rows(
    scored: list[tuple[_Item, float]], options: PplOptions, report: PplReport, stats: ModelReport
) -> list[dict[str, Any]]:
    """The score rows of a batch's ``(item, mean NLL)``, counted into ``stats``."""
    rows = []
    for item, nll in scored:
        value = math.exp(min(nll, 700.0))  # a diverging model must not crash the run
        stats.scored, stats.tokens = stats.scored + 1, stats.tokens + item.targets
        stats.ppl_sum += value
        detail = {"tokens": item.targets, "nll": nll, "target": options.target}
        detail["model"] = stats.model
        detail["max_pixels"] = options.max_pixels
        rows.append(
            {
                "sample_id": item.text.sample_id,
                "name": stats.score,
                "value": value,
                "detail": detail,
                "result_id": item.text.result_id,
                "run_id": report.run_id,
            }
        )
    return rows


def _scored_batches(
    batches: list[list[_Item]], backend: _Backend, fail: Callable[[_Item, str], None]
) -> Iterator[list[tuple[_Item, float]]]:
    """``(item, mean NLL)`` of each batch; the next batch is prepared meanwhile."""

    def attempt(batch: list[_Item], prepared: Future | None = None) -> list[tuple[_Item, float]]:
        try:
            inputs = prepared.result() if prepared else backend.prepare(batch)
            return list(zip(batch, backend.forward(batch, inputs), strict=True))
        except Exception as exc:  # one bad sample must not sink its batch: try each alone
            if len(batch) > 1:
                return [scored for item in batch for scored in attempt([item])]
            fail(batch[0], f"{type(exc).__name__}: {exc}")
            return []

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlaa-ppl") as pool:
        pending = pool.submit(backend.prepare, batches[0]) if batches else None
        for index, batch in enumerate(batches):
            current, pending = pending, None
            if index + 1 < len(batches):
                pending = pool.submit(backend.prepare, batches[index + 1])
            yield attempt(batch, current)


def _release_memory() -> None:
    """Give the last model's GPU memory back before the next loads (collecting costs ~0.5 s)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _items(
    root: Path,
    texts: list[ScoredText],
    processor: Any,
    target: str,
    fail: Callable[[_Item, str], None],
) -> list[_Item]:
    """The conversations to score, with their lengths; a sample whose image is unreadable fails."""
    prompts, fulls = [], []
    for text in texts:
        reply = text.response.strip()
        reply = assistant_text(text.reasoning, reply) if target == "response" else reply
        messages = prompt_messages(text.question, text.reward_type)  # the export's prompt
        render = processor.apply_chat_template
        prompts.append(render(messages, tokenize=False, add_generation_prompt=True))
        messages.append({"role": "assistant", "content": reply})
        fulls.append(render(messages, tokenize=False))
    # The processor widens the image placeholder, which lies in the prompt: the assistant turn's
    # tokens are what the full text has beyond the prompt, counted on the text alone.
    tokenize = processor.tokenizer
    prompt_lengths = tokenize(prompts, add_special_tokens=False, return_length=True)["length"]
    full_ids = tokenize(fulls, add_special_tokens=False)["input_ids"]
    items, sizes = [], []
    for text, full, prompt, ids in zip(texts, fulls, prompt_lengths, full_ids, strict=True):
        item = _Item(text, full, ids, len(ids) - prompt, len(ids))
        if item.targets <= 0:  # a template that drops the assistant turn: nothing to score
            fail(item, "the chat template wrote no assistant tokens")
            continue
        try:
            with Image.open(root / text.image_path) as image:
                sizes.append((image.height, image.width))
        except (OSError, ValueError) as exc:
            fail(item, f"cannot open image {text.image_path}: {exc}")
            continue
        items.append(item)
    for item, count in zip(items, _image_tokens(processor, sizes), strict=True):
        item.length += count
    return items


def _image_tokens(processor: Any, sizes: list[tuple[int, int]]) -> list[int]:
    """How many tokens the processor makes of images of these (height, width); 0s when it does
    not say. One call for all: each call costs ~0.7 ms of keyword merging, whatever its size."""
    try:  # transformers' private helper, written for vLLM; only the sort order depends on it
        counts = processor._get_num_multimodal_tokens(image_sizes=sizes)["num_image_tokens"]
        return [int(count) for count in counts] if len(counts) == len(sizes) else [0] * len(sizes)
    except (AttributeError, NotImplementedError, TypeError, KeyError):
        return [0] * len(sizes)


def _open(root: Path, item: _Item) -> Image.Image:
    with Image.open(root / item.text.image_path) as image:
        return image.convert("RGB")


def _transformers(model_id: str, options: PplOptions, root: Path) -> _Backend:
    torch = require("torch", "train", "filter ppl")
    model, processor = load_model_and_processor(model_id, device=options.device)
    if not hasattr(processor, "image_processor"):
        raise VlaaError(f"{model_id} is not a vision-language model (no image processor)")
    set_max_pixels(processor, options.max_pixels)
    processor.tokenizer.padding_side = "right"
    splice = can_splice(processor)

    def prepare(batch: list[_Item]) -> Any:
        images = [_open(root, item) for item in batch]
        if splice:
            return spliced_inputs(processor, [item.ids for item in batch], images)
        return processor(
            text=[item.full for item in batch],
            images=images,
            padding=True,
            add_special_tokens=False,  # the chat template wrote them
            return_tensors="pt",
        )

    def forward(batch: list[_Item], inputs: Any) -> list[float]:
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        # Padding is on the right and attention causal: no token we score sees the padding, so
        # the mask changes nothing we read, and without it attention takes its fast causal path.
        ends = inputs.pop("attention_mask").sum(dim=1).tolist()
        starts = [end - item.targets for end, item in zip(ends, batch, strict=True)]
        first = min(starts) - 1  # the first position whose logits predict an assistant token
        with torch.inference_mode():
            logits = model(
                **inputs, use_cache=False, logits_to_keep=inputs["input_ids"].shape[1] - first
            ).logits
            nll = [
                torch.nn.functional.cross_entropy(
                    logits[row, start - 1 - first : end - 1 - first].float(),
                    inputs["input_ids"][row, start:end],
                )
                for row, (start, end) in enumerate(zip(starts, ends, strict=True))
            ]
            return torch.stack(nll).tolist()

    return _Backend(prepare, forward, processor)


def _vllm(model_id: str, options: PplOptions, root: Path) -> _Backend:
    vllm = require("vllm", "gpu", "filter ppl --backend vllm")
    processor = load_processor(model_id)
    set_max_pixels(processor, options.max_pixels)  # for the image token counts that sort
    engine_kwargs: dict[str, Any] = {}
    if options.max_pixels is not None:  # vLLM hands these to the model's HF processor
        engine_kwargs["mm_processor_kwargs"] = {"max_pixels": options.max_pixels}
    engine = vllm.LLM(model=model_id, enable_prefix_caching=False, **engine_kwargs)
    # Each prompt token's log-probability comes with its top alternative (vLLM always adds the
    # token itself); prefix caching is off above, as prompt log-probabilities need the full pass.
    params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=1)

    def prepare(batch: list[_Item]) -> list[dict[str, Any]]:
        return [
            {"prompt": item.full, "multi_modal_data": {"image": _open(root, item)}}
            for item in batch
        ]

    def forward(batch: list[_Item], prompts: list[dict[str, Any]]) -> list[float]:
        outputs = engine.generate(prompts, params, use_tqdm=False)
        nll = []
        for item, output in zip(batch, outputs, strict=True):
            ids = output.prompt_token_ids[-item.targets :]
            logprobs = output.prompt_logprobs[-item.targets :]
            total = sum(lp[t].logprob for lp, t in zip(logprobs, ids, strict=True))
            nll.append(-total / item.targets)
        return nll

    return _Backend(prepare, forward, processor)
