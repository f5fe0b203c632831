"""kpi_retry_daily: failure and recovery — is a failed attempt retried, and does the retry complete?

A failed attempt (one that did not complete) is retried when the same user starts another attempt
of the same workflow strictly after its start and at most ``windows.retry`` hours after it; the
earliest such attempt is its retry (ties: the smaller task_id, compared as text). Attempts without
a user_id are never anyone's retry. Reads ``task_attempts`` of the day and the days its retries
can start on (:func:`kpi_pipeline.windows.retry_offsets`), never telemetry.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import conform, table

RETRY = table("kpi_retry_daily")
RETRY_ATTEMPT_COLUMNS: tuple[str, ...] = (
    "date",
    "task_id",
    "workflow",
    "user_id",
    "started_at",
    "completed",
    "fallback",
)


def retries(attempts: pd.DataFrame, day: dt.date, config: KpiConfig) -> pd.DataFrame:
    """Each failed attempt started on ``day`` with its retry's task_id and completion (NA: none).

    ``attempts`` are the attempts of ``day`` and of the days after it that a retry can start on.
    """
    failed = attempts[(attempts["date"] == day.isoformat()) & ~attempts["completed"].astype(bool)]
    failed = failed.sort_values("started_at", kind="stable")
    # For each (user, workflow, start) only the smallest task_id can be the earliest retry.
    later = (
        attempts.loc[
            attempts["user_id"].notna(), ["user_id", "workflow", "started_at", "task_id", "completed"]
        ]
        .sort_values(["started_at", "task_id"], kind="stable")
        .drop_duplicates(["user_id", "workflow", "started_at"])
        .rename(
            columns={
                "started_at": "retry_started_at",
                "task_id": "retry_task_id",
                "completed": "retry_completed",
            }
        )
    )
    if failed.empty or later.empty:  # merge_asof cannot factorize empty Arrow-backed keys
        never = pd.Series(pd.NaT, index=failed.index, dtype="datetime64[us, UTC]")
        matched = failed.assign(retry_started_at=never, retry_completed=pd.NA)
    else:
        matched = pd.merge_asof(
            failed,
            later,
            left_on="started_at",
            right_on="retry_started_at",
            by=["user_id", "workflow"],
            direction="forward",
            allow_exact_matches=False,
        )
    window = pd.Timedelta(hours=config.windows.retry)
    in_window = (matched["retry_started_at"] <= matched["started_at"] + window).fillna(False).astype(bool)
    matched["retried"] = in_window
    matched["recovered"] = in_window & matched["retry_completed"].fillna(False).astype(bool)
    return matched


def retry_daily(attempts: pd.DataFrame, day: dt.date, config: KpiConfig) -> pd.DataFrame:
    """kpi_retry_daily for ``day``: a row per workflow with attempts started on it."""
    of_day = attempts[attempts["date"] == day.isoformat()]
    out = of_day.groupby(["date", "workflow"], sort=True).size().rename("attempts").reset_index()
    failed = retries(attempts, day, config)
    failed["failed_attempts"] = 1
    failed["fallback_without_retry"] = failed["fallback"].astype(bool) & ~failed["retried"]
    counts = failed.groupby(["date", "workflow"])[
        ["failed_attempts", "retried", "recovered", "fallback_without_retry"]
    ].sum()
    out = out.merge(counts.reset_index(), on=["date", "workflow"], how="left")
    for column in ("failed_attempts", "retried", "recovered", "fallback_without_retry"):
        out[column] = out[column].fillna(0).astype("int64")
    out["retry_rate"] = ratio(out["retried"], out["failed_attempts"])
    out["recovery_rate"] = ratio(out["recovered"], out["failed_attempts"])
    return conform(out, RETRY)
