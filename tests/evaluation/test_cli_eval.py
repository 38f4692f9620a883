"""``vlaa-data eval`` as a user runs it: a subprocess, a JSON report, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CliRun
from tests.evaluation.conftest import answer_with_gold, export_ids
from vlaa_data.testing.server import ScriptedServer


def test_eval_prints_the_json_report_and_writes_the_samples(
    cli: CliRun, tiny_vlm: Path, hf_export: Path, tmp_path: Path
) -> None:
    args = ("eval", "--model", tiny_vlm, "--data", hf_export, "--split", "sft", "--limit", "2")
    result = cli(*args, "--max-new-tokens", "4", "--batch-size", "2", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["split"], report["limit"], report["overall"]["n"]) == ("sft", 2, 2)
    assert set(report["by_type"]) | set(report["by_source"]) >= {"digit", "clevr"}
    output = tmp_path / f"eval-{tiny_vlm.name}-sft.jsonl"
    assert report["output"] == str(output.relative_to(tmp_path))
    samples = [json.loads(line) for line in output.read_text().splitlines()]
    assert [s["id"] for s in samples] == export_ids(hf_export, "sft")[:2]


def test_eval_prints_a_table(cli: CliRun, hf_export: Path, tmp_path: Path) -> None:
    with ScriptedServer(answer_with_gold) as server:
        result = cli(
            "eval",
            "-m",
            "served",
            "--data",
            hf_export,
            "--base-url",
            server.url,
            "--max-pixels",
            "100",
        )
    assert result.returncode == 0, result.stderr
    image = server.requests[0]["messages"][1]["content"][0]["image_url"]["url"]
    assert _pixels(image) <= 100 < 32 * 24  # downscaled from the export's image
    lines = result.stdout.splitlines()
    assert lines[0].strip() == f"eval: served on {hf_export} (rl)"
    # no test split in this export: the fallback to the split GRPO trains on is said, first
    assert result.stderr.splitlines()[0] == (
        f"note: {hf_export} has no test split: evaluating on rl, the split GRPO trains on (a "
        "release made with `vlaa-data split NAME --test-size N` holds out a test part)"
    )
    row = {line.split("│")[1].strip(): line.split("│")[2:-1] for line in lines if "│" in line}
    # n, scored, accuracy, mean reward, no answer, truncated
    assert [cell.strip() for cell in row["type digit"]] == ["3", "3", "100.0%", "1.000", "0", "0"]
    assert [cell.strip() for cell in row["source arxiv"]] == ["1", "0", "-", "-", "0", "0"]
    assert "rows without a completion: 1 (the backend gave up; see their note)" in lines
    assert (tmp_path / "eval-served-rl.jsonl").is_file()


def test_a_folder_that_is_not_an_export_exits_1_in_one_line(cli: CliRun, tmp_path: Path) -> None:
    result = cli("eval", "--model", "m", "--data", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not an hf export (no data/*.parquet); "
        "write one with: vlaa-data export NAME --format hf --out DIR"
    ]


def _pixels(url: str) -> int:
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.width * image.height
