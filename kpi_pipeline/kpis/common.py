"""Rules every KPI shares: only production events count, and a rate over 0 is NULL; and how a KPI
runs SQL over its events, held in memory or in Parquet files."""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import numpy as np
import pandas as pd

from kpi_pipeline.ingest.engine import shared_connection
from kpi_pipeline.tables import TELEMETRY_EVENTS

# Events a KPI reads: a frame (tests, small inputs) or a DuckDB relation (a window of staged Parquet
# days, read by column and out of core, so a 10M-event day never becomes a frame).
Events = pd.DataFrame | duckdb.DuckDBPyRelation
# The production events of ``events`` (the name :func:`query` gives them), as a SQL subquery.
PRODUCTION = "(SELECT * FROM events WHERE environment = 'production')"


def utc_date_sql(column: str) -> str:
    """The ISO UTC date of a timestamp column, in SQL."""
    return f"strftime(timezone('UTC', {column}), '%Y-%m-%d')"


def relation(events: Events) -> duckdb.DuckDBPyRelation:
    """The events as a DuckDB relation; a frame's contract columns get ``telemetry_events``' types
    first (a column of only nulls has none of its own; naive timestamps are UTC, as the contract
    says)."""
    if isinstance(events, duckdb.DuckDBPyRelation):
        return events
    typed = events.copy()
    for column, dtype in TELEMETRY_EVENTS.dtypes().items():
        if column not in typed.columns:
            continue
        values = typed[column]
        if dtype.startswith("datetime64") and not isinstance(values.dtype, pd.DatetimeTZDtype):
            values = pd.to_datetime(values).dt.tz_localize("UTC")  # naive timestamps are UTC
        typed[column] = values.astype(dtype)
    return shared_connection().from_df(typed)


def query(
    events: Events, sql: str, dtypes: Mapping[str, str], others: Mapping[str, Events] | None = None
) -> pd.DataFrame:
    """Run ``sql``, which reads the events as ``events`` (and each of ``others`` by its name), and
    return its (small) result with ``dtypes``."""
    events_relation = relation(events)
    con = shared_connection()
    for name, other in (others or {}).items():
        con.register(name, relation(other))
    try:
        result = events_relation.query("events", sql).to_arrow_table().to_pandas()
    finally:
        for name in others or {}:
            con.unregister(name)
    return result.astype(dict(dtypes))


def window_micros(window: pd.Timedelta) -> int:
    """A window as whole microseconds, for ``to_microseconds`` in SQL."""
    return window // pd.Timedelta(microseconds=1)


def ratio(numerator: pd.Series, denominator: pd.Series | float) -> pd.Series:
    """numerator / denominator as float, NaN (a NULL rate) where the denominator is 0."""
    den = (
        denominator.astype("float64")
        if isinstance(denominator, pd.Series)
        else pd.Series(float(denominator), index=numerator.index)
    )
    return (numerator.astype("float64") / den.where(den != 0, np.nan)).astype("float64")
