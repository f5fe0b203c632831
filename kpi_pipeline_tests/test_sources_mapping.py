"""Mapped sources on small hand-made exports: formats, value maps, filters, constants, list
splitting, missing markers, time zones, version order, and the quarantine of mapped rows."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kpi_pipeline.config import parse_config
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.raw_files import UnreadableFileError
from kpi_pipeline.ingest.rows import StagedExports
from kpi_pipeline.ingest.telemetry import partition_folder, stage_telemetry_partition
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.sources.mapping import parse_local_timestamps
from kpi_pipeline.sources.model import IncidentMapping, TelemetryMapping, TicketMapping

UTC = dt.UTC


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def tickets_mapping(**overrides: Any) -> TicketMapping:
    """A semicolon-separated help-desk export with day-first local times and 'NULL' for nothing."""
    raw: dict[str, Any] = {
        "path": "exports/desk",
        "format": "csv",
        "delimiter": ";",
        "timestamp_format": "%d/%m/%Y %H:%M",
        "timezone": "Europe/Amsterdam",
        "missing": ["NULL"],
        "fields": {
            "ticket_id": "Key",
            "created_at": "Opened",
            "updated_at": "Changed",
            "status": {
                "column": "State",
                "values": {"Open": "open", "In progress": "pending", "Done": "solved"},
            },
            "topic": "Area",
            "channel": {"column": "Via", "values": {"Mail": "email"}, "unmapped": "keep"},
            "priority": {"column": "Prio", "values": {"P1": "urgent", "P3": "normal"}},
            "solved_at": "Solved",
        },
    }
    raw.update(overrides)
    mapping = parse_config({"sources": {"tickets": raw}}).sources.tickets
    assert mapping is not None
    return mapping


TICKET_HEADER = "Key;Opened;Changed;State;Area;Via;Prio;Solved"


def write(root: Path, relative: str, lines: list[str]) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def reasons(staged: StagedExports) -> list[tuple[str, int, str]]:
    q = staged.quarantine
    return list(zip(q["file"], q["line"], q["reason"], strict=True))


def test_delimiter_day_first_local_times_markers_and_value_maps(tmp_path: Path) -> None:
    write(
        tmp_path,
        "exports/desk/march.csv",
        [
            TICKET_HEADER,
            "K1;5/3/2026 09:30;5/3/2026 10:00;open;billing;Mail;p1;NULL",
            "K2;12/3/2026 23:15;13/3/2026 08:00; DONE ;export;Chat;NULL;13/3/2026 07:45",
        ],
    )
    staged = stage_tickets(tmp_path, tickets_mapping())
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["ticket_id"].tolist() == ["K1", "K2"]
    # 5 March 09:30 in Amsterdam (CET, UTC+1) is 08:30 UTC; day first, so not 3 May
    assert records["created_at"].tolist() == [ts("2026-03-05 08:30"), ts("2026-03-12 22:15")]
    assert records["updated_at"].tolist() == [ts("2026-03-05 09:00"), ts("2026-03-13 07:00")]
    assert records["status"].tolist() == ["open", "solved"]  # trimmed, case-insensitive map
    assert records["channel"].tolist() == ["email", "Chat"]  # unmapped: keep passes Chat through
    assert records["priority"].tolist() == ["urgent", pd.NA]  # NULL is a missing-value marker
    assert records["solved_at"].isna().tolist() == [True, False]
    assert records.loc[1, "solved_at"] == ts("2026-03-13 06:45")
    assert staged.report.raw_rows == 2 and staged.report.quarantined_rows == 0
    assert staged.report.files == ["exports/desk/march.csv"]
    assert staged.report.unknown_fields == {}
    assert staged.report.fields_seen["priority"] == 1  # K2's NULL does not count


def test_mapping_reasons_follow_the_contract_precedence(tmp_path: Path) -> None:
    write(
        tmp_path,
        "exports/desk/bad.csv",
        [
            TICKET_HEADER,
            "K1;31/2/2026 09:30;1/3/2026 10:00;Open;NULL;Mail;P1;",  # no topic and a bad date
            "K2;30/2/2026 09:30;1/3/2026 10:00;Open;billing;Mail;P9;",  # bad date and unmapped P9
            "K3;1/3/2026 09:30;1/3/2026 10:00;Open;billing;Mail;P9;",  # unmapped P9
            "K4;1/3/2026 09:30;1/3/2026 10:00;Reopened;billing;Mail;P1;",  # unmapped status
            "K5;1/3/2026 09:30;1/3/2026 10:00;Open;billing;Mail;P1;",  # fine
        ],
    )
    staged = stage_tickets(tmp_path, tickets_mapping())
    assert staged.records["ticket_id"].tolist() == ["K5"]
    assert reasons(staged) == [
        ("exports/desk/bad.csv", 2, "missing_field:topic"),  # missing_field comes before bad_timestamp
        ("exports/desk/bad.csv", 3, "bad_timestamp"),  # bad_timestamp comes before bad_value
        ("exports/desk/bad.csv", 4, "bad_value:priority"),
        ("exports/desk/bad.csv", 5, "bad_value:status"),
    ]
    # the quarantine keeps the source's original line
    assert staged.quarantine["raw"].tolist()[1] == "K2;30/2/2026 09:30;1/3/2026 10:00;Open;billing;Mail;P9;"
    assert staged.report.reconciled


def test_numeric_version_column_orders_updates_and_ties_go_to_the_later_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "exports/desk/log.csv",
        [
            f"{TICKET_HEADER};mods",
            "K1;1/3/2026 09:00;1/3/2026 09:00;Open;billing;Mail;P1;;9",
            "K1;1/3/2026 09:00;1/3/2026 08:00;Done;billing;Mail;P1;1/3/2026 12:00;10",  # 10 > 9 as numbers
            "K2;1/3/2026 09:00;1/3/2026 09:00;Open;export;Mail;P1;;3",
            "K2;1/3/2026 09:00;1/3/2026 09:00;In progress;export;Mail;P1;;3",  # tie → later line
        ],
    )
    staged = stage_tickets(tmp_path, tickets_mapping(version={"column": "mods"}))
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["status"].tolist() == ["solved", "pending"]
    assert staged.report.superseded_versions == 2
    assert staged.report.reconciled


def test_header_without_a_required_column_fails_naming_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "exports/desk/short.csv", ["Key;Opened;State;Area", "K1;1/3/2026 09:00;Open;x"])
    with pytest.raises(UnreadableFileError, match="CSV header has no Changed column") as info:
        stage_tickets(tmp_path, tickets_mapping())
    assert str(path) in str(info.value)
    write(tmp_path, "exports/desk/short.csv", [TICKET_HEADER])
    with pytest.raises(UnreadableFileError, match="CSV header has no Queue column"):  # a filter's column
        stage_tickets(tmp_path, tickets_mapping(include={"Queue": ["support"]}))


def test_zip_with_one_member_is_read_and_with_two_is_refused(tmp_path: Path) -> None:
    body = f"{TICKET_HEADER}\nK1;1/3/2026 09:00;1/3/2026 09:00;Open;billing;Mail;P1;\n"
    folder = tmp_path / "exports" / "desk"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "export.csv.zip", "w") as archive:
        archive.writestr("export.csv", body)
    staged = stage_tickets(tmp_path, tickets_mapping())
    assert staged.records["ticket_id"].tolist() == ["K1"]
    assert staged.report.files == ["exports/desk/export.csv.zip"]
    with zipfile.ZipFile(folder / "two.csv.zip", "w") as archive:
        archive.writestr("a.csv", body)
        archive.writestr("b.csv", body)
    with pytest.raises(UnreadableFileError, match="exactly one file, found: a.csv, b.csv"):
        stage_tickets(tmp_path, tickets_mapping())


def test_path_may_be_a_file_a_glob_or_absent(tmp_path: Path) -> None:
    row = "K1;1/3/2026 09:00;1/3/2026 09:00;Open;billing;Mail;P1;"
    write(tmp_path, "a/one.csv", [TICKET_HEADER, row])
    write(tmp_path, "a/two.csv", [TICKET_HEADER, row.replace("K1", "K2")])
    write(tmp_path, "a/.hidden.csv", [TICKET_HEADER, row.replace("K1", "K3")])
    single = stage_tickets(tmp_path, tickets_mapping(path="a/two.csv"))
    assert single.records["ticket_id"].tolist() == ["K2"]
    matched = stage_tickets(tmp_path, tickets_mapping(path=str(tmp_path / "a" / "*.csv")))
    assert sorted(matched.records["ticket_id"]) == ["K1", "K2"]
    assert matched.report.files == ["a/one.csv", "a/two.csv"]
    absent = stage_tickets(tmp_path, tickets_mapping(path="nowhere/*.csv"))
    assert (len(absent.records), absent.report.raw_rows, absent.report.files) == (0, 0, [])


def incidents_mapping(**overrides: Any) -> IncidentMapping:
    raw: dict[str, Any] = {
        "path": "status",
        "format": "jsonl",
        "exclude": {"kind": ["Maintenance"]},
        "missing": ["?"],
        "fields": {
            "incident_id": "id",
            "started_at": "start",
            "resolved_at": "end",
            "severity": {"column": "impact", "values": {"critical": "SEV1", "minor": "SEV3"}},
            "service": {"column": "parts", "default": "unspecified"},
            "affected_workflows": {"column": "parts", "values": {"Checkout": "purchase", "Login": "sign_in"}},
        },
        "constants": {"root_cause": "see status page"},
    }
    raw.update(overrides)
    mapping = parse_config({"sources": {"incidents": raw}}).sources.incidents
    assert mapping is not None
    return mapping


def jsonl(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r) for r in records]


def test_filters_constants_defaults_and_list_items_through_a_value_map(tmp_path: Path) -> None:
    write(
        tmp_path,
        "status/history.jsonl",
        jsonl(
            [
                {
                    "id": 1,
                    "start": "2026-03-01T10:00:00Z",
                    "end": "2026-03-01T11:00:00Z",
                    "impact": "Critical",
                    "kind": "incident",
                    "parts": ["Login", "Checkout"],
                },
                {
                    "id": 2,
                    "start": "2026-03-02T10:00:00Z",
                    "end": "?",
                    "impact": "minor",
                    "kind": "incident",
                    "parts": [{"name": "Login"}],
                },
                {
                    "id": 3,
                    "start": "2026-03-03T10:00:00Z",
                    "end": "2026-03-03T12:00:00Z",
                    "impact": "minor",
                    "kind": "maintenance",
                    "parts": ["Login"],
                },
                {"id": 4, "start": "2026-03-04T10:00:00Z", "impact": "minor", "kind": "incident"},
                {
                    "id": 5,
                    "start": "2026-03-05T10:00:00Z",
                    "impact": "minor",
                    "kind": "incident",
                    "parts": ["Search"],
                },
            ]
        ),
    )
    staged = stage_incidents(tmp_path, incidents_mapping())
    records = staged.records.sort_values("incident_id", ignore_index=True)
    assert records["incident_id"].tolist() == ["1", "2", "4"]
    assert records["severity"].tolist() == ["SEV1", "SEV3", "SEV3"]
    # JSON lists (of names, or of objects with a name) arrive ';'-joined
    assert records["service"].tolist() == ["Login;Checkout", "Login", "unspecified"]
    assert records["affected_workflows"].tolist() == ["purchase;sign_in", "sign_in", ""]  # mapped, sorted
    assert records["resolved_at"].isna().tolist() == [False, True, True]  # '?' is missing: still open
    assert records["root_cause"].tolist() == ["see status page"] * 3
    assert reasons(staged) == [("status/history.jsonl", 5, "bad_value:affected_workflows")]  # Search unmapped
    assert staged.report.filtered_rows == 1  # the maintenance window
    assert staged.report.raw_rows == 4  # rows left out by a filter are not raw rows of the source
    assert staged.report.reconciled


def test_list_field_with_its_own_separator_in_csv(tmp_path: Path) -> None:
    write(
        tmp_path,
        "status/log.csv",
        ["id,start,impact,kind,parts", "7,2026-03-01T10:00:00Z,minor,incident, Login | Checkout |"],
    )
    mapping = incidents_mapping(
        format="csv",
        fields={
            "incident_id": "id",
            "started_at": "start",
            "severity": {"column": "impact", "values": {"minor": "SEV3"}},
            "service": "kind",
            "affected_workflows": {"column": "parts", "split": "|", "unmapped": "keep"},
        },
    )
    staged = stage_incidents(tmp_path, mapping)
    assert staged.records["affected_workflows"].tolist() == ["Checkout;Login"]


def telemetry_mapping(**overrides: Any) -> TelemetryMapping:
    raw: dict[str, Any] = {
        "format": "whitespace",
        "timestamp_format": "%Y%m%d %H%M",
        "columns": ["who", "day", "hhmm", "amount"],
        "fields": {
            "event_id": {"columns": ["$file", "$line"], "join": "#"},
            "occurred_at": {"columns": ["day", "hhmm"], "join": " "},
            "user_id": "who",
            "account_id": "who",
        },
        "constants": {"event_type": "feature_used", "feature": "purchase", "channel": "shop"},
    }
    raw.update(overrides)
    mapping = parse_config({"sources": {"telemetry": raw}}).sources.telemetry
    assert mapping is not None
    return mapping


def test_headerless_whitespace_file_constants_and_ids_from_file_and_line(tmp_path: Path) -> None:
    day = dt.date(2026, 3, 2)
    folder = partition_folder(tmp_path, day)
    folder.mkdir(parents=True)
    (folder / "orders.txt.gz").write_bytes(
        gzip.compress(
            b"  u1  20260302 0930   12.50\r\n\nu2\t20260302 2359 3\nu3 20260302 1000\nu4 20260303 0000 1\n"
        )
    )
    (folder / "notes.md").write_text("not data\n")
    staged = stage_telemetry_partition(tmp_path, day, (), telemetry_mapping())
    events = staged.events
    # $file is the file as the quarantine names it, so ids are unique across day folders
    assert events["event_id"].tolist() == [
        "raw/telemetry/date=2026-03-02/orders.txt.gz#1",
        "raw/telemetry/date=2026-03-02/orders.txt.gz#3",
    ]
    assert events["occurred_at"].tolist() == [ts("2026-03-02 09:30"), ts("2026-03-02 23:59")]
    assert events["user_id"].tolist() == ["u1", "u2"]
    assert events["feature"].tolist() == ["purchase", "purchase"]
    assert events["channel"].tolist() == ["shop", "shop"]  # a constant beats the 'unknown' default
    assert events["persona"].tolist() == ["unknown", "unknown"]
    q = staged.quarantine
    # line 4 has three values for four columns; line 5 is on the next day
    assert list(zip(q["line"], q["reason"], q["raw"], strict=True)) == [
        (4, "malformed_record", "u3 20260302 1000"),
        (5, "outside_partition", "u4 20260303 0000 1"),
    ]
    assert q["file"].tolist() == ["raw/telemetry/date=2026-03-02/orders.txt.gz"] * 2
    assert staged.report.ignored_files == ["raw/telemetry/date=2026-03-02/notes.md"]
    assert staged.report.raw_rows == 4  # the blank line 2 is not a row
    assert staged.report.reconciled


def test_unparseable_event_time_is_a_bad_timestamp(tmp_path: Path) -> None:
    day = dt.date(2026, 3, 2)
    folder = partition_folder(tmp_path, day)
    folder.mkdir(parents=True)
    (folder / "orders.txt").write_text("u1 20260302 0930 1\nu2 20260230 0930 1\n")
    staged = stage_telemetry_partition(tmp_path, day, (), telemetry_mapping())
    assert staged.quarantine["reason"].tolist() == ["bad_timestamp"]  # 30 February
    assert staged.quarantine["line"].tolist() == [2]


def test_naive_times_in_a_zone_across_daylight_saving_changes() -> None:
    values = pd.Series(
        [
            "2026-03-29 01:30",  # CET, UTC+1 → 00:30 UTC
            "2026-03-29 02:30",  # skipped by the spring change: moves forward to 03:00 CEST = 01:00 UTC
            "2026-10-25 02:30",  # repeated in autumn: the first occurrence, CEST (UTC+2) → 00:30 UTC
            "2026-07-01 12:00+05:00",  # an offset wins over the zone → 07:00 UTC
            "2026-07-01 12:00Z",
            "soon",
            None,
        ],
        dtype="string",
    )
    parsed = parse_local_timestamps(values, "ISO8601", "Europe/Amsterdam")
    assert parsed.tolist()[:5] == [
        ts("2026-03-29 00:30"),
        ts("2026-03-29 01:00"),
        ts("2026-10-25 00:30"),
        ts("2026-07-01 07:00"),
        ts("2026-07-01 12:00"),
    ]
    assert parsed.isna().tolist()[5:] == [True, True]


def test_missing_markers_apply_to_json_text_and_exact_values_only(tmp_path: Path) -> None:
    write(
        tmp_path,
        "status/h.jsonl",
        jsonl(
            [
                {
                    "id": "a",
                    "start": "2026-03-01T10:00:00Z",
                    "end": " ? ",
                    "impact": "minor",
                    "kind": "x",
                    "parts": ["Login"],
                },
                {
                    "id": "b",
                    "start": "2026-03-01T10:00:00Z",
                    "end": "2026-03-01T10:30:00Z",
                    "impact": "minor",
                    "kind": "?x",
                    "parts": ["Login"],
                },
            ]
        ),
    )
    staged = stage_incidents(
        tmp_path, incidents_mapping(fields={**incidents_mapping().fields, "title": "kind"})
    )
    records = staged.records.sort_values("incident_id", ignore_index=True)
    assert records["resolved_at"].isna().tolist() == [True, False]  # ' ? ' trims to the marker
    assert records["title"].tolist() == ["x", "?x"]  # '?x' is a value, not the marker


def test_reading_the_same_export_as_bytes_in_memory_matches_gzip(tmp_path: Path) -> None:
    """A gzip export is read like its plain text: same rows, same line numbers."""
    lines = [TICKET_HEADER, "K1;1/3/2026 09:00;1/3/2026 09:00;Open;billing;Mail;P1;", "K2;broken"]
    write(tmp_path, "plain/x.csv", lines)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        handle.write("".join(f"{line}\n" for line in lines).encode())
    (tmp_path / "zipped").mkdir()
    (tmp_path / "zipped" / "x.csv.gz").write_bytes(buffer.getvalue())
    plain = stage_tickets(tmp_path, tickets_mapping(path="plain"))
    zipped = stage_tickets(tmp_path, tickets_mapping(path="zipped"))
    assert plain.records["ticket_id"].tolist() == zipped.records["ticket_id"].tolist() == ["K1"]
    assert [r[1:] for r in reasons(plain)] == [r[1:] for r in reasons(zipped)] == [(3, "malformed_record")]


ZENDESK_HEADER = (
    "Summation column,Id,Requester,Requester id,Group,Subject,Tags,Status,Priority,Via,Ticket type,"
    "Created at,Updated at,Organization,Solved at,Reopens,Replies"
)


def test_zendesk_preset_on_exports_with_zendesk_columns(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/tickets/2026-03-02.csv",
        [
            ZENDESK_HEADER,
            "1,101,Ann,9001,Billing,Invoice missing,vip,Open,High,Mail,question,"
            "2026-03-01 10:00:00,2026-03-01 11:00:00,Acme,,0,1",
            "1,102,Bob,9002,,Export stuck,,Hold,-,Web form,incident,"
            "2026-03-01 12:00:00,2026-03-02 09:00:00,,,,",
            '1,103,"Cy, Jr.",9003,Billing,Hi,,Deleted,Low,Facebook,,'
            "2026-03-01 12:00:00,2026-03-01 12:00:00,,,,",
        ],
    )
    write(
        tmp_path,
        "raw/tickets/2026-03-03.csv",
        [
            ZENDESK_HEADER,
            "1,101,Ann,9001,Billing,Invoice missing,vip,Solved,High,Mail,question,"
            "2026-03-01 10:00:00,2026-03-03 08:00:00,Acme,2026-03-03 08:00:00,1,3",
        ],
    )
    mapping = parse_config(
        {"sources": {"tickets": {"preset": "zendesk_tickets", "timezone": "Europe/Berlin"}}}
    )
    staged = stage_tickets(tmp_path, mapping.sources.tickets)
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["ticket_id"].tolist() == ["101", "102"]
    assert records["status"].tolist() == ["solved", "pending"]  # the later export of 101 wins; Hold → pending
    assert records["topic"].tolist() == ["Billing", "unassigned"]  # no group yet: the preset's default
    assert records["channel"].tolist() == ["email", "web"]
    assert records["priority"].tolist() == ["high", pd.NA]  # '-' is Zendesk's empty value
    assert records["requester_id"].tolist() == ["9001", "9002"]
    assert records["account_id"].tolist() == ["Acme", pd.NA]
    assert records["reopens"].tolist() == [1, pd.NA]
    # Berlin is UTC+1 in March
    assert records["created_at"].tolist() == [ts("2026-03-01 09:00"), ts("2026-03-01 11:00")]
    assert records["solved_at"].tolist()[0] == ts("2026-03-03 07:00")
    assert reasons(staged) == [("raw/tickets/2026-03-02.csv", 4, "bad_value:status")]  # 'Deleted'
    assert staged.report.superseded_versions == 1
    assert staged.report.reconciled


def test_headerless_csv_names_its_columns_in_the_mapping(tmp_path: Path) -> None:
    write(
        tmp_path,
        "exports/desk/a.psv",
        [
            "K1|1/3/2026 09:00|1/3/2026 09:00|Open|billing",
            "K2|1/3/2026 09:00|1/3/2026 09:00|Open|billing|extra",
        ],
    )
    write(tmp_path, "exports/desk/b.txt", [])  # an empty export: no rows, not an error
    mapping = tickets_mapping(
        path=str(tmp_path / "exports" / "desk" / "*"),
        delimiter="|",
        columns=["Key", "Opened", "Changed", "State", "Area"],
        fields={
            "ticket_id": "Key",
            "created_at": "Opened",
            "updated_at": "Changed",
            "status": {"column": "State", "values": {"Open": "open"}},
            "topic": "Area",
        },
    )
    staged = stage_tickets(tmp_path, mapping)
    assert staged.records["ticket_id"].tolist() == ["K1"]
    assert reasons(staged) == [("exports/desk/a.psv", 2, "malformed_record")]  # line 1 is data, not a header
    assert staged.report.files == ["exports/desk/a.psv", "exports/desk/b.txt"]
    assert staged.report.raw_rows == 2
