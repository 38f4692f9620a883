"""The only module that speaks SQL to the workspace database."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from vlaa_data.errors import QueryError, VlaaError, WorkspaceInUse
from vlaa_data.store.llm import LlmQueries
from vlaa_data.store.merge import MergeQueries
from vlaa_data.store.migrations import MIGRATIONS
from vlaa_data.store.releases import ReleaseQueries
from vlaa_data.store.runs import RunQueries

__all__ = ["QueryResult", "Store"]

_READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}
# "EXPLAIN [ANALYZE] [(FORMAT …)]" before the statement explained
_EXPLAIN = re.compile(r"EXPLAIN\s+(ANALY[SZ]E\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)
_LOCK_RETRY_SECONDS = 3.0


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


class Store(LlmQueries, MergeQueries, ReleaseQueries, RunQueries):
    """A connection to ``vlaa.duckdb``. Writers must hold the workspace's ``WriterLock``.

    DuckDB lets no other process open the file while a writer has it open. Long-running
    writers (the LLM steps) therefore poll ``reader_waiting()`` between writes and
    ``suspend()`` the connection when a reader has asked for it, then ``resume()``.
    """

    def __init__(
        self, path: Path, *, read_only: bool, memory_limit: str | None = None, threads: int = 0
    ) -> None:
        self.path = path
        self.read_only = read_only
        # DuckDB's settings for this connection; its defaults where not given.
        self.config: dict[str, str | bool | int | float | list[str]] = {}
        if memory_limit:
            self.config["memory_limit"] = memory_limit
        if threads:
            self.config["threads"] = threads
        self.read_request = path.with_suffix(".read-request")
        self.con = self._connect()
        if not read_only:
            self.migrate()
        elif (version := self.schema_version()) < MIGRATIONS[-1].version:
            # A reader cannot migrate; its queries would fail on columns the file lacks.
            self.con.close()
            raise VlaaError(
                f"{path} is at schema version {version} and this vlaa-data needs "
                f"{MIGRATIONS[-1].version}: upgrade it with `vlaa-data init {path.parent}`"
            )
        self._next_result_id: int | None = None
        self._types: dict[str, dict[str, str]] = {}

    def _connect(self, wait: float = _LOCK_RETRY_SECONDS) -> duckdb.DuckDBPyConnection:
        # A reader cannot open the file while a writer process has it. A reader leaves a
        # request file that long-running writers notice between two writes; wait a moment.
        deadline = time.monotonic() + wait
        asked = False
        try:
            while True:
                try:
                    con = duckdb.connect(
                        str(self.path), read_only=self.read_only, config=self.config
                    )
                    # Its progress bar, drawn on stdout for a query over 2 s, would break
                    # the JSON of `--json` (a setting of each connection, not of the file).
                    con.execute("SET enable_progress_bar = false")
                    return con
                except duckdb.IOException as exc:
                    if not _is_lock_conflict(exc) or time.monotonic() > deadline:
                        if _is_lock_conflict(exc):
                            raise WorkspaceInUse(
                                f"workspace in use by another process ({self.path.parent}); "
                                "try again when it finishes"
                            ) from exc
                        raise
                    if self.read_only and not asked:
                        self.read_request.touch()
                        asked = True
                    time.sleep(0.05)
        finally:
            if asked:
                self.read_request.unlink(missing_ok=True)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()

    def reader_waiting(self) -> bool:
        return self.read_request.exists()

    def suspend(self) -> None:
        """Close the connection so that a waiting reader can open the file."""
        if self.con is not None:
            self.con.close()
            self.con = None  # type: ignore[assignment]

    def resume(self) -> bool:
        """Reopen after ``suspend()``; False while a reader still has the file."""
        if self.con is not None:
            return True
        try:
            self.con = self._connect(wait=0.0)
        except WorkspaceInUse:
            return False
        return True

    @property
    def suspended(self) -> bool:
        return self.con is None

    def schema_version(self) -> int:
        [(exists,)] = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()
        if not exists:
            return 0
        query = "SELECT coalesce(max(version), 0) FROM schema_migrations"
        [(version,)] = self.con.execute(query).fetchall()
        return version

    def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
        )
        current = self.schema_version()
        applied = []
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.con.execute(migration.sql)
                self.con.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    [migration.version, migration.name],
                )
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
            applied.append(migration.version)
        return applied

    def sample_ids(self, source: str) -> set[str]:
        rows = self.con.execute("SELECT id FROM samples WHERE source = ?", [source]).fetchall()
        return {row[0] for row in rows}

    def image_owners(self, source: str) -> dict[str, str]:
        """image sha -> the sample of ``source`` that holds it."""
        rows = self.con.execute(
            "SELECT image_sha, min(id) FROM samples WHERE source = ? GROUP BY image_sha", [source]
        ).fetchall()
        return dict(rows)

    def known_images(self) -> set[str]:
        return {row[0] for row in self.con.execute("SELECT sha FROM images").fetchall()}

    def allocate_result_ids(self, count: int) -> list[int]:
        if self._next_result_id is None:
            [(next_id,)] = self.con.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM results"
            ).fetchall()
            self._next_result_id = next_id
        first = self._next_result_id
        self._next_result_id += count
        return list(range(first, first + count))

    def write_collect_batch(
        self,
        *,
        images: Sequence[dict[str, Any]],
        samples: Sequence[dict[str, Any]],
        rejects: Sequence[dict[str, Any]],
        results: Sequence[dict[str, Any]],
    ) -> None:
        """Write one batch of collect output in a single transaction."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            if images:
                self._insert("images", images, conflict="DO NOTHING")
            if samples:
                self._insert("samples", samples, conflict="DO NOTHING")
                self._delete_rejects_for(samples)
            if rejects:
                self._insert(
                    "collect_rejects",
                    rejects,
                    conflict="DO UPDATE SET "
                    "reason = excluded.reason, detail = excluded.detail, "
                    "row_json = excluded.row_json, run_id = excluded.run_id, "
                    "created_at = excluded.created_at",
                )
            if results:
                self._insert("results", results)
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def _insert(self, table: str, rows: Sequence[dict[str, Any]], conflict: str = "") -> None:
        import pyarrow as pa  # only writers need it; keeps read commands quick to start

        batch = pa.Table.from_pylist(list(rows))
        columns = ", ".join(batch.column_names)
        self.con.register("_batch", batch)
        try:
            on_conflict = f" ON CONFLICT {conflict}" if conflict else ""
            self.con.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _batch{on_conflict}"
            )
        finally:
            self.con.unregister("_batch")

    def _insert_few(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert a small batch by binding each column as a typed list.

        As fast as Arrow for the tens of rows an LLM step writes at a time, and it needs
        neither pyarrow nor the pandas import DuckDB's ``register`` brings (about a second,
        holding the GIL while requests are in flight). Arrow wins above a few hundred rows.
        """
        types = self._column_types(table)
        columns = list(rows[0])
        names = ", ".join(f'"{c}"' for c in columns)
        values = ", ".join(f"unnest(${i}::{types[c]}[])" for i, c in enumerate(columns, 1))
        self.con.execute(
            f"INSERT INTO {table} ({names}) SELECT {values}",
            [[row[c] for row in rows] for c in columns],
        )

    def _column_types(self, table: str) -> dict[str, str]:
        types = self._types.get(table)
        if types is None:
            types = dict(
                self.con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() "
                    "WHERE schema_name = 'main' AND table_name = ?",
                    [table],
                ).fetchall()
            )
            self._types[table] = types
        return types

    def _delete_rejects_for(self, samples: Sequence[dict[str, Any]]) -> None:
        # A row rejected earlier and collected now (its image was fixed, say) is no longer a
        # reject; rejects of rows without an id are keyed differently and age out by replace.
        import pyarrow as pa

        keys = pa.Table.from_pylist(
            [{"source": s["source"], "row_key": s["source_id"]} for s in samples]
        )
        self.con.register("_keys", keys)
        try:
            self.con.execute(
                "DELETE FROM collect_rejects r USING _keys k "
                "WHERE r.source = k.source AND r.row_key = k.row_key"
            )
        finally:
            self.con.unregister("_keys")

    def status_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Raw counts for the status report (see ``vlaa_data.status``)."""
        return {
            "samples": self.con.execute(
                "SELECT source, count(*) FROM samples GROUP BY source ORDER BY source"
            ).fetchall(),
            "collect_rejects": self.con.execute(
                "SELECT source, reason, count(*) FROM collect_rejects GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
            "results": self.con.execute(
                "SELECT s.source, c.step, c.status, coalesce(c.reason, ''), count(*) "
                "FROM current_results c JOIN samples s ON s.id = c.sample_id "
                "GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
            # Where the current results' replies came from, and whether from the stand-in.
            "endpoints": self.con.execute(
                "SELECT c.step, coalesce(c.base_url, c.backend), coalesce(c.scripted, false), "
                "count(*) FROM current_results c JOIN samples s ON s.id = c.sample_id "
                "WHERE c.backend IS NOT NULL OR c.base_url IS NOT NULL "
                "GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
        }

    def confine(self) -> None:
        """From now on this read-only connection reaches nothing but the workspace database:
        no file (``read_csv('/etc/passwd')``, ``COPY … TO``), no URL, no extension install, and
        no setting can be changed back. One-way; for SQL a user typed (``vlaa-data sql``)."""
        if not self.read_only:
            raise ValueError("only a read-only store can be confined")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def query(self, sql: str, params: Iterable[Any] | None = None) -> QueryResult:
        """Run read-only SQL; a statement that would write is refused."""
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"invalid SQL: {str(exc).splitlines()[0]}") from exc
        if not statements:
            raise QueryError("empty query")
        for statement in statements:
            kind = self._statement_kind(statement)
            if kind not in _READ_STATEMENTS:
                raise QueryError(f"read-only: {kind} statements are refused (use SELECT)")
        try:
            cursor = self.con.execute(sql, list(params) if params is not None else None)
            rows = cursor.fetchall()
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return QueryResult(columns=columns, rows=rows)

    def _statement_kind(self, statement: Any) -> str:
        """The statement's type; for EXPLAIN, the type of what it explains (EXPLAIN ANALYZE
        runs it: ``EXPLAIN ANALYZE COPY samples TO 'x.csv'`` writes the file)."""
        kind = statement.type.name
        if kind != "EXPLAIN":
            return kind
        inner = _EXPLAIN.sub("", statement.query, count=1)
        try:
            [explained] = self.con.extract_statements(inner)
        except (duckdb.Error, ValueError):
            return "unrecognised EXPLAIN"  # refused, not guessed at
        return self._statement_kind(explained)
