"""The ``vlaa-data`` command line: parses options, calls the library, prints reports.

Commands live in modules by theme; importing them registers them on ``app``.
"""

from __future__ import annotations

import os
import sys

import duckdb

from vlaa_data.cli import (  # noqa: F401  (registers the commands)
    collect,
    doctor,
    evaluate,
    filters,
    llm,
    merge,
    release,
    reward,
    run,
    train,
    verify,
    workspace,
)
from vlaa_data.cli.app import INTERRUPTED, app, err
from vlaa_data.errors import VlaaError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: user errors print one line and exit 1 (VLAA_DATA_DEBUG=1: traceback)."""
    try:
        app(prog_name="vlaa-data")  # also under python -m: completion keys on the name
    except VlaaError as exc:
        if os.environ.get("VLAA_DATA_DEBUG"):
            raise
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except duckdb.OutOfMemoryException as exc:
        if os.environ.get("VLAA_DATA_DEBUG"):
            raise
        # DuckDB's own text runs over several lines; the first says what ran out.
        what = str(exc).strip().splitlines()[0]
        err.print(
            f"error: the database reached its memory limit ({what}): raise [store] "
            "memory_limit in vlaa.toml (or VLAA_STORE_MEMORY_LIMIT=4GB), or split the work "
            "into shards (--shard I/N, `vlaa-data run --executor local --tasks N`); what was "
            "written before is kept",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        err.print(INTERRUPTED)
        sys.exit(130)
