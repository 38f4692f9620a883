"""SQL of the LLM steps: selecting ready samples, the request cache, and batched writes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload

import duckdb

from vlaa_data.store.journal import JournalEntry
from vlaa_data.store.shards import Shard

__all__ = ["CachedCall", "LlmQueries", "ReadySample", "ReadySamples", "StepResult"]

_CACHE_CHUNK = 2000


@dataclass(frozen=True)
class ReadySample:
    """A sample a step can work on, with what the step needs to build its prompt."""

    id: str
    source: str
    question: str
    answer: str
    reward_type: str
    context: dict[str, Any]
    image_sha: str
    image_path: str
    width: int
    height: int
    parent_id: int | None  # the upstream result this step builds on (distill: the caption)
    parent_output: dict[str, Any] | None
    current_status: str | None  # this step's current result, if any
    current_key: str | None
    attempts: int
    current_scripted: bool | None = None  # its current result came from the scripted stand-in


class ReadySamples(Sequence[ReadySample]):
    """The selected rows, built into ``ReadySample``s as they are read, so that a run sends
    its first requests without waiting for all of them to be built."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def reward_types(self) -> set[str]:
        """The reward types among the rows, without building the samples."""
        return {row[4] for row in self._rows}

    @overload
    def __getitem__(self, index: int) -> ReadySample: ...

    @overload
    def __getitem__(self, index: slice) -> list[ReadySample]: ...

    def __getitem__(self, index: int | slice) -> ReadySample | list[ReadySample]:
        if isinstance(index, slice):
            return [_ready_sample(row) for row in self._rows[index]]
        return _ready_sample(self._rows[index])


def _ready_sample(r: tuple[Any, ...]) -> ReadySample:
    return ReadySample(
        id=r[0],
        source=r[1],
        question=r[2],
        answer=r[3],
        reward_type=r[4],
        context=json.loads(r[5]) if r[5] else {},
        image_sha=r[6],
        image_path=r[7],
        width=r[8],
        height=r[9],
        parent_id=r[10],
        parent_output=json.loads(r[11]) if r[11] else None,
        current_status=r[12],
        current_key=r[13],
        attempts=r[14],
        current_scripted=r[15],
    )


@dataclass(frozen=True)
class CachedCall:
    key: str
    response: dict[str, Any]
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    backend: str | None = None  # where the reply came from
    base_url: str | None = None
    scripted: bool = False


@dataclass(frozen=True)
class StepResult:
    """A sample's current result of one step, as a caller reads it back after a run."""

    id: int
    status: str
    reason: str | None
    output: dict[str, Any] | None
    model: str | None
    parent_id: int | None


class LlmQueries:
    """Mixed into ``Store``; expects ``self.con`` and ``self._insert``."""

    con: duckdb.DuckDBPyConnection

    def ready_samples(
        self,
        step: str,
        *,
        parent_step: str | None,
        sources: Sequence[str] = (),
        redo: bool = False,
        retry_truncated: bool = False,
        limit: int | None = None,
        redo_scripted: bool = False,
        shard: Shard | None = None,
    ) -> ReadySamples:
        """Samples whose upstream step is done and whose ``step`` is pending, stale or failed.

        ``redo`` takes every ready sample; truncated results are taken again only with
        ``retry_truncated`` (their reply is cached, so this pays only when the budget changed);
        ``redo_scripted`` takes those whose result came from the scripted stand-in server too;
        ``shard`` keeps only the samples of that shard.
        """
        # The recursive view once for both steps, not once per join.
        params: list[Any] = [step, parent_step or step, step, step]
        parent_join = "LEFT JOIN (SELECT NULL::BIGINT AS id, NULL::JSON AS output) p ON true"
        where = ["true"]
        if parent_step is not None:
            parent_join = "JOIN cur p ON p.sample_id = s.id AND p.step = ? AND p.status = 'done'"
            params.insert(2, parent_step)
        if not redo:
            statuses = ["failed", "truncated"] if retry_truncated else ["failed"]
            scripted = " OR c.scripted" if redo_scripted else ""
            where.append(
                f"(c.id IS NULL OR c.status IN ({', '.join('?' * len(statuses))}){scripted})"
            )
            params.extend(statuses)
        if sources:
            where.append(f"s.source IN ({', '.join('?' * len(sources))})")
            params.extend(sources)
        if shard is not None:
            where.append(shard.sql("s.id"))
        sql = f"""
            WITH cur AS MATERIALIZED (SELECT * FROM current_results WHERE step IN (?, ?))
            SELECT s.id, s.source, s.question, s.answer, s.reward_type, s.context,
                   s.image_sha, i.path, i.width, i.height, p.id, p.output,
                   c.status, c.prompt_hash, coalesce(a.attempts, 0), c.scripted
            FROM samples s
            JOIN images i ON i.sha = s.image_sha
            {parent_join}
            LEFT JOIN cur c ON c.sample_id = s.id AND c.step = ?
            LEFT JOIN (
                SELECT sample_id, max(attempt) AS attempts FROM results WHERE step = ?
                GROUP BY sample_id
            ) a ON a.sample_id = s.id
            WHERE {" AND ".join(where)}
            ORDER BY s.id
        """
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return ReadySamples(self.con.execute(sql, params).fetchall())

    def waiting_for_parent(
        self,
        step: str,
        parent_step: str,
        *,
        sources: Sequence[str] = (),
        shard: Shard | None = None,
    ) -> int:
        """Samples without a result of ``step`` whose ``parent_step`` has none either, or a
        failed or truncated one: running the parent may make them ready (its rejections are
        final, and do not count)."""
        sql = """
            WITH cur AS MATERIALIZED (
                SELECT sample_id, step, status FROM current_results WHERE step IN (?, ?)
            )
            SELECT count(*) FROM samples s
            LEFT JOIN cur p ON p.sample_id = s.id AND p.step = ?
            LEFT JOIN cur c ON c.sample_id = s.id AND c.step = ?
            WHERE c.sample_id IS NULL AND (p.status IS NULL OR p.status IN ('failed', 'truncated'))
        """
        params: list[Any] = [step, parent_step, parent_step, step]
        if sources:
            sql += f" AND s.source IN ({', '.join('?' * len(sources))})"
            params.extend(sources)
        if shard is not None:
            sql += f" AND {shard.sql('s.id')}"
        [(count,)] = self.con.execute(sql, params).fetchall()
        return int(count)

    def current_step_results(
        self, step: str, *, sources: Sequence[str] = (), shard: Shard | None = None
    ) -> dict[str, StepResult]:
        """Each sample's current result of ``step`` (by sample id), for those that have one."""
        sql = (
            "SELECT c.sample_id, c.id, c.status, c.reason, c.output, c.model, c.parent_id "
            "FROM current_results c JOIN samples s ON s.id = c.sample_id WHERE c.step = ?"
        )
        params: list[Any] = [step]
        if sources:
            sql += f" AND s.source IN ({', '.join('?' * len(sources))})"
            params.extend(sources)
        if shard is not None:
            sql += f" AND {shard.sql('s.id')}"
        return {
            r[0]: StepResult(r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, r[5], r[6])
            for r in self.con.execute(sql, params).fetchall()
        }

    def cached_calls(self, keys: Iterable[str], *, scripted: bool = True) -> dict[str, CachedCall]:
        """The latest usable reply for each key that has one; without ``scripted``, none of
        the scripted stand-in server's."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedCall] = {}
        for start in range(0, len(wanted), _CACHE_CHUNK):
            rows = self.con.execute(
                "SELECT c.key, c.response, c.tokens_in, c.tokens_out, c.cost_usd, c.backend, "
                "c.base_url, coalesce(c.scripted, false) "
                "FROM llm_calls c "
                "WHERE c.key IN (SELECT unnest($1::VARCHAR[])) AND c.status = 'ok' "
                "AND ($2 OR c.scripted IS NOT TRUE) "
                "QUALIFY row_number() OVER (PARTITION BY c.key ORDER BY c.created_at DESC) = 1",
                [wanted[start : start + _CACHE_CHUNK], scripted],
            ).fetchall()
            for key, response, *rest in rows:
                found[key] = CachedCall(key, json.loads(response), *rest)
        return found

    def has_scripted_replies(self, step: str) -> bool:
        """Whether the ledger holds replies of the scripted stand-in server for ``step``."""
        rows = self.con.execute(
            "SELECT 1 FROM llm_calls WHERE step = ? AND scripted LIMIT 1", [step]
        ).fetchall()
        return bool(rows)

    def write_llm_batch(
        self, *, results: Sequence[dict[str, Any]], calls: Sequence[dict[str, Any]]
    ) -> None:
        """Write results and ledger rows of one flush in a single transaction."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            if calls:
                self._insert_few("llm_calls", calls)  # type: ignore[attr-defined]
            if results:
                self._insert_few("results", results)  # type: ignore[attr-defined]
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def write_recovered(self, entries: Sequence[JournalEntry]) -> int:
        """Write the journaled replies that never reached the database; returns how many.

        A reply is identified by its result's (run, step, sample): a run records each sample
        once, and a result and its ledger row are always committed together.
        """
        if not entries:
            return 0
        present = set(
            self.con.execute(
                "SELECT run_id, step, sample_id FROM results "
                "WHERE (run_id, step, sample_id) IN (SELECT unnest($1::VARCHAR[]), "
                "unnest($2::VARCHAR[]), unnest($3::VARCHAR[]))",
                [
                    [e.result["run_id"] for e in entries],
                    [e.result["step"] for e in entries],
                    [e.result["sample_id"] for e in entries],
                ],
            ).fetchall()
        )
        missing = [
            e
            for e in entries
            if (e.result["run_id"], e.result["step"], e.result["sample_id"]) not in present
        ]
        if not missing:
            return 0
        ids = self.allocate_result_ids(len(missing))  # type: ignore[attr-defined]
        # Rows journaled before results and llm_calls had these columns lack them.
        results = [
            {"backend": None, "base_url": None, "scripted": None, **e.result, "id": result_id}
            for e, result_id in zip(missing, ids, strict=True)
        ]
        calls = [{"scripted": None, **e.call} for e in missing if e.call is not None]
        self.write_llm_batch(results=results, calls=calls)
        return len(missing)

    def mean_output_tokens(self, step: str, model: str) -> float | None:
        """Average reply length seen so far for this step and model (for estimates)."""
        rows = self.con.execute(
            "SELECT avg(tokens_out) FROM llm_calls "
            "WHERE step = ? AND model = ? AND status = 'ok' AND tokens_out IS NOT NULL",
            [step, model],
        ).fetchall()
        return rows[0][0] if rows and rows[0][0] is not None else None

    def ledger_rows(self) -> list[tuple[Any, ...]]:
        """Per step and model: calls, tokens in, tokens out, dollars."""
        return self.con.execute(
            "SELECT step, model, count(*), coalesce(sum(tokens_in), 0), "
            "coalesce(sum(tokens_out), 0), coalesce(sum(cost_usd), 0) "
            "FROM llm_calls GROUP BY ALL ORDER BY ALL"
        ).fetchall()

    def mark_interrupted_runs(self) -> int:
        """Runs left 'running' by a process that died; only called by the lock holder."""
        rows = self.con.execute(
            "UPDATE runs SET status = 'interrupted' WHERE status = 'running' RETURNING id"
        ).fetchall()
        return len(rows)
