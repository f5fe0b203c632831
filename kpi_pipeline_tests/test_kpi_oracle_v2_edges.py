"""The oracle of test_kpi_oracle against the KPI functions on hand-made edge cases of
kpi_support_daily, kpi_lifecycle_weekly and kpi_cohort_retention (kpis-v2.md).

The sample data set is January 2025 in one zone with ordinary hours; these fixtures add what it
cannot show: SLA targets met exactly and missed by 1 µs, the as-of clock of a ticket never
answered, a reply stamped before creation, Friday evening to Monday, both DST changes of
Europe/Berlin (also with hours inside the changing hour), listed and German public holidays, blank
priorities; a user who skips a week, one who never comes back, one seen again only in the last
week, an account shared by users of different cohorts, a staged week with no production user and
a last staged date set by a staging event. Each oracle value that carries the edge is also checked
against a number worked out by hand, so the oracle itself is not taken on trust.
"""

from __future__ import annotations

import datetime as dt
import math

import hypothesis.strategies as st
import pandas as pd
import pytest
from hypothesis import given

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.kpis.activity import account_weeks, daily_activity, user_days, user_weeks
from kpi_pipeline.kpis.business_time import business_minutes
from kpi_pipeline.kpis.lifecycle import lifecycle_weekly
from kpi_pipeline.kpis.retention import cohort_retention
from kpi_pipeline.kpis.support import support_daily
from kpi_pipeline_tests.test_kpi_oracle import (
    Row,
    assert_table_matches,
    business_minutes_reference,
    expected_cohort_retention,
    expected_lifecycle,
    expected_support,
)

# --------------------------------------------------------------------------- support

SLA = {
    "first_reply": {"urgent": 60, "high": 240, "normal": 480, "low": 1440},
    "resolution": {"urgent": 480, "high": 1440, "normal": 2880, "low": 5760},
}
BY_CHANNEL = {"phone": 40.0, "chat": 12.0}
BERLIN = parse_config(
    {
        "cost_per_ticket": 25.0,
        "support": {
            "cost_per_ticket_by_channel": BY_CHANNEL,
            "business_hours": {
                "timezone": "Europe/Berlin",
                "start": "09:00",
                "end": "17:00",
                "holidays": ["2026-12-24"],
                "country": "DE",
            },
            "sla": SLA,
        },
    }
)
CALENDAR = parse_config(
    {"cost_per_ticket": 25.0, "support": {"cost_per_ticket_by_channel": BY_CHANNEL, "sla": SLA}}
)
# Every day 02:30-03:30 in Berlin: inside the hour skipped on 2026-03-29 and repeated on 2026-10-25.
NIGHT = parse_config(
    {
        "support": {
            "business_hours": {
                "timezone": "Europe/Berlin",
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "02:30",
                "end": "03:30",
            },
            "sla": SLA,
        }
    }
)
AS_OF = "2026-12-30 16:00"  # Wednesday 17:00 in Berlin: the newest updated_at below

# (name, fields): timestamps are UTC; Berlin is UTC+1 in winter (CET), UTC+2 in summer (CEST).
TICKETS: list[tuple[str, dict[str, object]]] = [
    # Tue 10:00 CET; replied after exactly 60 business minutes, solved after exactly 480 (420 + 60).
    ("at_target", {"priority": "urgent", "channel": "phone", "created_at": "2026-03-24 09:00",
                   "first_reply_at": "2026-03-24 10:00", "solved_at": "2026-03-25 09:00",
                   "reopens": 1, "agent_work_minutes": 15.5}),
    # the same 1 µs later: both targets missed
    ("beyond_target", {"priority": "urgent", "channel": "phone", "created_at": "2026-03-24 09:00",
                       "first_reply_at": "2026-03-24 10:00:00.000001",
                       "solved_at": "2026-03-25 09:00:00.000001", "reopens": 0}),
    # 00:30 CET on the 25th is still the 24th in UTC; replied Wednesday 09:30 CET: 30 minutes
    ("utc_date", {"priority": "urgent", "channel": "web", "created_at": "2026-03-24 23:30",
                  "first_reply_at": "2026-03-25 08:30"}),
    # a reply stamped an hour before creation: 0 minutes
    ("reply_before_created", {"priority": "high", "channel": "chat", "created_at": "2026-03-24 12:00",
                              "first_reply_at": "2026-03-24 11:00", "solved_at": "2026-03-24 12:30",
                              "reopens": 0, "agent_work_minutes": 5}),
    # Friday 19:00 CET → Monday 09:30 CET: 30 business minutes (3750 calendar); solved Monday 17:30
    ("friday_evening", {"priority": "normal", "channel": "email", "created_at": "2026-03-20 18:00",
                        "first_reply_at": "2026-03-23 08:30", "solved_at": "2026-03-23 16:30"}),
    # Friday 16:00 CET → Monday 10:00 CEST across the spring change: 60 + 60 business minutes
    ("spring_dst", {"priority": "high", "channel": "email", "created_at": "2026-03-27 15:00",
                    "first_reply_at": "2026-03-30 08:00", "solved_at": "2026-03-30 15:00"}),
    # Friday 16:00 CEST → Monday 10:00 CET across the autumn change: 60 + 60 business minutes
    ("autumn_dst", {"priority": "high", "channel": "web", "created_at": "2026-10-23 14:00",
                    "first_reply_at": "2026-10-26 09:00", "reopens": 2}),
    # Wed 23 Dec 16:00 CET → Mon 28 Dec 09:30: 24th listed, 25th a German holiday: 60 + 30 minutes
    ("holidays", {"priority": "normal", "channel": "web", "created_at": "2026-12-23 15:00",
                  "first_reply_at": "2026-12-28 08:30"}),
    # never answered nor solved: both clocks run to the as-of time, 3 × 480 = 1440 business minutes,
    # exactly the low reply target (no breach), beyond the normal one (a breach)
    ("as_of_exact", {"priority": "low", "channel": "api", "created_at": "2026-12-28 08:00",
                     "updated_at": AS_OF, "reopens": 1}),
    ("as_of_breach", {"priority": "normal", "channel": "email", "created_at": "2026-12-28 08:00"}),
    # no reply but solved after 120 minutes: the reply clock stops at the solve (beyond 60)
    ("solved_unanswered", {"priority": "urgent", "channel": "chat", "created_at": "2026-12-29 08:00",
                           "solved_at": "2026-12-29 10:00", "agent_work_minutes": 30}),
    # blank priority and no channel; no priority with a channel; an unlisted channel
    ("blank_priority", {"priority": "  ", "channel": None, "created_at": "2026-12-29 09:00",
                        "first_reply_at": "2026-12-29 09:05"}),
    ("no_priority", {"priority": None, "channel": "chat", "created_at": "2026-12-29 10:00"}),
    ("other_channel", {"priority": "low", "channel": "sms", "created_at": "2026-12-29 10:00",
                       "first_reply_at": "2026-12-29 11:00", "solved_at": "2026-12-29 12:00"}),
    # a padded channel is that channel (trimmed, as releases are): it costs chat's price
    ("padded_channel", {"priority": "urgent", "channel": " chat ", "created_at": "2026-12-29 10:30",
                        "first_reply_at": "2026-12-29 10:40", "solved_at": "2026-12-29 10:50"}),
]  # fmt: skip


def _tickets(rows: list[tuple[str, dict[str, object]]]) -> pd.DataFrame:
    """Staged-ticket rows (stg_support_tickets' columns and dtypes); updated_at defaults to the
    latest of created_at, first_reply_at and solved_at."""
    records = []
    for name, fields in rows:
        record = {
            "ticket_id": name,
            "status": "solved" if fields.get("solved_at") else "open",
            "topic": "access",
            "requester_id": None,
            "account_id": None,
            "first_reply_at": None,
            "solved_at": None,
            "agent_work_minutes": None,
            "reopens": None,
            "source_file": "tickets/export.csv",
            **fields,
        }
        stamps = [record[c] for c in ("created_at", "first_reply_at", "solved_at") if record[c]]
        record.setdefault("updated_at", max(stamps, key=pd.Timestamp))
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    for column in ("created_at", "updated_at", "first_reply_at", "solved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").dt.as_unit("us")
    for column in ("ticket_id", "status", "topic", "channel", "priority", "requester_id", "account_id"):
        frame[column] = frame[column].astype("string")
    frame["agent_work_minutes"] = frame["agent_work_minutes"].astype("float64")
    frame["reopens"] = frame["reopens"].astype("Int64")
    return frame


def _minutes(config: KpiConfig, name: str, end: str = "first_reply_at") -> float:
    ticket = dict(TICKETS)[name]
    hours = config.support.business_hours
    assert hours is not None
    return business_minutes_reference(
        pd.Timestamp(ticket["created_at"], tz="UTC"), pd.Timestamp(ticket.get(end) or AS_OF, tz="UTC"), hours
    )


def test_the_business_minutes_reference_by_hand() -> None:
    """The oracle's business minutes on the fixture's edges, against numbers worked out by hand."""
    assert _minutes(BERLIN, "at_target") == 60.0 and _minutes(BERLIN, "at_target", "solved_at") == 480.0
    assert _minutes(BERLIN, "beyond_target") == 60 + 1e-6 / 60
    assert _minutes(BERLIN, "utc_date") == 30.0
    assert _minutes(BERLIN, "reply_before_created") == 0.0
    assert _minutes(BERLIN, "friday_evening") == 30.0
    assert _minutes(BERLIN, "friday_evening", "solved_at") == 480.0
    assert _minutes(BERLIN, "spring_dst") == 120.0  # a fixed UTC+1 (CET) would give 60
    assert _minutes(BERLIN, "spring_dst", "solved_at") == 540.0
    assert _minutes(BERLIN, "autumn_dst") == 120.0
    assert _minutes(BERLIN, "holidays") == 90.0
    assert _minutes(BERLIN, "holidays", "solved_at") == 60 + 3 * 480  # unsolved: to the as-of time
    assert _minutes(BERLIN, "as_of_exact") == 1440.0
    # 02:30-03:30 daily: Sat 28 Mar 60; Sun 29 Mar opens at 03:00 CEST, the end of the gap, 30;
    # Mon 30 Mar 60 (00:30-01:30 UTC, before the 08:00 reply).
    assert _minutes(NIGHT, "spring_dst") == 150.0
    # Sat 24 Oct 60; Sun 25 Oct opens at the first 02:30 (00:30 UTC), closes 03:30 CET (02:30 UTC),
    # 120; Mon 26 Oct 60.
    assert _minutes(NIGHT, "autumn_dst") == 240.0


@pytest.mark.parametrize("config", [BERLIN, CALENDAR, NIGHT], ids=["berlin", "calendar", "night"])
def test_support_daily_at_its_edges(config: KpiConfig) -> None:
    frame = _tickets(TICKETS)
    expected = expected_support(frame, config)
    assert_table_matches("kpi_support_daily", support_daily(frame, config), expected)


def _row(rows: list[Row], date: str, channel: str, priority: str) -> Row:
    (row,) = [r for r in rows if (r["date"], r["channel"], r["priority"]) == (date, channel, priority)]
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def test_the_support_oracle_by_hand() -> None:
    """The oracle's rows that carry the edges, against numbers worked out by hand."""
    rows = expected_support(_tickets(TICKETS), BERLIN)
    phone = _row(rows, "2026-03-24", "phone", "urgent")  # at_target and beyond_target
    assert (phone["tickets"], phone["solved"], phone["reopened"], phone["reopen_rate"]) == (2, 2, 1, 0.5)
    assert (phone["first_reply_breaches"], phone["first_reply_breach_rate"]) == (1, 0.5)
    assert (phone["resolution_breaches"], phone["resolution_breach_rate"]) == (1, 0.5)
    assert phone["median_resolution_business_minutes"] == 480 + 0.5e-6 / 60
    assert (phone["agent_minutes"], phone["cost"]) == (15.5, 80.0)
    assert _row(rows, "2026-03-24", "web", "urgent")["median_first_reply_business_minutes"] == 30.0
    early = _row(rows, "2026-03-24", "chat", "high")
    assert early["median_first_reply_minutes"] == early["median_first_reply_business_minutes"] == 0.0
    friday = _row(rows, "2026-03-20", "email", "normal")
    assert (friday["median_first_reply_minutes"], friday["median_first_reply_business_minutes"]) == (3750, 30)
    assert _row(rows, "2026-10-23", "web", "high")["reopened"] == 0  # reopens 2, but never solved
    assert _row(rows, "2026-12-28", "api", "low")["first_reply_breaches"] == 0  # exactly 1440
    breach = _row(rows, "2026-12-28", "email", "normal")
    assert (breach["first_reply_breaches"], breach["resolution_breaches"]) == (1, 0)
    assert breach["median_first_reply_minutes"] is None
    unanswered = _row(rows, "2026-12-29", "chat", "urgent")
    # solved after 120 min unanswered (a reply breach); the padded " chat " ticket answered in 10 min
    assert (unanswered["first_reply_breaches"], unanswered["resolution_breaches"]) == (1, 0)
    blank = _row(rows, "2026-12-29", "unknown", "unknown")
    assert (blank["first_reply_breaches"], blank["first_reply_breach_rate"], blank["cost"]) == (0, None, 25.0)
    assert _row(rows, "2026-12-29", "chat", "unknown")["cost"] == 12.0
    assert _row(rows, "2026-12-29", "sms", "low")["cost"] == 25.0
    assert (unanswered["tickets"], unanswered["cost"]) == (2, 24.0)  # with the padded " chat "


# The 2026 clock changes of each zone (Lord Howe's clock moves 30 minutes).
CHANGES = {
    "Europe/Berlin": ["2026-03-29", "2026-10-25"],
    "America/New_York": ["2026-03-08", "2026-11-01"],
    "Australia/Lord_Howe": ["2026-04-05", "2026-10-04"],
    "UTC": ["2026-06-01"],
}


@st.composite
def _intervals(draw: st.DrawFn) -> tuple[dict[str, object], list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Business hours in a zone with DST with any opening and closing minutes (often in the small
    hours, where the clock changes), and intervals of up to 9 days, often around a change of the
    zone's clock, some reversed."""
    zone = draw(st.sampled_from(sorted(CHANGES)))
    start = draw(st.integers(0, 1439) | st.integers(60, 210))
    end = draw(st.integers(start + 1, 1440) | st.integers(start + 1, max(start + 1, 240)))
    days = draw(st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1))
    hours = {
        "timezone": zone,
        "days": sorted(days),
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{end // 60:02d}:{end % 60:02d}",
        "country": draw(st.sampled_from([None, "DE", "US"])),
    }
    base = pd.Timestamp("2026-01-01", tz="UTC")
    anywhere = st.integers(0, 365 * 86_400 * 10**6).map(lambda us: base + pd.Timedelta(microseconds=us))
    near_change = st.tuples(st.sampled_from(CHANGES[zone]), st.integers(-4 * 86_400, 86_400)).map(
        lambda c: pd.Timestamp(c[0], tz="UTC") + pd.Timedelta(seconds=c[1])
    )
    instant = anywhere | near_change
    spans = []
    for _ in range(draw(st.integers(1, 4))):
        a = draw(instant)
        spans.append((a, a + pd.Timedelta(microseconds=draw(st.integers(-(10**9), 9 * 86_400 * 10**6)))))
    return hours, spans


@given(_intervals())
def test_business_minutes_match_the_reference(case: tuple[dict[str, object], list]) -> None:
    """The pipeline's vectorised business minutes equal the oracle's day-by-day walk."""
    hours_config, spans = case
    hours = parse_config({"support": {"business_hours": hours_config}}).support.business_hours
    assert hours is not None
    starts = pd.Series([a for a, _ in spans], dtype="datetime64[us, UTC]")
    ends = pd.Series([b for _, b in spans], dtype="datetime64[us, UTC]")
    got = business_minutes(starts, ends, hours).tolist()
    want = [business_minutes_reference(a, b, hours) for a, b in spans]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-9), (hours_config, spans)


# --------------------------------------------------------------------------- lifecycle and cohorts

# Weeks (Mondays): W-1 2026-10-26, W0 11-02, W1 11-09, W2 11-16, W3 11-23, W4 11-30.
# x (staging only) in W-1, the first staged week: no production user in it.
# u1/A: W0, W2 (Sunday 23:59:59.999999), W3 — skips W1 and comes back (resurrecting in W2).
# u2: A in W1 (A's cohort is W0, u1's), then D in W2. u3/B: W0 only, dormant in W1, never back.
# u4/C: W0, then only W4, the last week. u5/B: Monday 00:00 of W3. u6/E: staging in W1, production W2.
EVENTS = [
    ("2026-10-28 10:00", "x", "X", "staging"),
    ("2026-11-02 09:00", "u1", "A", "production"),
    ("2026-11-22 23:59:59.999999", "u1", "A", "production"),
    ("2026-11-24 08:00", "u1", "A", "production"),
    ("2026-11-10 12:00", "u2", "A", "production"),
    ("2026-11-17 12:00", "u2", "D", "production"),
    ("2026-11-03 12:00", "u3", "B", "production"),
    ("2026-11-04 12:00", "u4", "C", "production"),
    ("2026-11-30 12:00", "u4", "C", "production"),
    ("2026-11-23 00:00", "u5", "B", "production"),
    ("2026-11-12 12:00", "u6", "E", "staging"),
    ("2026-11-19 12:00", "u6", "E", "production"),
]
# A staging event a week after the last production one: the last staged week moves to W5.
STAGING_TAIL = [("2026-12-08 10:00", "u1", "A", "staging")]


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["occurred_at", "user_id", "account_id", "environment"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True, format="ISO8601").dt.as_unit("us")
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame["event_type"] = "feature_used"
    frame["feature"] = "search"
    return frame


def _records(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    """The pipeline's weekly records of the events, as its assets build them day by day, and the
    first staged date (earliest partition) and last staged date (latest event, any environment)."""
    dates = events["occurred_at"].dt.strftime("%Y-%m-%d")
    first, last = dates.min(), dates.max()
    activity = daily_activity(events)
    days = [d.date() for d in pd.date_range(first, last, freq="D")]
    seen = user_days(activity)
    weeks = pd.concat([user_weeks(seen, day) for day in days], ignore_index=True)
    accounts = pd.concat([account_weeks(activity, day) for day in days], ignore_index=True)
    return weeks, accounts, first, last


def _by_key(rows: list[Row], *keys: str) -> dict[tuple[object, ...], Row]:
    return {tuple(r[k] for k in keys): r for r in rows}


@pytest.mark.parametrize("tail", [False, True], ids=["production_last", "staging_tail"])
def test_lifecycle_weekly_at_its_edges(tail: bool) -> None:
    events = _events(EVENTS + (STAGING_TAIL if tail else []))
    weeks, _, first, last = _records(events)
    expected = expected_lifecycle(events, first, last)
    actual = lifecycle_weekly(weeks, dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    assert_table_matches("kpi_lifecycle_weekly", actual, expected)

    users = {k: r["users"] for k, r in _by_key(expected, "week", "status").items()}
    assert [users[("2026-10-26", s)] for s in ("new", "returning", "resurrecting", "dormant")] == [0] * 4
    assert users[("2026-11-02", "new")] == 3  # u1, u3, u4
    assert users[("2026-11-09", "dormant")] == 3  # u1, u3, u4
    assert users[("2026-11-16", "resurrecting")] == 1  # u1
    assert users[("2026-11-16", "new")] == 1  # u6: staging events do not make it new in W1
    assert users[("2026-11-23", "dormant")] == 2  # u2, u6; u3 is not dormant again
    assert users[("2026-11-30", "resurrecting")] == 1  # u4
    quick = {r["week"]: r["quick_ratio"] for r in expected}
    assert quick["2026-11-09"] == 1 / 3 and math.isnan(quick["2026-11-02"])  # NULL: no one dormant
    assert max(quick) == ("2026-12-07" if tail else "2026-11-30")
    if tail:
        assert users[("2026-12-07", "dormant")] == 1 and quick["2026-12-07"] == 0.0  # u4


@pytest.mark.parametrize("tail", [False, True], ids=["production_last", "staging_tail"])
def test_cohort_retention_at_its_edges(tail: bool) -> None:
    events = _events(EVENTS + (STAGING_TAIL if tail else []))
    weeks, accounts, _, last = _records(events)
    expected = expected_cohort_retention(events, last)
    actual = cohort_retention(weeks, accounts, dt.date.fromisoformat(last))
    assert_table_matches("kpi_cohort_retention", actual, expected)

    keyed = _by_key(expected, "unit", "mode", "cohort_week", "week_number")
    got = {k: (r["cohort_size"], r["retained"]) for k, r in keyed.items()}
    w0 = "2026-11-02"
    # users of W0 (u1, u3, u4): u4 only comes back in the last production week
    assert [got[("user", "on", w0, n)][1] for n in range(5)] == [3, 0, 1, 1, 1]
    assert [got[("user", "on_or_after", w0, n)][1] for n in range(5)] == [3, 2, 2, 2, 1]
    # accounts of W0 (A, B, C): A has u2 in W1, B has u5 in W3
    assert [got[("account", "on", w0, n)][1] for n in range(5)] == [3, 1, 1, 2, 1]
    assert [got[("account", "on_or_after", w0, n)] for n in range(5)] == [(3, 3)] * 4 + [(3, 1)]
    assert got[("account", "on", "2026-11-16", 0)] == (2, 2)  # D (u2's second account) and E
    assert ("user", "on", "2026-10-26", 0) not in got  # x was only in staging
    assert ("user", "on", w0, 5) in got if tail else ("user", "on", w0, 5) not in got
    if tail:
        assert got[("user", "on_or_after", w0, 5)] == (3, 0)
