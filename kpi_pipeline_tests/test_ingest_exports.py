"""Ticket and incident export staging against the data contract: latest version wins,
quarantine reasons, normalised values and the reconciliation counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kpi_pipeline.ingest.incidents import normalise_severity, normalise_workflows, stage_incidents
from kpi_pipeline.ingest.rows import StagedExports
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.tables import table

TICKET_HEADER = (
    "ticket_id,created_at,updated_at,status,topic,channel,priority,requester_id,account_id,"
    "first_reply_at,solved_at,agent_work_minutes,reopens"
)


def write(root: Path, relative: str, lines: Sequence[str]) -> Path:
    """Write newline-terminated ``lines`` to ``root/relative``."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{text}\n" for text in lines), encoding="utf-8")
    return path


def ticket(
    ticket_id: str = "T1",
    created_at: str = "2026-02-01T09:00:00Z",
    updated_at: str = "2026-02-01T10:00:00Z",
    status: str = "open",
    topic: str = "billing",
    channel: str = "email",
    priority: str = "normal",
    requester_id: str = "u1",
    account_id: str = "a1",
    first_reply_at: str = "",
    solved_at: str = "",
    agent_work_minutes: str = "",
    reopens: str = "",
) -> str:
    """One CSV row of a ticket export (every argument is the raw cell text)."""
    return ",".join(
        [
            ticket_id,
            created_at,
            updated_at,
            status,
            topic,
            channel,
            priority,
            requester_id,
            account_id,
            first_reply_at,
            solved_at,
            agent_work_minutes,
            reopens,
        ]
    )


def reasons(staged: StagedExports) -> list[tuple[str, int, str]]:
    """(file, line, reason) of every quarantined row."""
    q = staged.quarantine
    return list(zip(q["file"], q["line"], q["reason"], strict=True))


def by_id(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values(key, ignore_index=True)


# --- tickets ----------------------------------------------------------------------------------


def test_latest_updated_at_wins_across_exports_and_ties_go_to_the_last_path(tmp_path: Path) -> None:
    # Written out of path order so only the contract's rules can decide.
    write(
        tmp_path,
        "raw/tickets/b/export.csv",
        [
            TICKET_HEADER,
            ticket(
                "T1", updated_at="2026-02-02T10:00:00Z", status="solved", solved_at="2026-02-02T09:00:00Z"
            ),
            ticket("T2", updated_at="2026-01-31T10:00:00Z", status="new"),  # older than a/ version
            ticket("T3", updated_at="2026-02-01T12:00:00Z", status="pending", agent_work_minutes="7"),
        ],
    )
    write(
        tmp_path,
        "raw/tickets/a/export.csv",
        [
            TICKET_HEADER,
            ticket("T1", updated_at="2026-02-01T10:00:00Z", status="open"),
            ticket("T2", updated_at="2026-02-01T10:00:00Z", status="open"),
            ticket("T3", updated_at="2026-02-01T13:00:00+01:00", status="open", agent_work_minutes="3"),
        ],
    )
    staged = stage_tickets(tmp_path)
    records = by_id(staged.records, "ticket_id")
    assert records["ticket_id"].tolist() == ["T1", "T2", "T3"]
    assert records["status"].tolist() == ["solved", "open", "pending"]
    # T3: 13:00+01:00 == 12:00Z, a tie; raw/tickets/b/export.csv sorts after raw/tickets/a/export.csv
    assert records["source_file"].tolist() == [
        "raw/tickets/b/export.csv",
        "raw/tickets/a/export.csv",
        "raw/tickets/b/export.csv",
    ]
    assert records["updated_at"].tolist() == [
        pd.Timestamp("2026-02-02T10:00:00Z"),
        pd.Timestamp("2026-02-01T10:00:00Z"),
        pd.Timestamp("2026-02-01T12:00:00Z"),
    ]
    assert records["agent_work_minutes"].tolist()[2] == 7.0
    report = staged.report
    assert (report.raw_rows, report.staged_rows, report.superseded_versions, report.quarantined_rows) == (
        6,
        3,
        3,
        0,
    )
    assert report.files == ["raw/tickets/a/export.csv", "raw/tickets/b/export.csv"]


def test_each_ticket_reason(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/tickets/export.csv",
        [
            TICKET_HEADER,
            ticket("", topic="access"),  # 2
            ticket("T3", created_at=""),  # 3
            ticket("T4", updated_at=" "),  # 4
            ticket("T5", status=""),  # 5
            ticket("T6", topic=""),  # 6
            ticket("T7", created_at="last tuesday"),  # 7
            ticket("T8", first_reply_at="2026-02-01T25:00:00Z"),  # 8
            ticket("T9", status="escalated"),  # 9
            ticket("T10", priority="critical"),  # 10
            ticket("T11", agent_work_minutes="-3"),  # 11
            ticket("T12", agent_work_minutes="lots"),  # 12
            ticket("T13", reopens="1.5"),  # 13
            ticket("T14", reopens="-1"),  # 14
            ticket("T15", reopens="twice"),  # 15
            ticket("T16", solved_at="2026-02-01T08:59:59Z"),  # 16: one second before created_at
            "T17,2026-02-01T09:00:00Z,2026-02-01T10:00:00Z,open",  # 17: too few columns
            ticket(
                "T18", status="solved", solved_at="2026-02-01T09:00:00Z", reopens="2", agent_work_minutes="0"
            ),
            ticket("T19", status="escalated", created_at="soon"),  # 19: bad_timestamp comes first
        ],
    )
    staged = stage_tickets(tmp_path)
    f = "raw/tickets/export.csv"
    assert reasons(staged) == [
        (f, 2, "missing_field:ticket_id"),
        (f, 3, "missing_field:created_at"),
        (f, 4, "missing_field:updated_at"),
        (f, 5, "missing_field:status"),
        (f, 6, "missing_field:topic"),
        (f, 7, "bad_timestamp"),
        (f, 8, "bad_timestamp"),
        (f, 9, "bad_value:status"),
        (f, 10, "bad_value:priority"),
        (f, 11, "bad_value:agent_work_minutes"),
        (f, 12, "bad_value:agent_work_minutes"),
        (f, 13, "bad_value:reopens"),
        (f, 14, "bad_value:reopens"),
        (f, 15, "bad_value:reopens"),
        (f, 16, "bad_value:solved_at"),
        (f, 17, "malformed_record"),
        (f, 19, "bad_timestamp"),
    ]
    assert staged.quarantine["raw"].iloc[15] == "T17,2026-02-01T09:00:00Z,2026-02-01T10:00:00Z,open"
    assert staged.quarantine["raw"].iloc[8] == ticket("T10", priority="critical")
    assert staged.quarantine["source"].unique().tolist() == ["tickets"]
    assert staged.quarantine["partition"].unique().tolist() == [""]
    records = staged.records
    assert records["ticket_id"].tolist() == ["T18"]
    assert records["solved_at"].tolist() == [pd.Timestamp("2026-02-01T09:00:00Z")]
    assert records["reopens"].tolist() == [2]
    assert records["agent_work_minutes"].tolist() == [0.0]
    assert staged.report.reasons["bad_timestamp"] == 3


def test_status_and_priority_are_case_insensitive_and_lower_cased(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/tickets/export.csv",
        [
            TICKET_HEADER,
            ticket("T1", status="Solved", priority="HIGH", solved_at="2026-02-01T11:00:00Z"),
            ticket("T2", status=" PENDING ", priority="Low"),
            ticket("T3", status="CLOSED", priority=""),
            ticket("T4", status="New"),
        ],
    )
    records = by_id(stage_tickets(tmp_path).records, "ticket_id")
    assert records["status"].tolist() == ["solved", "pending", "closed", "new"]
    assert records["priority"].tolist() == ["high", "low", pd.NA, "normal"]


def test_ticket_table_is_typed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/tickets/export.csv",
        [
            TICKET_HEADER,
            ticket(
                "T1",
                created_at="2026-02-01T09:00:00+01:00",
                first_reply_at="2026-02-01 09:30:00",
                agent_work_minutes="12.5",
                reopens="1",
            ),
        ],
    )
    records = stage_tickets(tmp_path).records
    spec = table("stg_support_tickets")
    assert list(records.columns) == list(spec.column_names)
    assert records.dtypes.astype(str).to_dict() == spec.dtypes()
    row = records.iloc[0]
    assert row["created_at"] == pd.Timestamp("2026-02-01T08:00:00Z")
    assert row["first_reply_at"] == pd.Timestamp("2026-02-01T09:30:00Z")  # naive = UTC
    assert pd.isna(row["solved_at"])
    assert row["agent_work_minutes"] == 12.5
    assert row["reopens"] == 1


def test_ticket_report_reconciles(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/tickets/2026-02-01.csv",
        [TICKET_HEADER, ticket("T1"), ticket("T2"), ticket("T3", status="???"), ""],
    )
    write(
        tmp_path,
        "raw/tickets/2026-02-02.csv.gz.tmp",
        ["not read"],
    )
    write(
        tmp_path,
        "raw/tickets/2026-02-02.csv",
        [
            TICKET_HEADER,
            ticket("T1", updated_at="2026-02-02T10:00:00Z"),
            ticket("T2", updated_at="2026-02-02T10:00:00Z"),
            ticket("T4", updated_at="2026-02-02T10:00:00Z"),
            ticket("T5", created_at="x"),
        ],
    )
    report = stage_tickets(tmp_path).report
    # 3 data rows + 4 data rows = 7 raw; T1, T2, T4 staged; first T1, T2 superseded; T3, T5 rejected
    assert report.raw_rows == 7
    assert report.staged_rows == 3
    assert report.superseded_versions == 2
    assert report.quarantined_rows == 2
    assert report.raw_rows == report.staged_rows + report.superseded_versions + report.quarantined_rows
    assert report.reconciled
    assert report.reasons == {"bad_value:status": 1, "bad_timestamp": 1}
    assert report.ignored_files == ["raw/tickets/2026-02-02.csv.gz.tmp"]


# --- incidents --------------------------------------------------------------------------------


def incident(incident_id: str, **fields: Any) -> str:
    record: dict[str, Any] = {
        "incident_id": incident_id,
        "started_at": "2026-02-03T10:00:00Z",
        "severity": "SEV2",
        "service": "billing-api",
        **fields,
    }
    return json.dumps(record)


INCIDENT_HEADER = (
    "incident_id,started_at,severity,service,detected_at,resolved_at,affected_workflows,updated_at"
)


def test_affected_workflows_from_json_list_and_csv_agree(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/incidents/log.jsonl",
        [
            incident("I1", affected_workflows=["invoice_download", "access_request"]),
            incident("I2", affected_workflows=[]),
            incident("I3"),
        ],
    )
    write(
        tmp_path,
        "raw/incidents/log.csv",
        [
            INCIDENT_HEADER,
            "I4,2026-02-03T10:00:00Z,SEV2,billing-api,,,invoice_download;access_request,",
            "I5,2026-02-03T10:00:00Z,SEV2,billing-api,,, data_export ; access_request ,",
            "I6,2026-02-03T10:00:00Z,SEV2,billing-api,,,,",
        ],
    )
    records = by_id(stage_incidents(tmp_path).records, "incident_id")
    assert records["affected_workflows"].tolist() == [
        "access_request;invoice_download",
        "",
        "",
        "access_request;invoice_download",
        "access_request;data_export",
        "",
    ]


def test_normalise_workflows_sorts_and_joins() -> None:
    values = pd.Series(['["b", "a"]', "c;a", None, "", "x"], dtype="string", index=[10, 11, 12, 13, 14])
    assert normalise_workflows(values).tolist() == ["a;b", "a;c", "", "", "x"]


def test_severity_spellings(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/incidents/log.jsonl",
        [
            incident("I1", severity="SEV1"),
            incident("I2", severity="sev2"),
            incident("I3", severity="3"),
            incident("I4", severity="P4"),
            incident("I5", severity="p1"),
            incident("I6", severity="urgent"),
            incident("I7", severity="SEV5"),
        ],
    )
    staged = stage_incidents(tmp_path)
    assert staged.records["incident_id"].tolist() == ["I1", "I2", "I3", "I4", "I5"]
    assert staged.records["severity"].tolist() == ["SEV1", "SEV2", "SEV3", "SEV4", "SEV1"]
    assert reasons(staged) == [
        ("raw/incidents/log.jsonl", 6, "bad_value:severity"),
        ("raw/incidents/log.jsonl", 7, "bad_value:severity"),
    ]
    assert staged.quarantine["raw"].tolist() == [
        incident("I6", severity="urgent"),
        incident("I7", severity="SEV5"),
    ]


def test_normalise_severity_series() -> None:
    values = pd.Series(["SEV1", "sev2", "3", "P4", "p1", "urgent", None, " Sev 3 "], dtype="string")
    assert normalise_severity(values).tolist() == [
        "SEV1",
        "SEV2",
        "SEV3",
        "SEV4",
        "SEV1",
        pd.NA,
        pd.NA,
        "SEV3",
    ]


def test_incident_timestamps(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/incidents/log.csv",
        [
            INCIDENT_HEADER,
            # 2: no detected_at → started_at; no resolved_at → still open
            "I1,2026-02-03T10:00:00Z,SEV1,api,,,,",
            # 3: detected at 10:15Z; resolved at 12:00+01:00 = 11:00Z
            "I2,2026-02-03T10:00:00Z,SEV1,api,2026-02-03T10:15:00Z,2026-02-03T12:00:00+01:00,,",
            # 4: resolved before started
            "I3,2026-02-03T10:00:00Z,SEV1,api,,2026-02-03T09:59:00Z,,",
            # 5: unparseable resolved_at
            "I4,2026-02-03T10:00:00Z,SEV1,api,,whenever,,",
            # 6: missing service
            "I5,2026-02-03T10:00:00Z,SEV1,,,,,",
        ],
    )
    staged = stage_incidents(tmp_path)
    records = staged.records
    assert records["incident_id"].tolist() == ["I1", "I2"]
    assert records["detected_at"].tolist() == [
        pd.Timestamp("2026-02-03T10:00:00Z"),
        pd.Timestamp("2026-02-03T10:15:00Z"),
    ]
    assert pd.isna(records["resolved_at"].iloc[0])
    assert records["resolved_at"].iloc[1] == pd.Timestamp("2026-02-03T11:00:00Z")  # 12:00 at +01:00
    assert records.dtypes.astype(str).to_dict() == table("stg_incidents").dtypes()
    assert reasons(staged) == [
        ("raw/incidents/log.csv", 4, "bad_value:resolved_at"),
        ("raw/incidents/log.csv", 5, "bad_timestamp"),
        ("raw/incidents/log.csv", 6, "missing_field:service"),
    ]


def test_latest_incident_version_wins(tmp_path: Path) -> None:
    # a_ sorts first but holds the newer version: updated_at decides before path order
    write(
        tmp_path,
        "raw/incidents/a_export.jsonl",
        [
            incident(
                "I1",
                severity="SEV1",
                resolved_at="2026-02-03T14:00:00Z",
                root_cause="bad deploy",
                updated_at="2026-02-03T15:00:00Z",
            ),
        ],
    )
    write(
        tmp_path,
        "raw/incidents/b_export.csv",
        [
            INCIDENT_HEADER,
            "I1,2026-02-03T10:00:00Z,SEV3,billing-api,,,,2026-02-03T11:00:00Z",
            "I2,2026-02-03T10:00:00Z,SEV4,billing-api,,,,2026-02-03T11:00:00Z",
        ],
    )
    staged = stage_incidents(tmp_path)
    records = by_id(staged.records, "incident_id")
    assert records["incident_id"].tolist() == ["I1", "I2"]
    assert records["severity"].tolist() == ["SEV1", "SEV4"]
    assert records["resolved_at"].iloc[0] == pd.Timestamp("2026-02-03T14:00:00Z")
    assert records["root_cause"].tolist() == ["bad deploy", pd.NA]
    assert records["source_file"].tolist() == ["raw/incidents/a_export.jsonl", "raw/incidents/b_export.csv"]
    report = staged.report
    assert (report.raw_rows, report.staged_rows, report.superseded_versions, report.quarantined_rows) == (
        3,
        2,
        1,
        0,
    )
