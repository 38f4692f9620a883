"""``vlaa-data sql`` stays read-only: no write to the database, no file or URL reached, no
setting changed, whatever the statement, and the database file is byte-identical after."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.test_collect import run_collect
from vlaa_data.errors import QueryError
from vlaa_data.workspace import Workspace

# (statement, what the refusal says)
REFUSED = [
    ("INSERT INTO runs (id) VALUES ('x')", "INSERT statements are refused"),
    ("UPDATE samples SET answer = 'x'", "UPDATE statements are refused"),
    ("DELETE FROM samples", "DELETE statements are refused"),
    ("DROP TABLE samples", "DROP statements are refused"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are refused"),
    ("CREATE TEMP TABLE t (a INT)", "CREATE statements are refused"),
    ("ALTER TABLE samples ADD COLUMN x INT", "ALTER statements are refused"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "ATTACH statements are refused"),
    ("DETACH vlaa", "DETACH statements are refused"),
    ("COPY samples TO '{tmp}/out.csv'", "COPY statements are refused"),
    ("COPY samples FROM '{tmp}/rows.csv'", "COPY statements are refused"),
    ("EXPORT DATABASE '{tmp}/dump'", "EXPORT statements are refused"),
    ("INSTALL httpfs", "LOAD statements are refused"),
    ("LOAD json", "LOAD statements are refused"),
    ("SET threads = 1", "SET statements are refused"),
    ("SET enable_external_access = true", "SET statements are refused"),
    ("RESET lock_configuration", "SET statements are refused"),
    ("PRAGMA memory_limit = '1GB'", "SET statements are refused"),
    ("USE memory", "SET statements are refused"),
    ("CALL pragma_version()", "CALL statements are refused"),
    ("CHECKPOINT", "CALL statements are refused"),
    ("VACUUM", "VACUUM statements are refused"),
    ("BEGIN TRANSACTION", "TRANSACTION statements are refused"),
    ("PREPARE wipe AS DELETE FROM samples", "PREPARE statements are refused"),
    ("SELECT 1; DROP TABLE samples", "DROP statements are refused"),
    ("SELECT 1; COPY samples TO '{tmp}/out.csv'", "COPY statements are refused"),
    # EXPLAIN ANALYZE runs what it explains.
    ("EXPLAIN ANALYZE COPY samples TO '{tmp}/out.csv'", "COPY statements are refused"),
    ("explain analyze delete from samples", "DELETE statements are refused"),
    ("EXPLAIN /* hidden */ ANALYZE COPY samples TO '{tmp}/out.csv'", "unrecognised EXPLAIN"),
    # Reading files and URLs, through table functions and replacement scans.
    ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
    ("SELECT * FROM read_text('{ws}/vlaa.toml')", "file system operations are disabled"),
    ("SELECT * FROM read_blob('{ws}/vlaa.lock')", "file system operations are disabled"),
    ("SELECT * FROM glob('/*')", "file system operations are disabled"),
    ("SELECT * FROM '{tmp}/rows.csv'", "file system operations are disabled"),
    ("SELECT * FROM read_json('{tmp}/rows.jsonl')", "file system operations are disabled"),
    ("SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')", "operations are disabled"),
    # PRAGMAs that change settings (profiling writes wherever profile_output says).
    ("PRAGMA enable_profiling", "configuration has been locked"),
    ("PRAGMA disable_checkpoint_on_shutdown", "configuration has been locked"),
]

ALLOWED = [
    "SELECT count(*) FROM samples",
    "FROM samples_view LIMIT 1",
    "WITH s AS (SELECT * FROM samples) SELECT count(*) FROM s",
    "DESCRIBE samples",
    "SUMMARIZE samples",
    "SHOW TABLES",
    "PRAGMA table_info('samples')",
    "EXPLAIN SELECT * FROM samples",
    "EXPLAIN ANALYZE SELECT count(*) FROM samples",
    "EXPLAIN (FORMAT json) SELECT 1",
]


@pytest.fixture
def filled(workspace: Path, tmp_path: Path) -> Path:
    run_collect(workspace, "synthetic:counting", limit=3, seed=0)
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    return workspace


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_write_and_outside_read_is_refused(filled: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with Workspace.open(filled, write=False) as ws:
        ws.store.confine()  # what `vlaa-data sql` does
        for template, refusal in REFUSED:
            statement = template.format(tmp=tmp_path, ws=filled)
            with pytest.raises(QueryError) as refused:
                ws.store.query(statement)
            assert refusal in str(refused.value), statement
            assert "\n" not in str(refused.value)
        for statement in ALLOWED:
            assert ws.store.query(statement).rows, statement
        assert ws.store.query("SELECT count(*) FROM samples").rows == [(3,)]
    assert snapshot(tmp_path) == before  # the database and every other file untouched


def test_the_sql_command_refuses_through_the_cli(cli, filled: Path, tmp_path: Path) -> None:
    database = filled / "vlaa.duckdb"
    before = snapshot(tmp_path)
    attempts = [
        ("SELECT 1; DROP TABLE samples", "error: read-only: DROP statements are refused"),
        (f"EXPLAIN ANALYZE COPY samples TO '{tmp_path}/out.csv'", "error: read-only: COPY"),
        ("SELECT * FROM read_csv('/etc/passwd')", "error: Permission Error: Cannot access file"),
        ("PRAGMA enable_profiling", "error: Invalid Input Error: Cannot change configuration"),
    ]
    for statement, refusal in attempts:
        result = cli("sql", statement, "-w", filled)
        assert result.returncode == 1, (statement, result.stdout)
        assert result.stderr.startswith(refusal), (statement, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "root:" not in result.stdout + result.stderr  # nothing of /etc/passwd shown
    counted = cli("sql", "SELECT count(*) AS n FROM samples", "--json", "-w", filled)
    assert json.loads(counted.stdout) == [{"n": 3}]
    assert snapshot(tmp_path) == before
    assert database.stat().st_size > 0
