"""Ticket deflection KPI (``kpi_ticket_deflection_daily``): did self-service help avoid a ticket?"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import PRODUCTION, Events, query, ratio, utc_date_sql
from kpi_pipeline.tables import table

DEFLECTION_COLUMNS: tuple[str, ...] = table("kpi_ticket_deflection_daily").column_names


def _on_day(stamps: pd.Series, day: dt.date) -> pd.Series:
    """Whether each UTC timestamp falls on the calendar date ``day``."""
    start = pd.Timestamp(day, tz="UTC")
    return (stamps >= start) & (stamps < start + pd.Timedelta(days=1))


def _ticketed_views(first_view: pd.DataFrame, tickets: pd.DataFrame, window: pd.Timedelta) -> pd.DataFrame:
    """(topic, user_id) pairs whose user created a ticket on the topic within [first view, + window]."""
    asked = tickets.loc[tickets["requester_id"].notna(), ["requester_id", "topic", "created_at"]]
    if first_view.empty or asked.empty:
        return first_view.loc[[], ["topic", "user_id"]]
    joined = first_view.merge(
        asked, left_on=["user_id", "topic"], right_on=["requester_id", "topic"], how="inner"
    )
    in_window = (joined["created_at"] >= joined["occurred_at"]) & (
        joined["created_at"] <= joined["occurred_at"] + window
    )
    return joined.loc[in_window, ["topic", "user_id"]].drop_duplicates()


# The staged telemetry columns deflection is computed from (a run reads only these).
EVENT_COLUMNS: tuple[str, ...] = ("occurred_at", "user_id", "event_type", "topic", "environment")


def ticket_deflection_daily(
    events: Events, tickets: pd.DataFrame, config: KpiConfig, day: dt.date
) -> pd.DataFrame:
    """Deflection per topic on ``day``.

    ``events`` is the telemetry of ``day`` (rows of other dates are ignored);
    ``tickets`` are all staged tickets, so a ticket created after ``day`` still
    counts within ``windows.deflection`` hours of the first view (both ends
    included). A ticket created before the first view does not undo a deflection.
    """
    first_view = query(
        events,
        f"""SELECT topic, user_id, min(occurred_at) AS occurred_at FROM {PRODUCTION}
            WHERE event_type = 'help_viewed' AND topic IS NOT NULL AND user_id IS NOT NULL
                AND {utc_date_sql("occurred_at")} = '{day.isoformat()}'
            GROUP BY topic, user_id ORDER BY topic, user_id""",
        {"topic": "string", "user_id": "string", "occurred_at": "datetime64[us, UTC]"},
    )

    ticketed = _ticketed_views(first_view, tickets, pd.Timedelta(hours=config.windows.deflection))
    sessions = first_view.merge(ticketed.assign(ticketed=True), on=["topic", "user_id"], how="left")
    sessions["deflected"] = sessions["ticketed"].isna()
    per_topic = sessions.groupby("topic").agg(
        help_sessions=("user_id", "size"), deflected=("deflected", "sum")
    )

    created = tickets[_on_day(tickets["created_at"], day).fillna(False).astype(bool)]
    per_topic_tickets = created.groupby("topic").size().rename("tickets_created")

    out = per_topic.join(per_topic_tickets, how="outer").fillna(0).astype("int64")
    out.index.name = "topic"
    out = out.reset_index().sort_values("topic", kind="stable").reset_index(drop=True)
    out["date"] = day.isoformat()
    out["deflection_rate"] = ratio(out["deflected"], out["help_sessions"])
    out["self_service_ratio"] = ratio(out["help_sessions"], out["tickets_created"])
    return out[list(DEFLECTION_COLUMNS)]
