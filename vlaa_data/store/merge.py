"""SQL of ``vlaa-data merge``: fold another workspace's database (a shard's) into this one.

The other database is attached read-only; one transaction copies every row this one lacks, so
that a merge interrupted anywhere leaves this database as it was, and merging the same database
again adds nothing. Rows are matched by what identifies them in any workspace:

- ``images`` by sha, ``samples`` by id, ``collect_rejects`` by (source, row key), ``runs`` and
  ``llm_calls`` by their ids (a timestamp and a random part; uuid4): a row already here is
  kept as it is. A sample in both whose facts differ keeps this database's facts (counted).
- ``results`` by (sample, step, attempt, run): result ids are per database, so an added
  result gets a new id above this database's, and its ``parent_id`` the new id of its parent;
  lineage is kept. Superseded results come along too: the history is the same. When both
  databases hold results of one sample (a sample worked on in two shards), the ones merged
  last are the latest and so current, as after a rerun; the others stay, as history.
- ``scores`` by (sample, name), with ``result_id`` mapped like ``parent_id``: a score is taken
  where this database has none for that sample and name, or where it scored the current text
  and the one here does not, or else where it is newer.
- ``runs`` keep their rows, with ``settings.merged_from`` naming the workspace they came from;
  a run left ``running`` is copied ``interrupted`` (the caller holds that workspace's lock).

Releases (``releases``, ``release_samples``, ``release_events``) are not merged: a shard's
split saw only its own samples. Split again after merging.

With a ``Shard``, only that shard's part of the other database is taken (as when a task of a
sharded run takes its shard of the workspace it works for): its samples and their images,
results and scores; the collect rejects of its rows (a reject's sample id is its source and
row key, as collect decided with ``--shard``); every run. Of the ledger, each row whose sample
shares its image with a sample of the shard (so its own samples' rows, and a caption asked for
another sample of the same image, which answers theirs from the cache), each row whose request
a result of the shard holds, and each row of no sample of that database (no sample id, or one
it does not hold), which no shard can claim. A ledger row may so go to several shards: merged
back, it is matched by its id and counted once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from vlaa_data.errors import VlaaError
from vlaa_data.store.shards import Shard

__all__ = ["MERGED_TABLES", "MergeCounts", "MergeQueries"]

# In the order they are merged: results before scores, which point at them.
MERGED_TABLES = ("images", "samples", "collect_rejects", "runs", "llm_calls", "results", "scores")
_ALIAS = "vlaa_merge_source"


@dataclass
class MergeCounts:
    """What merging one database added: rows per table (``scores``: added or replaced)."""

    added: dict[str, int] = field(default_factory=dict)
    samples_differing: int = 0  # ids in both whose facts differ: this database's are kept
    images_shared: int = 0  # added samples whose image a sample of their source already has
    releases_not_merged: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": dict(self.added),
            "samples_differing": self.samples_differing,
            "images_shared": self.images_shared,
            "releases_not_merged": self.releases_not_merged,
        }


def _rows_changed(cursor: duckdb.DuckDBPyConnection) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row else 0


class MergeQueries:
    """Mixed into ``Store``; expects ``self.con`` and ``self._next_result_id``."""

    con: duckdb.DuckDBPyConnection
    _next_result_id: int | None

    @contextlib.contextmanager
    def attached(self, path: Path) -> Iterator[str]:
        """``path`` attached read-only for the body; yields the name to qualify its tables."""
        quoted = str(path).replace("'", "''")
        try:
            self.con.execute(f"ATTACH '{quoted}' AS {_ALIAS} (READ_ONLY)")
        except duckdb.Error as exc:
            raise VlaaError(f"cannot open {path}: {str(exc).splitlines()[0]}") from exc
        try:
            yield _ALIAS
        finally:
            self.con.execute(f"DETACH {_ALIAS}")

    def attached_schema_version(self, alias: str) -> int:
        """The schema version of the attached database; 0 when it has none."""
        [(exists,)] = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE database_name = ? AND table_name = 'schema_migrations'",
            [alias],
        ).fetchall()
        if not exists:
            return 0
        [(version,)] = self.con.execute(
            f"SELECT coalesce(max(version), 0) FROM {alias}.schema_migrations"
        ).fetchall()
        return int(version)

    def attached_images(self, alias: str, shard: Shard | None = None) -> list[tuple[str, str]]:
        """(sha, relative path) of every image the attached database records (of ``shard``'s
        samples only, with one)."""
        images = _sources(alias, shard)["images"]
        return self.con.execute(f"SELECT sha, path FROM {images} ORDER BY sha").fetchall()

    def content_mark(self) -> tuple[int, int]:
        """(samples, highest result id): changes when samples or results are added here."""
        [(samples, last)] = self.con.execute(
            "SELECT (SELECT count(*) FROM samples), (SELECT coalesce(max(id), 0) FROM results)"
        ).fetchall()
        return int(samples), int(last)

    def merge_attached(self, alias: str, label: str, shard: Shard | None = None) -> MergeCounts:
        """Copy what the attached database holds and this one lacks (only ``shard``'s part,
        with one), in one transaction (see the module docstring); ``label`` is recorded as each
        copied run's ``merged_from``."""
        counts = MergeCounts()
        source = _sources(alias, shard)
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._merge_facts(source, counts)
            counts.added["runs"] = self._merge_runs(source, label)
            counts.added["llm_calls"] = self._copy_missing(source, "llm_calls", ["id"])
            counts.added["results"] = self._merge_results(source)
            counts.added["scores"] = self._merge_scores(source)
            [(counts.releases_not_merged,)] = self.con.execute(
                f"SELECT count(*) FROM {alias}.releases"
            ).fetchall()
            self.con.execute("DROP TABLE IF EXISTS temp._merge_ids")
            self.con.execute("DROP TABLE IF EXISTS temp._merge_current")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        finally:
            self._next_result_id = None  # results were added: allocate above them
        return counts

    def _columns(self, table: str) -> list[str]:
        rows = self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        return [row[0] for row in rows]

    def _copy_missing(
        self,
        source: dict[str, str],
        table: str,
        key: list[str],
        replace: dict[str, str] | None = None,
    ) -> int:
        """Insert the attached ``table``'s rows whose ``key`` this one lacks; ``replace``
        gives an expression (over ``s``, the attached row) for some columns."""
        columns = self._columns(table)
        values = ", ".join((replace or {}).get(c, f's."{c}"') for c in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        match = " AND ".join(f't."{k}" = s."{k}"' for k in key)
        return _rows_changed(
            self.con.execute(
                f"INSERT INTO main.{table} ({names}) SELECT {values} FROM {source[table]} s "
                f"WHERE NOT EXISTS (SELECT 1 FROM main.{table} t WHERE {match})"
            )
        )

    def _merge_facts(self, source: dict[str, str], counts: MergeCounts) -> None:
        """images, samples and collect_rejects: facts of collect, kept where already here."""
        counts.added["images"] = self._copy_missing(source, "images", ["sha"])
        samples = source["samples"]
        [(counts.samples_differing,)] = self.con.execute(
            f"SELECT count(*) FROM {samples} s JOIN main.samples t ON t.id = s.id "
            "WHERE t.source <> s.source OR t.source_id <> s.source_id "
            "OR t.image_sha <> s.image_sha OR t.question <> s.question OR t.answer <> s.answer "
            "OR t.reward_type <> s.reward_type OR t.context::VARCHAR <> s.context::VARCHAR"
        ).fetchall()
        [(counts.images_shared,)] = self.con.execute(
            f"SELECT count(*) FROM {samples} s "
            "WHERE NOT EXISTS (SELECT 1 FROM main.samples t WHERE t.id = s.id) "
            "AND EXISTS (SELECT 1 FROM main.samples t "
            "WHERE t.source = s.source AND t.image_sha = s.image_sha)"
        ).fetchall()
        counts.added["samples"] = self._copy_missing(source, "samples", ["id"])
        # A row rejected here and collected there is a sample now, as after a re-collect.
        self.con.execute(
            f"DELETE FROM main.collect_rejects r WHERE EXISTS (SELECT 1 FROM {samples} s "
            "WHERE s.source = r.source AND s.source_id = r.row_key)"
        )
        columns = self._columns("collect_rejects")
        names = ", ".join(f'"{c}"' for c in columns)
        counts.added["collect_rejects"] = _rows_changed(
            self.con.execute(
                f"INSERT INTO main.collect_rejects ({names}) "
                f"SELECT {', '.join(f's.{c}' for c in columns)} "
                f"FROM {source['collect_rejects']} s "
                "WHERE NOT EXISTS (SELECT 1 FROM main.collect_rejects t "
                "WHERE t.source = s.source AND t.row_key = s.row_key) "
                "AND NOT EXISTS (SELECT 1 FROM main.samples t "
                "WHERE t.source = s.source AND t.source_id = s.row_key)"
            )
        )

    def _merge_runs(self, source: dict[str, str], label: str) -> int:
        quoted = label.replace("'", "''")
        return self._copy_missing(
            source,
            "runs",
            ["id"],
            replace={
                # A merged_from the run already has (merged twice over) is kept.
                "settings": f"json_merge_patch(json_object('merged_from', '{quoted}'), "
                "coalesce(s.settings, '{}'))",
                "status": "CASE WHEN s.status = 'running' THEN 'interrupted' ELSE s.status END",
            },
        )

    def _merge_results(self, source: dict[str, str]) -> int:
        """Results this database lacks, renumbered above its own, parents mapped."""
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _merge_ids AS
            WITH found AS (
                SELECT s.id AS source_id, min(t.id) AS target_id
                FROM {source["results"]} s
                LEFT JOIN main.results t ON t.sample_id = s.sample_id AND t.step = s.step
                    AND t.attempt = s.attempt AND t.run_id = s.run_id
                GROUP BY s.id
            )
            SELECT source_id, target_id IS NULL AS added,
                coalesce(target_id, (SELECT coalesce(max(id), 0) FROM main.results)
                    + row_number() OVER (PARTITION BY target_id IS NULL ORDER BY source_id))
                    AS target_id
            FROM found
            """
        )
        columns = self._columns("results")
        values = {"id": "m.target_id", "parent_id": "p.target_id"}
        select = ", ".join(values.get(c, f's."{c}"') for c in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        return _rows_changed(
            self.con.execute(
                f"INSERT INTO main.results ({names}) SELECT {select} "
                f"FROM {source['results']} s JOIN _merge_ids m ON m.source_id = s.id "
                "LEFT JOIN _merge_ids p ON p.source_id = s.parent_id "
                "WHERE m.added ORDER BY m.target_id"
            )
        )

    def _merge_scores(self, source: dict[str, str]) -> int:
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _merge_current AS SELECT id FROM main.current_results"
        )
        columns = self._columns("scores")
        select = ", ".join("m.target_id" if c == "result_id" else f's."{c}"' for c in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        updates = ", ".join(
            f'"{c}" = excluded."{c}"' for c in columns if c not in ("sample_id", "name")
        )
        return _rows_changed(
            self.con.execute(
                f"""
                INSERT INTO main.scores ({names})
                SELECT {select}
                FROM {source["scores"]} s
                JOIN _merge_ids m ON m.source_id = s.result_id
                LEFT JOIN main.scores t ON t.sample_id = s.sample_id AND t.name = s.name
                LEFT JOIN _merge_current sc ON sc.id = m.target_id
                LEFT JOIN _merge_current tc ON tc.id = t.result_id
                WHERE t.sample_id IS NULL OR (
                    (t.result_id <> m.target_id OR t.run_id <> s.run_id)
                    AND (
                        (sc.id IS NOT NULL AND tc.id IS NULL)
                        OR ((sc.id IS NULL) = (tc.id IS NULL) AND s.created_at > t.created_at)
                    )
                )
                ON CONFLICT (sample_id, name) DO UPDATE SET {updates}
                """
            )
        )


def _sources(alias: str, shard: Shard | None) -> dict[str, str]:
    """Each merged table of the attached database as a FROM item: the table, or with a shard,
    the rows of it that the shard takes (see the module docstring)."""
    tables = {table: f"{alias}.{table}" for table in MERGED_TABLES}
    if shard is None:
        return tables
    mine = f"SELECT id FROM {alias}.samples WHERE {shard.sql('id')}"
    my_images = f"SELECT image_sha FROM {alias}.samples WHERE {shard.sql('id')}"
    # collect --shard decided a reject by its row's sample id; a duplicate id's key is
    # 'ID#n', whose sample is ID's.
    reject_sample = (
        "source || '/' || CASE WHEN reason = 'duplicate_id' "
        "THEN regexp_replace(row_key, '#[0-9]+$', '') ELSE row_key END"
    )
    tables.update(
        samples=f"(SELECT * FROM {alias}.samples WHERE {shard.sql('id')})",
        images=f"(SELECT * FROM {alias}.images WHERE sha IN ({my_images}))",
        collect_rejects=(
            f"(SELECT * FROM {alias}.collect_rejects WHERE {shard.sql(f'({reject_sample})')})"
        ),
        results=f"(SELECT * FROM {alias}.results WHERE sample_id IN ({mine}))",
        scores=f"(SELECT * FROM {alias}.scores WHERE sample_id IN ({mine}))",
        llm_calls=(
            f"(SELECT c.* FROM {alias}.llm_calls c LEFT JOIN {alias}.samples o "
            "ON o.id = c.sample_id "
            f"WHERE o.id IS NULL OR o.image_sha IN ({my_images}) OR c.key IN "
            f"(SELECT prompt_hash FROM {alias}.results WHERE {shard.sql('sample_id')}))"
        ),
    )
    return tables
