"""First-seen users, weekly retention cohorts (``kpi_retention_weekly``, ``kpi_cohort_retention``)
and time to value.

They read the narrow weekly records over all staged history (``user_weeks``: each user's first
active day of each week; ``account_weeks``, the same for accounts), not raw telemetry; time to
value also reads every day's attempts, as a DuckDB relation. A unit's cohort is the Monday of the
UTC week of its first production event; "on" counts units active in week cohort + n, "on or after"
units active in that week or any later one up to the week of the last staged date.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.activity import week_index, week_label, week_start
from kpi_pipeline.kpis.common import Events, query, ratio, relation
from kpi_pipeline.tables import table

FIRST_SEEN_COLUMNS: tuple[str, ...] = ("user_id", "first_date", "first_at")
RETENTION_COLUMNS: tuple[str, ...] = table("kpi_retention_weekly").column_names
COHORT_COLUMNS: tuple[str, ...] = table("kpi_cohort_retention").column_names
MODES: tuple[str, ...] = ("on", "on_or_after")
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


def active_weeks(rows: pd.DataFrame, unit: str, last_date: dt.date) -> pd.DataFrame:
    """Distinct (``unit`` id, week index) of the weekly record's rows up to ``last_date``, with each
    unit's cohort week index (its first week)."""
    dates = rows["date"].astype(str)
    history = rows[(dates <= last_date.isoformat()).to_numpy(bool)]
    weeks = pd.DataFrame({"unit": history[unit].astype(str), "week": week_index(history["date"])})
    weeks = weeks.drop_duplicates().reset_index(drop=True)
    return weeks.assign(cohort=weeks.groupby("unit")["week"].transform("min"))


def retention_grid(weeks: pd.DataFrame, last_date: dt.date) -> pd.DataFrame:
    """Per cohort week and week_number 0 … the week of ``last_date``: cohort size, units active in
    that week (``on``) and units active in it or any later week (``on_or_after``).

    ``weeks`` are :func:`active_weeks` rows. A unit active up to week number k is retained "on or
    after" every n ≤ k: a reversed cumulative count of each unit's last active week number.
    """
    last_week = int(week_index(pd.Series([last_date.isoformat()])).iloc[0])
    cohorts = weeks.drop_duplicates("unit")
    sizes = cohorts.groupby("cohort", sort=True).size()
    span = (last_week - sizes.index.to_numpy(dtype="int64") + 1).clip(min=0)
    grid = pd.DataFrame(
        {
            "cohort": np.repeat(sizes.index.to_numpy(dtype="int64"), span),
            "cohort_size": np.repeat(sizes.to_numpy(dtype="int64"), span),
        }
    )
    grid["week_number"] = grid.groupby("cohort", sort=False).cumcount().astype("int64")

    numbered = weeks.assign(week_number=weeks["week"] - weeks["cohort"])
    on = numbered.groupby(["cohort", "week_number"]).size().rename("on")
    last_seen = numbered.groupby(["unit", "cohort"])["week_number"].max().reset_index()
    ends = last_seen.groupby(["cohort", "week_number"]).size().rename("ends")

    out = grid.join(on, on=["cohort", "week_number"]).join(ends, on=["cohort", "week_number"])
    out[["on", "ends"]] = out[["on", "ends"]].fillna(0).astype("int64")
    reversed_rows = out.iloc[::-1]
    out["on_or_after"] = reversed_rows.groupby("cohort", sort=False)["ends"].cumsum().iloc[::-1]
    out["cohort_week"] = week_label(out["cohort"].to_numpy())
    return out[["cohort_week", "week_number", "cohort_size", "on", "on_or_after"]].reset_index(drop=True)


def cohort_retention(
    user_weeks: pd.DataFrame, account_weeks: pd.DataFrame, last_date: dt.date
) -> pd.DataFrame:
    """kpi_cohort_retention: units user and account, modes on and on_or_after, every cohort week
    and week_number up to the week of ``last_date``. The (user, on) rows are kpi_retention_weekly."""
    frames = []
    for unit, rows, key in (("user", user_weeks, "user_id"), ("account", account_weeks, "account_id")):
        grid = retention_grid(active_weeks(rows, key, last_date), last_date)
        for mode in MODES:
            frames.append(grid.assign(unit=unit, mode=mode, retained=grid[mode]))
    out = pd.concat(frames, ignore_index=True)
    out["retention_rate"] = ratio(out["retained"], out["cohort_size"])
    return out[list(COHORT_COLUMNS)].astype(table("kpi_cohort_retention").dtypes())


def retention_weekly(activity: pd.DataFrame, last_date: dt.date) -> pd.DataFrame:
    """kpi_retention_weekly: one row per cohort week and week_number 0..week of ``last_date``.

    Rollup rows after ``last_date`` are ignored. A week in which no cohort
    user came back has ``retained_users`` 0 (the row is still written).
    """
    grid = retention_grid(active_weeks(activity, "user_id", last_date), last_date)
    out = grid.rename(columns={"cohort_size": "cohort_users", "on": "retained_users"})
    out["retention_rate"] = ratio(out["retained_users"], out["cohort_users"])
    return out[list(RETENTION_COLUMNS)].astype(
        {"cohort_week": "str", "week_number": "int64", "cohort_users": "int64", "retained_users": "int64"}
    )


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
