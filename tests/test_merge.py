"""Shards and merge: a pipeline run as 4 shards in 4 workspaces, then merged, ends where the
same pipeline run in one workspace ends; merging is idempotent and all-or-nothing per shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import query
from vlaa_data.errors import SettingsError, VlaaError, WorkspaceInUse
from vlaa_data.filters.aha import AhaOptions, run_aha
from vlaa_data.lock import WriterLock
from vlaa_data.merge import merge_workspaces
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.steps.llm_runner import run_llm_step
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.steps.verify import VerifyOptions, run_verify
from vlaa_data.store.merge import MERGED_TABLES, MergeQueries
from vlaa_data.store.migrations import MIGRATIONS
from vlaa_data.store.shards import Shard, shard_of
from vlaa_data.testing.server import Reply, ScriptedServer, default_responder
from vlaa_data.workspace import Workspace, init_workspace

SAMPLES = 2000
SHARDS = 4
_LLM_STEPS = ("caption", "distill", "rewrite")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("VLAA_WORKSPACE", None)
    env.update(
        COLUMNS="200",
        NO_COLOR="1",
        VLAA_COLLECT_WORKERS="1",
        VLAA_VERIFY_MATH_WORKERS="1",
    )
    return env


def _cli(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlaa_data", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )


def _ok(*args: str | os.PathLike[str]) -> Any:
    result = _cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _on_each(commands: list[list[str | os.PathLike[str]]]) -> list[Any]:
    """Run the commands at once, as the machines of shards would; their JSON reports."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "vlaa_data", *map(str, command), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for command in commands
    ]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        reports.append(json.loads(stdout))
    return reports


def _llm_steps(workspace: Path, url: str, shard: Shard | None) -> None:
    with Workspace.open(workspace, write=True) as ws:
        for step in _LLM_STEPS:
            report = run_llm_step(ws, step, LlmOptions(base_url=url, shard=shard))
            assert report.stopped is None, report.to_dict()


class _Chain(threading.Thread):
    """Commands run one after another on ``workspace``, in the background."""

    def __init__(self, commands: list[list[str]], workspace: Path) -> None:
        super().__init__(daemon=True)
        self.commands = commands
        self.workspace = workspace
        self.failed: str | None = None

    def run(self) -> None:
        for command in self.commands:
            result = _cli(*command, "-w", self.workspace)
            if result.returncode != 0:
                self.failed = f"{' '.join(command)}: {result.stderr[-2000:]}"
                return


@dataclass
class Built:
    single: Path
    shards: list[Path]
    merged: Path
    first_merge: dict[str, Any]
    url: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One pipeline (collect, caption, distill, rewrite, verify, filter aha) over 2,000
    synthetic samples in one workspace, and the same as 4 shards, merged."""
    root = tmp_path_factory.mktemp("merge")
    with pytest.MonkeyPatch.context() as patch, ScriptedServer(default_responder) as server:
        for key in [k for k in os.environ if k.endswith("_API_KEY")]:
            patch.delenv(key)
        # The single workspace's commands run one after another beside the shards' work.
        single = init_workspace(root / "single")
        limit = ["--limit", str(SAMPLES), "--seed", "0"]
        url = ["--base-url", server.url]
        single_run = _Chain(
            [
                ["collect", "synthetic", *limit],
                *([step, *url] for step in _LLM_STEPS),
                ["verify", *url],
                ["filter", "aha"],
            ],
            single,
        )
        single_run.start()

        # Shard i of 4 in workspace ws-i: collect and verify on each at once, the LLM steps
        # (whose commands take --shard later) through the library.
        shards = [init_workspace(root / f"ws-{index}") for index in range(SHARDS)]
        of = [Shard(index, SHARDS) for index in range(SHARDS)]
        collected = _on_each(
            [
                ["collect", "synthetic", *limit, "--shard", s, "-w", w]
                for s, w in zip(of, shards, strict=True)
            ]
        )
        for report in collected:
            assert report["collected"] + report["other_shards"] == SAMPLES, report
        for shard, workspace in zip(of, shards, strict=True):
            _llm_steps(workspace, server.url, shard)
        verified = _on_each(
            [
                ["verify", "--base-url", server.url, "--shard", s, "-w", w]
                for s, w in zip(of, shards, strict=True)
            ]
        )
        for shard, workspace, report, verify in zip(of, shards, collected, verified, strict=True):
            assert verify["selected"] == report["collected"], verify
            with Workspace.open(workspace, write=True) as ws:
                run_aha(ws, AhaOptions(shard=shard))

        merged = root / "merged"
        first = _ok("merge", merged, *shards)
        single_run.join()
        assert single_run.failed is None, single_run.failed
        yield Built(single, shards, merged, first, server.url)


def _sample_ids(workspace: Path) -> list[str]:
    return [row[0] for row in query(workspace, "SELECT id FROM samples ORDER BY id")]


def _current(workspace: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Each sample's current result of each step, by content: no ids, runs or times."""
    rows = query(
        workspace,
        "SELECT sample_id, step, status, reason, output::VARCHAR, method, model, attempt, "
        "prompt_hash, backend, scripted FROM current_results",
    )
    return {(r[0], r[1]): r[2:] for r in rows}


@pytest.mark.slow
def test_shards_are_disjoint_and_cover_every_sample(built: Built) -> None:
    everything = _sample_ids(built.single)
    assert len(everything) == SAMPLES
    seen: set[str] = set()
    for index, workspace in enumerate(built.shards):
        ids = _sample_ids(workspace)
        assert ids and all(shard_of(i, SHARDS) == index for i in ids)
        assert not seen & set(ids)
        seen |= set(ids)
        # The step selections agree with collect: SQL's hash is Python's.
        with Workspace.open(built.single, write=False) as ws:
            shard = Shard(index, SHARDS)
            selected = ws.store.ready_samples("caption", parent_step=None, redo=True, shard=shard)
            assert sorted(s.id for s in selected) == ids
    assert seen == set(everything)


@pytest.mark.slow
def test_the_merged_shards_equal_the_single_workspace(built: Built) -> None:
    assert _sample_ids(built.merged) == _sample_ids(built.single)
    merged, single = _current(built.merged), _current(built.single)
    assert set(merged) == set(single)
    assert {k: v for k, v in merged.items() if v != single[k]} == {}
    steps = {step for _, step in single}
    assert {"caption", "distill", "rewrite", "verify"} <= steps

    view = "SELECT id, text_result_id IS NOT NULL, verdict, aha_count FROM samples_view ORDER BY id"
    assert query(built.merged, view) == query(built.single, view)

    status = {w: _ok("status", "-w", w) for w in (built.merged, built.single)}
    for key in ("samples", "sources", "steps", "rejects", "endpoints", "scripted"):
        assert status[built.merged][key] == status[built.single][key], key
    splits = {w: _ok("split", "v1", "-w", w) for w in (built.merged, built.single)}
    for key in ("sft", "rl", "test", "by_source", "excluded"):
        assert splits[built.merged][key] == splits[built.single][key], key
    assert splits[built.single]["sft"] > 0
    places = "SELECT sample_id, split, why FROM release_samples ORDER BY ALL"
    assert query(built.merged, places) == query(built.single, places)

    # The ledger: every request the single run paid for, paid once by some shard; shards may
    # pay again for a request two of them sent (the single run answered it from its cache).
    ledger = (
        "SELECT step, key, any_value(tokens_in), any_value(tokens_out), count(*) "
        "FROM llm_calls WHERE status = 'ok' GROUP BY step, key ORDER BY step, key"
    )
    paid = {w: query(w, ledger) for w in (built.merged, built.single)}
    assert [r[:4] for r in paid[built.merged]] == [r[:4] for r in paid[built.single]]
    shard_calls = sum(query(w, "SELECT count(*) FROM llm_calls")[0][0] for w in built.shards)
    assert query(built.merged, "SELECT count(*) FROM llm_calls")[0][0] == shard_calls
    assert shard_calls >= query(built.single, "SELECT count(*) FROM llm_calls")[0][0]

    # Every run of every shard, labelled with its workspace; the image files came along.
    labels = query(
        built.merged,
        "SELECT settings->>'merged_from', count(*) FROM runs "
        "WHERE settings->>'merged_from' IS NOT NULL GROUP BY ALL ORDER BY ALL",
    )
    assert [label for label, _ in labels] == sorted(str(w) for w in built.shards)
    for (path,) in query(built.merged, "SELECT path FROM images"):
        assert (built.merged / path).is_file()
    assert built.first_merge["added"]["samples"] == SAMPLES


def _snapshot(workspace: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = [t for t in MERGED_TABLES if t != "runs"]
    snapshot = {t: query(workspace, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    snapshot["runs"] = query(
        workspace, "SELECT * FROM runs WHERE settings->>'merged_from' IS NOT NULL ORDER BY ALL"
    )
    return snapshot


@pytest.mark.slow
def test_merging_again_changes_nothing(built: Built) -> None:
    before = _snapshot(built.merged)
    again = _ok("merge", built.merged, *reversed(built.shards), built.shards[0])
    assert set(again["added"].values()) == {0}
    assert _snapshot(built.merged) == before


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3/2", "shard 3/2: shards of 2 are numbered from 0, 0/2 to 1/2"),
        ("4/4", "shard 4/4: shards of 4 are numbered from 0, 0/4 to 3/4"),
        ("x/4", "shard 'x/4': expected I/N with whole numbers"),
        ("0/0", "shard 0/0: the count must be from 1 to"),
    ],
)
def test_a_bad_shard_is_refused_in_one_line(spec: str, message: str, workspace: Path) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Shard.parse(spec)
    for command in (["collect", "synthetic", "--limit", "4"], ["verify", "--rules-only"]):
        result = _cli(*command, "--shard", spec, "-w", workspace)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert result.stderr.startswith(f"error: {message}")


def test_shard_membership_is_the_same_in_python_and_sql() -> None:
    ids = [f"synthetic/counting-0-{i}" for i in range(500)] + ["é/ü", "", "a/'b", "日本/1"]
    assert Shard.parse(" 1 / 3 ") == Shard(1, 3)
    con = duckdb.connect()
    for count in (1, 2, 3, 7):
        for index in range(count):
            shard = Shard(index, count)
            rows = con.execute(
                f"SELECT id FROM unnest($1::VARCHAR[]) AS t(id) WHERE {shard.sql('id')}", [ids]
            ).fetchall()
            assert sorted(r[0] for r in rows) == sorted(i for i in ids if shard.contains(i))
    # The hash is pinned: a shard must hold the same samples on every machine and version.
    assert [shard_of(f"synthetic/counting-0-{i}", 4) for i in range(12)] == [
        *(2, 0, 0, 1, 2, 2, 0, 0, 3, 1, 3, 1)
    ]


def _small(root: Path, name: str, responder: Any = default_responder, samples: int = 12) -> Path:
    """A workspace with ``samples`` synthetic samples, captioned by ``responder``."""
    workspace = init_workspace(root / name)
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, open_source("synthetic", None, SourceOptions(limit=samples)), name="synthetic")
    with ScriptedServer(responder) as server, Workspace.open(workspace, write=True) as ws:
        run_llm_step(ws, "caption", LlmOptions(base_url=server.url))
    return workspace


def _merge(target: Path, *shards: Path) -> dict[str, Any]:
    with Workspace.open(target, write=True) as ws:
        return merge_workspaces(ws, shards).to_dict()


def _saying(text: str) -> Any:
    return lambda request, attempt: Reply.ok(text)


def test_a_sample_in_two_shards_takes_the_results_merged_last(tmp_path: Path) -> None:
    first = _small(tmp_path, "first", _saying("A red square."))
    second = _small(tmp_path, "second", _saying("A blue circle."))
    target = init_workspace(tmp_path / "target")
    _merge(target, first, second)
    captions = "SELECT DISTINCT output->>'caption' FROM current_results WHERE step = 'caption'"
    assert query(target, captions) == [("A blue circle.",)]
    history = "SELECT output->>'caption', count(*) FROM results GROUP BY ALL ORDER BY ALL"
    assert query(target, history) == [("A blue circle.", 12), ("A red square.", 12)]
    before = _snapshot(target)
    again = _merge(target, first)  # merging a shard again changes nothing, in any order
    assert set(again["added"].values()) == {0}
    assert _snapshot(target) == before
    # Merging the other way round, the other one wins.
    other = init_workspace(tmp_path / "other")
    _merge(other, second, first)
    assert query(other, captions) == [("A red square.",)]


def test_a_merge_that_fails_leaves_the_target_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shard = _small(tmp_path, "shard")
    target = _small(tmp_path, "target", samples=3)
    before = _snapshot(target)

    def boom(self: MergeQueries, alias: str) -> int:
        raise RuntimeError("stopped mid-merge")

    monkeypatch.setattr(MergeQueries, "_merge_scores", boom)
    with pytest.raises(RuntimeError, match="stopped mid-merge"):
        _merge(target, shard)
    assert _snapshot(target) == before
    monkeypatch.undo()
    assert _merge(target, shard)["added"]["samples"] == 9
    assert len(_sample_ids(target)) == 12
    # The shard's results are numbered above the target's: its 12 captions are current, the
    # target's own 3 (of samples the shard holds too) are history.
    assert query(target, "SELECT count(*) FROM results") == [(15,)]
    current = "SELECT count(*) FROM current_results c JOIN results r USING (id)"
    assert query(target, current) == [(12,)]


def test_a_shard_the_merge_cannot_take_is_refused_in_one_line(tmp_path: Path) -> None:
    shard = _small(tmp_path, "shard", samples=2)
    target = init_workspace(tmp_path / "target")
    with pytest.raises(VlaaError, match="cannot be merged into itself"):
        _merge(target, target)
    with pytest.raises(VlaaError, match="no workspace at"):
        _merge(target, tmp_path / "nowhere")
    mistyped = _cli("merge", tmp_path / "fresh", shard, tmp_path / "nowhere")
    assert mistyped.stderr.startswith("error: no workspace at") and mistyped.returncode == 1
    assert not (tmp_path / "fresh").exists()  # no target is made for a merge refused
    with WriterLock(shard / "vlaa.lock"), pytest.raises(WorkspaceInUse, match="in use"):
        _merge(target, shard)
    (shard / "journal").mkdir()
    (shard / "journal" / "run.0.jsonl").write_text("{}\n")
    with pytest.raises(VlaaError, match="write them with `vlaa-data init"):
        _merge(target, shard)
    (shard / "journal" / "run.0.jsonl").unlink()
    latest = MIGRATIONS[-1].version
    with duckdb.connect(str(shard / "vlaa.duckdb")) as con:
        con.execute("DELETE FROM schema_migrations WHERE version = ?", [latest])
    result = _cli("merge", target, shard)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {shard} is at schema version {latest - 1} and the target at {latest}: "
        f"upgrade it with `vlaa-data init {shard}`, then merge"
    ]
    assert query(target, "SELECT count(*) FROM samples") == [(0,)]


def test_each_step_selects_only_its_shard(tmp_path: Path) -> None:
    """In a workspace holding every sample (copied to each machine), --shard picks a step's
    samples: the LLM steps', verify's and the filters'."""
    workspace = init_workspace(tmp_path / "ws")
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, open_source("synthetic", None, SourceOptions(limit=16)), name="synthetic")
    ids = set(_sample_ids(workspace))
    first, second = Shard(0, 2), Shard(1, 2)
    mine = {i for i in ids if first.contains(i)}
    assert mine and mine != ids

    def done(step: str) -> set[str]:
        rows = query(workspace, "SELECT sample_id FROM current_results WHERE step = ?", [step])
        return {r[0] for r in rows}

    with ScriptedServer(default_responder) as server:
        _llm_steps(workspace, server.url, first)
        assert done("caption") == done("distill") == done("rewrite") == mine
        _llm_steps(workspace, server.url, second)
    assert done("rewrite") == ids
    with Workspace.open(workspace, write=True) as ws:
        run_verify(ws, VerifyOptions(judge=LlmOptions(shard=second), rules_only=True))
        run_aha(ws, AhaOptions(shard=first))
        texts = ws.store.scored_texts(shard=second)  # what filter ppl --shard 1/2 scores
    assert {t.sample_id for t in texts} == ids - mine
    assert done("verify") == ids - mine
    scored = query(workspace, "SELECT sample_id FROM scores WHERE name = 'aha'")
    assert {r[0] for r in scored} == mine
