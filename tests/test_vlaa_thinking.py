"""Importing the published VLAA-Thinking files: samples plus done caption/distill/rewrite."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import png_bytes, query
from tests.test_collect import run_collect
from vlaa_data.status import build_status
from vlaa_data.workspace import Workspace

RECORDS = [
    {
        "id": "clevr_math-CLEVR_train_000012",
        "image": "/clevr_math/images/CLEVR_train_000012.png",
        "question": "Subtract all red cubes. How many objects are left?",
        "gt": "4",
        "ds_answer": "<think>\nThere are five objects. Wait, one red cube.\n</think>\n\n4",
        "caption": "A gray floor with five objects.",
        "meta": {"source": "clevr_math"},
    },
    {
        "id": "geoqa170k-geoqa_plus-2905",
        "image": "geoqa170k/geoqa_plus/2905.png",
        "question": "Find the angle.\nChoices:\nA:40°\nB:50°",
        "gt": "B",
        "ds_answer": "The angle sums to 180.</think>The answer is B",
        "caption": "",
        "meta": {},
    },
]


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    (images / "clevr_math" / "images").mkdir(parents=True)
    (images / "geoqa170k" / "geoqa_plus").mkdir(parents=True)
    (images / "clevr_math/images/CLEVR_train_000012.png").write_bytes(png_bytes((5, 5, 5)))
    (images / "geoqa170k/geoqa_plus/2905.png").write_bytes(png_bytes((6, 6, 6)))
    path = tmp_path / "VLAA-Thinking-SFT-126K.json"
    path.write_text(json.dumps(RECORDS))
    return path, images


def test_import_records_samples_and_done_steps(workspace: Path, tmp_path: Path) -> None:
    path, images = _layout(tmp_path)
    report = run_collect(workspace, "vlaa-thinking", str(path), images=images)
    assert (report.collected, report.rejected_total) == (2, 0)

    samples = query(
        workspace, "SELECT source_id, answer, reward_type, context FROM samples ORDER BY source_id"
    )
    assert [s[:3] for s in samples] == [
        ("clevr_math-CLEVR_train_000012", "4", "digit"),
        ("geoqa170k-geoqa_plus-2905", "B", "choice"),
    ]
    assert json.loads(samples[1][3])["origin"] == "geoqa170k"

    steps = query(
        workspace,
        "SELECT step, status, method, output FROM current_results "
        "WHERE sample_id = 'vlaa-thinking/clevr_math-CLEVR_train_000012' "
        "ORDER BY id",
    )
    assert [(s[0], s[1], s[2]) for s in steps] == [
        ("caption", "done", "imported"),
        ("distill", "done", "imported"),
        ("rewrite", "done", "unchanged"),
    ]
    assert json.loads(steps[0][3]) == {"caption": "A gray floor with five objects."}
    assert json.loads(steps[1][3]) == {
        "reasoning": "There are five objects. Wait, one red cube.",
        "answer": "4",
    }
    # self-hosted style: no opening <think> tag
    geo = query(
        workspace,
        "SELECT step, method, output FROM current_results WHERE sample_id = "
        "'vlaa-thinking/geoqa170k-geoqa_plus-2905' ORDER BY id",
    )
    assert geo[0][:2] == ("caption", "not_needed")
    assert json.loads(geo[1][2]) == {
        "reasoning": "The angle sums to 180.",
        "answer": "The answer is B",
    }

    with Workspace.open(workspace, write=False) as ws:
        steps_status = build_status(ws.store).steps
    assert steps_status["rewrite"] == {"done": 2, "rejected": 0, "failed": 0, "pending": 0}
    assert steps_status["verify"] == {"done": 0, "rejected": 0, "failed": 0, "pending": 2}


def test_leading_slash_does_not_escape_the_images_root(workspace: Path, tmp_path: Path) -> None:
    path, images = _layout(tmp_path)
    record = dict(RECORDS[0], id="x-1", image="/../../etc/passwd")
    path.write_text(json.dumps([record]))
    report = run_collect(workspace, "vlaa-thinking", str(path), images=images)
    assert dict(report.rejected) == {"image_path_escapes_root": 1}


def test_reimport_adds_no_duplicate_results(workspace: Path, tmp_path: Path) -> None:
    path, images = _layout(tmp_path)
    run_collect(workspace, "vlaa-thinking", str(path), images=images)
    run_collect(workspace, "vlaa-thinking", str(path), images=images)
    assert query(workspace, "SELECT count(*) FROM results") == [(6,)]


def test_meta_reward_type_is_kept_and_a_bad_one_ignored(workspace: Path, tmp_path: Path) -> None:
    path, images = _layout(tmp_path)
    records = [dict(r) for r in RECORDS]
    records[0]["meta"] = {"source": "clevr_math", "reward_type": "math"}  # origin says digit
    records[1]["meta"] = {"reward_type": "bogus"}
    path.write_text(json.dumps(records))
    run_collect(workspace, "vlaa-thinking", str(path), images=images)
    types = query(workspace, "SELECT source_id, reward_type FROM samples ORDER BY source_id")
    assert types == [
        ("clevr_math-CLEVR_train_000012", "math"),
        ("geoqa170k-geoqa_plus-2905", "choice"),
    ]
