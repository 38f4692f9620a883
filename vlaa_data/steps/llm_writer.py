"""The single writer of an LLM step: buffers results and ledger rows, writes them in small
transactions, and lends the database file to readers in between.

A paid reply is first appended to the run's journal (``add(..., journal=True)``), which puts
it beyond the reach of a kill -9 at once; the database commit follows in batches, and ``add``
returns a future that resolves when it is done. Rows wait at most ``flush_s`` seconds to be
batched. All database work runs on one dedicated thread, so the event loop keeps serving
replies while DuckDB writes. ``room()`` makes callers wait while ``max_backlog`` rows are
still uncommitted (a reader holding the file, a slow disk), so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from vlaa_data.errors import WorkspaceInUse
from vlaa_data.store import Store
from vlaa_data.store.journal import Journal, JournalEntry

__all__ = ["ResultWriter"]

T = TypeVar("T")

# How long close() waits for a reader to give the file back before giving up.
_RESUME_PATIENCE_S = 120.0
_IDLE_POLL_S = 0.25


class ResultWriter:
    def __init__(
        self,
        store: Store,
        *,
        flush_s: float,
        journal: Journal | None = None,
        max_backlog: int = 1024,
    ) -> None:
        self.store = store
        self.flush_s = flush_s
        self.journal = journal
        self.max_backlog = max_backlog
        self._results: list[dict[str, Any]] = []
        self._calls: list[dict[str, Any]] = []
        self._segments: Counter[int] = Counter()  # journal segments of the buffered rows
        self._uncommitted = 0  # results buffered or being written
        self._drained = asyncio.Event()
        self._error: Exception | None = None  # the last failed write, until one succeeds
        self._committed: asyncio.Future[None] | None = None  # resolves once the buffer is written
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlaa-db")
        self._task: asyncio.Task[None] | None = None
        self._has_rows = asyncio.Event()
        self._stopping = asyncio.Event()

    def add(
        self,
        result: dict[str, Any] | None,
        call: dict[str, Any] | None = None,
        *,
        journal: bool = False,
    ) -> asyncio.Future[None]:
        """Buffer rows (journaling them first if asked); the future resolves once they are
        committed."""
        if journal and self.journal is not None and result is not None:
            self._segments[self.journal.append(JournalEntry(result, call))] += 1
        if result is not None:
            self._results.append(result)
            self._uncommitted += 1
        if call is not None:
            self._calls.append(call)
        if self._committed is None:
            self._committed = asyncio.get_running_loop().create_future()
        self._has_rows.set()
        return self._committed

    async def room(self) -> None:
        """Wait while ``max_backlog`` or more results are uncommitted; raise if writes fail
        (the replies stay in the journal for the next writer)."""
        while True:
            if self._error is not None:
                raise self._error
            if self._uncommitted < self.max_backlog:
                return
            self._drained.clear()
            await self._drained.wait()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the database thread, reopening the file if it was lent out."""
        while not await self._in_db(self.store.resume):
            await asyncio.sleep(0.1)
        return await self._in_db(fn, *args)

    async def flush(self) -> None:
        if self.store.reader_waiting() and not self.store.suspended:
            await self._in_db(self.store.suspend)
            return
        if not (self._results or self._calls):
            return
        if not await self._in_db(self.store.resume):
            return  # a reader still has the file; keep buffering
        results, calls, committed = self._results, self._calls, self._committed
        segments = self._segments
        self._results, self._calls, self._committed = [], [], None
        self._segments = Counter()
        self._has_rows.clear()
        try:
            await self._in_db(self._write, results, calls)
        except Exception as exc:  # rolled back: keep the rows for a later flush
            self._results[:0], self._calls[:0] = results, calls
            self._segments.update(segments)
            self._has_rows.set()
            self._error = exc
            self._drained.set()
            if committed is not None and not committed.done():
                committed.set_exception(exc)
                committed.exception()  # seen: whoever awaits it still gets the error
            raise
        self._error = None
        self._uncommitted -= len(results)
        self._drained.set()
        if self.journal is not None:
            self.journal.committed(segments)
        if committed is not None and not committed.done():
            committed.set_result(None)

    async def close(self) -> None:
        """Stop the flush loop and write everything left (waiting for readers if needed)."""
        if self._task is not None:
            # Never cancel a flush: its transaction may commit after we stop waiting for it,
            # and the rows would then be written twice.
            self._stopping.set()
            self._has_rows.set()
            task, self._task = self._task, None
            with contextlib.suppress(Exception):
                await task  # a failed write is retried below; its error surfaces there
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RESUME_PATIENCE_S
        while not await self._in_db(self.store.resume):
            if loop.time() > deadline:
                raise WorkspaceInUse("a reader kept the workspace open; results not written")
            await asyncio.sleep(0.1)
        try:
            await self.flush()
        finally:
            if self._committed is not None and not self._committed.done():
                self._committed.cancel()
            self._executor.shutdown(wait=True)
            if self.journal is not None:
                self.journal.close()  # keeps any segment whose replies were not committed

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            # Idle, look for waiting readers a few times a second; busy, let a batch gather.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._has_rows.wait(), _IDLE_POLL_S)
            if self._has_rows.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.flush_s)
            await self.flush()

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _write(self, results: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
        for result, result_id in zip(
            results, self.store.allocate_result_ids(len(results)), strict=True
        ):
            result["id"] = result_id
        self.store.write_llm_batch(results=results, calls=calls)
