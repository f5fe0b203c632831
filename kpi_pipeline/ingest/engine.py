"""The one DuckDB set-up every vectorised pass uses: UTC session time zone, no progress bar."""

from __future__ import annotations

import duckdb


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose timestamps without offset are UTC (as the contract says)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con
