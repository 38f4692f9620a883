"""The ``runs`` table: every command that writes records one run, and how it ended.

``Store.run(...)`` is the one way to record a run; its status on exit is the same for every
command:

- ``finished``: the body returned;
- ``stopped``: the body returned after setting ``handle.stopped`` (a step that stopped on
  purpose: its budget was spent, its endpoint stopped answering);
- ``interrupted``: ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM where a step turns it into one) or
  ``asyncio.CancelledError``; re-raised;
- ``failed``: any other exception (``SystemExit`` too), re-raised, with its first line as
  ``counts["error"]``.

A process killed outright leaves its run ``running``; the next writer to take the workspace's
lock marks it ``interrupted`` (``mark_interrupted_runs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb

__all__ = ["RunHandle", "RunQueries"]


@dataclass
class RunHandle:
    """What ``Store.run`` yields: the run's id and what the body says about it.

    ``counts`` is recorded on exit, whichever way the body ends: a dict, or a function that
    returns one (``report.to_dict``), called then so that it sees the body's last counts.
    """

    id: str
    counts: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict)
    stopped: str | None = None  # why the body stopped on purpose ("budget", "unreachable")

    def counts_now(self) -> dict[str, Any]:
        return self.counts() if callable(self.counts) else dict(self.counts)


class RunQueries:
    """SQL of the ``runs`` table, mixed into ``Store``."""

    con: duckdb.DuckDBPyConnection

    def start_run(self, command: str, tool_version: str, settings: dict[str, Any]) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.con.execute(
            "INSERT INTO runs (id, command, tool_version, settings, status) "
            "VALUES (?, ?, ?, ?, 'running')",
            [run_id, command, tool_version, json.dumps(settings)],
        )
        return run_id

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any]) -> None:
        self.con.execute(
            "UPDATE runs SET ended_at = current_timestamp, status = ?, counts = ? WHERE id = ?",
            [status, json.dumps(counts), run_id],
        )

    @contextlib.contextmanager
    def run(
        self,
        command: str,
        tool_version: str,
        settings: dict[str, Any],
        *,
        run_id: str | None = None,
    ) -> Iterator[RunHandle]:
        """Record a run of ``command`` around the body and its status on exit (see the module
        docstring). With ``run_id`` the run is the caller's, who started it and finishes it:
        the handle carries that id and nothing is recorded here."""
        if run_id is not None:
            yield RunHandle(run_id)
            return
        handle = RunHandle(self.start_run(command, tool_version, settings))
        try:
            yield handle
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.finish_run(handle.id, "interrupted", handle.counts_now())
            raise
        except BaseException as exc:
            self.finish_run(handle.id, "failed", {**handle.counts_now(), "error": _one_line(exc)})
            raise
        self.finish_run(handle.id, "stopped" if handle.stopped else "finished", handle.counts_now())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
