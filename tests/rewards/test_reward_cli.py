"""``vlaa-data reward``: every row comes back with a reward or a reason, in order."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_jsonl
from tests.rewards.test_math_pool import HANGS


def r1(answer: str) -> str:
    return f"<think>working</think><answer>{answer}</answer>"


ROWS = [
    {"completion": r1("3"), "answer": "3", "reward_type": "digit"},
    {"completion": r1("\\boxed{\\frac{1}{2}}"), "answer": "0.5", "reward_type": "math"},
    {"completion": r1(HANGS), "answer": "3", "reward_type": "math"},
    {"completion": r1("(B)"), "answer": "C", "reward_type": "choice"},
    {
        "completion": r1("[0, 0, 320, 480]"),
        "answer": "[0, 0, 1, 1]",
        "reward_type": "iou",
        "image_size": [640, 480],
    },
    {"completion": "<think>the answer is 3", "answer": "3", "reward_type": "digit"},
    {"completion": r1("a cat"), "answer": "a cat", "reward_type": "open"},
    {"completion": r1("3"), "answer": "3", "reward_type": "count"},
    {"completion": r1("3"), "reward_type": "digit"},
]


def test_reward_scores_each_row_and_explains_the_rest(tmp_path: Path, cli) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    with source.open("a", encoding="utf-8") as file:
        file.write("not json\n")
    result = cli("reward", source, "--out", tmp_path / "scored.jsonl", "--deadline", "1", "--json")
    assert result.returncode == 0, result.stderr
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [row.get("reward") for row in scored] == [
        1.0, 1.0, 0.0, 0.0, 0.5, 0.0, None, None, None, None,
    ]  # fmt: skip
    notes = [row.get("reward_note") for row in scored]
    assert notes[2] == "timeout" and notes[6] == "no scorer for open answers"
    assert notes[7].startswith("unknown reward_type 'count'")
    assert notes[8] == "missing or non-text 'answer'"
    assert notes[9].startswith("not JSON")
    assert scored[0] == {**ROWS[0], "reward": 1.0}  # the row itself comes back untouched
    summary = json.loads(result.stdout)
    assert summary["rows"] == 10
    assert summary["by_type"]["math"] == {
        "rows": 2,
        "scored": 2,
        "mean_reward": 0.5,
        "unscored": {},
    }
    assert summary["by_type"]["(none)"]["unscored"] == {"not JSON": 1}


def test_reward_in_place_and_a_missing_file(tmp_path: Path, cli) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", ROWS[:1])
    result = cli("reward", source)
    assert result.returncode == 0, result.stderr
    assert "digit" in result.stdout and "1.000" in result.stdout
    assert json.loads(source.read_text())["reward"] == 1.0
    result = cli("reward", tmp_path / "nope.jsonl")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no such file: {tmp_path / 'nope.jsonl'}"
