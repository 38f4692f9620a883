"""Errors meant for the user.

    VlaaError                 base: the CLI prints ``error: <message>`` and exits 1
    ├── WorkspaceNotFound     no workspace where one was expected
    ├── WorkspaceInUse        another process holds the workspace's writer lock
    ├── SettingsError         vlaa.toml, the environment or a flag holds an invalid value
    ├── SourceError           a collect source cannot be read at all
    ├── JournalError          replies a killed run journaled cannot be written to the database
    ├── QueryError            ``sql`` got a statement that would write, or one that fails
    └── EmptyRelease          ``split`` would make a release without samples (none is saved)

DuckDB running out of its memory limit is one line too (``out_of_memory_line``). Everything
else is a bug and keeps its traceback. ``VLAA_DATA_DEBUG=1`` shows the traceback
of user-facing errors too.
"""

from __future__ import annotations

__all__ = [
    "EmptyRelease",
    "JournalError",
    "QueryError",
    "SettingsError",
    "SourceError",
    "VlaaError",
    "WorkspaceInUse",
    "WorkspaceNotFound",
    "out_of_memory_line",
]


class VlaaError(Exception):
    """An error the user can act on; its message is one line."""


class WorkspaceNotFound(VlaaError):
    pass


class WorkspaceInUse(VlaaError):
    pass


class SettingsError(VlaaError):
    pass


class SourceError(VlaaError):
    pass


class QueryError(VlaaError):
    pass


class JournalError(VlaaError):
    pass


class EmptyRelease(VlaaError):
    pass


def out_of_memory_line(detail: str) -> str:
    """The one line for DuckDB's out-of-memory error (whose own text runs over several):
    what ran out, and how to go on."""
    what = (detail.strip().splitlines() or ["out of memory"])[0]
    return (
        f"the database reached its memory limit ({what}): raise [store] memory_limit in "
        "vlaa.toml (or VLAA_STORE_MEMORY_LIMIT=4GB), or split the work into shards (--shard "
        "I/N, `vlaa-data run --executor local --tasks N`); what was written before is kept"
    )
