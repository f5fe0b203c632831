"""Bad values that must cost one quarantine row, never a failed source (issue 9): numbers that are
huge, infinite, NaN or oddly spelled, over-long text, detected_at before started_at, the order of
several bad values, and workflow lists that keep names as written."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from kpi_pipeline.contract import INCIDENT_FIELDS, MAX_TEXT_LENGTH, TELEMETRY_FIELDS, TICKET_FIELDS
from kpi_pipeline.ingest.incidents import normalise_workflows, stage_incidents, validate_incidents
from kpi_pipeline.ingest.raw_files import LINE
from kpi_pipeline.ingest.rows import FILE, StagedExports, parse_counts, parse_numbers
from kpi_pipeline.ingest.telemetry import stage_telemetry_partition, validate_events
from kpi_pipeline.ingest.tickets import stage_tickets, validate_tickets

DAY = dt.date(2026, 2, 4)
TICKETS = "raw/tickets/export.csv"
INCIDENTS_CSV = "raw/incidents/log.csv"
INCIDENTS_JSONL = "raw/incidents/log.jsonl"
EVENTS = "raw/telemetry/date=2026-02-04/events.csv"
LONG = "x" * (MAX_TEXT_LENGTH + 1)
LONGEST = "y" * MAX_TEXT_LENGTH


def write(root: Path, relative: str, lines: Sequence[str]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{text}\n" for text in lines), encoding="utf-8")


def csv_lines(fields: Sequence[str], records: Sequence[dict[str, str]]) -> list[str]:
    """A header of ``fields`` and one CSV line per record (absent fields empty; no quoting)."""
    return [",".join(fields), *(",".join(r.get(f, "") for f in fields) for r in records)]


def ticket(ticket_id: str, **fields: str) -> dict[str, str]:
    return {
        "ticket_id": ticket_id,
        "created_at": "2026-02-01T09:00:00Z",
        "updated_at": "2026-02-01T10:00:00Z",
        "status": "open",
        "topic": "billing",
        **fields,
    }


def incident(incident_id: str, **fields: str) -> dict[str, str]:
    return {
        "incident_id": incident_id,
        "started_at": "2026-02-03T10:00:00Z",
        "severity": "SEV2",
        "service": "api",
        **fields,
    }


def event(event_id: str, **fields: str) -> dict[str, str]:
    return {
        "event_id": event_id,
        "occurred_at": "2026-02-04T10:00:00Z",
        "user_id": "u1",
        "account_id": "a1",
        "event_type": "feature_used",
        "feature": "search",
        **fields,
    }


def outcomes(quarantine: pd.DataFrame) -> list[tuple[str, int, str]]:
    return list(zip(quarantine["file"], quarantine["line"], quarantine["reason"], strict=True))


def stage_ticket_rows(root: Path, records: Sequence[dict[str, str]]) -> StagedExports:
    write(root, TICKETS, csv_lines(TICKET_FIELDS, records))
    return stage_tickets(root)


def frame(fields: Sequence[str], records: Sequence[dict[str, str]]) -> pd.DataFrame:
    """Parsed rows as the readers hand them over: string columns of every field, ``_file``, ``_line``."""
    rows = pd.DataFrame({f: pd.Series([r.get(f) for r in records], dtype="string") for f in fields})
    rows[LINE] = range(2, len(records) + 2)
    rows[FILE] = "f.csv"
    return rows


# --- integers: reopens -----------------------------------------------------------------------


def test_an_out_of_range_reopens_is_one_bad_value_not_a_failed_export(tmp_path: Path) -> None:
    # Before: `cannot safely cast non-equivalent float64 to int64` failed every ticket.
    staged = stage_ticket_rows(
        tmp_path,
        [
            ticket("T1", reopens="99999999999999999999"),  # 2
            ticket("T2", reopens="9223372036854775807"),  # 3: the largest int64, kept exactly
            ticket("T3", reopens="9223372036854775808"),  # 4: one more
            ticket("T4", reopens="2"),  # 5
        ],
    )
    assert outcomes(staged.quarantine) == [
        (TICKETS, 2, "bad_value:reopens"),
        (TICKETS, 4, "bad_value:reopens"),
    ]
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["ticket_id"].tolist() == ["T2", "T4"]
    assert records["reopens"].tolist() == [9223372036854775807, 2]
    assert str(records["reopens"].dtype) == "Int64"


def test_reopens_is_a_whole_decimal_number(tmp_path: Path) -> None:
    accepted = {"T01": ("5.0", 5), "T02": ("+3", 3), "T03": ("  4 ", 4), "T04": ("007", 7), "T05": ("-0", 0)}
    rejected = ["0x10", "5e-1", "1e3", "1_000", "inf", "NaN", "-1", "5.5", "[5]", "true", "٣"]
    records = [ticket(k, reopens=text) for k, (text, _) in accepted.items()]
    records += [ticket(f"R{n:02d}", reopens=text) for n, text in enumerate(rejected)]
    staged = stage_ticket_rows(tmp_path, records)
    first_rejected = 2 + len(accepted)
    assert outcomes(staged.quarantine) == [
        (TICKETS, first_rejected + n, "bad_value:reopens") for n in range(len(rejected))
    ]
    got = staged.records.sort_values("ticket_id").set_index("ticket_id")["reopens"].to_dict()
    assert got == {k: value for k, (_, value) in accepted.items()}


# --- decimals: agent_work_minutes and duration_ms agree ---------------------------------------

NUMBER_TEXTS: list[tuple[str, float | None]] = [
    ("inf", None),
    ("Infinity", None),
    ("-inf", None),
    ("NaN", None),
    ("1e400", None),
    ("1e309", None),
    ("0x10", None),
    ("1_000", None),
    ("[5]", None),
    ("true", None),
    ("-0.5", None),
    ("5 5", None),
    ("-0", 0.0),
    ("  5 ", 5.0),
    ("5e-1", 0.5),
    (".5", 0.5),
    ("1.5e3", 1500.0),
    ("12.25", 12.25),
    ("1e-400", 0.0),
]


@pytest.mark.parametrize(("text", "value"), NUMBER_TEXTS)
def test_tickets_and_telemetry_agree_on_numbers(text: str, value: float | None) -> None:
    tickets, ticket_rejects = validate_tickets(frame(TICKET_FIELDS, [ticket("T1", agent_work_minutes=text)]))
    events, event_rejects = validate_events(frame(TELEMETRY_FIELDS, [event("e1", duration_ms=text)]), DAY, ())
    if value is None:
        assert ticket_rejects["reason"].tolist() == ["bad_value:agent_work_minutes"]
        assert event_rejects["reason"].tolist() == ["bad_value:duration_ms"]
        assert (len(tickets), len(events)) == (0, 0)
    else:
        assert (len(ticket_rejects), len(event_rejects)) == (0, 0)
        for staged in (tickets["agent_work_minutes"].iloc[0], events["duration_ms"].iloc[0]):
            assert staged == value
            assert not math.copysign(1.0, staged) < 0  # -0 is staged as 0


def test_an_infinite_agent_work_minutes_is_quarantined(tmp_path: Path) -> None:
    # Before: `inf` was staged as Inf.
    staged = stage_ticket_rows(
        tmp_path,
        [
            ticket("T1", agent_work_minutes="inf"),
            ticket("T2", agent_work_minutes="Infinity"),
            ticket("T3", agent_work_minutes="1e400"),
            ticket("T4", agent_work_minutes="12.5"),
        ],
    )
    assert outcomes(staged.quarantine) == [(TICKETS, n, "bad_value:agent_work_minutes") for n in (2, 3, 4)]
    assert staged.records["ticket_id"].tolist() == ["T4"]
    assert staged.records["agent_work_minutes"].tolist() == [12.5]


def test_telemetry_csv_durations(tmp_path: Path) -> None:
    texts = ["inf", "NaN", "1e400", "[5]", "0x10", "-0", " 7 ", "1.5e3"]
    write(
        tmp_path,
        EVENTS,
        csv_lines(TELEMETRY_FIELDS, [event(f"e{n}", duration_ms=t) for n, t in enumerate(texts)]),
    )
    staged = stage_telemetry_partition(tmp_path, DAY, aliases=())
    assert outcomes(staged.quarantine) == [(EVENTS, n, "bad_value:duration_ms") for n in (2, 3, 4, 5, 6)]
    assert staged.events["event_id"].tolist() == ["e5", "e6", "e7"]
    assert staged.events["duration_ms"].tolist() == [0.0, 7.0, 1500.0]
    assert math.copysign(1.0, staged.events["duration_ms"].iloc[0]) == 1.0


def test_parse_helpers_keep_the_index() -> None:
    values = pd.Series(["3", "x", None], dtype="string", index=[7, 8, 9])
    assert parse_numbers(values).index.tolist() == [7, 8, 9]
    assert parse_counts(values).tolist() == [3, pd.NA, pd.NA]
    assert parse_counts(values).index.tolist() == [7, 8, 9]


# --- over-long text ---------------------------------------------------------------------------


def test_over_long_telemetry_text_is_a_bad_value(tmp_path: Path) -> None:
    write(
        tmp_path,
        EVENTS,
        csv_lines(
            TELEMETRY_FIELDS,
            [
                event("e1", feature=LONGEST),  # 2: exactly the limit: staged
                event("e2", feature=LONG),  # 3
                event(LONG),  # 4: an over-long id
                event(LONG),  # 5: the same over-long id again: not a duplicate of a staged event
                event("e5", feature=LONG, user_id=""),  # 6: missing_field comes first
                event("e6", feature=LONG, occurred_at="never"),  # 7: bad_timestamp comes first
                event("e7", feature=LONG, duration_ms="-1"),  # 8: feature precedes duration_ms
                event("e8", device=LONG),  # 9: an optional field too
                event("e9", event_type=LONG),  # 10: an over-long type is not canonical
            ],
        ),
    )
    staged = stage_telemetry_partition(tmp_path, DAY, aliases=())
    assert outcomes(staged.quarantine) == [
        (EVENTS, 3, "bad_value:feature"),
        (EVENTS, 4, "bad_value:event_id"),
        (EVENTS, 5, "bad_value:event_id"),
        (EVENTS, 6, "missing_field:user_id"),
        (EVENTS, 7, "bad_timestamp"),
        (EVENTS, 8, "bad_value:feature"),
        (EVENTS, 9, "bad_value:device"),
        (EVENTS, 10, "unknown_event_type"),
    ]
    assert staged.events["event_id"].tolist() == ["e1"]
    assert staged.events["feature"].tolist() == [LONGEST]
    assert staged.report.reconciled


def test_over_long_ticket_and_incident_text_is_a_bad_value(tmp_path: Path) -> None:
    tickets = stage_ticket_rows(
        tmp_path,
        [ticket("T1", topic=LONG), ticket("T2", requester_id=LONG), ticket("T3", status=LONG), ticket("T4")],
    )
    assert outcomes(tickets.quarantine) == [
        (TICKETS, 2, "bad_value:topic"),
        (TICKETS, 3, "bad_value:requester_id"),
        (TICKETS, 4, "bad_value:status"),
    ]
    assert tickets.records["ticket_id"].tolist() == ["T4"]
    write(
        tmp_path,
        INCIDENTS_CSV,
        csv_lines(INCIDENT_FIELDS, [incident("I1", root_cause=LONG), incident("I2", title=LONGEST)]),
    )
    incidents = stage_incidents(tmp_path)
    assert outcomes(incidents.quarantine) == [(INCIDENTS_CSV, 2, "bad_value:root_cause")]
    assert incidents.records["incident_id"].tolist() == ["I2"]
    assert incidents.records["title"].tolist() == [LONGEST]


# --- several bad values: the first in the contract's field order ------------------------------


def test_several_bad_ticket_values_report_the_first_in_field_order(tmp_path: Path) -> None:
    staged = stage_ticket_rows(
        tmp_path,
        [
            ticket("T1", status="escalated", reopens="-1"),  # 2
            ticket("T2", solved_at="2026-02-01T08:00:00Z", agent_work_minutes="-5"),  # 3
            ticket("T3", priority="critical", agent_work_minutes="lots", reopens="x"),  # 4
            ticket("T4", agent_work_minutes="inf", reopens="1e30"),  # 5
        ],
    )
    assert outcomes(staged.quarantine) == [
        (TICKETS, 2, "bad_value:status"),
        (TICKETS, 3, "bad_value:solved_at"),
        (TICKETS, 4, "bad_value:priority"),
        (TICKETS, 5, "bad_value:agent_work_minutes"),
    ]


# --- incidents: detected_at -------------------------------------------------------------------


def test_detected_before_started_is_a_bad_value(tmp_path: Path) -> None:
    # Before: I1 was staged (minutes_to_detect −60).
    write(
        tmp_path,
        INCIDENTS_CSV,
        csv_lines(
            INCIDENT_FIELDS,
            [
                incident("I1", detected_at="2026-02-03T09:00:00Z"),  # 2
                incident("I2", detected_at="2026-02-03T10:00:00Z"),  # 3: at the start: fine
                incident("I3", detected_at="2026-02-03T10:30:00+01:00"),  # 4: 09:30Z
                incident(  # 5: both before started_at: detected_at comes first in field order
                    "I4", detected_at="2026-02-03T09:00:00Z", resolved_at="2026-02-03T09:30:00Z"
                ),
                incident("I5", severity="SEV9", detected_at="2026-02-03T09:00:00Z"),  # 6: severity first
                incident(  # 7: detected after resolved is not checked
                    "I6", detected_at="2026-02-03T10:30:00Z", resolved_at="2026-02-03T10:15:00Z"
                ),
            ],
        ),
    )
    staged = stage_incidents(tmp_path)
    assert outcomes(staged.quarantine) == [
        (INCIDENTS_CSV, 2, "bad_value:detected_at"),
        (INCIDENTS_CSV, 4, "bad_value:detected_at"),
        (INCIDENTS_CSV, 5, "bad_value:detected_at"),
        (INCIDENTS_CSV, 6, "bad_value:severity"),
    ]
    records = staged.records.sort_values("incident_id", ignore_index=True)
    assert records["incident_id"].tolist() == ["I2", "I6"]
    assert records["detected_at"].tolist() == [
        pd.Timestamp("2026-02-03T10:00:00Z"),
        pd.Timestamp("2026-02-03T10:30:00Z"),
    ]


# --- affected_workflows -----------------------------------------------------------------------


def test_workflow_names_are_kept_as_written(tmp_path: Path) -> None:
    header = "incident_id,started_at,severity,service,affected_workflows"
    start = "2026-02-03T10:00:00Z,SEV2,api"
    write(
        tmp_path,
        INCIDENTS_CSV,
        [
            header,
            f"I1,{start},partner's_export;data_export",
            f'I2,{start},"a,b;c"',
            f"I3,{start}, b ; a ;; b ",
            f'I4,{start},"[""b"", ""a"", ""b""]"',
            f"I5,{start},[wf]",
            f"I6,{start},'quoted'",
        ],
    )
    record = {"incident_id": "I7", "started_at": "2026-02-03T10:00:00Z", "severity": "SEV2", "service": "api"}
    write(
        tmp_path,
        INCIDENTS_JSONL,
        [json.dumps({**record, "affected_workflows": ["partner's_export", "a,b", " c ", "", "a,b"]})],
    )
    staged = stage_incidents(tmp_path)
    assert outcomes(staged.quarantine) == []
    got = staged.records.set_index("incident_id")["affected_workflows"].to_dict()
    assert got == {
        "I1": "data_export;partner's_export",
        "I2": "a,b;c",
        "I3": "a;b",
        "I4": "a;b",
        "I5": "[wf]",
        "I6": "'quoted'",
        "I7": "a,b;c;partner's_export",
    }


def test_normalise_workflows_splits_only_on_semicolons() -> None:
    values = pd.Series(
        ['["x, y", "w"]', '[1, "a"]', "a,b", "\"q\";'r'", None, " ; ", '["a;b"]'],
        dtype="string",
        index=[5, 6, 7, 8, 9, 10, 11],
    )
    assert normalise_workflows(values).tolist() == [
        "w;x, y",
        '[1, "a"]',  # not a list of names: one name as written
        "a,b",
        "\"q\";'r'",
        "",
        "",
        "a;b",  # a name cannot hold ';', the list separator
    ]
    assert normalise_workflows(values).index.tolist() == [5, 6, 7, 8, 9, 10, 11]


def test_validators_keep_their_input_index() -> None:
    rows = frame(INCIDENT_FIELDS, [incident("I1"), incident("I2", detected_at="2026-02-03T09:00:00Z")])
    rows.index = pd.Index([40, 41])
    valid, rejected = validate_incidents(rows)
    assert valid.index.tolist() == [40]
    assert rejected[[LINE, "reason"]].to_dict("records") == [{LINE: 3, "reason": "bad_value:detected_at"}]
