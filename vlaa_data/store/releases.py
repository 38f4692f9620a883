"""SQL of the filters and releases: scores, ``samples_view``, named splits and their exports."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import duckdb

from vlaa_data.errors import QueryError
from vlaa_data.store.shards import Shard

__all__ = ["SPLITS", "ReleaseQueries", "ReleaseRow", "ReleaseRows", "ScoredText"]

# The parts of a release, in the order exports and reports list them; a considered sample in
# none of them is ``excluded``.
SPLITS = ("sft", "rl", "test")


@dataclass(frozen=True)
class ScoredText:
    """A sample's current reasoning and answer, as the filters read them."""

    sample_id: str
    source: str
    result_id: int  # the rewrite (or distill) result holding the text
    reasoning: str
    response: str
    question: str
    image_path: str
    reward_type: str  # the question's task instruction follows from it (chat_format)


@dataclass(frozen=True)
class ReleaseRow:
    """One sample of a release with everything an export writes."""

    sample_id: str
    split: str  # sft | rl | test
    position: int
    source: str
    source_id: str
    question: str
    gold: str
    reward_type: str
    context: dict[str, Any]
    image_sha: str
    image_path: str  # relative to the workspace
    width: int
    height: int
    caption: str | None
    reasoning: str
    response: str
    verdict: str | None
    verify_method: str | None
    aha_count: int | None
    ppl: float | None


# Every join is by key from the chunk's own rows, never through latest_results: that view
# ranks all results of the workspace, texts included, and a large workspace's export would
# hold them all in memory at once.
_RELEASE_ROWS = """
WITH m AS (
    SELECT sample_id, split, position, text_result_id FROM release_samples
    WHERE release = ? AND split = ? AND position >= ? AND position < ?
),
t AS (
    SELECT r.id, r.parent_id, r.output->>'reasoning' AS reasoning,
           r.output->>'answer' AS answer
    FROM results r WHERE r.id IN (SELECT text_result_id FROM m)
),
up AS (  -- the results a text was built on: distill above a rewrite, caption above a distill
    SELECT r.id, r.parent_id, r.step, r.output->>'caption' AS caption FROM results r
    WHERE r.id IN (SELECT parent_id FROM t)
),
up2 AS (
    SELECT r.id, r.step, r.output->>'caption' AS caption FROM results r
    WHERE r.id IN (SELECT parent_id FROM up)
),
v AS (
    SELECT parent_id, arg_max(output->>'verdict', id) AS verdict, arg_max(method, id) AS method
    FROM results WHERE step = 'verify' AND parent_id IN (SELECT id FROM t) GROUP BY parent_id
),
sc AS (
    SELECT sample_id, result_id,
           max(value) FILTER (WHERE name = 'aha') AS aha,
           avg(value) FILTER (WHERE name LIKE 'ppl:%') AS ppl
    FROM scores WHERE sample_id IN (SELECT sample_id FROM m) GROUP BY ALL
)
SELECT m.sample_id, m.split, m.position, s.source, s.source_id, s.question,
       s.answer, s.reward_type, s.context, s.image_sha, i.path, i.width, i.height,
       CASE WHEN up.step = 'caption' THEN up.caption
            WHEN up2.step = 'caption' THEN up2.caption END,
       t.reasoning, t.answer, v.verdict, v.method, sc.aha, sc.ppl
FROM m
JOIN samples s ON s.id = m.sample_id
JOIN images i ON i.sha = s.image_sha
JOIN t ON t.id = m.text_result_id
LEFT JOIN up ON up.id = t.parent_id
LEFT JOIN up2 ON up2.id = up.parent_id
LEFT JOIN v ON v.parent_id = t.id
LEFT JOIN sc ON sc.sample_id = m.sample_id AND sc.result_id = m.text_result_id
ORDER BY m.position
"""
_CHUNK_ROWS = 5000


class ReleaseRows(Sequence[ReleaseRow]):
    """One split of a release: its length is known, its rows are read a chunk at a time."""

    def __init__(self, store: ReleaseQueries, name: str, split: str, count: int) -> None:
        self._store = store
        self._name = name
        self._split = split
        self._count = count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> ReleaseRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[ReleaseRow]: ...

    def __getitem__(self, index: int | slice) -> ReleaseRow | list[ReleaseRow]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            rows = self._store.release_rows_at(self._name, self._split, start, stop)
            return rows[::step]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self._store.release_rows_at(self._name, self._split, index, index + 1)[0]

    def __iter__(self) -> Iterator[ReleaseRow]:
        for start in range(0, self._count, _CHUNK_ROWS):
            yield from self[start : start + _CHUNK_ROWS]


class ReleaseQueries:
    """Mixed into ``Store``; expects ``self.con`` and ``self._insert``."""

    con: duckdb.DuckDBPyConnection
    _insert: Any

    def scored_texts(
        self,
        *,
        sources: Sequence[str] = (),
        missing: str | None = None,
        shard: Shard | None = None,
    ) -> list[ScoredText]:
        """Samples with a current text; with ``missing``, only those without that score for it;
        with ``shard``, only that shard's."""
        batches = self.iter_scored_texts(sources=sources, missing=missing, shard=shard)
        return [t for batch in batches for t in batch]

    def iter_scored_texts(
        self,
        *,
        sources: Sequence[str] = (),
        missing: str | None = None,
        batch: int = 20_000,
        shard: Shard | None = None,
    ) -> Iterator[list[ScoredText]]:
        """``scored_texts`` a batch at a time, read through a cursor of its own so that the
        caller may write between batches and never holds every text in memory."""
        where = ["v.text_result_id IS NOT NULL"]
        params: list[str] = []
        if sources:
            where.append(f"v.source IN ({', '.join('?' * len(sources))})")
            params.extend(sources)
        if shard is not None:
            where.append(shard.sql("v.id"))
        if missing is not None:
            where.append(
                "NOT EXISTS (SELECT 1 FROM scores sc WHERE sc.sample_id = v.id "
                "AND sc.name = ? AND sc.result_id = v.text_result_id)"
            )
            params.append(missing)
        cursor = self.con.cursor()
        cursor.execute("SET enable_progress_bar = false")  # see Store._connect
        try:
            cursor.execute(
                "SELECT v.id, v.source, v.text_result_id, coalesce(v.reasoning, ''), "
                "coalesce(v.response, ''), v.question, i.path, v.reward_type "
                "FROM samples_view v JOIN images i ON i.sha = v.image_sha "
                f"WHERE {' AND '.join(where)} ORDER BY v.id",
                params,
            )
            while rows := cursor.fetchmany(batch):
                yield [ScoredText(*row) for row in rows]
        finally:
            cursor.close()

    def write_scores(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace scores: keys sample_id, name, value, detail, result_id, run_id."""
        if not rows:
            return
        rows = [{**r, "detail": json.dumps(r.get("detail"), ensure_ascii=False)} for r in rows]
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._insert(
                "scores",
                rows,
                conflict="(sample_id, name) DO UPDATE SET value = excluded.value, "
                "detail = excluded.detail, result_id = excluded.result_id, "
                "run_id = excluded.run_id, created_at = now()",
            )
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def view_rows(self, columns: Sequence[str], where: str | None = None) -> list[tuple[Any, ...]]:
        """``columns`` of ``samples_view`` for the rows ``where`` (user SQL) keeps, by id."""
        sql = f"SELECT {', '.join(columns)} FROM samples_view"
        if where:
            sql += f" WHERE ({where})"
            _only_one_select(self.con, sql, where)
        try:
            return self.con.execute(sql + " ORDER BY id").fetchall()
        except duckdb.Error as exc:
            raise QueryError(f"--where {where!r}: {str(exc).splitlines()[0]}") from exc

    def sample_sources(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT DISTINCT source FROM samples").fetchall()]

    def release_names(self) -> list[str]:
        return [
            r[0] for r in self.con.execute("SELECT name FROM releases ORDER BY name").fetchall()
        ]

    def release_params(self, name: str) -> dict[str, Any] | None:
        row = self.con.execute("SELECT params FROM releases WHERE name = ?", [name]).fetchone()
        return json.loads(row[0]) if row else None

    def save_release(
        self,
        name: str,
        *,
        params: dict[str, Any],
        counts: dict[str, Any],
        members: Sequence[dict[str, Any]],
        run_id: str,
    ) -> None:
        """Write (or replace) a release and where each considered sample went, at once."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute("DELETE FROM release_samples WHERE release = ?", [name])
            self.con.execute("DELETE FROM releases WHERE name = ?", [name])
            self.con.execute(
                "INSERT INTO releases (name, params, counts, run_id) VALUES (?, ?, ?, ?)",
                [name, json.dumps(params, sort_keys=True), json.dumps(counts), run_id],
            )
            if members:
                self._insert("release_samples", [{"release": name, **m} for m in members])
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def release_counts(self) -> dict[str, dict[str, int]]:
        """``{name: {"sft": n, "rl": n, "test": n}}`` for every release."""
        counts: dict[str, dict[str, int]] = {
            name: dict.fromkeys(SPLITS, 0) for name in self.release_names()
        }
        for name, split, n in self.con.execute(
            "SELECT release, split, count(*) FROM release_samples "
            "WHERE split <> 'excluded' GROUP BY ALL"
        ).fetchall():
            counts[name][split] = n
        return counts

    def models_used(self, release: str) -> list[tuple[str, str, str | None, int]]:
        """(step, model, prompt hash, results) of every model behind a release's samples."""
        return self.con.execute(
            "SELECT step, model, prompt_hash, count(*) FROM results WHERE model IS NOT NULL "
            "AND sample_id IN (SELECT sample_id FROM release_samples WHERE release = ? "
            "AND split <> 'excluded') GROUP BY ALL ORDER BY ALL",
            [release],
        ).fetchall()

    def latest_release_places(self) -> list[tuple[str, str, str, int]]:
        """(source, split, why, samples) of the most recent release: the split step's state."""
        return self.con.execute(
            "SELECT s.source, m.split, m.why, count(*) FROM release_samples m "
            "JOIN samples s ON s.id = m.sample_id "
            "WHERE m.release = (SELECT name FROM releases ORDER BY created_at DESC LIMIT 1) "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()

    def release_rows(self, name: str, split: str) -> ReleaseRows:
        """The samples of one split of a release, in the release's order, read from the
        database a chunk at a time as they are used.

        The text is the one the release recorded (``text_result_id``), so an export of the same
        release is the same even after a later rewrite; the caption is the one that text was
        built on, the verdict the latest on that text, the scores those of that text.
        """
        [(count,)] = self.con.execute(
            "SELECT count(*) FROM release_samples WHERE release = ? AND split = ?", [name, split]
        ).fetchall()
        return ReleaseRows(self, name, split, count)

    def release_rows_at(self, name: str, split: str, start: int, stop: int) -> list[ReleaseRow]:
        """Rows at positions ``start`` to ``stop - 1`` of a split (positions run from 0)."""
        rows = self.con.execute(_RELEASE_ROWS, [name, split, start, stop]).fetchall()
        return [
            ReleaseRow(
                sample_id=row[0],
                split=row[1],
                position=row[2],
                source=row[3],
                source_id=row[4],
                question=row[5],
                gold=row[6],
                reward_type=row[7],
                context=json.loads(row[8]) if row[8] else {},
                image_sha=row[9],
                image_path=row[10],
                width=row[11],
                height=row[12],
                caption=row[13],
                reasoning=row[14] or "",
                response=row[15] or "",
                verdict=row[16],
                verify_method=row[17],
                aha_count=None if row[18] is None else int(row[18]),
                ppl=row[19],
            )
            for row in rows
        ]

    def record_release_event(
        self,
        release: str,
        *,
        kind: str,
        target: str,
        run_id: str,
        format: str | None = None,
        revision: str | None = None,
        tag: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.con.execute(
            "INSERT INTO release_events "
            "(release, kind, target, format, revision, tag, detail, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [release, kind, target, format, revision, tag, json.dumps(detail or {}), run_id],
        )


def _only_one_select(con: duckdb.DuckDBPyConnection, sql: str, where: str) -> None:
    """A predicate that smuggles in a second statement is refused before anything runs."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"--where {where!r}: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1 or statements[0].type.name != "SELECT":
        raise QueryError(f"--where {where!r}: must be one predicate over samples_view")
