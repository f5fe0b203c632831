"""Tests of the per-day activity rollup and its date helpers."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kpi_pipeline.kpis.activity import ACTIVITY_COLUMNS, daily_activity, in_window, week_start


def _events(rows: list[tuple[str, str, str, str, str | None, str | None]]) -> pd.DataFrame:
    """Staged events from (occurred_at, user, account, event_type, feature, environment) tuples."""
    frame = pd.DataFrame(
        rows, columns=["occurred_at", "user_id", "account_id", "event_type", "feature", "environment"]
    )
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    return frame


def test_daily_activity_rows_first_at_and_production_only() -> None:
    events = _events(
        [
            ("2025-03-01T10:00:00Z", "u1", "a1", "feature_used", "export", "production"),
            ("2025-03-01T09:00:00Z", "u1", "a1", "task_started", None, "production"),
            ("2025-03-01T11:00:00Z", "u1", "a1", "feature_used", "export", "production"),
            ("2025-03-01T12:00:00Z", "u1", "a2", "help_viewed", None, "production"),
            # a feature value on a non-feature_used event is not feature use
            ("2025-03-01T13:00:00Z", "u1", "a1", "task_step", "search", "production"),
            # 23:59:59 is still 2025-03-01, 00:00 is the next UTC day
            ("2025-03-01T23:59:59Z", "u2", "a1", "task_started", None, "production"),
            ("2025-03-02T00:00:00Z", "u2", "a1", "feature_used", "search", "production"),
            # staging is not counted
            ("2025-03-01T08:00:00Z", "u3", "a1", "feature_used", "export", "staging"),
            ("2025-03-01T07:00:00Z", "u1", "a1", "task_started", None, "staging"),
        ]
    )
    out = daily_activity(events)
    assert tuple(out.columns) == ACTIVITY_COLUMNS
    got = [
        (r.date, r.user_id, r.account_id, None if pd.isna(r.feature) else r.feature, r.first_at.isoformat())
        for r in out.itertuples()
    ]
    assert got == [
        # u1/a1: earliest production event 09:00 (the staging one at 07:00 is ignored)
        ("2025-03-01", "u1", "a1", None, "2025-03-01T09:00:00+00:00"),
        # export used at 10:00 and 11:00 -> first_at 10:00
        ("2025-03-01", "u1", "a1", "export", "2025-03-01T10:00:00+00:00"),
        ("2025-03-01", "u1", "a2", None, "2025-03-01T12:00:00+00:00"),
        ("2025-03-01", "u2", "a1", None, "2025-03-01T23:59:59+00:00"),
        ("2025-03-02", "u2", "a1", None, "2025-03-02T00:00:00+00:00"),
        ("2025-03-02", "u2", "a1", "search", "2025-03-02T00:00:00+00:00"),
    ]


def test_daily_activity_of_no_events_is_empty_with_columns() -> None:
    out = daily_activity(_events([("2025-03-01T10:00:00Z", "u1", "a1", "task_started", None, "dev")]))
    assert out.empty
    assert tuple(out.columns) == ACTIVITY_COLUMNS


def test_week_start_is_monday_of_utc_week() -> None:
    values = pd.Series(
        pd.to_datetime(
            # Sunday 23:59 UTC, Monday 00:00 UTC, and Monday 01:00+02:00 = Sunday 23:00 UTC
            ["2025-03-16T23:59:00Z", "2025-03-17T00:00:00Z", "2025-03-17T01:00:00+02:00"],
            utc=True,
        )
    )
    assert week_start(values).tolist() == ["2025-03-10", "2025-03-17", "2025-03-10"]
    assert week_start(pd.Series(["2025-03-19", "2025-03-23"])).tolist() == ["2025-03-17", "2025-03-17"]


def test_in_window_includes_both_ends_only() -> None:
    activity = pd.DataFrame({"date": ["2025-03-21", "2025-03-22", "2025-03-28", "2025-03-29"]})
    # 7 days ending 2025-03-28 = 2025-03-22 .. 2025-03-28
    assert in_window(activity, dt.date(2025, 3, 28), 7)["date"].tolist() == ["2025-03-22", "2025-03-28"]


def test_naive_timestamps_are_utc() -> None:
    """The contract reads a timestamp without an offset as UTC; a frame of naive timestamps gives
    the same rollup as the same instants in UTC."""
    rows = [
        ("2025-03-01T23:30:00Z", "u1", "a1", "feature_used", "export", "production"),
        ("2025-03-02T00:30:00Z", "u1", "a1", "task_started", None, "production"),
    ]
    aware = _events(rows)
    naive = aware.assign(occurred_at=aware["occurred_at"].dt.tz_localize(None))
    out = daily_activity(naive)
    pd.testing.assert_frame_equal(out, daily_activity(aware))
    assert out["date"].tolist() == ["2025-03-01", "2025-03-01", "2025-03-02"]
