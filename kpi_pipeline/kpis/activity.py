"""Per-day activity rollup: the small table that trailing windows read.

Engagement, feature adoption and retention look back 7 or 28 days (or over
all history). Re-reading that much raw telemetry for every partition would be
slow, so each day's production events are first reduced to one row per
(date, user, account, feature); the windowed KPIs only read these rows.
Shared date helpers (UTC day, Monday of the week) live here as well.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.kpis.common import PRODUCTION, Events, query, utc_date_sql
from kpi_pipeline.tables import DAILY_ACTIVITY

ACTIVITY_COLUMNS: tuple[str, ...] = DAILY_ACTIVITY.column_names


def utc_naive(values: pd.Series) -> pd.Series:
    """Timestamps converted to UTC and made naive (a naive input is already UTC)."""
    ts = pd.to_datetime(values)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts


def week_start(values: pd.Series) -> pd.Series:
    """ISO date of the Monday of the UTC week of each timestamp or ISO date string.

    Computed once per distinct value (a rollup repeats each date many times).
    """
    codes, uniques = pd.factorize(values)
    day = utc_naive(pd.Series(uniques)).dt.normalize()
    monday = (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    labels = np.append(monday.to_numpy(dtype=object), None)
    return pd.Series(labels[codes], index=values.index, dtype="str")


_EPOCH_MONDAY = pd.Timestamp("1970-01-05")  # a Monday: week indexes count weeks from it


def week_index(dates: pd.Series) -> pd.Series:
    """Whole weeks since 1970-01-05 of the Monday of each ISO date's UTC week."""
    monday = pd.to_datetime(week_start(dates.astype(str)), format="%Y-%m-%d")
    return pd.Series((monday - _EPOCH_MONDAY).dt.days.to_numpy() // 7, index=dates.index, dtype="int64")


def week_label(index: np.ndarray) -> np.ndarray:
    """The Monday ISO dates of week indexes."""
    mondays = _EPOCH_MONDAY + pd.to_timedelta(np.asarray(index, dtype="int64") * 7, unit="D")
    return mondays.strftime("%Y-%m-%d").to_numpy(dtype=object)


def window_dates(day: dt.date, days: int) -> tuple[str, str]:
    """First and last ISO date of the ``days``-day window ending on ``day`` (both included)."""
    return (day - dt.timedelta(days=days - 1)).isoformat(), day.isoformat()


def in_window(activity: pd.DataFrame, day: dt.date, days: int) -> pd.DataFrame:
    """Rollup rows whose date lies in the ``days``-day window ending on ``day``."""
    first, last = window_dates(day, days)
    dates = activity["date"].astype(str)
    return activity[((dates >= first) & (dates <= last)).to_numpy(dtype=bool)]


# The staged telemetry columns the rollup is built from (a run reads only these).
EVENT_COLUMNS: tuple[str, ...] = (
    "occurred_at",
    "user_id",
    "account_id",
    "event_type",
    "feature",
    "environment",
)


def daily_activity(events: Events) -> pd.DataFrame:
    """Distinct (date, user_id, account_id, feature) rows of production events.

    A row with ``feature`` NA means the user was active that day in that
    account (any event); a row with ``feature`` set means the user had a
    ``feature_used`` event of that feature that day. ``first_at`` is the
    earliest ``occurred_at`` behind the row. ``date`` is the UTC event date.
    """
    keyed = f"""SELECT {utc_date_sql("occurred_at")} AS date, user_id, account_id, feature, event_type,
            occurred_at FROM {PRODUCTION}
        WHERE occurred_at IS NOT NULL AND user_id IS NOT NULL AND account_id IS NOT NULL"""
    sql = f"""
        WITH keyed AS ({keyed})
        SELECT date, user_id, account_id, NULL::VARCHAR AS feature, min(occurred_at) AS first_at
        FROM keyed GROUP BY date, user_id, account_id
        UNION ALL
        SELECT date, user_id, account_id, feature, min(occurred_at) AS first_at
        FROM keyed WHERE event_type = 'feature_used' AND feature IS NOT NULL
        GROUP BY date, user_id, account_id, feature
        ORDER BY date, user_id, account_id, feature IS NOT NULL, feature
    """
    return query(events, sql, DAILY_ACTIVITY.dtypes())


USER_DAY_COLUMNS: tuple[str, ...] = ("date", "user_id", "first_at")


def user_days(activity: pd.DataFrame) -> pd.DataFrame:
    """One row per (date, user_id) of the rollup with the user's earliest event that day, across
    accounts: the ``user_days`` record behind new users and cohorts."""
    active = activity[activity["feature"].isna().to_numpy(bool)]
    out = active.groupby(["date", "user_id"], sort=True)["first_at"].min().reset_index()
    out["first_at"] = pd.to_datetime(out["first_at"], utc=True)
    return out[list(USER_DAY_COLUMNS)]


def user_weeks(user_days: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The ``user_days`` rows of ``day`` whose user has no row earlier in ``day``'s UTC week (Monday
    first): each user's first active day of each week, the ``user_weeks`` record the cohort tables
    read. ``user_days`` must hold at least that week's days up to ``day``; other rows are ignored.

    Cohorts and returns only ask for a user's first day (the first row of their first week) and the
    weeks they came back, so these rows answer them exactly, with one row per user and week.
    """
    dates = user_days["date"].astype(str)
    this_week = (week_start(dates) == week_start(pd.Series([day.isoformat()])).iloc[0]).to_numpy(bool)
    earlier = user_days["user_id"][this_week & (dates < day.isoformat()).to_numpy(bool)]
    today = (dates == day.isoformat()).to_numpy(bool)
    keep = today & ~user_days["user_id"].isin(earlier.unique()).to_numpy(bool)
    out = user_days.loc[keep, list(USER_DAY_COLUMNS)].sort_values("user_id", kind="stable")
    out = out.assign(date=day.isoformat())
    out["first_at"] = pd.to_datetime(out["first_at"], utc=True)
    return out.reset_index(drop=True)


ACCOUNT_WEEK_COLUMNS: tuple[str, ...] = ("date", "account_id")


def account_weeks(activity: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The accounts active on ``day`` (any rollup row carries its account) that were not active
    earlier in ``day``'s UTC week: each account's first active day of each week, the
    ``account_weeks`` record the account cohorts read. ``activity`` must hold that week's rollup
    rows up to ``day``; other rows are ignored."""
    dates = activity["date"].astype(str)
    this_week = (week_start(dates) == week_start(pd.Series([day.isoformat()])).iloc[0]).to_numpy(bool)
    earlier = activity["account_id"][this_week & (dates < day.isoformat()).to_numpy(bool)]
    today = activity["account_id"][(dates == day.isoformat()).to_numpy(bool)]
    accounts = pd.Series(today[~today.isin(earlier.unique())].unique(), dtype="string").sort_values()
    return pd.DataFrame(
        {"date": day.isoformat(), "account_id": accounts.to_numpy()}, columns=list(ACCOUNT_WEEK_COLUMNS)
    )
