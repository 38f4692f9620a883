from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import duckdb
import pytest

from vlaa_data.errors import QueryError, VlaaError
from vlaa_data.store import MIGRATIONS, RunHandle, Store
from vlaa_data.workspace import Workspace


def test_migrating_an_empty_database_creates_every_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "empty.duckdb", read_only=False)
    assert store.schema_version() == MIGRATIONS[-1].version
    tables = {
        row[0]
        for row in store.con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert {
        "schema_migrations",
        "samples",
        "images",
        "results",
        "runs",
        "collect_rejects",
        "latest_results",
        "current_results",
        "scores",
        "releases",
        "release_samples",
        "release_events",
        "samples_view",
    } <= tables
    columns = {
        row[0]
        for row in store.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'results'"
        ).fetchall()
    }
    assert {
        "sample_id",
        "step",
        "attempt",
        "status",
        "output",
        "reason",
        "model",
        "prompt_hash",
        "run_id",
        "parent_id",
    } <= columns
    store.close()


def test_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    first = Store(path, read_only=False)
    assert first.migrate() == []  # already applied by the constructor
    first.close()
    second = Store(path, read_only=False)
    count = second.con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(MIGRATIONS)
    second.close()


def test_migration_versions_are_numbered_in_order() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def _database_at_version_3(path: Path) -> None:
    """A database as vlaa-data left it before migration 4, with two replies in the ledger:
    one of the scripted server of that time (known by its completion id), one real."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
    )
    for migration in MIGRATIONS[:3]:
        con.execute(migration.sql)
        con.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            [migration.version, migration.name],
        )
    for key, base_url, reply_id in [
        ("k1", "http://127.0.0.1:9/v1", "chatcmpl-scripted-1"),
        ("k2", "https://api.openai.com/v1", "chatcmpl-abc"),
    ]:
        con.execute(
            "INSERT INTO llm_calls (id, key, step, backend, base_url, model, request, response,"
            " status, run_id) VALUES (?, ?, 'caption', 'openai', ?, 'm', '{}', ?, 'ok', 'r')",
            [key, key, base_url, f'{{"id": "{reply_id}", "choices": []}}'],
        )
    for result_id, key in [(1, "k1"), (2, "k2"), (3, None)]:
        con.execute(
            "INSERT INTO results (id, sample_id, step, attempt, status, prompt_hash, run_id)"
            " VALUES (?, ?, 'caption', 1, 'done', ?, 'r')",
            [result_id, f"s{result_id}", key],
        )
    con.close()


def test_migration_4_records_where_each_result_came_from(tmp_path: Path) -> None:
    path = tmp_path / "v3.duckdb"
    _database_at_version_3(path)
    store = Store(path, read_only=False)
    assert store.schema_version() == MIGRATIONS[-1].version
    rows = store.con.execute(
        "SELECT id, backend, base_url, scripted FROM current_results ORDER BY id"
    ).fetchall()
    assert rows == [
        (1, "openai", "http://127.0.0.1:9/v1", True),
        (2, "openai", "https://api.openai.com/v1", False),
        (3, None, None, None),  # no reply: no model was asked
    ]
    ledger = store.con.execute("SELECT key, scripted FROM llm_calls ORDER BY key").fetchall()
    assert ledger == [("k1", True), ("k2", False)]
    assert store.has_scripted_replies("caption") and not store.has_scripted_replies("distill")
    store.close()


def test_a_reader_of_an_older_database_is_told_to_upgrade_it(tmp_path: Path) -> None:
    path = tmp_path / "v3.duckdb"
    _database_at_version_3(path)
    latest = MIGRATIONS[-1].version
    with pytest.raises(
        VlaaError, match=rf"version 3 .* needs {latest}: upgrade it with `vlaa-data"
    ):
        Store(path, read_only=True)
    Store(path, read_only=False).close()  # a writer migrates it
    Store(path, read_only=True).close()


def _add_results(store: Store, rows: list[tuple]) -> None:
    for row in rows:
        store.con.execute(
            "INSERT INTO results (id, sample_id, step, attempt, status, run_id, parent_id) "
            "VALUES (?, ?, ?, 1, ?, 'r', ?)",
            list(row),
        )


def test_redoing_an_upstream_step_makes_downstream_results_stale(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb", read_only=False)
    _add_results(
        store,
        [
            (1, "s1", "caption", "done", None),
            (2, "s1", "distill", "done", 1),
            (3, "s1", "rewrite", "done", 2),
        ],
    )
    current = store.con.execute("SELECT id FROM current_results ORDER BY id").fetchall()
    assert [r[0] for r in current] == [1, 2, 3]
    _add_results(store, [(4, "s1", "caption", "done", None)])  # caption redone
    current = store.con.execute("SELECT id FROM current_results ORDER BY id").fetchall()
    assert [r[0] for r in current] == [4]  # distill and rewrite are now stale, not deleted
    assert store.con.execute("SELECT count(*) FROM results").fetchone()[0] == 4
    store.close()


def test_sql_refuses_writes(workspace: Path) -> None:
    with Workspace.open(workspace, write=False) as ws:
        for statement in (
            "DELETE FROM samples",
            "INSERT INTO runs VALUES (1)",
            "DROP TABLE samples",
            "COPY samples TO 'x.csv'",
            "SELECT 1; UPDATE samples SET answer = 'x'",
            "ATTACH 'other.db'",
        ):
            with pytest.raises(QueryError, match="read-only"):
                ws.store.query(statement)
        assert ws.store.query("SELECT count(*) AS n FROM samples").rows == [(0,)]


def test_sql_reports_bad_queries_in_one_line(workspace: Path) -> None:
    with Workspace.open(workspace, write=False) as ws, pytest.raises(QueryError) as info:
        ws.store.query("SELECT nope FROM samples")
    assert "\n" not in str(info.value)


def test_read_only_connection_cannot_write_even_past_the_check(workspace: Path) -> None:
    with Workspace.open(workspace, write=False) as ws, pytest.raises(duckdb.Error):
        ws.store.con.execute("CREATE TABLE x (a INT)")


class _Budget(Exception):
    pass


def _body(ending: str, handle: RunHandle) -> None:
    handle.counts = {"done": 1}
    if ending == "stopped":
        handle.stopped = "budget"
    elif ending == "interrupted":
        raise KeyboardInterrupt
    elif ending == "cancelled":
        raise asyncio.CancelledError
    elif ending == "failed":
        raise _Budget("spent\nsecond line")


@pytest.mark.parametrize(
    ("ending", "status", "raised"),
    [
        ("finished", "finished", None),
        ("stopped", "stopped", None),
        ("interrupted", "interrupted", KeyboardInterrupt),
        ("cancelled", "interrupted", asyncio.CancelledError),
        ("failed", "failed", _Budget),
    ],
)
def test_a_run_records_how_its_body_ended(
    tmp_path: Path, ending: str, status: str, raised: type[BaseException] | None
) -> None:
    store = Store(tmp_path / "runs.duckdb", read_only=False)
    with contextlib.ExitStack() as stack:
        if raised is not None:
            stack.enter_context(pytest.raises(raised))
        with store.run("vlaa-data test", "0", {"k": 1}) as handle:
            assert store.con.execute(
                "SELECT status FROM runs WHERE id = ?", [handle.id]
            ).fetchall() == [("running",)]
            _body(ending, handle)
    [(recorded, counts, ended)] = store.con.execute(
        "SELECT status, counts, ended_at IS NOT NULL FROM runs"
    ).fetchall()
    expected = {"done": 1, "error": "spent"} if status == "failed" else {"done": 1}
    assert (recorded, json.loads(counts), ended) == (status, expected, True)


def test_a_run_reads_its_counts_on_exit_and_leaves_a_callers_run_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "runs.duckdb", read_only=False)
    counts = {"done": 0}
    with store.run("vlaa-data outer", "0", {}) as outer:
        outer.counts = lambda: dict(counts)
        with store.run("vlaa-data inner", "0", {}, run_id=outer.id) as inner:
            assert inner.id == outer.id
        assert store.con.execute("SELECT status FROM runs").fetchall() == [("running",)]
        counts["done"] = 3
    [(recorded, saved)] = store.con.execute("SELECT status, counts FROM runs").fetchall()
    assert (recorded, json.loads(saved)) == ("finished", {"done": 3})


def test_no_progress_bar_reaches_stdout(workspace: Path) -> None:
    # DuckDB draws one on stdout for a query over 2 s: at a million samples it broke the JSON
    # of `run --json`.
    with Workspace.open(workspace, write=False) as ws:
        rows = ws.store.con.execute("SELECT current_setting('enable_progress_bar')").fetchall()
    assert rows == [(False,)]
