"""kpi_support_daily on hand-made tickets: counts, medians, SLA breaches with the as-of rule, reopens,
cost by channel, and business minutes where support.business_hours is set."""

from __future__ import annotations

import pandas as pd
import pytest

from kpi_pipeline.config import parse_config
from kpi_pipeline.kpis.support import support_daily, ticket_as_of, ticket_times
from kpi_pipeline.tables import table


def tickets(*rows: dict[str, object]) -> pd.DataFrame:
    """Staged-ticket rows: timestamps given as UTC text, the other fields as written."""
    columns = ["ticket_id", "created_at", "updated_at", "status", "topic", "channel", "priority"]
    columns += ["first_reply_at", "solved_at", "agent_work_minutes", "reopens"]
    frame = pd.DataFrame(
        [
            {
                "ticket_id": f"T{i}",
                "status": "open",
                "topic": "access",
                "channel": None,
                "priority": None,
                "first_reply_at": None,
                "solved_at": None,
                "agent_work_minutes": None,
                "reopens": None,
                **row,
            }
            for i, row in enumerate(rows)
        ],
        columns=columns,
    )
    for column in ("created_at", "updated_at", "first_reply_at", "solved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["agent_work_minutes"] = frame["agent_work_minutes"].astype("float64")
    frame["reopens"] = frame["reopens"].astype("Int64")
    return frame


CALENDAR = parse_config(
    {
        "cost_per_ticket": 25.0,
        "support": {
            "cost_per_ticket_by_channel": {"phone": 40.0, "chat": 12.0},
            "sla": {"first_reply": {"urgent": 60}, "resolution": {"urgent": 480}},
        },
    }
)

PHONE = {"channel": "phone", "priority": "urgent"}
SAMPLE = tickets(
    # replied after 30 min, solved after 240 min, reopened once
    {
        **PHONE,
        "created_at": "2026-12-01 10:00",
        "updated_at": "2026-12-01 14:00",
        "first_reply_at": "2026-12-01 10:30",
        "solved_at": "2026-12-01 14:00",
        "reopens": 1,
        "agent_work_minutes": 12.5,
    },
    # no reply, solved after 1440 min: the first-reply clock runs to the solve
    {
        **PHONE,
        "created_at": "2026-12-01 11:00",
        "updated_at": "2026-12-02 11:00",
        "solved_at": "2026-12-02 11:00",
    },
    # no reply, unsolved: both clocks run to the as-of time 2026-12-03 12:00 (2880 min)
    {**PHONE, "created_at": "2026-12-01 12:00", "updated_at": "2026-12-01 12:00"},
    # replied exactly at the 60-minute target (not a breach), unsolved (2820 min to the as-of time)
    {
        **PHONE,
        "created_at": "2026-12-01 13:00",
        "updated_at": "2026-12-01 14:00",
        "first_reply_at": "2026-12-01 14:00",
    },
    # no channel, no priority: unknown, no targets; its update is the newest (the as-of time)
    {
        "created_at": "2026-12-02 09:00",
        "updated_at": "2026-12-03 12:00",
        "first_reply_at": "2026-12-02 09:01",
    },
)


def test_support_daily_counts_medians_breaches_and_cost() -> None:
    out = support_daily(SAMPLE, CALENDAR)
    assert list(out.columns) == list(table("kpi_support_daily").column_names)
    rows = out.set_index(["date", "channel", "priority"])
    phone = rows.loc[("2026-12-01", "phone", "urgent")]
    assert phone["tickets"] == 4 and phone["solved"] == 2
    assert phone["median_first_reply_minutes"] == 45.0  # replies after 30 and 60 minutes
    assert phone["median_resolution_minutes"] == 840.0  # solves after 240 and 1440 minutes
    assert pd.isna(phone["median_first_reply_business_minutes"])  # no business_hours
    assert pd.isna(phone["median_resolution_business_minutes"])
    # first reply: 30 ok, 1440 (to the solve) breach, 2880 (to as-of) breach, exactly 60 ok
    assert (phone["first_reply_breaches"], phone["first_reply_breach_rate"]) == (2, 0.5)
    # resolution: 240 ok, 1440 breach, 2880 breach, 2820 breach
    assert (phone["resolution_breaches"], phone["resolution_breach_rate"]) == (3, 0.75)
    assert (phone["reopened"], phone["reopen_rate"]) == (1, 0.5)
    assert phone["agent_minutes"] == 12.5
    assert phone["cost"] == 4 * 40.0

    other = rows.loc[("2026-12-02", "unknown", "unknown")]
    assert other["tickets"] == 1 and other["solved"] == 0
    assert other["median_first_reply_minutes"] == 1.0
    assert pd.isna(other["median_resolution_minutes"])
    assert other["first_reply_breaches"] == 0 and pd.isna(other["first_reply_breach_rate"])  # no target
    assert other["resolution_breaches"] == 0 and pd.isna(other["resolution_breach_rate"])
    assert other["reopened"] == 0 and pd.isna(other["reopen_rate"])  # nothing solved
    assert other["agent_minutes"] == 0.0  # none given
    assert other["cost"] == 25.0  # unknown channel: cost_per_ticket


def test_as_of_is_the_latest_update() -> None:
    assert ticket_as_of(SAMPLE) == pd.Timestamp("2026-12-03 12:00", tz="UTC")
    # a later update of any ticket moves the running clocks of the unsolved ones
    later = SAMPLE.copy()
    later.loc[4, "updated_at"] = pd.Timestamp("2026-12-01 15:00", tz="UTC")  # as-of: 2026-12-02 11:00
    times = ticket_times(later, CALENDAR)
    # the unsolved ticket created at 12:00 ran 23 h to the new as-of time: still beyond 480
    assert times.loc[2, "resolution_breach"] and times.loc[2, "first_reply_breach"]
    # the one created at 13:00 ran 22 h: a resolution breach; replied at exactly 60: no reply breach
    assert times.loc[3, "resolution_breach"] and not times.loc[3, "first_reply_breach"]
    short = SAMPLE.copy()
    short["updated_at"] = pd.Timestamp("2026-12-01 14:00", tz="UTC")  # as-of 14:00 on the first day
    times = ticket_times(short, CALENDAR)
    # created 12:00, unsolved: 120 minutes so far, beyond the 60-minute reply target only
    assert times.loc[2, "first_reply_breach"] and not times.loc[2, "resolution_breach"]


def test_unlisted_priority_has_no_target_and_reopens_count_only_when_solved() -> None:
    frame = tickets(
        {
            "created_at": "2026-12-01 10:00",
            "updated_at": "2026-12-05 10:00",
            "priority": "low",
            "channel": "chat",
            "reopens": 2,
        }
    )
    row = support_daily(frame, CALENDAR).iloc[0]
    assert (row["priority"], row["first_reply_breaches"], row["resolution_breaches"]) == ("low", 0, 0)
    assert pd.isna(row["first_reply_breach_rate"]) and pd.isna(row["resolution_breach_rate"])
    assert row["reopened"] == 0  # reopens > 0 but not solved: not a reopened solved ticket
    assert row["cost"] == 12.0


BERLIN = parse_config(
    {
        "support": {
            "business_hours": {"timezone": "Europe/Berlin", "start": "09:00", "end": "17:00"},
            "sla": {"first_reply": {"normal": 20}, "resolution": {"normal": 120}},
        }
    }
)


def test_business_minutes_drive_the_sla_where_business_hours_are_set() -> None:
    # Friday 2026-12-04 16:00 UTC is 17:00 in Berlin: closed until Monday 09:00 (08:00 UTC).
    frame = tickets(
        {
            "created_at": "2026-12-04 16:00",
            "updated_at": "2026-12-07 10:00",
            "priority": "normal",
            "first_reply_at": "2026-12-07 08:30",  # Monday 09:30 Berlin: 30 business minutes
            "solved_at": "2026-12-07 10:00",  # Monday 11:00 Berlin: 120 business minutes
        }
    )
    row = support_daily(frame, BERLIN).iloc[0]
    assert row["median_first_reply_minutes"] == 3870.0  # 2 days 16 h 30 min
    assert row["median_first_reply_business_minutes"] == 30.0
    assert row["median_resolution_minutes"] == 3960.0
    assert row["median_resolution_business_minutes"] == 120.0
    assert row["first_reply_breaches"] == 1  # 30 > 20 business minutes
    assert row["resolution_breaches"] == 0  # exactly 120: not a breach


def test_a_reply_stamped_before_creation_counts_as_zero_minutes() -> None:
    frame = tickets(
        {
            "created_at": "2026-12-01 10:00",
            "updated_at": "2026-12-01 10:00",
            "first_reply_at": "2026-12-01 09:00",
        }
    )
    assert support_daily(frame, CALENDAR).iloc[0]["median_first_reply_minutes"] == 0.0


def test_no_tickets_give_no_rows() -> None:
    out = support_daily(tickets(), CALENDAR)
    assert out.empty and list(out.columns) == list(table("kpi_support_daily").column_names)


@pytest.mark.parametrize("channel", ["", "  "])
def test_blank_channel_is_unknown(channel: str) -> None:
    frame = tickets({"created_at": "2026-12-01 10:00", "updated_at": "2026-12-01 10:00", "channel": channel})
    assert support_daily(frame, CALENDAR).iloc[0]["channel"] == "unknown"
