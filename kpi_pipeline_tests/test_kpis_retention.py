"""Tests of first_seen, kpi_retention_weekly and kpi_time_to_value_weekly."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.ingest.engine import shared_connection
from kpi_pipeline.kpis.retention import (
    RETENTION_COLUMNS,
    TIME_TO_VALUE_COLUMNS,
    first_seen,
    retention_weekly,
    time_to_value_weekly,
)


def _activity(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    """Rollup rows from (first_at, user, feature) tuples; date is first_at's UTC date."""
    frame = pd.DataFrame(rows, columns=["first_at", "user_id", "feature"])
    frame["first_at"] = pd.to_datetime(frame["first_at"], utc=True)
    frame["date"] = frame["first_at"].dt.strftime("%Y-%m-%d")
    frame["account_id"] = "a1"
    return frame


def _attempts(rows: list[tuple[str, str, bool, str | None]]) -> pd.DataFrame:
    """Attempts from (user, started_at, completed, completed_at) tuples."""
    frame = pd.DataFrame(rows, columns=["user_id", "started_at", "completed", "completed_at"])
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    frame["completed_at"] = pd.to_datetime(frame["completed_at"], utc=True)
    frame["workflow"] = "access_request"
    return frame


def test_first_seen_takes_earliest_day_and_time() -> None:
    activity = _activity(
        [
            ("2025-03-05T08:00:00Z", "u1", None),
            ("2025-03-03T10:00:00Z", "u1", None),
            ("2025-03-03T09:30:00Z", "u1", "export"),
            ("2025-03-04T00:00:00Z", "u2", None),
        ]
    )
    out = first_seen(activity)
    assert out["user_id"].tolist() == ["u1", "u2"]
    assert out["first_date"].tolist() == ["2025-03-03", "2025-03-04"]
    assert out["first_at"].tolist() == [
        pd.Timestamp("2025-03-03T09:30:00Z"),
        pd.Timestamp("2025-03-04T00:00:00Z"),
    ]


def test_retention_weekly_zero_weeks_and_week_number_range() -> None:
    activity = _activity(
        [
            ("2025-03-03T10:00:00Z", "u1", None),  # Mon: cohort 2025-03-03
            ("2025-03-09T23:00:00Z", "u2", None),  # Sun: still cohort 2025-03-03
            ("2025-03-17T09:00:00Z", "u1", None),  # week 2 of cohort 03-03
            ("2025-03-17T09:00:00Z", "u1", "export"),  # feature row: same user, same week
            ("2025-03-10T00:00:00Z", "u3", None),  # cohort 2025-03-10
            ("2025-03-16T12:00:00Z", "u3", None),  # Sunday: week 0 again
            ("2025-03-19T12:00:00Z", "u3", None),  # week 1 of cohort 03-10 (= last staged date)
            ("2025-03-20T12:00:00Z", "u4", None),  # after last_date: ignored
        ]
    )
    out = retention_weekly(activity, dt.date(2025, 3, 19))
    assert tuple(out.columns) == RETENTION_COLUMNS
    # last week = 2025-03-17: cohort 03-03 gets weeks 0..2, cohort 03-10 weeks 0..1
    assert list(zip(out["cohort_week"], out["week_number"], strict=True)) == [
        ("2025-03-03", 0),
        ("2025-03-03", 1),
        ("2025-03-03", 2),
        ("2025-03-10", 0),
        ("2025-03-10", 1),
    ]
    assert out["cohort_users"].tolist() == [2, 2, 2, 1, 1]
    # week 1 of cohort 03-03 (2025-03-10..16): nobody came back -> 0
    assert out["retained_users"].tolist() == [2, 0, 1, 1, 1]
    # 2/2, 0/2, 1/2, 1/1, 1/1
    assert out["retention_rate"].tolist() == [1.0, 0.0, 0.5, 1.0, 1.0]


def test_retention_weekly_cohort_in_last_week_has_only_week_zero() -> None:
    activity = _activity([("2025-03-18T10:00:00Z", "u1", None), ("2025-03-18T11:00:00Z", "u2", None)])
    out = retention_weekly(activity, dt.date(2025, 3, 23))  # Sunday of the same week
    assert out[["cohort_week", "week_number", "cohort_users", "retained_users"]].values.tolist() == [
        ["2025-03-17", 0, 2, 2]
    ]


def _as_parquet(attempts: pd.DataFrame, folder: Path) -> duckdb.DuckDBPyRelation:
    """The attempts as the asset hands them over: a relation over Parquet files, one per day."""
    paths = []
    for number, (_, day) in enumerate(attempts.groupby(attempts["started_at"].dt.date)):
        paths.append(str(folder / f"{number}.parquet"))
        day.to_parquet(paths[-1])
    return shared_connection().read_parquet(paths)


@pytest.mark.parametrize("stored", [False, True], ids=["frame", "parquet"])
def test_time_to_value_activation_edge_and_median(stored: bool, tmp_path: Path) -> None:
    config = KpiConfig(activation_days=14)
    activity = _activity(
        [
            ("2025-03-03T10:00:00Z", "u1", None),  # cohort 2025-03-03
            ("2025-03-04T08:00:00Z", "u2", None),  # cohort 2025-03-03
            ("2025-03-05T00:00:00Z", "u3", None),  # cohort 2025-03-03
            ("2025-03-05T06:00:00Z", "u3", None),
            ("2025-03-10T12:00:00Z", "u4", None),  # cohort 2025-03-10
        ]
    )
    attempts = _attempts(
        [
            ("u1", "2025-03-03T11:00:00Z", False, None),  # not completed
            # started exactly first_at + 14 days -> counts; 14 * 24 + 2 = 338 hours
            ("u1", "2025-03-17T10:00:00Z", True, "2025-03-17T12:00:00Z"),
            # started 1 s after first_at + 14 days -> does not count
            ("u2", "2025-03-18T08:00:01Z", True, "2025-03-18T09:00:00Z"),
            # u3: two qualifying completions; the earliest completion wins: 01:30 -> 1.5 hours
            ("u3", "2025-03-05T00:10:00Z", True, "2025-03-05T03:10:00Z"),
            ("u3", "2025-03-05T00:30:00Z", True, "2025-03-05T01:30:00Z"),
            ("u9", "2025-03-05T00:30:00Z", True, "2025-03-05T01:30:00Z"),  # unknown user
        ]
    )
    out = time_to_value_weekly(activity, _as_parquet(attempts, tmp_path) if stored else attempts, config)
    assert tuple(out.columns) == TIME_TO_VALUE_COLUMNS
    assert out["cohort_week"].tolist() == ["2025-03-03", "2025-03-10"]
    assert out["cohort_users"].tolist() == [3, 1]
    assert out["activated_users"].tolist() == [2, 0]  # u1, u3
    assert out["activation_rate"].iloc[0] == 2 / 3
    assert out["activation_rate"].iloc[1] == 0.0
    # median of [1.5, 338] = (1.5 + 338) / 2 = 169.75
    assert out["median_hours_to_first_completion"].iloc[0] == 169.75
    assert math.isnan(out["median_hours_to_first_completion"].iloc[1])


def test_time_to_value_fractional_activation_days() -> None:
    config = KpiConfig(activation_days=0.5)  # 12 hours
    activity = _activity([("2025-03-03T00:00:00Z", "u1", None), ("2025-03-03T00:00:00Z", "u2", None)])
    attempts = _attempts(
        [
            ("u1", "2025-03-03T12:00:00Z", True, "2025-03-03T12:30:00Z"),  # at 12 h: in, 12.5 hours
            ("u2", "2025-03-03T12:00:01Z", True, "2025-03-03T12:30:00Z"),  # just over: out
        ]
    )
    out = time_to_value_weekly(activity, attempts, config)
    assert out[["cohort_users", "activated_users"]].values.tolist() == [[2, 1]]
    assert out["median_hours_to_first_completion"].tolist() == [12.5]


def test_time_to_value_window_ends_are_exact_and_naive_times_are_utc() -> None:
    """Both ends are inclusive to the microsecond (a start at first_at counts, one microsecond
    before it does not), also where the deadline falls between microseconds (activation_days
    of 1/7 before 1970, where rounding toward zero would move it later); naive times are UTC."""
    config = KpiConfig(activation_days=1 / 7)  # 3 h 25 min 42.857142857 s
    activity = _activity(
        [
            ("1950-03-06T10:00:00Z", "u1", None),
            ("1950-03-06T10:00:00Z", "u2", None),
            ("1950-03-06T10:00:00Z", "u3", None),
            ("1950-03-06T10:00:00Z", "u4", None),
        ]
    )
    attempts = pd.DataFrame(
        [
            ("u1", "1950-03-06T10:00:00", True, "1950-03-06T11:00:00"),  # at first_at: in, 1 h
            ("u2", "1950-03-06T09:59:59.999999", True, "1950-03-06T10:30:00"),  # 1 µs before: out
            ("u3", "1950-03-06T13:25:42.857142", True, "1950-03-06T14:00:00"),  # last µs in: 4 h
            ("u4", "1950-03-06T13:25:42.857143", True, "1950-03-06T14:00:00"),  # 1 µs after: out
        ],
        columns=["user_id", "started_at", "completed", "completed_at"],
    )
    attempts["started_at"] = pd.to_datetime(attempts["started_at"], format="ISO8601")  # naive
    attempts["completed_at"] = pd.to_datetime(attempts["completed_at"], format="ISO8601")
    out = time_to_value_weekly(activity, attempts, config)
    assert out[["cohort_users", "activated_users"]].values.tolist() == [[4, 2]]
    assert out["median_hours_to_first_completion"].tolist() == [2.5]  # median of 1 and 4 hours
