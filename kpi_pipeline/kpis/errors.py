"""kpi_errors_daily: which errors users hit in a workflow, and whether they recovered.

Reads the day's ``task_attempts`` (completion, fallback) and ``attempt_events`` (its task_errors),
never telemetry. An attempt with errors of several codes counts under each code; an attempt
"recovered" from a code when its first completion is strictly after its first error of that code
(an error at the same instant as the completion is not recovered from, as an error at the
completion's instant does not break a first pass either way).
"""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import conform, table

ERRORS = table("kpi_errors_daily")
ERROR_ATTEMPT_COLUMNS: tuple[str, ...] = ("date", "task_id", "workflow", "completed_at", "fallback")


def errors_daily(attempts: pd.DataFrame, attempt_events: pd.DataFrame) -> pd.DataFrame:
    """kpi_errors_daily from one day's attempts and their window events."""
    errors = attempt_events.loc[
        attempt_events["event_type"] == "task_error", ["task_id", "error_code", "occurred_at"]
    ]
    per_code = (
        errors.groupby(["task_id", "error_code"], sort=False)
        .agg(error_events=("occurred_at", "size"), first_error_at=("occurred_at", "min"))
        .reset_index()
    )
    hit = per_code.merge(attempts[list(ERROR_ATTEMPT_COLUMNS)], on="task_id", how="inner")
    hit["recovered_attempts"] = (hit["completed_at"] > hit["first_error_at"]).fillna(False).astype("int64")
    hit["fallback_attempts"] = hit["fallback"].fillna(False).astype("int64")
    hit["error_attempts"] = 1
    grain = list(ERRORS.grain)
    out = (
        hit.groupby(grain, sort=True)[
            ["error_attempts", "error_events", "recovered_attempts", "fallback_attempts"]
        ]
        .sum()
        .reset_index()
    )
    started = attempts.groupby(["date", "workflow"]).size().rename("attempts").reset_index()
    out = out.merge(started, on=["date", "workflow"], how="left")
    out["error_attempt_rate"] = ratio(out["error_attempts"], out["attempts"])
    out["recovery_rate"] = ratio(out["recovered_attempts"], out["error_attempts"])
    return conform(out, ERRORS)
