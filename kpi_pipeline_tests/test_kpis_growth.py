"""kpi_cohort_retention, kpi_lifecycle_weekly and the account_weeks record on hand-made weeks.

Weeks of the fixture (Mondays): W0 2026-11-02, W1 11-09, W2 11-16, W3 11-23; last date 11-24 (W3).
user a: W0 W1 W3 (account acme); user b: W0 W1 (account acme, then account beta in W1);
user c: W1 (account beta).
"""

from __future__ import annotations

import datetime as dt

import hypothesis.strategies as st
import pandas as pd
from hypothesis import given, settings

from kpi_pipeline.kpis.activity import account_weeks
from kpi_pipeline.kpis.lifecycle import lifecycle_weekly
from kpi_pipeline.kpis.retention import cohort_retention, retention_weekly
from kpi_pipeline.tables import table

LAST = dt.date(2026, 11, 24)
USER_WEEKS = pd.DataFrame(
    {
        "date": ["2026-11-02", "2026-11-09", "2026-11-23", "2026-11-03", "2026-11-10", "2026-11-12"],
        "user_id": ["a", "a", "a", "b", "b", "c"],
        "first_at": pd.Timestamp("2026-11-02", tz="UTC"),
    }
)
ACCOUNT_WEEKS = pd.DataFrame(
    {
        "date": ["2026-11-02", "2026-11-09", "2026-11-23", "2026-11-10"],
        "account_id": ["acme", "acme", "acme", "beta"],
    }
)


def _rows(out: pd.DataFrame, unit: str, mode: str) -> list[tuple[str, int, int, int]]:
    part = out[(out["unit"] == unit) & (out["mode"] == mode)]
    return list(
        part[["cohort_week", "week_number", "cohort_size", "retained"]].itertuples(index=False, name=None)
    )


def test_cohort_retention_on_and_on_or_after_for_users_and_accounts() -> None:
    out = cohort_retention(USER_WEEKS, ACCOUNT_WEEKS, LAST)
    assert list(out.columns) == list(table("kpi_cohort_retention").column_names)
    # users: cohort W0 = {a, b}, cohort W1 = {c}
    assert _rows(out, "user", "on") == [
        ("2026-11-02", 0, 2, 2),
        ("2026-11-02", 1, 2, 2),
        ("2026-11-02", 2, 2, 0),
        ("2026-11-02", 3, 2, 1),  # a in W3
        ("2026-11-09", 0, 1, 1),
        ("2026-11-09", 1, 1, 0),
        ("2026-11-09", 2, 1, 0),
    ]
    assert _rows(out, "user", "on_or_after") == [
        ("2026-11-02", 0, 2, 2),
        ("2026-11-02", 1, 2, 2),
        ("2026-11-02", 2, 2, 1),  # a came back in W3, b never after W1
        ("2026-11-02", 3, 2, 1),
        ("2026-11-09", 0, 1, 1),
        ("2026-11-09", 1, 1, 0),
        ("2026-11-09", 2, 1, 0),
    ]
    # accounts: acme's cohort W0 (active W0 W1 W3), beta's W1 (active W1 only)
    assert _rows(out, "account", "on") == [
        ("2026-11-02", 0, 1, 1),
        ("2026-11-02", 1, 1, 1),
        ("2026-11-02", 2, 1, 0),
        ("2026-11-02", 3, 1, 1),
        ("2026-11-09", 0, 1, 1),
        ("2026-11-09", 1, 1, 0),
        ("2026-11-09", 2, 1, 0),
    ]
    assert _rows(out, "account", "on_or_after")[2] == ("2026-11-02", 2, 1, 1)
    rates = out[(out["unit"] == "user") & (out["mode"] == "on_or_after")]["retention_rate"].tolist()
    assert rates == [1.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.0]


def test_user_on_rows_equal_kpi_retention_weekly() -> None:
    out = cohort_retention(USER_WEEKS, ACCOUNT_WEEKS, LAST)
    on = out[(out["unit"] == "user") & (out["mode"] == "on")].reset_index(drop=True)
    weekly = retention_weekly(USER_WEEKS, LAST)
    assert on["cohort_week"].tolist() == weekly["cohort_week"].tolist()
    assert on["week_number"].tolist() == weekly["week_number"].tolist()
    assert on["cohort_size"].tolist() == weekly["cohort_users"].tolist()
    assert on["retained"].tolist() == weekly["retained_users"].tolist()
    assert on["retention_rate"].tolist() == weekly["retention_rate"].tolist()


def test_rows_after_the_last_date_are_ignored() -> None:
    out = cohort_retention(USER_WEEKS, ACCOUNT_WEEKS, dt.date(2026, 11, 15))  # W1 is the last week
    assert _rows(out, "user", "on_or_after") == [
        ("2026-11-02", 0, 2, 2),
        ("2026-11-02", 1, 2, 2),
        ("2026-11-09", 0, 1, 1),
    ]


def test_lifecycle_weekly_statuses_and_quick_ratio() -> None:
    out = lifecycle_weekly(USER_WEEKS, dt.date(2026, 11, 2), LAST)
    assert list(out.columns) == list(table("kpi_lifecycle_weekly").column_names)
    users = out.set_index(["week", "status"])["users"].to_dict()
    assert users == {
        ("2026-11-02", "new"): 2,
        ("2026-11-02", "returning"): 0,
        ("2026-11-02", "resurrecting"): 0,
        ("2026-11-02", "dormant"): 0,
        ("2026-11-09", "new"): 1,  # c
        ("2026-11-09", "returning"): 2,  # a, b
        ("2026-11-09", "resurrecting"): 0,
        ("2026-11-09", "dormant"): 0,
        ("2026-11-16", "new"): 0,
        ("2026-11-16", "returning"): 0,
        ("2026-11-16", "resurrecting"): 0,
        ("2026-11-16", "dormant"): 3,  # a, b, c were active in W1
        ("2026-11-23", "new"): 0,
        ("2026-11-23", "returning"): 0,
        ("2026-11-23", "resurrecting"): 1,  # a
        ("2026-11-23", "dormant"): 0,  # b and c were already dormant
    }
    quick = out.groupby("week")["quick_ratio"].agg(["min", "max", "size"])
    assert quick.loc["2026-11-16"].tolist() == [0.0, 0.0, 4]  # (0 + 0) / 3
    assert quick["min"].isna().tolist() == [True, True, False, True]  # no one dormant: NULL


def test_lifecycle_starts_at_the_first_staged_week_even_without_users() -> None:
    out = lifecycle_weekly(USER_WEEKS, dt.date(2026, 10, 28), LAST)  # staged from the week of 10-26
    assert out["week"].unique().tolist()[:2] == ["2026-10-26", "2026-11-02"]
    assert out[out["week"] == "2026-10-26"]["users"].tolist() == [0, 0, 0, 0]
    assert lifecycle_weekly(USER_WEEKS.iloc[:0], LAST, LAST)["users"].tolist() == [0, 0, 0, 0]


def test_account_weeks_keep_each_accounts_first_day_of_its_week() -> None:
    activity = pd.DataFrame(
        {
            "date": ["2026-11-08", "2026-11-09", "2026-11-10", "2026-11-10", "2026-11-11", "2026-11-11"],
            "account_id": ["acme", "acme", "acme", "beta", "beta", "gamma"],
            "feature": [None, None, "export", None, None, "export"],
        }
    )
    # Sunday 11-08 is the week before: acme's Monday row opens its week again
    assert account_weeks(activity, dt.date(2026, 11, 9))["account_id"].tolist() == ["acme"]
    assert account_weeks(activity, dt.date(2026, 11, 10))["account_id"].tolist() == ["beta"]
    out = account_weeks(activity, dt.date(2026, 11, 11))
    assert out.to_dict("list") == {"date": ["2026-11-11"], "account_id": ["gamma"]}


WEEKS = st.lists(st.tuples(st.sampled_from("pqrstu"), st.integers(0, 6)), max_size=25)


@settings(max_examples=60, deadline=None)
@given(WEEKS)
def test_lifecycle_matches_a_plain_recount(visits: list[tuple[str, int]]) -> None:
    """Each status of each week recounted from the spec's definitions over sets of (user, week)."""
    monday = dt.date(2026, 11, 2)
    frame = pd.DataFrame(
        {
            "date": [(monday + dt.timedelta(weeks=w)).isoformat() for _, w in visits],
            "user_id": [u for u, _ in visits],
            "first_at": pd.Timestamp("2026-11-02", tz="UTC"),
        }
    )
    last = monday + dt.timedelta(weeks=6, days=2)
    out = lifecycle_weekly(frame, monday, last).set_index(["week", "status"])["users"]
    active = {w: {u for u, v in visits if v == w} for w in range(7)}
    first = {u: min(v for x, v in visits if x == u) for u, _ in visits}
    for w in range(7):
        label = (monday + dt.timedelta(weeks=w)).isoformat()
        prev = active.get(w - 1, set())
        new = {u for u in active[w] if first[u] == w}
        expected = {
            "new": len(new),
            "returning": len((active[w] & prev) - new),
            "resurrecting": len(active[w] - prev - new),
            "dormant": len(prev - active[w]),
        }
        assert {s: out[(label, s)] for s in expected} == expected
