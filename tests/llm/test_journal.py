"""The reply journal: replies are on disk before their slot is freed, and nothing journaled is
lost or written twice, whether the run finishes, its database writes fail, or it is killed."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from tests.conftest import query
from tests.llm.conftest import marker, run_step
from tests.llm.test_cli_llm import done_per_sample, start_distill
from vlaa_data.llm.request import ChatRequest
from vlaa_data.steps.llm_writer import ResultWriter
from vlaa_data.store.journal import (
    JOURNAL_DIR,
    Journal,
    JournalEntry,
    journal_files,
    read_journal,
)
from vlaa_data.testing.server import ScriptedServer
from vlaa_data.workspace import Workspace


def entry(n: int, *, paid: bool = True) -> JournalEntry:
    request = ChatRequest(
        model="m", messages=[{"role": "user", "content": f"Q{n}: «how many?»"}], params={}
    )
    # A server may pretty-print its body: newlines between tokens, and unicode.
    response = json.dumps({"choices": [{"message": {"content": f"Ответ {n}"}}]}, indent=2)
    result = {"id": None, "sample_id": f"s{n}", "step": "distill", "run_id": "run1", "n": n}
    call = {"id": f"c{n}", "request": request.rendered_json, "response": response, "x": None}
    return JournalEntry(result, call if paid else None)


def test_entries_read_back_as_written_and_a_torn_record_ends_the_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "run1")
    written = [entry(0), entry(1, paid=False), entry(2)]
    for item in written:
        journal.append(item)
    [path] = journal_files(tmp_path)
    read = list(read_journal(path))
    assert [e.result for e in read] == [e.result for e in written]
    assert read[1].call is None
    for got, want in ((read[0], written[0]), (read[2], written[2])):
        assert got.call is not None and want.call is not None
        assert got.call["request"] == want.call["request"]  # the exact canonical text
        assert json.loads(got.call["response"]) == json.loads(want.call["response"])
        assert {k: v for k, v in got.call.items() if k != "response"} == {
            k: v for k, v in want.call.items() if k != "response"
        }
    # A kill -9 in the middle of a write leaves a record cut short: it counts as in flight.
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])
    assert [e.result["n"] for e in read_journal(path)] == [0, 1]


def test_committed_segments_are_deleted_and_uncommitted_ones_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "run1", segment_bytes=600)
    segments = [journal.append(entry(n)) for n in range(6)]
    assert len(set(segments)) >= 3  # each entry is ~400 bytes: a new segment every one or two
    files = journal_files(tmp_path)
    assert len(files) == len(set(segments))
    journal.committed(Counter(segments[:3]))
    left = {int(p.stem.rsplit(".", 1)[1]) for p in journal_files(tmp_path)}
    assert left == set(segments[3:]) | {segments[-1]}
    journal.close()  # entries 3..5 are not committed: their segments stay for recovery
    assert {int(p.stem.rsplit(".", 1)[1]) for p in journal_files(tmp_path)} == set(segments[3:])
    assert sorted(e.result["n"] for p in journal_files(tmp_path) for e in read_journal(p)) == [
        3,
        4,
        5,
    ]


def test_a_finished_run_leaves_no_journal(llm_workspace) -> None:
    root = llm_workspace(5)
    report = run_step(root, "distill", model="test-r1")
    assert report.progress.requests == 5
    assert not (root / JOURNAL_DIR).exists()


def test_replay_writes_only_the_missing_replies_once(llm_workspace) -> None:
    root = llm_workspace(4)
    report = run_step(root, "distill", model="test-r1", limit=2)
    rows = query(
        root,
        "SELECT to_json(r), to_json(c) FROM results r JOIN llm_calls c "
        "ON c.run_id = r.run_id AND c.sample_id = r.sample_id WHERE r.run_id = ? "
        "ORDER BY r.sample_id",
        [report.run_id],
    )
    assert len(rows) == 2
    journal = Journal(root, report.run_id or "")
    for result_json, call_json in rows:
        result, call = json.loads(result_json), json.loads(call_json)
        del result["created_at"], call["created_at"]
        result["output"], call["request"] = (
            json.dumps(result["output"]),
            json.dumps(call["request"]),
        )
        call["response"] = json.dumps(call["response"])
        journal.append(JournalEntry({**result, "id": None}, call))  # already in the database
        # The same reply for a sample whose rows never reached the database.
        other = f"toy/s{int(result['sample_id'][-3:]) + 2:03d}"
        missing = {**result, "id": None, "sample_id": other}
        journal.append(JournalEntry(missing, {**call, "id": call["id"] + "-2"}))
    with Workspace.open(root, write=True) as ws:
        assert ws.recovered_replies == 2
    assert not (root / JOURNAL_DIR).exists()
    with Workspace.open(root, write=True) as ws:
        assert ws.recovered_replies == 0
    assert query(root, "SELECT count(*) FROM results WHERE run_id = ?", [report.run_id]) == [(4,)]
    assert query(root, "SELECT count(*) FROM llm_calls WHERE run_id = ?", [report.run_id]) == [(4,)]
    assert query(root, "SELECT count(*), count(DISTINCT id) FROM results") == [(8, 8)]


def test_failed_database_writes_stop_the_run_and_keep_the_journal(tmp_path: Path) -> None:
    from vlaa_data.workspace import init_workspace

    root = init_workspace(tmp_path / "ws")
    good = {"sample_id": "s1", "step": "distill", "attempt": 1, "status": "done"}
    good |= {"run_id": "run1", "output": "{}", "id": None}
    bad = {**good, "sample_id": "s2", "status": None}  # NOT NULL: the transaction fails

    async def run(ws: Workspace) -> None:
        writer = ResultWriter(ws.store, flush_s=0.01, journal=Journal(root, "run1"))
        await writer.start()
        writer.add(dict(good), journal=True)
        writer.add(dict(bad), journal=True)
        with pytest.raises(duckdb.ConstraintException):
            for _ in range(200):
                await writer.room()
                await asyncio.sleep(0.01)
        with pytest.raises(duckdb.ConstraintException):
            await writer.close()

    with Workspace.open(root, write=True) as ws:
        asyncio.run(run(ws))
        assert ws.store.query("SELECT count(*) FROM results").rows == [(0,)]
    [path] = journal_files(root)
    assert [e.result["sample_id"] for e in read_journal(path)] == ["s1", "s2"]


def test_room_waits_while_the_backlog_is_full(tmp_path: Path) -> None:
    from vlaa_data.workspace import init_workspace

    root = init_workspace(tmp_path / "ws")
    row = {"step": "distill", "attempt": 1, "status": "done", "run_id": "run1", "id": None}

    async def run(ws: Workspace) -> list[float]:
        writer = ResultWriter(ws.store, flush_s=0.2, max_backlog=2)
        await writer.start()
        waits = []
        for n in range(4):
            writer.add({**row, "sample_id": f"s{n}"})
            started = time.monotonic()
            await writer.room()
            waits.append(time.monotonic() - started)
        await writer.close()
        return waits

    with Workspace.open(root, write=True) as ws:
        waits = asyncio.run(run(ws))
        assert ws.store.query("SELECT count(*) FROM results").rows == [(4,)]
    assert waits[0] < 0.05  # one row buffered: room
    assert waits[1] >= 0.1  # two: wait for the flush that commits them


def test_kill_9_while_a_reader_holds_the_database_loses_no_reply(
    llm_workspace, server: ScriptedServer
) -> None:
    """The run cannot commit while a reader has the file, so every reply it gets is only in
    the journal when it is killed; the next run writes them and sends none of them again."""
    samples, concurrency = 30, 4
    root = llm_workspace(samples)
    server.latency = 0.1
    process = start_distill(root, "--concurrency", str(concurrency))
    try:
        deadline = time.monotonic() + 30
        while server.count < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        with Workspace.open(root, write=False):
            held_from = server.count
            while server.count < held_from + 12 and time.monotonic() < deadline:
                time.sleep(0.02)
            process.kill()  # SIGKILL while the reader still has the file
            process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    sent = server.count
    journaled = [e for path in journal_files(root) for e in read_journal(path)]
    assert len(journaled) >= 12 - concurrency  # answered while the reader held the file

    server.reset()
    rerun = start_distill(root, "--concurrency", str(concurrency), "--json")
    stdout, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    assert f"recovered {len(journaled)} replies" in stderr
    assert json.loads(stdout)["recovered"] == len(journaled)
    assert not (root / JOURNAL_DIR).exists()
    assert done_per_sample(root) == {f"toy/s{i:03d}": 1 for i in range(samples)}
    # Only the requests in flight at the kill were sent twice.
    assert sent + server.count <= samples + concurrency
    rerun_samples = {f"toy/s{marker(body):03d}" for body in server.requests}
    assert not rerun_samples & {e.result["sample_id"] for e in journaled}


def test_a_journal_that_cannot_be_written_is_a_one_line_error_naming_it(llm_workspace, cli) -> None:
    root = llm_workspace(2)
    bad = {"sample_id": "s1", "step": "distill", "attempt": 1, "status": None, "run_id": "r1"}
    journal = Journal(root, "r1")
    journal.append(JournalEntry({**bad, "id": None}, None))  # NOT NULL status: cannot insert
    journal.close()
    result = cli("distill", "-w", root, "--model", "test-r1")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: could not write the replies journaled in ")
    assert "r1.0.jsonl" in line and "move the file out of the journal folder" in line
    assert journal_files(root)  # kept: nothing is thrown away behind the user's back
    result = cli("status", "-w", root, "--json")  # readers are not held up by it
    assert result.returncode == 0, result.stderr
