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
from vlaa_data.errors import VlaaError, out_of_memory_line

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
        err.print(
            f"error: {out_of_memory_line(str(exc))}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        err.print(INTERRUPTED)
        sys.exit(130)
