"""Throughput of the PPL filter: batched, length-sorted scoring against a per-sample loop.

    python benchmarks/ppl.py                          # the tiny test model, 200 samples, CPU
    python benchmarks/ppl.py --hidden 1024 --layers 8 --max-pixels 200704 --batch-sizes 8 16

A workspace of N imported samples (reasoning of 3 to 300 words, images of 28 to 448 pixels a
side, so both text and image tokens vary) is scored by a random Qwen2-VL: the tiny test model
(``vlaa_data.testing.tiny_vlm``), or one made larger with ``--hidden``, ``--layers`` and
``--max-pixels`` (the image processor's cap). Figures are assistant tokens scored per second,
after loading and one warm-up run, for:

- a per-sample loop: each sample in id order through the processor and a full forward pass,
  loss masked to the assistant tokens (what one writes without batching);
- ``run_ppl`` with batch size 1, and with each of ``--batch-sizes`` (length-sorted batches,
  images of the next batch processed in a thread, scores written to the workspace);
- a bare forward pass at batch size 1 and at each of ``--batch-sizes``: the same batches as
  ``run_ppl``'s, processed and moved to the device beforehand, only the model call timed (the
  same call: no mask, same ``logits_to_keep``).

The bare forward bounds what any batching can give: ``run_ppl`` still makes that model call, so
its ratio to the loop cannot pass the bare forward's, printed as the ceiling.

Goals: ``run_ppl`` batched >= 5x the per-sample loop on CPU; >= 80% of the bare forward on CUDA.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from vlaa_data.chat_format import SYSTEM_PROMPT, assistant_text
from vlaa_data.filters.ppl import PplOptions, run_ppl
from vlaa_data.workspace import Workspace, init_workspace

_TEXT = (
    "count the red cubes one by one then check again wait the chart shows sales by year so "
    "the highest bar is taller hmm compare area of the triangle base height half answer is"
)


def build_model(folder: Path, hidden: int, layers: int, max_pixels: int) -> Path:
    """The tiny test model, or a random one of its kind with a wider, deeper text model."""
    import torch
    import transformers

    from vlaa_data.hf import load_processor
    from vlaa_data.testing.tiny_vlm import build_tiny_qwen2vl

    build_tiny_qwen2vl(folder)
    if (hidden, layers, max_pixels) == (64, 2, 112 * 112):
        return folder
    config = transformers.AutoConfig.from_pretrained(folder).to_dict()
    heads = max(4, hidden // 64)
    head_dim = hidden // heads
    text = {k: v for k, v in config.pop("text_config").items() if k != "layer_types"}
    text.update(
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(2, heads // 4),
    )
    # The rotary sections split head_dim / 2 over (time, height, width) as Qwen2-VL's do.
    text["rope_parameters"]["mrope_section"] = [head_dim // 8] + [3 * head_dim // 16] * 2
    vision = config.pop("vision_config")
    vision["hidden_size"] = hidden  # the merger's output feeds the text model
    keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    torch.manual_seed(0)
    model = transformers.Qwen2VLForConditionalGeneration(
        transformers.Qwen2VLConfig(
            text_config=text, vision_config=vision, **{k: config[k] for k in keys}
        )
    )
    model.save_pretrained(folder)
    processor = load_processor(folder)
    image_processor = transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels)
    type(processor)(
        image_processor=image_processor,
        tokenizer=processor.tokenizer,
        chat_template=processor.chat_template,
    ).save_pretrained(folder)
    return folder


def build_workspace(folder: Path, samples: int, seed: int = 0) -> Path:
    from vlaa_data.sources import SourceOptions, open_source
    from vlaa_data.steps.collect import collect

    rng = random.Random(seed)
    words_pool = _TEXT.split(" ")
    images = folder / "source_images"
    images.mkdir(parents=True)
    records = []
    for i in range(samples):
        size = (rng.randint(28, 448), rng.randint(28, 448))
        Image.new("RGB", size, (i % 256, i // 256, rng.randint(0, 255))).save(images / f"{i}.png")
        words = int(rng.lognormvariate(3.5, 1.0))
        reasoning = " ".join(rng.choice(words_pool) for _ in range(max(3, min(words, 300))))
        records.append(
            {
                "id": f"clevr_math-b{i}",
                "image": f"{i}.png",
                "question": f"Question {i}: how many objects are left?",
                "gt": str(i % 10),
                "ds_answer": f"<think>\n{reasoning}\n</think>\nAnswer: {i % 10}",
                "caption": "",
                "meta": {},
            }
        )
    path = folder / "records.json"
    path.write_text(json.dumps(records))
    root = init_workspace(folder / "ws")
    with Workspace.open(root, write=True) as ws:
        ws.settings.collect.workers = 1
        source = open_source("vlaa-thinking", str(path), SourceOptions(images=images))
        collect(ws, source, name="bench")
    return root


def per_sample_loop(root: Path, model_dir: Path, device: str) -> tuple[int, float]:
    """Tokens scored and seconds of the unbatched loop (processor and forward per sample)."""
    import torch

    from vlaa_data.hf import load_model_and_processor

    model, processor = load_model_and_processor(model_dir, device=device)
    with Workspace.open(root, write=False) as ws:
        texts = ws.store.scored_texts()
    tokens, started = 0, time.monotonic()
    tokenize = processor.tokenizer
    for text in texts:
        user = [{"type": "image"}, {"type": "text", "text": text.question}]
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        reply = assistant_text(text.reasoning, text.response)
        messages.append({"role": "assistant", "content": reply})
        full = processor.apply_chat_template(messages, tokenize=False)
        with Image.open(root / text.image_path) as image:
            inputs = processor(text=[full], images=[image.convert("RGB")], return_tensors="pt")
        targets = len(tokenize(full)["input_ids"]) - len(tokenize(prompt)["input_ids"])
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            logits = model(**inputs, use_cache=False).logits[0, -targets - 1 : -1].float()
            torch.nn.functional.cross_entropy(logits, inputs["input_ids"][0, -targets:]).item()
        tokens += targets
    return tokens, time.monotonic() - started


def bare_forward(root: Path, model_dir: Path, batch_size: int, device: str) -> tuple[int, float]:
    """Tokens and seconds of only the model calls over ``run_ppl``'s batches, prepared ahead."""
    import torch

    from vlaa_data.filters.ppl import _items  # the same conversations and sort order
    from vlaa_data.hf import load_model_and_processor

    model, processor = load_model_and_processor(model_dir, device=device)
    processor.tokenizer.padding_side = "right"
    with Workspace.open(root, write=False) as ws:
        items = _items(ws.root, ws.store.scored_texts(), processor, "response", print)
    items.sort(key=lambda item: -item.length)
    batches = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        images = [Image.open(root / item.text.image_path).convert("RGB") for item in batch]
        texts = [item.full for item in batch]
        inputs = processor(
            text=texts, images=images, padding=True, add_special_tokens=False, return_tensors="pt"
        )
        ends = inputs.pop("attention_mask").sum(dim=1)  # run_ppl's call goes without it too
        first = min(int(e) - item.targets for e, item in zip(ends, batch, strict=True)) - 1
        batches.append((inputs.to(device), inputs["input_ids"].shape[1] - first))
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    synchronize()
    started = time.monotonic()
    with torch.inference_mode():
        for inputs, keep in batches:
            model(**inputs, use_cache=False, logits_to_keep=keep)
    synchronize()
    return sum(item.targets for item in items), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--hidden", type=int, default=64, help="text model width (tiny: 64)")
    parser.add_argument("--layers", type=int, default=2, help="text model layers (tiny: 2)")
    parser.add_argument("--max-pixels", type=int, default=112 * 112, help="image cap (tiny)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows: list[tuple[str, int, float]] = []  # label, tokens, best seconds

    def measure(label: str, run: Callable[[], tuple[int, float]]) -> float:
        results = [run() for _ in range(args.repeat)]
        tokens, seconds = results[0][0], min(seconds for _, seconds in results)
        rows.append((label, tokens, seconds))
        return tokens / seconds

    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "model", args.hidden, args.layers, args.max_pixels)
        root = build_workspace(Path(tmp), args.samples)
        params = _parameters(model)

        def scored(batch_size: int) -> tuple[int, float]:
            with Workspace.open(root, write=True) as ws:
                options = PplOptions([str(model)], batch_size=batch_size, redo=True, device=device)
                stats = run_ppl(ws, options).models[0]
            assert stats.failed == 0, "every sample should be scored"
            return stats.tokens, stats.seconds

        scored(8)  # warm-up: the first calls pay one-time costs
        loop = measure(
            "per-sample loop (batch 1, id order)", lambda: per_sample_loop(root, model, device)
        )
        rates = {}
        for size in [1, *args.batch_sizes]:
            rates[size] = measure(f"run_ppl, batch {size}, length-sorted", lambda n=size: scored(n))
        bare = {}
        for size in [1, *args.batch_sizes]:
            run = lambda n=size: bare_forward(root, model, n, device)  # noqa: E731
            bare[size] = measure(f"bare forward, batch {size}", run)
    print(
        f"PPL throughput: {args.samples} samples, random Qwen2-VL of {params / 1e6:.2f}M "
        f"parameters (text hidden {args.hidden}, {args.layers} layers, images up to "
        f"{args.max_pixels} pixels), {device}, {torch.get_num_threads()} threads, "
        f"best of {args.repeat}"
    )
    print(f"{'':<40}{'tokens':>9}{'seconds':>10}{'tokens/s':>11}{'vs loop':>9}")
    for label, tokens, seconds in rows:
        rate = tokens / seconds
        print(f"{label:<40}{tokens:>9,}{seconds:>10.2f}{rate:>11,.0f}{rate / loop:>8.1f}x")
    for size in args.batch_sizes:
        print(
            f"batch {size}: run_ppl / bare forward {rates[size] / bare[size]:.0%}; ceiling "
            f"(bare forward / loop) {bare[size] / loop:.1f}x; bare forward / bare forward at "
            f"batch 1 {bare[size] / bare[1]:.1f}x"
        )
    print(
        "goals: run_ppl batched >= 5x the per-sample loop (CPU), >= 80% of the bare forward (CUDA)"
    )
    return 0


def _parameters(model: Path) -> int:
    import transformers

    loaded = transformers.Qwen2VLForConditionalGeneration.from_pretrained(model)
    return sum(p.numel() for p in loaded.parameters())


if __name__ == "__main__":
    sys.exit(main())
