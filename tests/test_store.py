from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from vlaa_data.errors import QueryError
from vlaa_data.store import MIGRATIONS, Store
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
