"""Attempts: one row per ``task_id`` with a production ``task_started`` event.

Attempts are the basis of the completion, funnel, ROI, time-to-value and
incident KPIs, so the attempt rules of ``kpis.md`` ("Attempts") live here once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import PRODUCTION, Events, query, utc_date_sql, window_micros
from kpi_pipeline.tables import ATTEMPT_EVENTS, ATTEMPTS

ATTEMPT_COLUMNS: tuple[str, ...] = ATTEMPTS.column_names

_WINDOW_EVENT_TYPES: tuple[str, ...] = ("task_step", "task_completed", "task_error", "task_fallback")
TASK_START_COLUMNS: tuple[str, ...] = ("date", "task_id", "started_at")
_TASK_START_TYPES = {"date": "string", "task_id": "string", "started_at": "datetime64[us, UTC]"}
_FROM_SQL = (
    "task_id",
    "workflow",
    "user_id",
    "account_id",
    "persona",
    "channel",
    "date",
    "started_at",
    "release",
)
_ATTEMPT_SQL_TYPES = {
    **{c: ATTEMPTS.dtypes()[c] for c in (*_FROM_SQL, "completed_at", "first_fallback_at", "steps_reached")},
    "error_at": "datetime64[us, UTC]",
}
# The staged telemetry columns attempts are built from (a run reads only these).
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "user_id",
    "account_id",
    "event_type",
    "workflow",
    "task_id",
    "step",
    "persona",
    "channel",
    "environment",
    "release",
)
# What the v2 tables need of the events in an attempt's window (attempt_events).
WINDOW_EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "event_type",
    "task_id",
    "step",
    "environment",
    "duration_ms",
    "error_code",
)
ATTEMPT_EVENT_COLUMNS: tuple[str, ...] = ATTEMPT_EVENTS.column_names


# How a step name becomes an item of the ';'-joined ``steps_reached`` list: '%' and ';' percent-encoded,
# in this order, so a step named ``a;b`` is one item that matches neither ``a`` nor ``b``.
STEP_ESCAPES: tuple[tuple[str, str], ...] = (("%", "%25"), (";", "%3B"))


def step_token(names: pd.Series) -> pd.Series:
    """Step names as items of the ``steps_reached`` list (:data:`STEP_ESCAPES`)."""
    out = names.astype(str)
    for plain, escaped in STEP_ESCAPES:
        out = out.str.replace(plain, escaped, regex=False)
    return out


def _or_unknown(column: str) -> str:
    """A text column in SQL with a missing or blank value as ``unknown`` (kpis-v2.md: a missing
    release or error_code is ``unknown``; blank counts as missing, as for persona and channel)."""
    return f"coalesce(nullif(trim({column}), ''), 'unknown')"


def _starts_sql(source: str) -> str:
    """One row per task_id of ``source`` (production events) from its earliest ``task_started``
    (ties broken by event_id), with the UTC date of the start."""
    return f"""
        SELECT task_id, workflow, user_id, account_id, coalesce(persona, 'unknown') AS persona,
            coalesce(channel, 'unknown') AS channel, occurred_at AS started_at,
            {_or_unknown("release")} AS release,
            {utc_date_sql("occurred_at")} AS date
        FROM {source}
        WHERE event_type = 'task_started' AND task_id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY task_id ORDER BY occurred_at, event_id) = 1
    """


def _step_token_sql(name: str) -> str:
    """:func:`step_token` in SQL."""
    for plain, escaped in STEP_ESCAPES:
        name = f"replace({name}, '{plain}', '{escaped}')"
    return name


def _fallback_tickets(attempts: pd.DataFrame, tickets: pd.DataFrame, config: KpiConfig) -> pd.Series:
    """Boolean per attempt: a fallback followed by a ticket of the same user on a workflow topic."""
    window = pd.Timedelta(hours=config.windows.fallback_ticket)
    fell_back = attempts.loc[attempts["fallback"], ["task_id", "workflow", "user_id", "first_fallback_at"]]
    asked = tickets.loc[tickets["requester_id"].notna(), ["requester_id", "topic", "created_at"]]
    if fell_back.empty or asked.empty:
        return pd.Series(False, index=attempts.index)
    joined = fell_back.merge(asked, left_on="user_id", right_on="requester_id", how="inner")
    in_window = (joined["created_at"] >= joined["first_fallback_at"]) & (
        joined["created_at"] <= joined["first_fallback_at"] + window
    )
    topic_owner = joined["topic"].map(config.topic_to_workflow())
    with_topics = {name for name, wf in config.workflows.items() if wf.topics}
    any_topic = ~joined["workflow"].isin(with_topics)
    on_topic = any_topic | (topic_owner == joined["workflow"]).fillna(False).astype(bool)
    hit_ids = joined.loc[in_window & on_topic, "task_id"].unique()
    return attempts["task_id"].isin(hit_ids)


def task_starts(events: Events, day: dt.date) -> pd.DataFrame:
    """The day's record of started task_ids: each task_id with a production ``task_started`` on
    ``day`` and its earliest such start that day (``task_starts`` table)."""
    on_day = f"(SELECT * FROM {PRODUCTION} WHERE {utc_date_sql('occurred_at')} = '{day.isoformat()}')"
    columns = ", ".join(TASK_START_COLUMNS)
    return query(events, f"SELECT {columns} FROM ({_starts_sql(on_day)}) ORDER BY task_id", _TASK_START_TYPES)


def drop_earlier_starts(attempts: pd.DataFrame, started_earlier: Collection[str]) -> pd.DataFrame:
    """The attempts of a day without the task_ids that had a ``task_started`` before it (from
    ``task_starts``): their start is earlier, so they are no attempt of the day."""
    if not len(started_earlier):
        return attempts
    keep = ~attempts["task_id"].isin(list(started_earlier)).to_numpy(bool)
    return attempts[keep].reset_index(drop=True)


def _attempts_sql(day: dt.date | None, window: pd.Timedelta) -> str:
    """Attempts (started on ``day``, or all) with the first completion, error and fallback in their
    window and the steps reached, as the columns :func:`build_attempts` finishes."""
    on_day = f"WHERE date = '{day.isoformat()}'" if day is not None else ""
    micros = window_micros(window)
    kinds = ", ".join(f"'{t}'" for t in _WINDOW_EVENT_TYPES)
    return f"""
        WITH starts AS (SELECT * FROM ({_starts_sql(PRODUCTION)}) {on_day}),
        windowed AS (
            SELECT e.task_id, e.event_type, e.step, e.occurred_at
            FROM {PRODUCTION} e JOIN starts s USING (task_id)
            WHERE e.event_type IN ({kinds})
                AND e.occurred_at BETWEEN s.started_at AND s.started_at + to_microseconds({micros})
        ),
        per_task AS (
            SELECT task_id,
                min(occurred_at) FILTER (WHERE event_type = 'task_completed') AS completed_at,
                min(occurred_at) FILTER (WHERE event_type = 'task_error') AS error_at,
                min(occurred_at) FILTER (WHERE event_type = 'task_fallback') AS first_fallback_at,
                list_sort(list_distinct(list(step) FILTER (WHERE event_type = 'task_step'
                    AND step IS NOT NULL))) AS steps
            FROM windowed GROUP BY task_id
        )
        SELECT s.*, p.completed_at, p.error_at, p.first_fallback_at,
            coalesce(array_to_string(list_transform(p.steps, lambda x: {_step_token_sql("x")}), ';'), '')
                AS steps_reached
        FROM starts s LEFT JOIN per_task p USING (task_id)
        ORDER BY task_id
    """


def build_attempts(
    events: Events,
    tickets: pd.DataFrame,
    config: KpiConfig,
    day: dt.date | None = None,
    started_earlier: Collection[str] = (),
) -> pd.DataFrame:
    """One row per attempt started on ``day`` (every attempt when ``day`` is None).

    ``events`` should hold telemetry of D-1 … D+n so that an attempt of D sees
    its events up to ``windows.completion`` hours later and an attempt whose
    earliest ``task_started`` is on D-1 is not counted on D. ``started_earlier``
    are task_ids that had a ``task_started`` before D (from ``task_starts``):
    their start is earlier, so they are no attempt of D however their events
    fall. Only production events count. An error or fallback at exactly the
    same timestamp as the first completion is not "before" it, so such an
    attempt is still a first-pass completion.
    """
    window = pd.Timedelta(hours=config.windows.completion)
    attempts = query(events, _attempts_sql(day, window), _ATTEMPT_SQL_TYPES)
    if day is not None:
        attempts = drop_earlier_starts(attempts, started_earlier)
    error_at = attempts["error_at"]
    attempts["completed"] = attempts["completed_at"].notna()
    attempts["seconds_to_complete"] = (
        (attempts["completed_at"] - attempts["started_at"]).dt.total_seconds().astype(float)
    )
    attempts["error"] = error_at.notna()
    attempts["fallback"] = attempts["first_fallback_at"].notna()
    error_before = (error_at < attempts["completed_at"]).fillna(False).astype(bool)
    fallback_before = (attempts["first_fallback_at"] < attempts["completed_at"]).fillna(False).astype(bool)
    attempts["first_pass"] = attempts["completed"] & ~error_before & ~fallback_before
    attempts["fallback_ticket"] = _fallback_tickets(attempts, tickets, config)
    return attempts[list(ATTEMPT_COLUMNS)].reset_index(drop=True)


def _attempt_events_sql(window: pd.Timedelta) -> str:
    """The task_step events with a duration_ms and the task_error events of ``day_attempts`` in
    their windows (production only), with the attempt's date, workflow and release."""
    return f"""
        SELECT e.event_id, a.date, a.task_id, a.workflow, a.release, e.event_type,
            CASE WHEN e.event_type = 'task_step' THEN e.step END AS step,
            CASE WHEN e.event_type = 'task_error' THEN {_or_unknown("e.error_code")} END AS error_code,
            CASE WHEN e.event_type = 'task_step' THEN e.duration_ms END AS duration_ms,
            e.occurred_at
        FROM {PRODUCTION} e JOIN day_attempts a USING (task_id)
        WHERE ((e.event_type = 'task_step' AND e.duration_ms IS NOT NULL) OR e.event_type = 'task_error')
            AND e.occurred_at BETWEEN a.started_at AND a.started_at + to_microseconds({window_micros(window)})
        ORDER BY a.task_id, e.occurred_at, e.event_id
    """


def attempt_events(events: Events, attempts: pd.DataFrame, config: KpiConfig) -> pd.DataFrame:
    """The events of ``attempts``' windows that the step latency, error and release tables read:
    task_steps with a duration_ms and task_errors (a missing error_code is ``unknown``).

    ``events`` should hold telemetry of the attempts' start day up to the last day their
    ``windows.completion`` reaches; ``attempts`` are the day's ``task_attempts`` rows.
    """
    window = pd.Timedelta(hours=config.windows.completion)
    keys = attempts[["task_id", "date", "workflow", "release", "started_at"]]
    return query(events, _attempt_events_sql(window), ATTEMPT_EVENTS.dtypes(), {"day_attempts": keys})
