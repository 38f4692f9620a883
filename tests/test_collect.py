"""collect from generic files and folders: formats, bad input, idempotence, dedup."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import png_bytes, query, write_jsonl
from vlaa_data.errors import SourceError
from vlaa_data.sources import SourceOptions, default_name, open_source
from vlaa_data.steps.collect import CollectReport, collect
from vlaa_data.workspace import Workspace


def run_collect(
    workspace: Path,
    spec: str,
    path: str | None = None,
    *,
    name: str | None = None,
    keep_duplicate_images: bool = False,
    **options,
) -> CollectReport:
    source = open_source(spec, path, SourceOptions(**options))
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        return collect(
            ws,
            source,
            name=name or default_name(spec, source),
            keep_duplicate_images=keep_duplicate_images,
        )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A dataset folder with three distinct images."""
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        (root / "img" / f"{i}.png").write_bytes(png_bytes(color))
    return root


ROWS = [
    {"id": "a", "question": "How many red things?", "answer": "3", "image": "img/0.png"},
    {"id": "b", "question": "Which option?", "answer": "(b)", "image": "img/1.png"},
    {"id": "c", "question": "Where is the car?", "answer": "[1, 2, 10, 12]", "image": "img/2.png"},
]


def test_jsonl_rows_become_samples_with_stored_images(workspace: Path, folder: Path) -> None:
    report = run_collect(workspace, str(write_jsonl(folder / "rows.jsonl", ROWS)))
    assert (report.collected, report.rejected_total) == (3, 0)
    rows = query(
        workspace, "SELECT id, source, answer, reward_type, image_sha FROM samples ORDER BY id"
    )
    assert [r[:4] for r in rows] == [
        ("rows/a", "rows", "3", "digit"),
        ("rows/b", "rows", "B", "choice"),
        ("rows/c", "rows", "[1, 2, 10, 12]", "iou"),
    ]
    sha = rows[0][4]
    path, width, height, fmt = query(
        workspace, "SELECT path, width, height, format FROM images WHERE sha = ?", [sha]
    )[0]
    assert path == f"images/{sha[:2]}/{sha}.png"
    assert (width, height, fmt) == (24, 16, "PNG")
    assert (workspace / path).read_bytes() == (folder / "img" / "0.png").read_bytes()
    context = json.loads(query(workspace, "SELECT context FROM samples WHERE id='rows/b'")[0][0])
    assert context["original_answer"] == "(b)"


def test_json_csv_and_absolute_paths(workspace: Path, folder: Path) -> None:
    (folder / "rows.json").write_text(json.dumps(ROWS[:2]))
    absolute = str(folder / "img" / "2.png")
    (folder / "rows.csv").write_text(f"question,answer,image\nq?,yes,{absolute}\n")
    assert run_collect(workspace, str(folder / "rows.json")).collected == 2
    report = run_collect(workspace, str(folder / "rows.csv"))
    assert report.collected == 1
    assert query(workspace, "SELECT reward_type FROM samples WHERE question = 'q?'") == [("open",)]


def test_parquet_with_embedded_image_bytes_and_map(workspace: Path, tmp_path: Path) -> None:
    table = pa.Table.from_pylist(
        [
            {
                "qid": 7,
                "query": "What colour?",
                "gt": "red",
                "picture": {"bytes": png_bytes((250, 0, 0)), "path": "x.png"},
            },
            {
                "qid": 8,
                "query": "What colour?",
                "gt": "green",
                "picture": {"bytes": png_bytes((0, 250, 0), image_format="JPEG"), "path": None},
            },
        ]
    )
    pq.write_table(table, tmp_path / "t.parquet")
    report = run_collect(
        workspace,
        str(tmp_path / "t.parquet"),
        name="colours",
        mapping={"id": "qid", "question": "query", "image": "picture", "context.file": "qid"},
    )
    assert report.collected == 2
    rows = query(workspace, "SELECT id, answer, context FROM samples ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [("colours/7", "red"), ("colours/8", "green")]
    assert json.loads(rows[0][2]) == {"file": 7}
    assert query(workspace, "SELECT format FROM images ORDER BY format") == [("JPEG",), ("PNG",)]


def test_map_naming_a_missing_column_fails_clearly(workspace: Path, folder: Path) -> None:
    path = write_jsonl(folder / "rows.jsonl", ROWS)
    with pytest.raises(SourceError, match="no column 'nope'"):
        run_collect(workspace, str(path), mapping={"question": "nope"})


def test_hf_save_to_disk_folder(workspace: Path, tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "image": datasets.Image(),
        }
    )
    images = [Image.new("RGB", (10, 10), c) for c in [(1, 2, 3), (4, 5, 6)]]
    ds = datasets.Dataset.from_dict(
        {"question": ["q1", "q2"], "answer": ["1", "2"], "image": images}, features=features
    )
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(tmp_path / "saved")
    assert run_collect(workspace, str(tmp_path / "saved")).collected == 2
    other = run_collect(workspace, str(tmp_path / "saved"), name="test-split", split="test")
    assert other.collected == 1


def test_parquet_repo_layout_folder(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for split, color in (("train", (9, 9, 9)), ("test", (8, 8, 8))):
        pq.write_table(
            pa.Table.from_pylist(
                [
                    {
                        "question": f"{split}?",
                        "answer": "4",
                        "image": {"bytes": png_bytes(color), "path": None},
                    }
                ]
            ),
            tmp_path / "repo" / "data" / f"{split}-00000-of-00001.parquet",
        )
    assert run_collect(workspace, str(tmp_path / "repo")).collected == 1
    assert query(workspace, "SELECT question FROM samples") == [("train?",)]


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()[:-200]


def test_every_kind_of_bad_row_is_rejected_with_its_reason(workspace: Path, folder: Path) -> None:
    (folder / "img" / "not-an-image.png").write_text("hello")
    (folder / "img" / "truncated.png").write_bytes(_truncated_png())
    (folder / "img" / "big.png").write_bytes(png_bytes((1, 1, 1), size=(300, 300)))
    good = {"question": "q", "answer": "a"}
    rows = [
        {"id": "ok", **good, "image": "img/0.png"},
        {"id": "noq", "answer": "a", "image": "img/1.png"},
        {"id": "emptya", "question": "q", "answer": "  ", "image": "img/1.png"},
        {"id": "garbage", **good, "image": "img/not-an-image.png"},
        {"id": "trunc", **good, "image": "img/truncated.png"},
        {"id": "big", **good, "image": "img/big.png"},
        {"id": "escape", **good, "image": "../../etc/passwd"},
        {"id": "missing", **good, "image": "img/none.png"},
        {"id": "noimage", **good},
        {"id": "ok", "question": "again", "answer": "a", "image": "img/2.png"},
    ]
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(3, b'{"id": "utf", "question": "caf\xff", "answer": "a", "image": "img/1.png"}')
    lines.insert(4, b'{"id": "broken", ')
    (folder / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (workspace / "vlaa.toml").write_text("[collect]\nmax_pixels = 40000\n")

    report = run_collect(workspace, str(folder / "bad.jsonl"))

    assert report.collected == 1
    assert dict(report.rejected) == {
        "missing_question": 1,
        "missing_answer": 1,
        "image_unreadable": 1,
        "image_corrupt": 1,
        "image_too_large": 1,
        "image_path_escapes_root": 1,
        "image_missing": 2,
        "invalid_utf8": 1,
        "malformed_row": 1,
        "duplicate_id": 1,
    }
    rejects = dict(query(workspace, "SELECT row_key, reason FROM collect_rejects"))
    assert rejects["escape"] == "image_path_escapes_root"
    assert rejects["utf"] == "invalid_utf8"
    assert rejects["ok#2"] == "duplicate_id"
    detail = query(workspace, "SELECT detail FROM collect_rejects WHERE row_key = 'big'")[0][0]
    assert "300x300" in detail
    # Re-collecting replaces rejects rather than adding to them, and adds no sample.
    again = run_collect(workspace, str(folder / "bad.jsonl"))
    assert (again.collected, again.already_present) == (0, 1)
    assert query(workspace, "SELECT count(*) FROM collect_rejects") == [(11,)]


def test_decompression_bomb_guard_rejects(workspace: Path, folder: Path) -> None:
    (folder / "img" / "bomb.png").write_bytes(png_bytes((0, 0, 0), size=(4000, 4000)))
    path = write_jsonl(
        folder / "b.jsonl", [{"question": "q", "answer": "a", "image": "img/bomb.png"}]
    )
    (workspace / "vlaa.toml").write_text("[collect]\nmax_pixels = 100000000\n")
    Image.MAX_IMAGE_PIXELS, saved = 1_000_000, Image.MAX_IMAGE_PIXELS
    try:
        report = run_collect(workspace, str(path))
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    assert dict(report.rejected) == {"image_too_large": 1}


def test_recollecting_adds_nothing(workspace: Path, folder: Path) -> None:
    path = write_jsonl(folder / "rows.jsonl", ROWS)
    first = run_collect(workspace, str(path))
    second = run_collect(workspace, str(path))
    assert (first.collected, second.collected, second.already_present) == (3, 0, 3)
    assert query(workspace, "SELECT count(*) FROM samples") == [(3,)]
    runs = query(workspace, "SELECT status, counts FROM runs ORDER BY started_at")
    assert [r[0] for r in runs] == ["finished", "finished"]
    assert json.loads(runs[1][1])["already_present"] == 3


def test_rows_without_ids_get_stable_content_ids(workspace: Path, folder: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS]
    path = write_jsonl(folder / "noid.jsonl", rows)
    run_collect(workspace, str(path))
    ids = query(workspace, "SELECT id FROM samples ORDER BY id")
    assert len(ids) == 3
    assert run_collect(workspace, str(path)).collected == 0
    assert query(workspace, "SELECT id FROM samples ORDER BY id") == ids


def test_duplicate_images_within_a_source(workspace: Path, folder: Path) -> None:
    rows = [
        {"id": "1", "question": "q1", "answer": "a", "image": "img/0.png"},
        {"id": "2", "question": "q2", "answer": "b", "image": "img/0.png"},
    ]
    path = write_jsonl(folder / "dupe.jsonl", rows)
    report = run_collect(workspace, str(path))
    assert (report.collected, dict(report.rejected)) == (1, {"duplicate_image": 1})
    detail = query(workspace, "SELECT detail FROM collect_rejects")[0][0]
    assert "dupe/1" in detail
    kept = run_collect(workspace, str(path), name="kept", keep_duplicate_images=True)
    assert kept.collected == 2


def test_same_image_from_two_sources_is_stored_once(workspace: Path, folder: Path) -> None:
    path = write_jsonl(folder / "rows.jsonl", ROWS[:1])
    run_collect(workspace, str(path), name="one")
    run_collect(workspace, str(path), name="two")
    assert query(workspace, "SELECT count(*) FROM samples") == [(2,)]
    assert query(workspace, "SELECT count(*) FROM images") == [(1,)]
    assert len(list((workspace / "images").rglob("*.png"))) == 1


def test_limit_and_seeded_sampling(workspace: Path, folder: Path) -> None:
    rows = [
        {"id": str(i), "question": f"q{i}", "answer": "1", "image": f"img/{i % 3}.png"}
        for i in range(30)
    ]
    path = write_jsonl(folder / "many.jsonl", rows)
    first = run_collect(workspace, str(path), name="first", limit=2)
    assert first.collected == 2
    assert query(workspace, "SELECT source_id FROM samples WHERE source='first' ORDER BY 1") == [
        ("0",),
        ("1",),
    ]
    run_collect(workspace, str(path), name="s1", limit=5, seed=3, keep_duplicate_images=True)
    run_collect(workspace, str(path), name="s2", limit=5, seed=3, keep_duplicate_images=True)
    pick = "SELECT list(source_id ORDER BY source_id) FROM samples WHERE source = ?"
    assert query(workspace, pick, ["s1"]) == query(workspace, pick, ["s2"])
    assert len(query(workspace, pick, ["s1"])[0][0]) == 5
    assert query(workspace, pick, ["s1"])[0][0] != ["0", "1", "2", "3", "4"]


def test_a_source_that_cannot_be_read_at_all_raises(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SourceError, match="not valid JSON"):
        run_collect(workspace, str(tmp_path / "bad.json"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SourceError, match="unsupported file type"):
        run_collect(workspace, str(tmp_path / "x.txt"))
    with pytest.raises(SourceError, match="unknown source"):
        open_source("no-such-thing", None, SourceOptions())


def test_worker_pool_gives_the_same_result(workspace: Path, tmp_path: Path) -> None:
    rows = [
        {
            "id": str(i),
            "question": "q",
            "answer": str(i),
            "image": {"bytes": png_bytes((i % 256, i // 256, 7)), "path": None},
        }
        for i in range(300)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "many.parquet")
    source = open_source(str(tmp_path / "many.parquet"), None, SourceOptions())
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 2
        report = collect(ws, source, name="pool")
    assert report.collected == 300
    assert query(workspace, "SELECT count(DISTINCT image_sha) FROM samples") == [(300,)]
    assert len(list((workspace / "images").rglob("*.png"))) == 300


def test_a_file_over_the_byte_limit_is_rejected_before_it_is_read(
    workspace: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "img" / "big.png").write_bytes(b"\0" * 5000)  # its size alone rejects it
    rows = [
        {"id": "small", "question": "q", "answer": "a", "image": "img/0.png"},
        {"id": "big", "question": "q", "answer": "a", "image": "img/big.png"},
    ]
    path = write_jsonl(folder / "sizes.jsonl", rows)
    (workspace / "vlaa.toml").write_text("[collect]\nmax_image_bytes = 4000\n")
    read, original = [], Path.read_bytes

    def recording(self: Path) -> bytes:
        read.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", recording)
    report = run_collect(workspace, str(path))
    assert dict(report.rejected) == {"image_too_large": 1} and report.collected == 1
    assert "0.png" in read and "big.png" not in read  # images are read here, in-process
