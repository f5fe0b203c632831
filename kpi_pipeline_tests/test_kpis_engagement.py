"""Tests of kpi_engagement_daily on a hand-made activity rollup."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from kpi_pipeline.kpis.engagement import ENGAGEMENT_COLUMNS, engagement_daily

D = dt.date(2025, 3, 28)


def _day(offset: int) -> str:
    """ISO date ``offset`` days from D."""
    return (D + dt.timedelta(days=offset)).isoformat()


def _activity(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    """Rollup rows from (date, user, account, feature) tuples."""
    frame = pd.DataFrame(rows, columns=["date", "user_id", "account_id", "feature"])
    frame["first_at"] = pd.to_datetime(frame["date"], utc=True)
    return frame


def _first_seen(rows: list[tuple[str, str]]) -> pd.DataFrame:
    """first_seen frame from (user, first_date) tuples."""
    frame = pd.DataFrame(rows, columns=["user_id", "first_date"])
    frame["first_at"] = pd.to_datetime(frame["first_date"], utc=True)
    return frame


def _row(out: pd.DataFrame) -> dict[str, object]:
    assert len(out) == 1
    assert tuple(out.columns) == ENGAGEMENT_COLUMNS
    return out.iloc[0].to_dict()


def test_window_edges_stickiness_accounts_and_new_users() -> None:
    activity = _activity(
        [
            ("2025-03-28", "u1", "a1", None),
            ("2025-03-28", "u1", "a1", "export"),
            ("2025-03-28", "u1", "a2", None),  # same user in a second account
            (_day(-6), "u2", "a1", None),  # D-6: in wau and mau
            (_day(-7), "u3", "a3", None),  # D-7: out of wau, in mau
            (_day(-27), "u4", "a4", None),  # D-27: in mau
            (_day(-28), "u5", "a5", None),  # D-28: out of mau
            (_day(1), "u6", "a6", None),  # after D: ignored
        ]
    )
    first_seen = _first_seen([("u1", "2025-03-28"), ("u2", _day(-6)), ("u6", _day(1)), ("u7", "2025-03-28")])
    row = _row(engagement_daily(activity, first_seen, D))
    assert row["date"] == "2025-03-28"
    assert row["dau"] == 1  # u1
    assert row["wau"] == 2  # u1, u2
    assert row["mau"] == 4  # u1, u2, u3, u4
    assert row["stickiness"] == 0.25  # 1 / 4
    assert row["active_accounts"] == 2  # a1, a2 on D
    assert row["new_users"] == 2  # u1 and u7 have first_date D


def test_missing_partitions_are_not_invented() -> None:
    # Only D-2 and D exist in the rollup; the days between add nobody.
    activity = _activity(
        [
            (_day(-2), "u1", "a1", None),
            (_day(-2), "u2", "a1", None),
            ("2025-03-28", "u2", "a1", None),
        ]
    )
    row = _row(engagement_daily(activity, _first_seen([]), D))
    assert (row["dau"], row["wau"], row["mau"]) == (1, 2, 2)
    assert row["stickiness"] == 0.5  # 1 / 2
    assert row["new_users"] == 0


def test_no_activity_gives_zero_counts_and_nan_stickiness() -> None:
    activity = _activity([(_day(-28), "u1", "a1", None)])  # only outside the 28-day window
    row = _row(engagement_daily(activity, _first_seen([("u1", _day(-28))]), D))
    assert (row["dau"], row["wau"], row["mau"], row["active_accounts"], row["new_users"]) == (0, 0, 0, 0, 0)
    assert math.isnan(row["stickiness"])  # 0 / 0


def test_dau_zero_with_mau_gives_zero_stickiness() -> None:
    activity = _activity([(_day(-10), "u1", "a1", None)])
    row = _row(engagement_daily(activity, _first_seen([]), D))
    assert (row["dau"], row["wau"], row["mau"]) == (0, 0, 1)
    assert row["stickiness"] == 0.0  # 0 / 1
