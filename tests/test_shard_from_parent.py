"""Taking one shard of a workspace: ``merge --shard I/N`` takes the rows of that shard's
samples only (the ledger rows their cache needs too), the shards merged back equal the
workspace, and ``run --executor`` on a workspace whose samples were collected by hand goes on
from where it is, ending where a single-process run ends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import png_bytes, query, write_jsonl
from vlaa_data.errors import WorkspaceInUse
from vlaa_data.filters.aha import AhaOptions, run_aha
from vlaa_data.lock import ReaderLock, WriterLock
from vlaa_data.merge import merge_workspaces
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.steps.llm_runner import run_llm_step
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.store.shards import Shard
from vlaa_data.testing.server import ScriptedServer, default_responder
from vlaa_data.workspace import Workspace, init_workspace

SHARDS = 3
_NO_SAMPLE = "no-sample-ledger-row"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("VLAA_WORKSPACE", None)
    env.update(COLUMNS="200", NO_COLOR="1", VLAA_COLLECT_WORKERS="1")
    env.update(VLAA_VERIFY_MATH_WORKERS="1")
    return env


def _cli(*args: str | os.PathLike[str], timeout: float = 600) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "vlaa_data", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(default_responder) as running:
        yield running


def _collect(workspace: Path, spec: str, name: str, **options: Any) -> None:
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, open_source(spec, None, SourceOptions(**options)), name=name)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory, server: ScriptedServer) -> Path:
    """A workspace collected by hand: two sources of the same 24 synthetic images ("a", all
    captioned, some distilled and scored; "b", not captioned: a's captions answer theirs from
    the cache), a file with rejected rows, and a ledger row of no sample."""
    root = tmp_path_factory.mktemp("parent")
    workspace = init_workspace(root / "ws")
    _collect(workspace, "synthetic", "a", limit=24, seed=0)
    _collect(workspace, "synthetic", "b", limit=24, seed=0)
    (root / "img").mkdir()
    rows = []
    for i in range(12):
        (root / "img" / f"{i}.png").write_bytes(png_bytes((20 * i, 90, 200)))
        answer = "" if i % 4 == 0 else str(i)  # a quarter rejected: no answer
        rows.append(
            {"id": f"r{i}", "question": "How many?", "answer": answer, "image": f"img/{i}.png"}
        )
    rows += [dict(row) for row in rows[1:6]]  # duplicate ids: rejected as 'r1#2' ...
    _collect(workspace, str(write_jsonl(root / "rows.jsonl", rows)), "rows")
    with Workspace.open(workspace, write=True) as ws:
        run_llm_step(ws, "caption", LlmOptions(base_url=server.url, sources=("a",)))
        run_llm_step(ws, "distill", LlmOptions(base_url=server.url, limit=10))
        run_aha(ws, AhaOptions())
    with duckdb.connect(str(workspace / "vlaa.duckdb")) as con:
        con.execute(
            "INSERT INTO llm_calls SELECT * REPLACE (? AS id, NULL AS sample_id) "
            "FROM llm_calls ORDER BY id LIMIT 1",
            [_NO_SAMPLE],
        )
    return workspace


def _table(workspace: Path, table: str) -> list[tuple[Any, ...]]:
    return query(workspace, f"SELECT * FROM {table} ORDER BY ALL")


def _current(workspace: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Each sample's current result of each step, by content: no ids or times."""
    rows = query(
        workspace,
        "SELECT sample_id, step, status, reason, output::VARCHAR, method, model, attempt, "
        "prompt_hash, run_id FROM current_results",
    )
    return {(r[0], r[1]): r[2:] for r in rows}


def test_the_shards_of_a_workspace_merged_back_equal_it(
    parent: Path, tmp_path: Path, server: ScriptedServer
) -> None:
    # Shard 0 inside the workspace, by the command; the others beside it, by the library.
    targets = [parent / "shards" / f"0-of-{SHARDS}"]
    targets += [init_workspace(tmp_path / f"part-{i}") for i in range(1, SHARDS)]
    first = _cli("merge", targets[0], parent, "--shard", f"0/{SHARDS}")
    assert first["added"]["samples"] > 0
    for index, target in enumerate(targets[1:], start=1):
        with Workspace.open(target, write=True) as ws:
            merge_workspaces(ws, [parent], shard=Shard(index, SHARDS))

    ids = {row[0] for row in query(parent, "SELECT id FROM samples")}
    rejects = query(parent, "SELECT source, row_key, reason FROM collect_rejects ORDER BY ALL")
    assert {reason for *_, reason in rejects} == {"missing_answer", "duplicate_id"}
    seen: set[str] = set()
    for index, target in enumerate(targets):
        shard = Shard(index, SHARDS)
        mine = {row[0] for row in query(target, "SELECT id FROM samples")}
        assert mine and all(shard.contains(i) for i in mine) and not mine & seen
        seen |= mine
        for table, column in (("results", "sample_id"), ("scores", "sample_id")):
            rows = query(target, f"SELECT DISTINCT {column} FROM {table}")
            assert {row[0] for row in rows} <= mine, table
        images = query(target, "SELECT count(*) FROM images")[0][0]
        assert images == len(query(target, "SELECT DISTINCT image_sha FROM samples"))
        for (path,) in query(target, "SELECT path FROM images"):
            assert (target / path).is_file()
        # a reject goes with its row's sample id, as collect --shard decided it
        taken = query(target, "SELECT source, row_key FROM collect_rejects ORDER BY ALL")
        expected = [
            (source, key)
            for source, key, _ in rejects
            if shard.contains(f"{source}/{key.split('#')[0]}")
        ]
        assert taken == expected
        # a ledger row of no sample goes to every shard; every run comes, labelled
        assert query(target, "SELECT count(*) FROM llm_calls WHERE id = ?", [_NO_SAMPLE]) == [(1,)]
        runs = query(
            target,
            "SELECT count(*) FROM runs WHERE settings->>'merged_from' = ?",
            [str(parent)],
        )
        assert runs == query(parent, "SELECT count(*) FROM runs")
    assert seen == ids

    # Again: nothing more.
    again = _cli("merge", targets[0], parent, "--shard", f"0/{SHARDS}")
    assert set(again["added"].values()) == {0}

    # Merged back into an empty workspace: the workspace, row for row.
    union = init_workspace(tmp_path / "union")
    with Workspace.open(union, write=True) as ws:
        merge_workspaces(ws, targets)
    for table in ("samples", "images", "collect_rejects", "llm_calls"):
        assert _table(union, table) == _table(parent, table), table
    assert _current(union) == _current(parent)
    assert query(union, "SELECT count(*) FROM results") == query(
        parent, "SELECT count(*) FROM results"
    )
    totals = (
        "SELECT count(*), sum(tokens_in), sum(tokens_out), round(sum(cost_usd), 9) FROM llm_calls"
    )
    assert query(union, totals) == query(parent, totals)
    scores = "SELECT sample_id, name, value, detail::VARCHAR, run_id FROM scores ORDER BY ALL"
    assert query(union, scores) == query(parent, scores) and query(parent, scores)

    # The cache came along: b's captions are answered by a's replies, wherever they are.
    before = len(server.requests)
    for target in targets:
        with Workspace.open(target, write=True) as ws:
            options = LlmOptions(base_url=server.url, sources=("a", "b"))
            report = run_llm_step(ws, "caption", options)
        assert report.stopped is None
    assert len(server.requests) == before
    captioned = "SELECT count(*) FROM current_results WHERE step = 'caption' AND status = 'done'"
    assert sum(query(t, captioned)[0][0] for t in targets) == 48  # a's and b's


def test_a_workspace_is_read_by_several_merges_at_once_and_written_by_none(
    parent: Path, tmp_path: Path
) -> None:
    target = init_workspace(tmp_path / "part")
    with ReaderLock(parent / "vlaa.lock"):  # another task reading it meanwhile
        with Workspace.open(target, write=True) as ws:
            merge_workspaces(ws, [parent], shard=Shard(1, SHARDS))
        with pytest.raises(WorkspaceInUse, match="in use"):
            Workspace.open(parent, write=True)
    with (
        WriterLock(parent / "vlaa.lock"),
        Workspace.open(target, write=True) as ws,
        pytest.raises(WorkspaceInUse, match="in use"),
    ):
        merge_workspaces(ws, [parent], shard=Shard(1, SHARDS))
    Workspace.open(parent, write=True).close()  # every lock released


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, server: ScriptedServer) -> dict[str, Any]:
    """200 samples collected by hand, 50 of them captioned, then run as 2 tasks on 2 workers;
    a copy run in one process."""
    root = tmp_path_factory.mktemp("by-hand")
    sharded = init_workspace(root / "sharded")
    _cli("collect", "synthetic", "--limit", "200", "-w", sharded)
    start = len(server.requests)
    _cli("caption", "--limit", "50", "--base-url", server.url, "-w", sharded)
    captioned = server.requests[start:]
    single = root / "single"
    shutil.copytree(sharded, single)
    start = len(server.requests)
    alone = _cli("run", "--base-url", server.url, "-w", single)
    single_requests = server.requests[start:]
    start = len(server.requests)
    report = _cli(
        "run", "--executor", "local", "--tasks", "2", "--workers", "2",
        "--base-url", server.url, "-w", sharded,
    )  # fmt: skip
    return {
        "single": single,
        "sharded": sharded,
        "alone": alone,
        "report": report,
        "captioned": captioned,
        "single_requests": single_requests,
        "sharded_requests": server.requests[start:],
    }


def _bodies(requests: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(request, sort_keys=True) for request in requests)


_RELEASE = (
    "SELECT split, sample_id, position, why FROM release_samples WHERE release = 'v1' ORDER BY ALL"
)


def test_a_sharded_run_goes_on_from_samples_collected_by_hand(runs: dict[str, Any]) -> None:
    single, sharded = runs["single"], runs["sharded"]
    assert len(runs["captioned"]) == 50
    assert _current(sharded).keys() == _current(single).keys()
    content = {k: v[:-1] for k, v in _current(sharded).items()}  # no run id
    assert content == {k: v[:-1] for k, v in _current(single).items()}
    assert query(sharded, _RELEASE) == query(single, _RELEASE) and query(single, _RELEASE)
    report, alone = runs["report"], runs["alone"]
    assert report["release"] == alone["release"] == "v1"
    for step in ("collect", "caption", "distill", "rewrite", "verify", "split"):
        for state in ("done", "rejected", "failed", "pending"):
            assert report["steps"][step][state] == alone["steps"][step][state], (step, state)
    status = [_cli("status", "-w", w) for w in (sharded, single)]
    assert status[0]["steps"] == status[1]["steps"]

    # The same requests as the single run, none of them the 50 captions asked before.
    sent = _bodies(runs["sharded_requests"])
    assert sent == _bodies(runs["single_requests"])
    assert not set(sent) & set(_bodies(runs["captioned"]))
    caption_requests = report["steps"]["caption"]["requests"]
    assert caption_requests == alone["steps"]["caption"]["requests"] == 150

    # No row twice: each table holds what the single run's holds (runs aside).
    for table in (
        "samples", "images", "collect_rejects", "results", "llm_calls", "scores",
        "releases", "release_samples", "release_events",
    ):  # fmt: skip
        count = f"SELECT count(*) FROM {table}"
        assert query(sharded, count) == query(single, count), table
    twice = (
        "SELECT count(*) FROM (SELECT sample_id, step, attempt, run_id FROM results "
        "GROUP BY ALL HAVING count(*) > 1)"
    )
    assert query(sharded, twice) == [(0,)]
