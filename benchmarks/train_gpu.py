"""GPU check of training: SFT steps, then GRPO steps with vLLM colocated, on a random model the
size of Qwen2-VL-2B.

    python benchmarks/train_gpu.py                          # 10 SFT + 10 GRPO steps, vLLM colocate
    python benchmarks/train_gpu.py --steps 5 --no-vllm      # GRPO generating with transformers
    python benchmarks/train_gpu.py --layers 4 --json        # a smaller model; one JSON line

Nothing is downloaded. The model is built from Qwen2-VL-2B-Instruct's published config (the
values are in ``QWEN2_VL_2B`` below: hidden 1536, 28 layers, 12 heads with 2 key-value heads,
MLP 8960, vocabulary 151,936, a 32-block vision tower of width 1280) with random weights; its
tokenizer is a word-level one with the same vocabulary size and Qwen's special-token ids, so
memory for embeddings and logits is the real model's. The data is an ``hf`` export written by
the project's own export code (``release.formats.write_hf``) from the synthetic source's
samples (counting, chart, plot and grounding: digit, choice, math and iou rewards, all scored
by rules).

Both phases go through ``build_sft_trainer``/``build_grpo_trainer`` and ``run_trainer``, as
``vlaa-data train`` does, with the shipped recipes and these overrides: ``--steps`` optimizer
steps, ``--batch`` examples (GRPO: completions) per step, no checkpoints, no warm-up. GRPO makes
one rollout per step (``--batch`` completions, G = 4 per prompt) of at most
``--completion-length`` tokens; with vLLM (TRL's ``vllm_mode="colocate"``) the engine lives in
this process and takes ``--vllm-memory`` of the GPU (``vllm_gpu_memory_utilization``).

Printed for each phase: steps/s over all steps and over the steps after the first (the first
compiles kernels and, for GRPO, warms vLLM up), and peak GPU memory
(``torch.cuda.max_memory_allocated``, reset before each phase; vLLM's KV cache is allocated
through torch and counted). Without a CUDA device the script says so in one line and exits 1.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Qwen/Qwen2-VL-2B-Instruct's config.json, the sizes that set compute and memory.
QWEN2_VL_2B: dict[str, Any] = {
    "text": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],  # head_dim 128 / 2 = 64 frequencies
        },
    },
    "vision": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 1536,  # the merger's output: the text model's width
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}
# Qwen2-VL's special-token ids.
SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
SYNTHETIC_KINDS = ("counting", "chart", "plot", "grounding")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="SFT and GRPO (vLLM colocate) steps on a random Qwen2-VL-2B-sized model: "
        "steps/s and peak GPU memory. Needs a CUDA device."
    )
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per phase")
    parser.add_argument("--rows", type=int, default=64, help="synthetic rows in each split")
    parser.add_argument(
        "--batch", type=int, default=8, help="per-device batch (GRPO: completions, G = 4)"
    )
    parser.add_argument("--completion-length", type=int, default=256, help="GRPO tokens")
    parser.add_argument("--layers", type=int, default=28, help="text layers (2B: 28)")
    parser.add_argument(
        "--max-pixels", type=int, default=256 * 32 * 32, help="the image processor's cap"
    )
    parser.add_argument(
        "--vllm", action=argparse.BooleanOptionalAction, default=True, help="GRPO with vLLM"
    )
    parser.add_argument(
        "--vllm-memory", type=float, default=0.3, help="vllm_gpu_memory_utilization"
    )
    parser.add_argument(
        "--phases", nargs="+", choices=("sft", "grpo"), default=["sft", "grpo"], help="phases"
    )
    parser.add_argument("--keep", type=Path, help="build model, data and outputs here")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    for name in ("steps", "rows", "batch", "completion_length", "layers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch % 4:
        parser.error("--batch must be a multiple of 4 (GRPO's G)")
    if not 0 < args.vllm_memory < 1:
        parser.error("--vllm-memory is a fraction of the GPU, between 0 and 1")
    return args


def cuda_refusal() -> str | None:
    """Why this machine cannot run the check (one line), or None when it can."""
    if importlib.util.find_spec("torch") is None:
        return "train_gpu.py needs torch with CUDA (pip install 'vlaa-data[train,gpu]')"
    import torch

    if not torch.cuda.is_available():
        return f"train_gpu.py needs a CUDA device; torch {torch.__version__} sees none"
    return None


def build_model(folder: Path, layers: int, max_pixels: int) -> Path:
    """A random Qwen2-VL of the 2B's sizes (``layers`` text layers) with its processor."""
    import torch
    import transformers

    from vlaa_data.hf import processor_without_video
    from vlaa_data.testing.tiny_vlm import CHAT_TEMPLATE

    tokenizer = _tokenizer(transformers, QWEN2_VL_2B["text"]["vocab_size"])
    image_processor = transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels)
    if importlib.util.find_spec("torchvision") is not None:  # vLLM brings it; its loader wants
        processor = transformers.Qwen2VLProcessor(  # the video processor a Hub folder has
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=transformers.Qwen2VLVideoProcessor(),
            chat_template=CHAT_TEMPLATE,
        )
    else:
        processor = processor_without_video(transformers.Qwen2VLProcessor)(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
        )
    eos, pad = SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]
    text = {
        **QWEN2_VL_2B["text"],
        "num_hidden_layers": layers,
        "bos_token_id": pad,
        "eos_token_id": eos,
        "pad_token_id": pad,
    }
    config = transformers.Qwen2VLConfig(
        text_config=text,
        vision_config=dict(QWEN2_VL_2B["vision"]),
        image_token_id=SPECIAL_IDS["<|image_pad|>"],
        video_token_id=SPECIAL_IDS["<|video_pad|>"],
        vision_start_token_id=SPECIAL_IDS["<|vision_start|>"],
        vision_end_token_id=SPECIAL_IDS["<|vision_end|>"],
    )
    torch.manual_seed(0)
    with torch.device("cuda"):  # random init on the GPU: seconds, not a minute of CPU
        model = transformers.Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def _tokenizer(transformers: Any, vocab_size: int) -> Any:
    """A word-level tokenizer whose ids cover the whole vocabulary, so that any sampled id
    decodes: the words a prompt uses, filler words, and Qwen's special tokens at their ids."""
    import tokenizers

    from vlaa_data.chat_format import SYSTEM_PROMPT, TASK_INSTRUCTIONS
    from vlaa_data.testing.tiny_vlm import CHAT_TEMPLATE

    text = " ".join([SYSTEM_PROMPT, *TASK_INSTRUCTIONS.values(), "<think> </think> <answer>"])
    words = ["<unk>", *sorted(set(text.split()) | set("0123456789.,()[]ABCD"))]
    vocab: dict[str, int] = {}
    for word in words:
        vocab.setdefault(word, len(vocab))
    special_at = {index: token for token, index in SPECIAL_IDS.items()}
    for index in range(len(vocab), vocab_size):
        vocab[special_at.get(index, f"w{index}")] = index
    model = tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(list(SPECIAL_IDS))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        chat_template=CHAT_TEMPLATE,
    )


def build_export(folder: Path, rows: int) -> Path:
    """An ``hf`` export of ``rows`` synthetic samples in each of ``sft`` and ``rl``, written by
    the export's own writer."""
    from PIL import Image

    from vlaa_data.release.formats import write_hf
    from vlaa_data.sources.synthetic import generate
    from vlaa_data.store.releases import ReleaseRow

    images = folder / "images"
    images.mkdir(parents=True)
    splits: dict[str, list[ReleaseRow]] = {"sft": [], "rl": []}
    for split, rows_of_split in splits.items():
        for index in range(rows):
            kind = SYNTHETIC_KINDS[index % len(SYNTHETIC_KINDS)]
            sample = generate(kind, seed=1 if split == "rl" else 0, index=index)
            assert sample.image is not None and sample.image.render is not None
            data = sample.image.render()
            sha = hashlib.sha256(data).hexdigest()
            (images / f"{sha}.png").write_bytes(data)
            with Image.open(images / f"{sha}.png") as image:
                width, height = image.size
            answer = str(sample.answer)
            rows_of_split.append(
                ReleaseRow(
                    sample_id=f"synthetic/{sample.source_id}",
                    split=split,
                    position=index,
                    source="synthetic",
                    source_id=str(sample.source_id),
                    question=str(sample.question),
                    gold=answer,
                    reward_type=str(sample.reward_type),
                    context=sample.context,
                    image_sha=sha,
                    image_path=f"images/{sha}.png",
                    width=width,
                    height=height,
                    caption=None,
                    reasoning="I look at the image, count and measure, then check again.",
                    response=answer,
                    verdict="correct",
                    verify_method="rule",
                    aha_count=1,
                    ppl=None,
                )
            )
    out = folder / "hf"
    write_hf(out, "train-gpu", splits, folder, shard_rows=1000)
    return out


def step_timer() -> Any:
    """A ``TrainerCallback`` whose ``seconds`` lists each optimizer step's duration (defined
    here: transformers is imported only once CUDA is known to be there)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._began = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self._began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self._began)

    return StepTimer()


def run_phase(kind: str, model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict:
    """``args.steps`` steps of ``kind``; its steps/s and peak GPU memory."""
    import torch

    from vlaa_data.train.run import TrainOptions, TrainReport, run_trainer

    values: dict[str, Any] = {
        "output_dir": str(out / kind),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch,
    }
    settings = [
        "global_batch_size=none",
        "gradient_accumulation_steps=1",
        "warmup_steps=0",
        "save_strategy=no",
        "logging_steps=1",
    ]
    if kind == "grpo":
        settings += [
            f"generation_batch_size={args.batch}",
            f"max_completion_length={args.completion_length}",
            "num_generations=4",
        ]
        if args.vllm:
            values.update(
                use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=args.vllm_memory
            )
    options = TrainOptions(data, str(model), values=values, settings=settings)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    closing = None
    if kind == "sft":
        from vlaa_data.train.sft import build_sft_trainer

        trainer, checkpoint = build_sft_trainer(options)
    else:
        from vlaa_data.train.grpo import build_grpo_trainer

        trainer, checkpoint, closing, _ = build_grpo_trainer(options)
    built = time.perf_counter() - started
    timer = step_timer()
    trainer.add_callback(timer)
    try:
        report = TrainReport(kind, Path(trainer.args.output_dir), rows=len(trainer.train_dataset))
        run_trainer(trainer, report, options, checkpoint)
    finally:
        if closing is not None:
            closing.close()
    steps = timer.seconds
    later = steps[1:]
    result = {
        "phase": kind,
        "vllm": bool(kind == "grpo" and args.vllm),
        "steps": len(steps),
        "steps_per_s": len(steps) / sum(steps) if steps else None,
        "steps_per_s_after_first": len(later) / sum(later) if later else None,
        "first_step_s": steps[0] if steps else None,
        "build_s": built,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "final_loss": report.final_loss,
    }
    del trainer
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    refusal = cuda_refusal()
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 1
    if args.vllm and "grpo" in args.phases and importlib.util.find_spec("vllm") is None:
        print(
            "--vllm needs vllm: pip install 'vlaa-data[train,gpu]' (or --no-vllm)", file=sys.stderr
        )
        return 1
    import torch

    with tempfile.TemporaryDirectory(prefix="vlaa-train-gpu-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        model = build_model(root / "model", args.layers, args.max_pixels)
        data = build_export(root / "data", args.rows)
        device = torch.cuda.get_device_properties(0)
        results = [run_phase(kind, model, data, root / "out", args) for kind in args.phases]
    summary = {
        "device": f"{device.name} ({device.total_memory / 2**30:.0f} GiB)",
        "torch": torch.__version__,
        "layers": args.layers,
        "batch": args.batch,
        "completion_length": args.completion_length,
        "phases": results,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{summary['device']}, torch {summary['torch']}, {args.layers} layers, batch {args.batch}"
    )
    for r in results:
        label = f"{r['phase']}{' (vLLM colocate)' if r['vllm'] else ''}"
        rate = r["steps_per_s_after_first"] or r["steps_per_s"]
        print(
            f"{label:<22} {r['steps']} steps  {r['steps_per_s']:.3f} steps/s "
            f"({rate:.3f} after the first)  peak allocated {r['peak_allocated_gib']:.1f} GiB "
            f"(reserved {r['peak_reserved_gib']:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
