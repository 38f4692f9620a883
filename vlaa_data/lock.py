"""The one-writer rule: a process that writes to a workspace holds an exclusive lock file.

DuckDB refuses a second writer with an error that names neither the workspace nor the
process in plain words; an ``fcntl`` lock on ``vlaa.lock`` holding our PID lets us say
``workspace in use by PID …`` before DuckDB is ever opened.

A process that only reads a workspace it did not open (``merge`` reading a shard, or the
tasks of a sharded run each reading their shard of the workspace at once) holds a shared
lock on the same file: any number of readers at once, no writer beside them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vlaa_data.errors import WorkspaceInUse

__all__ = ["ReaderLock", "WriterLock", "lock_holder"]


def lock_holder(lock_path: Path) -> int | None:
    """The PID written by the current lock holder, if it can be read."""
    try:
        text = lock_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class _FileLock:
    """A non-blocking ``flock`` on ``lock_path``, released on ``release()`` or when the
    process dies; ``WorkspaceInUse`` when it cannot be had."""

    _shared = False

    def __init__(self, lock_path: Path) -> None:
        self.path = lock_path
        self._fd: int | None = None

    def acquire(self) -> None:
        flags = os.O_RDONLY if self._shared else os.O_RDWR
        fd = os.open(self.path, flags | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self._shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = lock_holder(self.path)
            holder = f"PID {pid}" if pid else "another process"
            raise WorkspaceInUse(
                f"workspace in use by {holder} ({self.path.parent}); wait for it to finish"
            ) from None
        if not self._shared:  # the writer says who it is; readers are many
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode("ascii"))
            os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if not self._shared:
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> _FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class WriterLock(_FileLock):
    """Exclusive: one writer, and no reader beside it."""


class ReaderLock(_FileLock):
    """Shared: held beside other readers, never beside a writer (a ``WriterLock`` asked for
    meanwhile fails, as it does beside another writer)."""

    _shared = True
