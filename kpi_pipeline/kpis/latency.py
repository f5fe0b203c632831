"""kpi_step_latency_daily: how long each step of a workflow takes, against its latency budget.

Reads ``attempt_events`` (the task_step events with a duration_ms in the windows of the day's
attempts), so it never re-reads telemetry. Percentiles are continuous (DuckDB's ``quantile_cont``,
linear interpolation, as in v1). A step event without a ``step`` is grouped under a NULL step:
the spec keeps steps "as written", and inventing a name could collide with a real one.
"""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import Events, query, ratio
from kpi_pipeline.tables import conform, table

STEP_LATENCY = table("kpi_step_latency_daily")

_SQL = """
SELECT e.date, e.workflow, e.step,
    count(*) AS events,
    count(DISTINCT e.task_id) AS attempts,
    quantile_cont(e.duration_ms, 0.5) AS median_ms,
    quantile_cont(e.duration_ms, 0.95) AS p95_ms,
    CASE WHEN any_value(b.budget_ms) IS NOT NULL
        THEN count(*) FILTER (WHERE e.duration_ms > b.budget_ms) END AS slow_events
FROM events e LEFT JOIN budgets b USING (workflow)
WHERE e.event_type = 'task_step' AND e.duration_ms IS NOT NULL
GROUP BY e.date, e.workflow, e.step
ORDER BY e.date, e.workflow, e.step NULLS LAST
"""

_DTYPES = {
    "date": "string",
    "workflow": "string",
    "step": "string",
    "events": "int64",
    "attempts": "int64",
    "median_ms": "float64",
    "p95_ms": "float64",
    "slow_events": "Int64",
}


def budgets(config: KpiConfig) -> pd.DataFrame:
    """Each workflow's ``latency_budget_ms`` (workflows without one are left out)."""
    rows = [
        (name, wf.latency_budget_ms)
        for name, wf in config.workflows.items()
        if wf.latency_budget_ms is not None
    ]
    return pd.DataFrame(rows, columns=["workflow", "budget_ms"]).astype(
        {"workflow": "string", "budget_ms": "float64"}
    )


def step_latency_daily(attempt_events: Events, config: KpiConfig) -> pd.DataFrame:
    """kpi_step_latency_daily from one day's ``attempt_events`` (a frame or a DuckDB relation)."""
    out = query(attempt_events, _SQL, _DTYPES, {"budgets": budgets(config)})
    out["slow_rate"] = ratio(out["slow_events"].astype("float64"), out["events"])
    return conform(out, STEP_LATENCY)
