"""The reply journal: paid replies on disk the moment they arrive, before DuckDB has them.

An LLM step appends each reply (its result row and ledger row) to a journal file with one
``write`` call, then lets its concurrency slot go; the database commit follows in batches,
off the request path. A process killed with SIGKILL after that call returned has still handed
the line to the kernel, so the next writer to open the workspace replays every journaled reply
that never reached the database: a crash loses only the requests that were in flight.

Files are ``journal/<run id>.<segment>.jsonl``, one JSON object per reply: ``result`` and
``call`` (the ledger row) with the ledger's ``request`` and ``response`` beside them as JSON
values rather than strings, which spares escaping a long reasoning trace twice. A segment is
deleted once every reply in it is committed and a newer segment has been started, so a run
that goes on for days keeps only its last few megabytes on disk.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlaa_data.errors import JournalError

if TYPE_CHECKING:
    from vlaa_data.store.db import Store

__all__ = [
    "JOURNAL_DIR",
    "Journal",
    "JournalEntry",
    "journal_files",
    "read_journal",
    "replay_journals",
]

JOURNAL_DIR = "journal"
_SEGMENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class JournalEntry:
    """One reply: its result row (``id`` not yet assigned) and its ledger row, if it was paid."""

    result: dict[str, Any]
    call: dict[str, Any] | None


class Journal:
    """Append-only segment files of one run's replies; see the module docstring."""

    def __init__(self, root: Path, run_id: str, *, segment_bytes: int = _SEGMENT_BYTES) -> None:
        self.directory = root / JOURNAL_DIR
        self.run_id = run_id
        self.segment_bytes = segment_bytes
        self._segment = -1
        self._fd: int | None = None
        self._size = 0
        self._open: Counter[int] = Counter()  # segment -> replies not yet committed

    def append(self, entry: JournalEntry) -> int:
        """Write one reply to disk; returns its segment, to pass to ``committed`` later."""
        data = _encode(entry)
        if self._fd is None or self._size + len(data) > self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        view = memoryview(data)
        while view:  # a regular file takes it in one call; loop in case it does not
            view = view[os.write(self._fd, view) :]
        self._size += len(data)
        self._open[self._segment] += 1
        return self._segment

    def committed(self, segments: Counter[int]) -> None:
        """Note replies as committed (count per segment); drop segments left with none."""
        self._open.subtract(segments)
        for segment in [s for s, n in self._open.items() if n <= 0 and s != self._segment]:
            del self._open[segment]
            self._path(segment).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file; delete the segments whose replies are all committed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for segment in range(self._segment + 1):
            if self._open.get(segment, 0) <= 0:
                self._path(segment).unlink(missing_ok=True)
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            if self._open.get(self._segment, 0) <= 0:
                self._path(self._segment).unlink(missing_ok=True)
        self._segment += 1
        self.directory.mkdir(exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._path(self._segment), flags, 0o644)
        self._size = 0

    def _path(self, segment: int) -> Path:
        return self.directory / f"{self.run_id}.{segment}.jsonl"


def journal_files(root: Path) -> list[Path]:
    """Journal segments left in a workspace, oldest first within each run."""
    directory = root / JOURNAL_DIR
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.jsonl"), key=_segment_order)


def read_journal(path: Path) -> Iterator[JournalEntry]:
    """The entries of one segment. A record cut short by a crash ends it: its reply was
    still being written, so it counts as in flight."""
    text = path.read_bytes().decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        try:
            data, position = decoder.raw_decode(text, position)
            yield _decode(data)
        except (ValueError, KeyError, TypeError):
            return


def replay_journals(root: Path, store: Store) -> int:
    """Write every journaled reply the database lacks, then delete the journal files.

    Only the writer-lock holder may call this: the journal of a live run belongs to it.
    Returns how many replies were recovered.
    """
    recovered = 0
    for path in journal_files(root):
        try:
            recovered += store.write_recovered(list(read_journal(path)))
        except Exception as exc:
            raise JournalError(
                f"could not write the replies journaled in {path}: {exc}; fix the cause, or "
                "move the file out of the journal folder to go on without those replies"
            ) from exc
        path.unlink()
    directory = root / JOURNAL_DIR
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
    return recovered


def _encode(entry: JournalEntry) -> bytes:
    # ``request`` and ``response`` are JSON texts already (the ledger's columns are JSON).
    result = json.dumps(entry.result, ensure_ascii=False)
    if entry.call is None:
        return f'{{"result":{result}}}\n'.encode()
    call = dict(entry.call)
    request, response = call.pop("request"), call.pop("response")
    return (
        f'{{"result":{result},"call":{json.dumps(call, ensure_ascii=False)},'
        f'"request":{request},"response":{"null" if response is None else response}}}\n'
    ).encode()


def _decode(data: dict[str, Any]) -> JournalEntry:
    call = data.get("call")
    if call is not None:
        response = data["response"]
        call = {
            **call,
            "request": json.dumps(data["request"], sort_keys=True, ensure_ascii=False),
            "response": None if response is None else json.dumps(response, ensure_ascii=False),
        }
    return JournalEntry(result=data["result"], call=call)


def _segment_order(path: Path) -> tuple[str, int]:
    run_id, _, segment = path.stem.rpartition(".")
    return (run_id, int(segment)) if segment.isdigit() else (path.stem, -1)
