"""Tests of kpi_feature_adoption_daily on a hand-made activity rollup."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kpi_pipeline.kpis.adoption import ADOPTION_COLUMNS, feature_adoption_daily

D = dt.date(2025, 3, 28)


def _day(offset: int) -> str:
    """ISO date ``offset`` days from D."""
    return (D + dt.timedelta(days=offset)).isoformat()


def _activity(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    """Rollup rows from (date, user, account, feature) tuples."""
    frame = pd.DataFrame(rows, columns=["date", "user_id", "account_id", "feature"])
    frame["first_at"] = pd.to_datetime(frame["date"], utc=True)
    return frame


def test_feature_adoption_counts_rates_and_median() -> None:
    activity = _activity(
        [
            (_day(0), "u1", "a1", None),
            (_day(0), "u1", "a1", "export"),
            (_day(0), "u1", "a1", "search"),
            (_day(-3), "u2", "a1", None),
            (_day(-3), "u2", "a1", "export"),
            (_day(-27), "u3", "a2", None),  # D-27: inside the window
            (_day(-27), "u3", "a2", "export"),
            (_day(0), "u4", "a3", None),  # active, no feature: only in the denominators
            (_day(-10), "u6", "a5", None),
            (_day(-10), "u6", "a5", "reports"),
            (_day(-28), "u5", "a4", None),  # D-28: outside the window
            (_day(-28), "u5", "a4", "export"),
            (_day(1), "u7", "a6", None),  # after D: ignored
            (_day(1), "u7", "a6", "future"),
        ]
    )
    out = feature_adoption_daily(activity, D)
    assert tuple(out.columns) == ADOPTION_COLUMNS
    # mau = {u1, u2, u3, u4, u6} = 5; active accounts over 28 days = {a1, a2, a3, a5} = 4
    assert out["feature"].tolist() == ["export", "reports", "search"]
    assert out["date"].tolist() == ["2025-03-28"] * 3
    # export: on D only u1 (a1); 28d users {u1, u2, u3}, accounts {a1, a2}
    # reports: used on D-10 only -> 0 on D; search: u1 on D
    assert out["users"].tolist() == [1, 0, 1]
    assert out["accounts"].tolist() == [1, 0, 1]
    assert out["users_28d"].tolist() == [3, 1, 1]
    assert out["accounts_28d"].tolist() == [2, 1, 1]
    # 3/5, 1/5, 1/5
    assert out["adoption_rate_28d"].tolist() == [0.6, 0.2, 0.2]
    # 2/4, 1/4, 1/4
    assert out["account_adoption_rate_28d"].tolist() == [0.5, 0.25, 0.25]
    # export: a1 has 2 users, a2 has 1 -> median of [1, 2] = 1.5; others one account with 1 user
    assert out["median_users_per_account_28d"].tolist() == [1.5, 1.0, 1.0]


def test_median_users_per_account_interpolates_between_middle_values() -> None:
    rows: list[tuple[str, str, str, str | None]] = []
    # account b1: 1 user, b2: 2 users, b3: 4 users, b4: 7 users of "search"
    for account, users in (("b1", 1), ("b2", 2), ("b3", 4), ("b4", 7)):
        for i in range(users):
            rows += [
                (_day(-1), f"{account}-u{i}", account, None),
                (_day(-1), f"{account}-u{i}", account, "search"),
            ]
    out = feature_adoption_daily(_activity(rows), D)
    # linear interpolation: sorted [1, 2, 4, 7], position 1.5 -> 2 + 0.5 * (4 - 2) = 3.0
    assert out["median_users_per_account_28d"].tolist() == [3.0]
    # 14 users, 14 users with search; 4 of 4 accounts
    assert out["adoption_rate_28d"].tolist() == [1.0]
    assert out["account_adoption_rate_28d"].tolist() == [1.0]
    assert (out["users"].tolist(), out["users_28d"].tolist()) == ([0], [14])


def test_no_feature_use_gives_no_rows() -> None:
    out = feature_adoption_daily(_activity([(_day(0), "u1", "a1", None)]), D)
    assert out.empty
    assert tuple(out.columns) == ADOPTION_COLUMNS
