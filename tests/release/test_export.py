"""``export_release``: the three layouts load where they are meant to, and are reproducible."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

from tests.conftest import query
from tests.release.conftest import build_release
from tests.test_collect import run_collect
from vlaa_data.chat_format import MULTIPLE_CHOICE, SHORT_ANSWER, SYSTEM_PROMPT
from vlaa_data.errors import VlaaError
from vlaa_data.release.export import FORMATS, MARKER, export_release
from vlaa_data.release.formats import VLAA_JSON_FILES, hf_configs_yaml, hf_shards
from vlaa_data.workspace import Workspace, init_workspace

SFT_IDS = {"clevr/c1", "clevr/c5", "arxiv/a3"}
RL_IDS = {"clevr/c2", "clevr/c4", "clevr/c6", "arxiv/a2"}


def export(workspace: Path, out: Path, fmt: str, name: str = "v1", **options):
    with Workspace.open(workspace, write=True) as ws:
        return export_release(ws, name, fmt, out, **options)


def release_ids(workspace: Path, split: str) -> list[str]:
    with Workspace.open(workspace, write=False) as ws:
        return [row.sample_id for row in ws.store.release_rows("v1", split)]


def release_texts(workspace: Path, split: str) -> list[tuple[str, str, str, str]]:
    """(question, gold, reasoning, answer) of the release's split, in release order."""
    with Workspace.open(workspace, write=False) as ws:
        rows = ws.store.release_rows("v1", split)
        return [(r.question, r.gold, r.reasoning, r.response) for r in rows]


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_hf_loads_with_datasets_in_trl_columns(released_workspace: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "hf"
    report = export(released_workspace, out, "hf", shard_rows=2)
    assert report.rows == {"sft": 3, "rl": 4, "test": 0}
    assert [_unhashed(f) for f in sorted(report.files)] == [
        "README.md",
        "assets/reasoning_length.png",
        "assets/sources.png",
        "data/rl-00000-of-00002.parquet",
        "data/rl-00001-of-00002.parquet",
        "data/sft-00000-of-00002.parquet",
        "data/sft-00001-of-00002.parquet",
        "prompt.json",
    ]
    # how the prompts were built, for tools that build their own
    recorded = json.loads((out / "prompt.json").read_text())
    assert recorded["system_prompt"] == SYSTEM_PROMPT
    assert recorded["task_instructions"] == {
        "choice": MULTIPLE_CHOICE,
        "digit": SHORT_ANSWER,
        "math": SHORT_ANSWER,
    }
    for name in report.files:  # a shard is named by its content
        digest = re.search(r"-([0-9a-f]{16})\.parquet$", name)
        assert not digest or digest[1] == hashlib.sha256((out / name).read_bytes()).hexdigest()[:16]

    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded) == {"sft", "rl"}
    sft, rl = loaded["sft"], loaded["rl"]
    assert (sft.num_rows, rl.num_rows) == (3, 4)
    columns = {"id", "source", "messages", "prompt", "image", "solution", "reward_type"}
    assert set(sft.column_names) == set(rl.column_names) == columns
    # in release order, which the fixture's release happens to mix up
    assert sft["id"] == release_ids(released_workspace, "sft") != sorted(SFT_IDS)
    assert rl["id"] == release_ids(released_workspace, "rl")
    assert set(rl["id"]) == RL_IDS

    first = sft[sft["id"].index("clevr/c1")]
    system, user, assistant = first["messages"]
    assert (system["role"], system["content"][0]["text"]) == ("system", SYSTEM_PROMPT)
    assert user["role"] == "user"
    assert [part["type"] for part in user["content"]] == ["image", "text"]
    assert user["content"][1]["text"] == (
        f"Question c1: how many objects, or which option?\n{SHORT_ANSWER}"  # a digit row
    )
    assert assistant["content"][0]["text"] == (
        "<think>\nThree cubes.\n</think>\n<answer>\nAnswer: 3\n</answer>"
    )
    assert first["prompt"] == [system, user]
    assert first["image"].size == (32, 24)
    choice = sft[sft["id"].index("arxiv/a3")]["prompt"][1]["content"][1]["text"]
    assert choice.endswith(f"?\n{MULTIPLE_CHOICE}")

    row = rl[rl["id"].index("clevr/c2")]
    assert (row["solution"], row["reward_type"], row["source"]) == ("4", "digit", "clevr")
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][1]["content"][1]["text"].startswith("Question c2:")
    assert row["image"].size == (32, 24)
    # the README is the dataset card; its configs name each split's files
    card = DatasetCard((out / "README.md").read_text()).data.to_dict()
    assert card["configs"] == hf_configs_yaml(out)["configs"]
    rl_files = [f"data/{shard.name}" for shard in hf_shards(out, "rl")]
    assert card["configs"][0]["data_files"][1] == {"split": "rl", "path": rl_files}
    assert len(rl_files) == 2 and "## Citation" in (out / "README.md").read_text()


def _unhashed(name: str) -> str:
    """A shard's name without its content digest."""
    return re.sub(r"-[0-9a-f]{16}\.parquet$", ".parquet", name)


def test_vlaa_json_reimports_through_the_importer(released_workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "vlaa-json"
    export(released_workspace, out, "vlaa-json")
    fresh = init_workspace(tmp_path / "fresh")
    assert not (out / VLAA_JSON_FILES["test"]).exists()  # v1 holds out no test part
    for split in ("sft", "rl"):
        file_name = VLAA_JSON_FILES[split]
        report = run_collect(fresh, "vlaa-thinking", str(out / file_name), name=split, images=out)
        assert (report.collected, report.rejected_total) == (
            len(release_texts(released_workspace, split)),
            0,
        )
        reimported = query(
            fresh,
            "SELECT s.question, s.answer, coalesce(v.reasoning, ''), v.response "
            "FROM samples s JOIN samples_view v ON v.id = s.id "
            "WHERE s.source = ? ORDER BY s.source_id",
            [split],
        )
        assert sorted(reimported) == sorted(release_texts(released_workspace, split))
    # meta.reward_type is read back, so each sample keeps the type it was verified with
    original = dict(query(released_workspace, "SELECT question, reward_type FROM samples"))
    types = query(fresh, "SELECT question, reward_type FROM samples")
    assert len(types) == 7 and all(original[q] == t for q, t in types)
    assert {"digit", "choice"} <= {t for _, t in types}
    records = json.loads((out / VLAA_JSON_FILES["sft"]).read_text())
    assert [r["id"] for r in records] == release_ids(released_workspace, "sft")
    record = next(r for r in records if r["id"] == "clevr/c1")
    assert set(record) == {"id", "image", "question", "gt", "ds_answer", "caption", "meta"}
    assert record["ds_answer"] == "<think>\nThree cubes.\n</think>\n\nAnswer: 3"
    assert record["meta"]["source"] == "clevr" and record["meta"]["verdict"] == "correct"


def test_sharegpt_files_and_dataset_info_agree(released_workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "sharegpt"
    export(released_workspace, out, "sharegpt")
    info = json.loads((out / "dataset_info.json").read_text())
    assert sorted(info) == ["v1_rl", "v1_sft"]
    for key, entry in info.items():
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages", "images": "images"}
        assert entry["tags"]["system_tag"] == "system"
        records = json.loads((out / entry["file_name"]).read_text())
        split = key.rsplit("_", 1)[1]
        assert len(records) == len(release_texts(released_workspace, split))
        for record, (question, _gold, reasoning, answer) in zip(
            records, release_texts(released_workspace, split), strict=True
        ):
            roles = [m["role"] for m in record["messages"]]
            assert roles == ["system", "user", "assistant"]
            user = record["messages"][1]["content"]  # the question, then its instruction
            assert user in {f"<image>{question}\n{i}" for i in (MULTIPLE_CHOICE, SHORT_ANSWER)}
            assert f"<think>\n{reasoning}\n</think>" in record["messages"][2]["content"]
            assert f"<answer>\n{answer}\n</answer>" in record["messages"][2]["content"]
            assert all((out / image).is_file() for image in record["images"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_are_byte_identical(released_workspace: Path, tmp_path: Path, fmt: str) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    export(released_workspace, first, fmt, shard_rows=2)
    export(released_workspace, second, fmt, shard_rows=2)
    assert len(digests(first)) > 2
    assert digests(first) == digests(second)


def test_export_is_recorded_and_replaces_an_earlier_export(
    released_workspace: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    export(released_workspace, out, "sharegpt")
    report = export(released_workspace, out, "vlaa-json")
    assert not (out / "dataset_info.json").exists()
    assert json.loads((out / MARKER).read_text())["format"] == "vlaa-json"
    assert report.images == 7  # one per sample: arxiv/a1, which shares one, is not released
    events = query(
        released_workspace,
        "SELECT e.kind, e.format, e.target, r.status FROM release_events e "
        "JOIN runs r ON r.id = e.run_id ORDER BY e.created_at",
    )
    assert events == [
        ("export", "sharegpt", str(out), "finished"),
        ("export", "vlaa-json", str(out), "finished"),
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_unknown_release_and_format_are_one_line_errors(
    released_workspace: Path, tmp_path: Path
) -> None:
    with pytest.raises(VlaaError, match=r"no release 'v2' \(releases: v1\)"):
        export(released_workspace, tmp_path / "out", "hf", name="v2")
    with pytest.raises(VlaaError, match=r"unknown export format 'csv' .*hf, vlaa-json, sharegpt"):
        export(released_workspace, tmp_path / "out", "csv")
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_a_folder_that_is_not_an_export(
    released_workspace: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(VlaaError, match="is not a vlaa-data export"):
        export(released_workspace, out, "hf")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mine.")] == []


def test_a_failed_export_leaves_the_earlier_one(
    released_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlaa_data.release import formats

    out = tmp_path / "out"
    export(released_workspace, out, "sharegpt")
    before = digests(out)

    def crash(folder: Path, *args) -> None:
        (folder / "half.json").write_text("{")
        raise RuntimeError("disk full")

    monkeypatch.setitem(formats.WRITERS, "hf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export(released_workspace, out, "hf")
    assert digests(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    statuses = query(released_workspace, "SELECT status FROM runs WHERE command LIKE '%export%'")
    assert sorted(s for (s,) in statuses) == ["failed", "finished"]


def test_hf_leaves_out_an_empty_split(verified_workspace: Path, tmp_path: Path) -> None:
    import datasets

    build_release(verified_workspace, name="all_sft", rule="pass")
    out = tmp_path / "hf"
    report = export(verified_workspace, out, "hf", name="all_sft")
    assert report.rows == {"sft": 8, "rl": 0, "test": 0}  # no RL split: arxiv/a1 stays
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded) == {"sft"} and loaded["sft"].num_rows == 8
    assert [_unhashed(f) for f in sorted(report.files) if f.startswith("data/")] == [
        "data/sft-00000-of-00001.parquet"
    ]


def test_release_rows_read_in_chunks_match_one_read(released_workspace: Path, monkeypatch) -> None:
    from vlaa_data.store import releases

    with Workspace.open(released_workspace, write=False) as ws:
        rows = ws.store.release_rows("v1", "rl")
        whole = ws.store.release_rows_at("v1", "rl", 0, len(rows))
        monkeypatch.setattr(releases, "_CHUNK_ROWS", 3)  # 4 rows: two chunks
        assert list(rows) == whole
        assert rows[1:3] == whole[1:3] and rows[-1] == whole[-1]
        assert [row.position for row in whole] == list(range(len(rows)))
        assert all(row.verdict == "correct" for row in whole)
        captions = dict(ws.store.con.execute("SELECT id, caption FROM samples_view").fetchall())
        assert [row.caption for row in whole] == [captions[row.sample_id] for row in whole]
        assert sum(row.caption is not None for row in whole) >= 3
        with pytest.raises(IndexError):
            rows[len(rows)]


def test_a_new_export_in_the_same_folder_is_loaded_afresh(
    released_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load_dataset(DIR)`` with its default cache: the cache is keyed on the folder's name
    and the card's configs, so a changed release exported to the same folder must change
    what it keys on. (The cache's root is this test's own, so no other run's cache is read.)"""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "default-cache"))
    out = tmp_path / "hf"
    export(released_workspace, out, "hf", shard_rows=2)
    first = datasets.load_dataset(str(out))
    assert (first["sft"].num_rows, first["rl"].num_rows) == (3, 4)

    # the same splits and shard counts, other rows: only the files' names can tell
    build_release(released_workspace, "v1", replace=True, rl_quota={"clevr": 1})
    report = export(released_workspace, out, "hf", shard_rows=2)
    assert report.rows == {"sft": 4, "rl": 2, "test": 0}
    again = datasets.load_dataset(str(out))
    assert {split: list(again[split]["id"]) for split in again} == {
        split: release_ids(released_workspace, split) for split in ("sft", "rl")
    }


def test_sharegpt_and_vlaa_json_leave_out_empty_splits(
    verified_workspace: Path, tmp_path: Path
) -> None:
    build_release(verified_workspace, name="v1", rule="pass", test_size=2)
    sharegpt = tmp_path / "sharegpt"
    report = export(verified_workspace, sharegpt, "sharegpt")
    assert report.rows == {"sft": 6, "rl": 0, "test": 2}
    info = json.loads((sharegpt / "dataset_info.json").read_text())
    assert sorted(info) == ["v1_sft", "v1_test"]  # no entry, and no file, for the empty rl
    assert sorted(report.files) == [
        "dataset_info.json",
        "v1_sft.json",
        "v1_test.json",
    ]
    assert len(json.loads((sharegpt / "v1_test.json").read_text())) == 2
    vlaa_json = tmp_path / "vlaa-json"
    export(verified_workspace, vlaa_json, "vlaa-json")
    held_out = json.loads((vlaa_json / VLAA_JSON_FILES["test"]).read_text())
    assert [r["id"] for r in held_out] == release_ids(verified_workspace, "test")
    assert json.loads((vlaa_json / VLAA_JSON_FILES["rl"]).read_text()) == []  # the published pair
