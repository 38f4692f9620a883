"""Workspace state in DuckDB: the schema, its migrations, and every query."""

from vlaa_data.store.db import QueryResult, Store
from vlaa_data.store.migrations import MIGRATIONS, Migration
from vlaa_data.store.runs import RunHandle

__all__ = ["MIGRATIONS", "Migration", "QueryResult", "RunHandle", "Store"]
