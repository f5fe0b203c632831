"""The one DuckDB set-up every vectorised pass uses: UTC session time zone, a working-memory limit
beyond which DuckDB spills to disk, no progress bar."""

from __future__ import annotations

import os
import tempfile
import threading

import duckdb

# Characters DuckDB's file readers expand as a glob pattern in a path (there is no escape for them).
GLOB_CHARACTERS = frozenset("*?[")
# DuckDB's working memory for one pass. A 1M-line day's judged lines take ~500 MB at full speed;
# larger days spill to ``temp_directory`` instead of growing the process.
MEMORY_LIMIT = "512MB"


def duckdb_connection(memory_limit: str = MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose timestamps without offset are UTC (as the contract
    says), spilling to a directory of this process under the system's temporary directory."""
    con = duckdb.connect(config={"memory_limit": memory_limit})
    spill = os.path.join(tempfile.gettempdir(), f"kpi_pipeline_duckdb_{os.getpid()}")
    con.execute("SET temp_directory = ?", [spill])
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


_THREAD = threading.local()


def shared_connection() -> duckdb.DuckDBPyConnection:
    """This thread's long-lived connection, for the many small queries of KPI runs (opening a
    connection costs ~25 ms, more with many databases open)."""
    if not hasattr(_THREAD, "con"):
        _THREAD.con = duckdb_connection()
    return _THREAD.con
