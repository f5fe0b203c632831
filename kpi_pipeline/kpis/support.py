"""Support service per created date, channel and priority (``kpi_support_daily``).

Reads the staged tickets (the latest version of each), never telemetry. Elapsed times run from
``created_at``; they are business minutes (:mod:`kpi_pipeline.kpis.business_time`) where
``support.business_hours`` is set, else calendar minutes, and an end before ``created_at`` (a
reply stamped before creation) counts as 0 minutes. A ticket with no reply and no solve is still
running: its clocks stop at the ticket as-of time, the latest ``updated_at`` of all staged ticket
versions, which is the latest ``updated_at`` of the latest versions.
"""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.business_time import business_minutes
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import empty_frame, table

SUPPORT_COLUMNS: tuple[str, ...] = table("kpi_support_daily").column_names
UNKNOWN = "unknown"
KEYS: list[str] = ["date", "channel", "priority"]


def calendar_minutes(start: pd.Series, end: pd.Series) -> pd.Series:
    """Minutes from ``start`` to ``end`` (0 where end is before start, NaN where either is missing)."""
    return ((end - start).dt.total_seconds() / 60.0).clip(lower=0.0).astype("float64")


def ticket_as_of(tickets: pd.DataFrame) -> pd.Timestamp | None:
    """The ticket as-of time: the latest ``updated_at`` of the staged tickets (None without any)."""
    latest = pd.to_datetime(tickets["updated_at"], utc=True).max()
    return None if pd.isna(latest) else latest


def _or_unknown(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), UNKNOWN)


def _breaches(elapsed: pd.Series, targets: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(has a target, elapsed exceeds it): exactly at the target is not a breach."""
    has_target = targets.notna()
    return has_target, has_target & (elapsed > targets).fillna(False)


TICKET_TIME_COLUMNS: tuple[str, ...] = (
    "date",
    "channel",
    "priority",
    "solved",
    "first_reply_minutes",
    "first_reply_business_minutes",
    "resolution_minutes",
    "resolution_business_minutes",
    "first_reply_target",
    "first_reply_breach",
    "resolution_target",
    "resolution_breach",
    "reopened",
    "agent_minutes",
)


def ticket_times(tickets: pd.DataFrame, config: KpiConfig) -> pd.DataFrame:
    """One row per ticket (index kept): its UTC created date, channel and priority (``unknown`` when
    missing), elapsed minutes to first reply and to solve (calendar and business; NaN where it did
    not happen or without business hours), whether it has SLA targets and breached them, whether
    it was reopened after a solve, and its agent minutes (0 when none). kpi_support_daily sums and
    medians these per day; other groupings (e.g. by priority over a whole export) use the same rows.
    """
    created = pd.to_datetime(tickets["created_at"], utc=True)
    replied = pd.to_datetime(tickets["first_reply_at"], utc=True)
    solved = pd.to_datetime(tickets["solved_at"], utc=True)
    running = pd.Series(ticket_as_of(tickets), index=tickets.index, dtype=created.dtype)
    reply_clock = replied.fillna(solved).fillna(running)
    resolve_clock = solved.fillna(running)

    hours = config.support.business_hours
    if hours is None:
        reply_business = resolution_business = pd.Series(float("nan"), index=tickets.index, dtype="float64")
        reply_elapsed = calendar_minutes(created, reply_clock)
        resolve_elapsed = calendar_minutes(created, resolve_clock)
    else:
        reply_business = business_minutes(created, replied, hours)
        resolution_business = business_minutes(created, solved, hours)
        reply_elapsed = business_minutes(created, reply_clock, hours)
        resolve_elapsed = business_minutes(created, resolve_clock, hours)

    priority = _or_unknown(tickets["priority"])
    sla = config.support.sla
    reply_target, reply_breach = _breaches(reply_elapsed, priority.map(sla.first_reply).astype("float64"))
    resolve_target, resolve_breach = _breaches(
        resolve_elapsed, priority.map(sla.resolution).astype("float64")
    )
    is_solved = solved.notna()
    return pd.DataFrame(
        {
            "date": created.dt.strftime("%Y-%m-%d"),
            "channel": _or_unknown(tickets["channel"]),
            "priority": priority,
            "solved": is_solved,
            "first_reply_minutes": calendar_minutes(created, replied),
            "first_reply_business_minutes": reply_business,
            "resolution_minutes": calendar_minutes(created, solved),
            "resolution_business_minutes": resolution_business,
            "first_reply_target": reply_target,
            "first_reply_breach": reply_breach,
            "resolution_target": resolve_target,
            "resolution_breach": resolve_breach,
            "reopened": is_solved & (pd.to_numeric(tickets["reopens"]).fillna(0) > 0),
            "agent_minutes": pd.to_numeric(tickets["agent_work_minutes"]).astype("float64").fillna(0.0),
        },
        index=tickets.index,
    )[list(TICKET_TIME_COLUMNS)]


def support_daily(tickets: pd.DataFrame, config: KpiConfig) -> pd.DataFrame:
    """kpi_support_daily: one row per (UTC created date, channel, priority) with tickets."""
    spec = table("kpi_support_daily")
    if tickets.empty:
        return empty_frame(spec)
    times = ticket_times(tickets, config)
    flags = ["solved", "first_reply_target", "first_reply_breach", "resolution_target", "resolution_breach"]
    times[flags + ["reopened"]] = times[flags + ["reopened"]].astype("int64")
    grouped = times.groupby(KEYS, sort=True, dropna=False)
    out = grouped[flags + ["reopened", "agent_minutes"]].sum()
    out["tickets"] = grouped.size()
    medians = grouped[[c for c in TICKET_TIME_COLUMNS if c.endswith("minutes") and c != "agent_minutes"]]
    out = out.join(medians.median().add_prefix("median_")).reset_index()
    out = out.rename(
        columns={"first_reply_breach": "first_reply_breaches", "resolution_breach": "resolution_breaches"}
    )

    out["first_reply_breach_rate"] = ratio(out["first_reply_breaches"], out["first_reply_target"])
    out["resolution_breach_rate"] = ratio(out["resolution_breaches"], out["resolution_target"])
    out["reopen_rate"] = ratio(out["reopened"], out["solved"])
    per_ticket = out["channel"].map(config.support.cost_per_ticket_by_channel).astype("float64")
    out["cost"] = out["tickets"] * per_ticket.fillna(config.cost_per_ticket)
    return out[list(SUPPORT_COLUMNS)].astype(spec.dtypes())
