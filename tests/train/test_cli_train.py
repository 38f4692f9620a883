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
