from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import png_bytes, write_jsonl
from tests.test_collect import run_collect

STEPS = ["collect", "caption", "distill", "rewrite", "verify", "split"]


def test_status_json_keys_and_counts(workspace: Path, tmp_path: Path, cli) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes((1, 2, 3)))
    (tmp_path / "b.png").write_bytes(png_bytes((3, 2, 1)))
    write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {"id": "1", "question": "q", "answer": "1", "image": "a.png"},
            {"id": "2", "question": "q", "answer": "2", "image": "b.png"},
            {"id": "3", "question": "", "answer": "3", "image": "b.png"},
        ],
    )
    run_collect(workspace, str(tmp_path / "rows.jsonl"))

    result = cli("status", "--json", "-w", workspace)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"samples", "sources", "steps"} <= set(report)
    assert report["samples"] == 2
    assert report["sources"] == {"rows": 2}
    assert list(report["steps"]) == STEPS
    for counts in report["steps"].values():
        assert set(counts) == {"done", "rejected", "failed", "pending"}
    assert report["steps"]["collect"] == {"done": 2, "rejected": 1, "failed": 0, "pending": 0}
    assert report["steps"]["caption"] == {"done": 0, "rejected": 0, "failed": 0, "pending": 2}
    assert report["rejects"] == {"collect": {"missing_question": 1}}

    table = cli("status", "-w", workspace)
    assert table.returncode == 0
    assert "missing_question" in table.stdout and "rows" in table.stdout


def test_status_of_an_empty_workspace(workspace: Path, cli) -> None:
    report = json.loads(cli("status", "--json", "-w", workspace).stdout)
    assert report["samples"] == 0
    assert report["steps"]["verify"] == {"done": 0, "rejected": 0, "failed": 0, "pending": 0}
    assert report["endpoints"] == {} and report["scripted"] == {}
