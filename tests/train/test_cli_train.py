"""``vlaa-data train`` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun
from tests.train.conftest import FAST

pytest.importorskip("trl")


def test_train_sft_end_to_end_prints_a_json_report(
    cli: CliRun, hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft-out"
    sets = [arg for setting in FAST for arg in ("--set", setting)]
    result = cli(
        "train", "sft", "--data", hf_export, "--model", tiny_vlm, "--output", out,
        "--max-steps", "1", "--per-device-batch-size", "2", "--seed", "3", *sets, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["kind"], report["steps"], report["rows"]) == ("sft", 1, 3)
    assert report["final_loss"] > 0 and report["output_dir"] == str(out)
    record = json.loads((out / "vlaa_train.json").read_text())
    assert record["config"]["seed"] == 3 and record["config"]["max_steps"] == 1


def test_a_folder_that_is_not_an_export_is_one_line(
    cli: CliRun, tiny_vlm: Path, tmp_path: Path
) -> None:
    result = cli("train", "sft", "--data", tmp_path, "--model", tiny_vlm)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not an hf export (no data/{{sft,rl}}-*.parquet); "
        "make one with `vlaa-data export NAME --format hf --out DIR`"
    ]


def test_two_processes_share_the_global_batch_and_one_reports(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    """What `accelerate launch -m vlaa_data train ...` starts, on CPU: torchrun with 2 processes
    (gloo). Gradient accumulation follows from the world size; one process reports and writes
    the run record; the trained weights are the same on both (DDP keeps them in step)."""
    import subprocess
    import sys

    import torch.distributed

    from tests.train.conftest import changed_parts, weights

    # torchrun as this interpreter's module: the `torchrun` on PATH may be another Python's.
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    out = tmp_path / "ddp"
    sets = [arg for setting in FAST for arg in ("--set", setting)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", "-m", "vlaa_data", "train", "sft",
        "--data", str(hf_export), "--model", str(tiny_vlm), "--output", str(out),
        "--max-steps", "2", "--per-device-batch-size", "1", *sets,
        "--set", "global_batch_size=4", "--json",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # one report: two would not parse as one JSON value
    assert (report["kind"], report["steps"]) == ("sft", 2)
    record = json.loads((out / "vlaa_train.json").read_text())
    assert record["config"]["gradient_accumulation_steps"] == 4 // (1 * 2)
    assert changed_parts(weights(tiny_vlm), weights(out))["language"]


def test_grpo_on_a_split_smaller_than_the_recipes_rollout_scales_the_batches_down(
    cli: CliRun, hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    """The shipped recipe's rollout is 512 prompts; the export's RL split has 4 without a
    judge. TRL would make no rollout, train 0 steps and save the untrained model."""
    from vlaa_data.train.config import read_recipe, shipped_recipe

    recipe = read_recipe(shipped_recipe("grpo"))
    assert recipe["per_device_train_batch_size"] == 8 and recipe["num_generations"] == 4
    out = tmp_path / "grpo-out"
    result = cli(
        "train", "grpo", "--data", hf_export, "--model", tiny_vlm, "--output", out,
        "--max-steps", "1", "--set", "max_completion_length=8",
        "--set", "activation_checkpointing=false", "--json", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["steps"] == 1 and report["rows"] == 4
    # 4 prompts x G=4 = 16 completions: two micro-batches of 8; one of them per optimizer step
    fitted = [note for note in report["notes"] if note.startswith("the rl split's 4 prompts")]
    assert fitted == [
        f"the rl split's 4 prompts fill no rollout of {recipe['generation_batch_size']} "
        f"completions: generation_batch_size {recipe['generation_batch_size']} -> 16, "
        f"global_batch_size {recipe['global_batch_size']} -> 8 (gradient_accumulation_steps 1)"
    ]
    config = json.loads((out / "vlaa_train.json").read_text())["config"]
    assert (config["generation_batch_size"], config["gradient_accumulation_steps"]) == (16, 1)


def test_grpo_with_a_batch_no_rollout_of_the_split_can_fill_is_one_line(
    cli: CliRun, hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "grpo-out"
    result = cli(
        "train", "grpo", "--data", hf_export, "--model", tiny_vlm, "--output", out,
        "--per-device-batch-size", "24", "--set", "generation_batch_size=48",
        "--set", "global_batch_size=24",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the rl split has 4 prompts, 16 completions at num_generations 4: less than the "
        "smallest rollout, 24 completions (a multiple of num_generations and of "
        "per_device_train_batch_size 24 x 1 processes); lower per_device_train_batch_size"
    ]
    assert not (out / "model.safetensors").exists()


def _fast_sft(data: Path, model: Path, out: Path) -> list[str | Path]:
    """``train sft`` on the tiny model with the fast test settings and micro-batches of 2."""
    sets = [arg for setting in FAST for arg in ("--set", setting)]
    return [
        "train", "sft", "--data", data, "--model", model, "--output", out,
        "--per-device-batch-size", "2", *sets,
    ]  # fmt: skip


def test_a_run_that_trains_no_step_fails_and_saves_nothing(
    cli: CliRun, hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft-out"
    result = cli(*_fast_sft(hf_export, tiny_vlm, out), "--epochs", "0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: train sft: no optimizer step was trained (3 rows, max_steps 0); nothing was saved"
    )
    assert not (out / "model.safetensors").exists() and not (out / "vlaa_train.json").exists()


def test_resuming_a_finished_run_is_one_line_and_trains_nothing(
    cli: CliRun, hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    """Trainer would train one step past max_steps from a checkpoint at max_steps."""
    out = tmp_path / "sft-out"
    args = [
        *_fast_sft(hf_export, tiny_vlm, out),
        *("--max-steps", "1", "--set", "save_strategy=steps", "--set", "save_steps=1"),
    ]
    assert cli(*args).returncode == 0
    record = (out / "vlaa_train.json").read_text()
    result = cli(*args, "--resume")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --resume: checkpoint-1 is at step 1 of 1: nothing is left to train (raise "
        "--max-steps or --epochs to train on)"
    ]
    assert (out / "vlaa_train.json").read_text() == record
    assert not (out / "checkpoint-2").exists()
