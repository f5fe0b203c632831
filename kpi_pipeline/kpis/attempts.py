"""Attempts: one row per ``task_id`` with a production ``task_started`` event.

Attempts are the basis of the completion, funnel, ROI, time-to-value and
incident KPIs, so the attempt rules of ``kpis.md`` ("Attempts") live here once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import production
from kpi_pipeline.tables import ATTEMPTS

ATTEMPT_COLUMNS: tuple[str, ...] = ATTEMPTS.column_names

_WINDOW_EVENT_TYPES: tuple[str, ...] = ("task_step", "task_completed", "task_error", "task_fallback")
TASK_START_COLUMNS: tuple[str, ...] = ("date", "task_id", "started_at")
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
)


def step_token(names: pd.Series) -> pd.Series:
    """Step names as items of the ';'-joined ``steps_reached`` list: '%' and ';' percent-encoded,
    so a step named ``a;b`` is one item that matches neither ``a`` nor ``b``."""
    return names.astype(str).str.replace("%", "%25", regex=False).str.replace(";", "%3B", regex=False)


def _attempt_starts(prod: pd.DataFrame) -> pd.DataFrame:
    """One row per task_id from its earliest ``task_started`` (ties broken by event_id)."""
    started = prod[prod["event_type"].eq("task_started").fillna(False).astype(bool) & prod["task_id"].notna()]
    started = started.sort_values(["task_id", "occurred_at", "event_id"], kind="stable")
    first = started.drop_duplicates("task_id", keep="first")
    out = first[["task_id", "workflow", "user_id", "account_id", "persona", "channel", "occurred_at"]].rename(
        columns={"occurred_at": "started_at"}
    )
    out["persona"] = out["persona"].fillna("unknown")
    out["channel"] = out["channel"].fillna("unknown")
    out["date"] = out["started_at"].dt.strftime("%Y-%m-%d")
    return out.reset_index(drop=True)


def _window_events(prod: pd.DataFrame, starts: pd.DataFrame, window: pd.Timedelta) -> pd.DataFrame:
    """Task events of each attempt within [start, start + window], both ends included."""
    task_events = prod[prod["event_type"].isin(_WINDOW_EVENT_TYPES).fillna(False).astype(bool)]
    joined = task_events[["task_id", "event_type", "step", "occurred_at"]].merge(
        starts[["task_id", "started_at"]], on="task_id", how="inner"
    )
    in_window = (joined["occurred_at"] >= joined["started_at"]) & (
        joined["occurred_at"] <= joined["started_at"] + window
    )
    return joined[in_window]


def _first_at(window_events: pd.DataFrame, event_type: str) -> pd.Series:
    """Earliest occurrence of ``event_type`` per task_id within the window."""
    of_type = window_events[window_events["event_type"] == event_type]
    return of_type.groupby("task_id")["occurred_at"].min()


def _per_attempt(per_task: pd.Series, ids: pd.Series) -> pd.Series:
    """Align a task_id-indexed series to the attempts' rows, keeping its dtype (NaT/NA if absent)."""
    return pd.Series(per_task.reindex(ids.to_numpy()).to_numpy(), index=ids.index, dtype=per_task.dtype)


def _steps_reached(window_events: pd.DataFrame) -> pd.Series:
    """Distinct step names per task_id in the window, sorted and ';'-joined."""
    steps = window_events[(window_events["event_type"] == "task_step") & window_events["step"].notna()]
    steps = steps[["task_id", "step"]].drop_duplicates().sort_values(["task_id", "step"], kind="stable")
    joined = (step_token(steps["step"]) + ";").groupby(steps["task_id"]).sum()
    return joined.str[:-1]


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


def task_starts(events: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The day's record of started task_ids: each task_id with a production ``task_started`` on
    ``day`` and its earliest such start that day (``task_starts`` table)."""
    prod = production(events)
    on_day = prod["occurred_at"].dt.floor("D") == pd.Timestamp(day, tz="UTC")
    starts = _attempt_starts(prod[on_day.to_numpy(bool)])
    return starts[list(TASK_START_COLUMNS)].reset_index(drop=True)


def started_on(events: pd.DataFrame, day: dt.date) -> pd.Series:
    """task_ids whose earliest ``task_started`` in ``events`` is on ``day`` (the day's candidates)."""
    starts = _attempt_starts(production(events))
    return starts.loc[starts["date"] == day.isoformat(), "task_id"].reset_index(drop=True)


def build_attempts(
    events: pd.DataFrame,
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
    prod = production(events)
    starts = _attempt_starts(prod)
    if day is not None:
        on_day = (starts["date"] == day.isoformat()) & ~starts["task_id"].isin(list(started_earlier))
        starts = starts[on_day.to_numpy(bool)].reset_index(drop=True)

    window_events = _window_events(prod, starts, pd.Timedelta(hours=config.windows.completion))
    first_completed = _first_at(window_events, "task_completed")
    first_error = _first_at(window_events, "task_error")
    first_fallback = _first_at(window_events, "task_fallback")

    attempts = starts.copy()
    ids = attempts["task_id"]
    attempts["completed_at"] = _per_attempt(first_completed, ids)
    error_at = _per_attempt(first_error, ids)
    attempts["first_fallback_at"] = _per_attempt(first_fallback, ids)
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
    attempts["steps_reached"] = _per_attempt(_steps_reached(window_events), ids).fillna("").astype(str)
    return attempts[list(ATTEMPT_COLUMNS)].reset_index(drop=True)
