"""kpi_uptime_monthly: uptime and error budget per service and UTC calendar month.

Each incident is an outage of its severity's ``reliability.outage_weight`` on [started_at,
min(resolved_at, as-of)). A month's outage minutes integrate, at each instant, the largest weight
among the service's active incidents: the instants where any incident starts or ends, and the month
boundaries, cut the timeline into segments on which that largest weight is constant, so the integral
is a sum over segments (in DuckDB: a range join of segments and incidents, no loop per incident).
Durations are summed in whole microseconds, so a month down at full weight gives outage_minutes
equal to minutes exactly.
"""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.config import Reliability
from kpi_pipeline.ingest.engine import shared_connection
from kpi_pipeline.kpis.activity import utc_naive
from kpi_pipeline.tables import conform, empty_frame, table

UPTIME = table("kpi_uptime_monthly")

_SQL = """
WITH active AS (  -- the instants each incident is an outage: empty when resolved at or before it started
    SELECT service, started AS a, least(coalesce(resolved, $as_of), $as_of) AS b, weight AS w
    FROM uptime_incidents
    WHERE least(coalesce(resolved, $as_of), $as_of) > started
),
months AS (  -- every month from the service's first incident to the as-of time's month
    SELECT service, month_start, least(month_start + INTERVAL 1 MONTH, $as_of) AS month_end
    FROM (
        SELECT service, unnest(generate_series(
            date_trunc('month', min(started)), date_trunc('month', $as_of::TIMESTAMP), INTERVAL 1 MONTH
        )) AS month_start
        FROM uptime_incidents
        GROUP BY service
    )
),
bounds AS (
    SELECT service, a AS t FROM active
    UNION SELECT service, b FROM active
    UNION SELECT service, month_start FROM months
    UNION SELECT service, month_end FROM months
),
segments AS (
    SELECT service, t AS s, lead(t) OVER (PARTITION BY service ORDER BY t) AS e FROM bounds
),
outage AS (  -- each segment lies inside one month and is either wholly inside an incident or outside
    SELECT
        service,
        date_trunc('month', s) AS month_start,
        sum(datediff('microsecond', s, e) * w) / 60e6 AS outage_minutes
    FROM (
        SELECT g.service, g.s, g.e, max(i.w) AS w
        FROM segments g JOIN active i ON i.service = g.service AND i.a <= g.s AND i.b >= g.e
        WHERE g.e IS NOT NULL AND g.e > g.s
        GROUP BY g.service, g.s, g.e
    )
    GROUP BY ALL
),
counts AS (
    SELECT m.service, m.month_start, count(i.a) AS incidents
    FROM months m LEFT JOIN active i
        ON i.service = m.service AND i.a < m.month_end AND i.b > m.month_start
    GROUP BY ALL
)
SELECT
    strftime(m.month_start, '%Y-%m-%d') AS month,
    m.service,
    datediff('microsecond', m.month_start, m.month_end) / 60e6 AS minutes,
    c.incidents,
    coalesce(o.outage_minutes, 0.0) AS outage_minutes
FROM months m
JOIN counts c USING (service, month_start)
LEFT JOIN outage o USING (service, month_start)
ORDER BY month, service
"""


def uptime_as_of(incidents: pd.DataFrame, telemetry_until: pd.Timestamp | None) -> pd.Timestamp | None:
    """The as-of time of open incidents: the latest staged telemetry event (any environment); where
    no telemetry is staged, the latest started_at, resolved_at or updated_at of the incidents."""
    if telemetry_until is not None and not pd.isna(telemetry_until):
        return _utc(pd.Timestamp(telemetry_until))
    stamps = pd.concat(
        [utc_naive(incidents[c]) for c in ("started_at", "resolved_at", "updated_at") if c in incidents]
    )
    latest = stamps.max() if len(stamps) else pd.NaT
    return None if pd.isna(latest) else pd.Timestamp(latest)


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """A timestamp as naive UTC (a naive one is UTC already)."""
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def uptime_monthly(
    incidents: pd.DataFrame, as_of: pd.Timestamp | None, reliability: Reliability
) -> pd.DataFrame:
    """kpi_uptime_monthly from the staged incidents and the as-of time (:func:`uptime_as_of`).

    ``uptime`` is NULL for a month with no minutes yet (an as-of time at midnight on its first day);
    ``budget_used`` is NULL when the error budget is 0 (``slo`` 1).
    """
    if incidents.empty or as_of is None:
        return empty_frame(UPTIME)
    frame = pd.DataFrame(
        {
            "service": incidents["service"].astype(str).to_numpy(),
            "started": utc_naive(incidents["started_at"]).to_numpy(dtype="datetime64[us]"),
            "resolved": utc_naive(incidents["resolved_at"]).to_numpy(dtype="datetime64[us]"),
            "weight": incidents["severity"].map(reliability.outage_weight).astype("float64").fillna(0.0),
        }
    )
    con = shared_connection()
    con.register("uptime_incidents", frame)
    try:
        out = con.execute(_SQL, {"as_of": _utc(pd.Timestamp(as_of)).to_pydatetime()}).df()
    finally:
        con.unregister("uptime_incidents")
    minutes = out["minutes"].astype("float64")
    out["uptime"] = (1.0 - out["outage_minutes"] / minutes).where(minutes > 0)
    out["slo"] = reliability.slo
    out["error_budget_minutes"] = (1.0 - reliability.slo) * minutes
    budget = out["error_budget_minutes"]
    out["budget_used"] = (out["outage_minutes"] / budget).where(budget > 0)
    return conform(out, UPTIME)
