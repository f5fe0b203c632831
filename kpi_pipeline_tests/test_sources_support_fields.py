"""The ticket fields kpi_support_daily needs, through the presets: Zendesk's first reply given as
minutes after creation (``minutes_after``), priority, channel, solved and reopens."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kpi_pipeline.config import parse_config
from kpi_pipeline.ingest.rows import StagedExports
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.sources.mapping import minutes_after
from kpi_pipeline.sources.model import TicketMapping


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# The columns of Zendesk's ticket CSV export (Admin Center > Account > Tools > Reports > Export),
# in its order, up to the first custom field.
ZENDESK_COLUMNS: tuple[str, ...] = (
    "Summation column",
    "Id",
    "Requester",
    "Requester id",
    "Requester external id",
    "Requester email",
    "Requester domain",
    "Submitter",
    "Assignee",
    "Group",
    "Subject",
    "Tags",
    "Status",
    "Priority",
    "Via",
    "Ticket type",
    "Created at",
    "Updated at",
    "Assigned at",
    "Organization",
    "Due date",
    "Initially assigned at",
    "Solved at",
    "Resolution time",
    "Satisfaction Score",
    "Group stations",
    "Assignee stations",
    "Reopens",
    "Replies",
    "First reply time in minutes",
    "First reply time in minutes within business hours",
    "First resolution time in minutes",
    "First resolution time in minutes within business hours",
    "Full resolution time in minutes",
    "Full resolution time in minutes within business hours",
    "Agent wait time in minutes",
    "Agent wait time in minutes within business hours",
    "Requester wait time in minutes",
    "Requester wait time in minutes within business hours",
    "On hold time in minutes",
    "On hold time in minutes within business hours",
)


def zendesk_export(tickets: list[dict[str, str]]) -> str:
    """A Zendesk-shaped CSV export: every column, '-' where a ticket has no value (as Zendesk
    writes it), the given values elsewhere."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ZENDESK_COLUMNS, restval="-", lineterminator="\n")
    writer.writeheader()
    for ticket in tickets:
        assert set(ticket) <= set(ZENDESK_COLUMNS), set(ticket) - set(ZENDESK_COLUMNS)
        writer.writerow({"Summation column": "1", "Requester": "Ann", "Subject": "Help", **ticket})
    return buffer.getvalue()


def ticket(number: int, created: str, **columns: str) -> dict[str, str]:
    base = {
        "Id": str(number),
        "Requester id": str(9000 + number),
        "Group": "Billing",
        "Status": "Open",
        "Priority": "Normal",
        "Via": "Mail",
        "Created at": created,
        "Updated at": "2026-03-30 12:00:00",
        "Reopens": "0",
    }
    return {**base, **{name.replace("_", " "): value for name, value in columns.items()}}


FIRST_REPLY = "First reply time in minutes"
FIRST_REPLY_BUSINESS = "First reply time in minutes within business hours"


def zendesk_mapping(**overrides: Any) -> TicketMapping:
    entry = {"preset": "zendesk_tickets", "path": "exports/zendesk", "timezone": "Europe/Berlin", **overrides}
    mapping = parse_config({"sources": {"tickets": entry}}).sources.tickets
    assert mapping is not None
    return mapping


def stage(tmp_path: Path, name: str, tickets: list[dict[str, str]], **overrides: Any) -> StagedExports:
    path = tmp_path / "exports" / "zendesk" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(zendesk_export(tickets), encoding="utf-8")
    return stage_tickets(tmp_path, zendesk_mapping(**overrides))


def reasons(staged: StagedExports) -> list[tuple[str, int, str]]:
    q = staged.quarantine
    return list(zip(q["file"], q["line"], q["reason"], strict=True))


def test_zendesk_first_reply_is_created_at_plus_the_calendar_minutes(tmp_path: Path) -> None:
    tickets = [
        # Berlin is UTC+1 until 29 March: created 08:00 UTC, replied 95 calendar minutes later
        ticket(1, "2026-03-02 09:00:00", **{FIRST_REPLY: "95", FIRST_REPLY_BUSINESS: "35"}),
        ticket(2, "2026-03-02 10:00:00", **{FIRST_REPLY: ""}),  # no reply yet: blank
        ticket(3, "2026-03-02 11:00:00"),  # no reply yet: '-'
        # created 01:50 CET (00:50 UTC); clocks jump 02:00 → 03:00; 20 elapsed minutes → 01:10 UTC
        ticket(4, "2026-03-29 01:50:00", **{FIRST_REPLY: " 20 "}),
        ticket(5, "2026-03-02 12:00:00", **{FIRST_REPLY: "0"}),  # replied on creation
    ]
    staged = stage(tmp_path, "export-2026-03-30.csv", tickets)
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["ticket_id"].tolist() == ["1", "2", "3", "4", "5"]
    assert records["created_at"].tolist() == [
        ts("2026-03-02 08:00"),
        ts("2026-03-02 09:00"),
        ts("2026-03-02 10:00"),
        ts("2026-03-29 00:50"),
        ts("2026-03-02 11:00"),
    ]
    replied = records["first_reply_at"]
    assert replied[0] == ts("2026-03-02 09:35")  # the calendar column, not the business-hours one
    assert replied.isna().tolist() == [False, True, True, False, False]  # blank and '-' are NULL
    assert replied[3] == ts("2026-03-29 01:10")
    assert replied[4] == records["created_at"][4]
    assert staged.report.fields_seen["first_reply_at"] == 3
    assert staged.report.quarantined_rows == 0 and staged.report.reconciled


def test_zendesk_first_reply_minutes_that_are_no_number_quarantine_the_row(tmp_path: Path) -> None:
    tickets = [
        ticket(1, "2026-03-02 09:00:00", **{FIRST_REPLY: "95"}),
        ticket(2, "2026-03-02 09:00:00", **{FIRST_REPLY: "1h 35m"}),
        ticket(3, "2026-03-02 09:00:00", **{FIRST_REPLY: "-5"}),  # before the ticket existed
        ticket(4, "2026-03-02 09:00:00", **{FIRST_REPLY: "1,5"}),  # not a decimal number
        ticket(5, "2026-02-30 09:00:00", **{FIRST_REPLY: "x"}),  # bad_timestamp comes first
        ticket(6, "2026-03-02 09:00:00", Group="", Status="Deleted", **{FIRST_REPLY: "x"}),  # contract order
    ]
    staged = stage(tmp_path, "export.csv", tickets)
    assert staged.records["ticket_id"].tolist() == ["1"]
    assert reasons(staged) == [
        ("exports/zendesk/export.csv", 3, "bad_value:first_reply_at"),
        ("exports/zendesk/export.csv", 4, "bad_value:first_reply_at"),
        ("exports/zendesk/export.csv", 5, "bad_value:first_reply_at"),
        ("exports/zendesk/export.csv", 6, "bad_timestamp"),
        ("exports/zendesk/export.csv", 7, "bad_value:status"),  # status comes before first_reply_at
    ]
    assert staged.quarantine["raw"].tolist()[0].startswith("1,2,Ann,9002,")  # the original line
    assert staged.report.reconciled


def test_zendesk_priority_channel_solved_and_reopens_for_the_support_table(tmp_path: Path) -> None:
    tickets = [
        ticket(1, "2026-03-02 09:00:00", Priority="Urgent", Via="Web form"),
        ticket(2, "2026-03-02 09:00:00", Priority="high", Via="Phone call (incoming)"),
        ticket(
            3,
            "2026-03-02 09:00:00",
            Priority="-",
            Via="Twitter",
            Status="Solved",
            Reopens="2",
            **{"Solved at": "2026-03-03 09:00:00"},
        ),
        ticket(4, "2026-03-02 09:00:00", Priority="Low", Via="Web service"),
    ]
    staged = stage(tmp_path, "export.csv", tickets)
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["priority"].tolist() == ["urgent", "high", pd.NA, "low"]  # any case; '-' is none
    assert records["channel"].tolist() == ["web", "phone", "Twitter", "api"]  # others kept as written
    assert records["solved_at"].tolist()[2] == ts("2026-03-03 08:00")
    assert records["reopens"].tolist() == [0, 0, 2, 0]
    assert staged.report.quarantined_rows == 0


def test_minutes_after_in_json_lines_reads_numbers_as_numbers(tmp_path: Path) -> None:
    lines = [
        {"key": "A", "opened": "2026-03-02T09:00:00Z", "changed": "2026-03-02T12:00:00Z", "reply": 30},
        {"key": "B", "opened": "2026-03-02T09:00:00Z", "changed": "2026-03-02T12:00:00Z", "reply": 12.5},
        {"key": "C", "opened": "2026-03-02T09:00:00Z", "changed": "2026-03-02T12:00:00Z", "reply": None},
        {"key": "D", "opened": "2026-03-02T09:00:00Z", "changed": "2026-03-02T12:00:00Z", "reply": "soon"},
    ]
    path = tmp_path / "desk" / "tickets.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    mapping = parse_config(
        {
            "sources": {
                "tickets": {
                    "path": "desk",
                    "format": "jsonl",
                    "fields": {
                        "ticket_id": "key",
                        "created_at": "opened",
                        "updated_at": "changed",
                        "first_reply_at": {"column": "reply", "minutes_after": "created_at"},
                    },
                    "constants": {"status": "open", "topic": "billing"},
                }
            }
        }
    ).sources.tickets
    staged = stage_tickets(tmp_path, mapping)
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["first_reply_at"].tolist()[:2] == [ts("2026-03-02 09:30"), ts("2026-03-02 09:12:30")]
    assert records["first_reply_at"].isna().tolist() == [False, False, True]
    assert reasons(staged) == [("desk/tickets.jsonl", 4, "bad_value:first_reply_at")]


def test_minutes_after_against_a_plain_python_oracle() -> None:
    """The vectorised sum equals a row-by-row computation, bad values included."""
    rng = np.random.default_rng(7)
    starts = pd.Series(
        pd.to_datetime(rng.integers(1_700_000_000, 1_800_000_000, 200), unit="s", utc=True)
    ).astype("datetime64[us, UTC]")
    starts[::17] = pd.NaT
    texts = [str(int(m)) for m in rng.integers(0, 100_000, 200)]
    for position, odd in zip(
        range(3, 200, 23), ["", "x", "-1", " 7.25 ", "1e3", "nan", "inf", ".5", "1e99"], strict=True
    ):
        texts[position] = odd
    minutes = pd.Series(texts, dtype="string").mask(pd.Series(texts).eq("").to_numpy())
    result, bad = minutes_after(starts, minutes)

    def oracle(start: pd.Timestamp, text: str | None) -> tuple[pd.Timestamp | None, bool]:
        if text is None:
            return None, False
        try:
            number = float(text)
        except ValueError:
            return None, True
        if text.strip().lower() in {"nan", "inf"} or not 0 <= number <= 1e9:
            return None, True
        return (None if pd.isna(start) else start + pd.Timedelta(minutes=number)), False

    expected = [oracle(s, None if pd.isna(t) else t) for s, t in zip(starts, minutes, strict=True)]
    assert bad.tolist() == [b for _, b in expected]
    assert [None if pd.isna(r) else r for r in result] == [e for e, _ in expected]
