"""First-seen users, weekly retention cohorts and time to value.

All three read activity rollup rows over all staged history (the assets give
them ``user_weeks``: each user's first active day of each week), not raw
telemetry; time to value also reads every day's attempts, as a DuckDB relation.
A user's cohort is the Monday of the UTC week of their first production event.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.activity import week_start
from kpi_pipeline.kpis.common import Events, query, ratio, relation
from kpi_pipeline.tables import table

FIRST_SEEN_COLUMNS: tuple[str, ...] = ("user_id", "first_date", "first_at")
RETENTION_COLUMNS: tuple[str, ...] = table("kpi_retention_weekly").column_names
TIME_TO_VALUE_COLUMNS: tuple[str, ...] = table("kpi_time_to_value_weekly").column_names
# The attempt columns time to value reads (all days' attempts: read only these).
TIME_TO_VALUE_ATTEMPT_COLUMNS: tuple[str, ...] = ("user_id", "started_at", "completed", "completed_at")


def first_seen(activity: pd.DataFrame) -> pd.DataFrame:
    """Each user's first activity date (ISO) and first event time over all rows given."""
    grouped = activity.groupby("user_id", sort=True).agg(
        first_date=("date", "min"), first_at=("first_at", "min")
    )
    out = grouped.reset_index()
    out["first_date"] = out["first_date"].astype(str)
    out["first_at"] = pd.to_datetime(out["first_at"], utc=True)
    return out[list(FIRST_SEEN_COLUMNS)]


def _with_cohort(seen: pd.DataFrame) -> pd.DataFrame:
    """first_seen rows plus their ``cohort_week`` (Monday ISO date of first_date)."""
    return seen.assign(cohort_week=week_start(seen["first_date"]))


def _weeks_between(first: pd.Series, last: pd.Series) -> np.ndarray:
    """Whole weeks from Monday ISO dates ``first`` to Monday ISO dates ``last``."""
    days = pd.to_datetime(last, format="%Y-%m-%d") - pd.to_datetime(first, format="%Y-%m-%d")
    return (days.dt.days.to_numpy() // 7).astype("int64")


def retention_weekly(activity: pd.DataFrame, last_date: dt.date) -> pd.DataFrame:
    """kpi_retention_weekly: one row per cohort week and week_number 0..week of ``last_date``.

    Rollup rows after ``last_date`` are ignored. A week in which no cohort
    user came back has ``retained_users`` 0 (the row is still written).
    """
    history = activity[(activity["date"].astype(str) <= last_date.isoformat()).to_numpy(bool)]
    cohorts = _with_cohort(first_seen(history))
    sizes = cohorts.groupby("cohort_week", sort=True)["user_id"].nunique().rename("cohort_users")
    last_week = week_start(pd.Series([last_date.isoformat()])).iloc[0]

    span = _weeks_between(pd.Series(sizes.index), pd.Series(last_week, index=range(len(sizes)))) + 1
    grid = pd.DataFrame(
        {
            "cohort_week": np.repeat(sizes.index.to_numpy(dtype=object), span),
            "cohort_users": np.repeat(sizes.to_numpy(), span),
        }
    )
    grid["week_number"] = grid.groupby("cohort_week", sort=False).cumcount().astype("int64")

    visits = history[["user_id", "date"]].drop_duplicates()
    visits = visits.assign(week=week_start(visits["date"]))[["user_id", "week"]].drop_duplicates()
    visits = visits.merge(cohorts[["user_id", "cohort_week"]], on="user_id", how="inner")
    visits["week_number"] = _weeks_between(visits["cohort_week"], visits["week"])
    retained = visits.groupby(["cohort_week", "week_number"])["user_id"].nunique().rename("retained_users")

    out = grid.merge(retained.reset_index(), on=["cohort_week", "week_number"], how="left")
    out["retained_users"] = out["retained_users"].fillna(0).astype("int64")
    out["cohort_users"] = out["cohort_users"].astype("int64")
    out["cohort_week"] = out["cohort_week"].astype(str)
    out["retention_rate"] = ratio(out["retained_users"], out["cohort_users"])
    return out[list(RETENTION_COLUMNS)].reset_index(drop=True)


def time_to_value_weekly(activity: pd.DataFrame, attempts: Events, config: KpiConfig) -> pd.DataFrame:
    """kpi_time_to_value_weekly: activation of each weekly cohort.

    A cohort user is activated by a completed attempt whose ``started_at`` is
    within [first_at, first_at + activation_days] (both ends included). Their
    hours to first completion run from ``first_at`` to the earliest
    ``completed_at`` among those qualifying attempts; the cohort value is the
    median over activated users (linear interpolation), NaN when none.

    ``attempts`` may be every stored day's attempts as a DuckDB relation: the
    join and the earliest completion per user run in DuckDB, out of core, so
    only one row per activated user becomes a frame. DuckDB keeps times to the
    microsecond, as staging stores them: the window's ends are rounded inwards
    to whole microseconds, so an attempt qualifies exactly when its time is
    within the window; naive times in a frame are UTC, as the contract says.
    """
    cohorts = _with_cohort(first_seen(activity))
    window = cohorts[["user_id"]].assign(
        first_at=cohorts["first_at"].dt.ceil("us"),
        deadline=(cohorts["first_at"] + pd.Timedelta(days=config.activation_days)).dt.floor("us"),
    )
    if isinstance(attempts, pd.DataFrame):
        attempts = attempts.assign(
            started_at=pd.to_datetime(attempts["started_at"], utc=True),
            completed_at=pd.to_datetime(attempts["completed_at"], utc=True),
        )
    users = relation(window).set_alias("cohort")
    qualifying = relation(attempts).set_alias("attempt").join(users, "user_id")
    sql = (
        "SELECT user_id, min(completed_at) AS completed_at FROM events "
        "WHERE completed AND completed_at IS NOT NULL AND started_at >= first_at AND started_at <= deadline "
        "GROUP BY user_id"
    )
    firsts = query(qualifying, sql, {"user_id": "string", "completed_at": "datetime64[us, UTC]"})
    firsts = firsts.merge(cohorts[["user_id", "first_at", "cohort_week"]], on="user_id", how="inner")
    firsts = firsts.set_index(["cohort_week", "user_id"])
    hours = (
        pd.to_datetime(firsts["completed_at"], utc=True) - pd.to_datetime(firsts["first_at"], utc=True)
    ).dt.total_seconds() / 3600.0
    per_cohort = hours.groupby(level="cohort_week")

    out = cohorts.groupby("cohort_week", sort=True)["user_id"].nunique().rename("cohort_users").to_frame()
    out["activated_users"] = per_cohort.size().reindex(out.index, fill_value=0)
    out["activation_rate"] = ratio(out["activated_users"], out["cohort_users"])
    out["median_hours_to_first_completion"] = per_cohort.quantile(0.5).reindex(out.index)
    out = out.rename_axis("cohort_week").reset_index()
    out["cohort_week"] = out["cohort_week"].astype(str)
    return out[list(TIME_TO_VALUE_COLUMNS)].astype(
        {
            "cohort_users": "int64",
            "activated_users": "int64",
            "activation_rate": "float64",
            "median_hours_to_first_completion": "float64",
        }
    )
