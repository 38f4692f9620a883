"""Image paths a source gives cannot make collect read outside the images root.

Every adapter family that takes paths gets three hostile rows — ``../`` out of the root, an
absolute path elsewhere, a symbolic link inside the root pointing out — each beside a row
with a legitimate nested path. The file they point at is a valid PNG, so a row that read it
would be collected: being rejected with ``image_path_escapes_root`` proves it was not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import png_bytes, query, write_jsonl
from tests.sources.conftest import DatasetWriter
from tests.sources.test_adapters_collect import CASES
from tests.test_collect import run_collect

ESCAPES = "image_path_escapes_root"
OUTSIDE_COLOUR = (7, 77, 177)
OUTSIDE_SIZE = (23, 17)  # no other image of these tests has it


class RecordingWriter(DatasetWriter):
    """A DatasetWriter that remembers the images it wrote, in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.images: list[str] = []

    def image(self, relpath: str, colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
        self.images.append(relpath)
        return super().image(relpath, colour, fmt)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A valid PNG outside every dataset root of these tests."""
    path = tmp_path / "outside.png"
    path.write_bytes(png_bytes(OUTSIDE_COLOUR, size=OUTSIDE_SIZE))
    return path


def hostile_value(kind: str, outside: Path, data: Path, dataset: Path, relpath: str) -> str:
    """The image value of a row that tries to leave the root in the way ``kind`` says."""
    if kind == "dotdot":
        return os.path.relpath(outside, dataset.parent)
    if kind == "absolute":
        return str(outside)
    link = Path(relpath).parent / "link.png"
    (data / link).symlink_to(outside)
    return link.as_posix()


def outside_images_stored(workspace: Path) -> int:
    sql = "SELECT count(*) FROM images WHERE width = ? AND height = ?"
    return query(workspace, sql, list(OUTSIDE_SIZE))[0][0]


def assert_never_read(workspace: Path, rejected_key_reason: dict[str, str]) -> None:
    # The outside image, had it been read, would be stored (it is a valid, new PNG).
    assert outside_images_stored(workspace) == 0
    assert set(rejected_key_reason.values()) == {ESCAPES}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("adapter", sorted(CASES))
def test_adapters_reject_paths_that_leave_the_root(
    adapter: str, kind: str, tmp_path: Path, outside: Path, workspace: Path
) -> None:
    build, _ = CASES[adapter]
    data = tmp_path / "data"
    writer = RecordingWriter(data)
    dataset = build(writer)
    relpath = writer.images[0]
    value = hostile_value(kind, outside, data, dataset, relpath)
    text = dataset.read_text(encoding="utf-8")
    assert json.dumps(relpath) in text
    dataset.write_text(text.replace(json.dumps(relpath), json.dumps(value), 1), encoding="utf-8")

    report = run_collect(workspace, adapter, str(dataset))

    assert (report.collected, dict(report.rejected)) == (1, {ESCAPES: 1})  # the nested one is fine
    rejects = dict(query(workspace, "SELECT row_key, reason FROM collect_rejects"))
    assert_never_read(workspace, rejects)
    [detail] = query(workspace, "SELECT detail FROM collect_rejects")[0]
    assert value in detail


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_vlaa_thinking_import_keeps_paths_under_images(
    kind: str, tmp_path: Path, outside: Path, workspace: Path
) -> None:
    images = tmp_path / "data" / "images"
    (images / "clevr").mkdir(parents=True)
    (images / "clevr" / "ok.png").write_bytes(png_bytes((1, 2, 3)))
    value = {
        # A leading "/" is taken as relative to --images: "/../x" is still "../x".
        "dotdot": "/../../outside.png",
        "absolute": str(outside),
        "symlink": "clevr/link.png",
    }[kind]
    if kind == "symlink":
        (images / "clevr" / "link.png").symlink_to(outside)
    record = {"question": "How many?", "gt": "3", "ds_answer": "<think>3</think>3", "meta": {}}
    records = [dict(record, id="bad", image=value), dict(record, id="ok", image="/clevr/ok.png")]
    path = tmp_path / "vlaa.json"
    path.write_text(json.dumps(records))

    report = run_collect(workspace, "vlaa-thinking", str(path), images=images)

    assert report.collected == 1
    rejects = dict(query(workspace, "SELECT row_key, reason FROM collect_rejects"))
    # An absolute path is the VLAA-Thinking files' way of writing a path under --images.
    expected = "image_missing" if kind == "absolute" else ESCAPES
    assert list(rejects.values()) == [expected]
    assert outside_images_stored(workspace) == 0


def test_generic_rows_and_parquet_path_dicts(
    tmp_path: Path, outside: Path, workspace: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "data"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "deep.png").write_bytes(png_bytes((9, 9, 9), size=(8, 8)))
    (root / "a" / "link.png").symlink_to(outside)
    hostile = ["../outside.png", str(outside), "a/link.png", "a/b/../../../outside.png"]
    rows = [
        {"id": f"bad{i}", "question": "q", "answer": "a", "image": {"bytes": None, "path": p}}
        for i, p in enumerate(hostile)
    ]
    rows.append({"id": "ok", "question": "q", "answer": "a",
                 "image": {"bytes": None, "path": "a/b/deep.png"}})  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), root / "rows.parquet")

    report = run_collect(workspace, str(root / "rows.parquet"))

    assert (report.collected, dict(report.rejected)) == (1, {ESCAPES: len(hostile)})
    assert_never_read(
        workspace, dict(query(workspace, "SELECT row_key, reason FROM collect_rejects"))
    )


def test_collect_images_root_through_the_cli(cli, tmp_path: Path, outside: Path, workspace: Path):
    root = tmp_path / "root"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "deeper" / "ok.png").write_bytes(png_bytes((4, 5, 6), size=(8, 8)))
    (root / "nested" / "link.png").symlink_to(outside)
    # A link to a folder outside: the path through it leaves the root too.
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    rows = [
        {"id": "dotdot", "image": "../outside.png"},
        {"id": "absolute", "image": str(outside)},
        {"id": "symlink", "image": "nested/link.png"},
        {"id": "dirlink", "image": "dirlink/outside.png"},
        {"id": "ok", "image": "nested/deeper/ok.png"},
    ]
    rows = [dict(row, question="How many?", answer="2") for row in rows]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)  # outside the root, on purpose

    result = cli("collect", data, "--images", root, "--json", "-w", workspace)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["collected"] == 1
    rejects = dict(query(workspace, "SELECT row_key, reason FROM collect_rejects"))
    assert rejects == dict.fromkeys(["dotdot", "absolute", "symlink", "dirlink"], ESCAPES)
    assert_never_read(workspace, rejects)
    details = dict(query(workspace, "SELECT row_key, detail FROM collect_rejects"))
    assert "pass --images" in details["absolute"]


def test_absolute_paths_inside_the_root_still_work(tmp_path: Path, workspace: Path) -> None:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "in.png").write_bytes(png_bytes((3, 3, 3), size=(8, 8)))
    rows = [{"id": "abs", "question": "q", "answer": "a", "image": str(root / "img" / "in.png")}]
    report = run_collect(workspace, str(write_jsonl(root / "rows.jsonl", rows)))
    assert (report.collected, report.rejected_total) == (1, 0)


def test_odd_paths_are_rejected_not_fatal(tmp_path: Path, workspace: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    os.mkfifo(root / "fifo.png")  # reading it would block collect forever
    (root / "loop.png").symlink_to(root / "loop.png")
    rows = [
        {"id": "fifo", "image": "fifo.png"},
        {"id": "loop", "image": "loop.png"},
        {"id": "nul", "image": "a\x00b.png"},
        {"id": "folder", "image": "."},
    ]
    rows = [dict(row, question="q", answer="a") for row in rows]
    report = run_collect(workspace, str(write_jsonl(root / "rows.jsonl", rows)))
    assert report.collected == 0
    rejects = dict(query(workspace, "SELECT row_key, reason FROM collect_rejects"))
    assert rejects == {
        "fifo": "image_unreadable",
        "loop": "image_unreadable",
        "nul": "image_unreadable",
        "folder": "image_missing",
    }
