"""``benchmarks/train_gpu.py``: what can be checked without a GPU (arguments, the one-line
refusal, its data and tokenizer), and the run itself where CUDA is there."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_gpu.py"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_and_their_limits(bench) -> None:
    args = bench.parse_args([])
    assert (args.steps, args.batch, args.layers, args.vllm) == (10, 8, 28, True)
    assert args.phases == ["sft", "grpo"] and args.vllm_memory == 0.3
    args = bench.parse_args(["--steps", "3", "--no-vllm", "--phases", "grpo", "--batch", "4"])
    assert (args.steps, args.vllm, args.phases, args.batch) == (3, False, ["grpo"], 4)
    for bad in (["--batch", "6"], ["--steps", "0"], ["--vllm-memory", "1.5"]):
        with pytest.raises(SystemExit) as caught:
            bench.parse_args(bad)
        assert caught.value.code == 2, bad


@pytest.mark.skipif("_cuda()", reason="a CUDA device is visible")
def test_without_cuda_it_refuses_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "1"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA device" in lines[0]


def test_the_export_holds_every_rule_scored_reward_type(bench, tmp_path: Path) -> None:
    from vlaa_data.train.data import grpo_dataset, load_split, sft_dataset

    data = bench.build_export(tmp_path, rows=4)
    rl = grpo_dataset(load_split(data, "rl"))
    assert sorted(rl["reward_type"]) == ["choice", "digit", "iou", "math"]
    sft = sft_dataset(load_split(data, "sft"))
    assert len(sft) == 4 and "<answer>" in sft[0]["completion"][0]["content"][0]["text"]


def test_the_tokenizer_covers_the_2b_vocabulary_with_qwens_special_ids(bench) -> None:
    import transformers

    size = bench.QWEN2_VL_2B["text"]["vocab_size"]
    tokenizer = bench._tokenizer(transformers, size)
    assert len(tokenizer) == size
    for token, index in bench.SPECIAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == index
    assert tokenizer.decode([size - 1]) == f"w{size - 1}"  # any sampled id decodes
    ids = tokenizer("<|im_start|>user 3 <|image_pad|>")["input_ids"]
    assert ids[0] == bench.SPECIAL_IDS["<|im_start|>"] and bench.SPECIAL_IDS["<|image_pad|>"] in ids


@pytest.mark.gpu
@pytest.mark.skipif("not _cuda()", reason="needs a CUDA device")
def test_a_short_run_reports_both_phases(tmp_path: Path) -> None:
    vllm = importlib.util.find_spec("vllm") is not None
    command = [sys.executable, str(SCRIPT), "--layers", "2", "--steps", "2", "--rows", "8"]
    command += ["--completion-length", "16", "--json", "--keep", str(tmp_path)]
    done = subprocess.run(
        [*command, "--vllm" if vllm else "--no-vllm"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    phases = {p["phase"]: p for p in summary["phases"]}
    assert set(phases) == {"sft", "grpo"} and phases["grpo"]["vllm"] is vllm
    for phase in phases.values():
        assert phase["steps"] == 2 and phase["steps_per_s"] > 0
        assert phase["peak_allocated_gib"] > 0
