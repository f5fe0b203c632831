"""Every warehouse table: grain, typed columns and what each column means.

This is ``shared/spec/kpis.md`` in code. The warehouse creates tables from it,
writes exactly these columns, and the Dagster assets publish it as their
column schema, so the contract, the database and the UI cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Logical column types: "string", "date" (ISO YYYY-MM-DD text), "timestamp" (UTC),
# "int", "float", "bool".
Column = tuple[str, str, str]  # (name, type, description)


@dataclass(frozen=True)
class TableSpec:
    name: str
    grain: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str
    partition_column: str | None = None  # the date column a daily partition replaces

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.columns)

    def dtypes(self) -> dict[str, str]:
        """pandas dtypes of the table's columns."""
        return {name: PANDAS_TYPES[kind] for name, kind, _ in self.columns}


PANDAS_TYPES: dict[str, str] = {
    "string": "string",
    "date": "string",
    "timestamp": "datetime64[us, UTC]",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
}

_ATTEMPT_RATES: tuple[Column, ...] = (
    ("attempts", "int", "attempts started on the date"),
    ("completions", "int", "completed attempts (task_completed within windows.completion hours)"),
    ("completion_rate", "float", "completions / attempts"),
    ("first_pass_completions", "int", "completed with no task_error or task_fallback before the completion"),
    ("first_pass_rate", "float", "first_pass_completions / attempts"),
    ("error_attempts", "int", "attempts with at least one task_error"),
    ("error_rate", "float", "error_attempts / attempts"),
    ("fallbacks", "int", "attempts with at least one task_fallback"),
    ("fallback_rate", "float", "fallbacks / attempts"),
    ("fallback_tickets", "int", "fallback attempts followed by a ticket on the workflow's topics"),
    ("fallback_to_ticket_rate", "float", "fallback_tickets / fallbacks"),
    ("median_seconds_to_complete", "float", "median of completion − start over completions"),
    ("p90_seconds_to_complete", "float", "90th percentile of completion − start"),
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "quarantine",
            ("source", "partition", "file", "line"),
            (
                ("source", "string", "telemetry, tickets or incidents"),
                ("partition", "string", "telemetry date partition; empty for exports"),
                ("file", "string", "raw file, relative to the data root"),
                ("line", "int", "1-based line in the decompressed file (CSV header = line 1)"),
                ("reason", "string", "first contract reason that applies"),
                ("raw", "string", "the original record as text"),
            ),
            "Every raw row that was not staged, with the reason.",
        ),
        TableSpec(
            "stg_support_tickets",
            ("ticket_id",),
            (
                ("ticket_id", "string", "ticket id"),
                ("created_at", "timestamp", "when the ticket was created"),
                ("updated_at", "timestamp", "timestamp of the winning (latest) version"),
                ("status", "string", "new, open, pending, solved or closed"),
                ("topic", "string", "support topic; joins to workflows via kpi.yaml"),
                ("channel", "string", "email, chat, web, phone, api …"),
                ("priority", "string", "low, normal, high or urgent"),
                ("requester_id", "string", "the user who asked; joins to telemetry user_id"),
                ("account_id", "string", "customer account"),
                ("first_reply_at", "timestamp", "first reply"),
                ("solved_at", "timestamp", "when solved"),
                ("agent_work_minutes", "float", "agent effort in minutes"),
                ("reopens", "int", "times reopened"),
                ("source_file", "string", "export file of the winning version"),
            ),
            "Support tickets, latest version of each ticket across all exports.",
        ),
        TableSpec(
            "stg_incidents",
            ("incident_id",),
            (
                ("incident_id", "string", "incident id"),
                ("started_at", "timestamp", "when user impact began"),
                ("severity", "string", "SEV1–SEV4"),
                ("service", "string", "affected service"),
                ("detected_at", "timestamp", "when detected (started_at when not exported)"),
                ("resolved_at", "timestamp", "when resolved; NULL while open"),
                ("affected_workflows", "string", "';'-joined, sorted workflow names"),
                ("title", "string", "title"),
                ("root_cause", "string", "root cause"),
                ("updated_at", "timestamp", "timestamp of the winning version"),
                ("source_file", "string", "export file of the winning version"),
            ),
            "Incidents, latest version of each incident across all exports.",
        ),
    )
}


TELEMETRY_EVENTS = TableSpec(
    "telemetry_events",
    ("event_id",),
    (
        ("event_id", "string", "unique id of the event (first copy kept)"),
        ("occurred_at", "timestamp", "when it happened, UTC"),
        ("user_id", "string", "person who acted"),
        ("account_id", "string", "customer account of the user"),
        ("event_type", "string", "canonical event type, after aliases"),
        ("workflow", "string", "workflow of task_* events"),
        ("task_id", "string", "attempt id of task_* events"),
        ("step", "string", "milestone of task_step"),
        ("feature", "string", "feature of feature_used"),
        ("topic", "string", "support topic of help_viewed"),
        ("persona", "string", "role; 'unknown' when missing"),
        ("channel", "string", "web, mobile, api, cli …; 'unknown' when missing"),
        ("device", "string", "device"),
        ("environment", "string", "'production' when missing; only production counts in KPIs"),
        ("release", "string", "app version that emitted the event"),
        ("duration_ms", "float", "duration in ms, >= 0"),
        ("error_code", "string", "error of task_error"),
    ),
    "Staged telemetry of one UTC day (Parquet), one row per valid event.",
)


def table(name: str) -> TableSpec:
    """The spec of a warehouse table; a clear error for unknown names."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown warehouse table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def conform(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Exactly the spec's columns, in order, with its dtypes (timestamps as UTC)."""
    missing = [c for c in spec.column_names if c not in frame.columns]
    if missing:
        raise KeyError(f"rows for table {spec.name} lack column(s) {', '.join(missing)}")
    data = frame[list(spec.column_names)].copy()
    for name, kind, _ in spec.columns:
        if kind == "timestamp":
            data[name] = pd.to_datetime(data[name], utc=True)
    return data.astype(spec.dtypes())
