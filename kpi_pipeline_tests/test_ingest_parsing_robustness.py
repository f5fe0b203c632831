"""Raw-file parsing that must cost one quarantine row, never a failed source (issue 9): lines that
are not JSON objects, JSON numbers as written, lists and objects in scalar fields, RFC 4180 CSV
with quoted line breaks, and the recovery rule for unterminated quotes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kpi_pipeline.config import parse_config
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.raw_files import MAX_NESTING, UnreadableFileError, read_raw_file
from kpi_pipeline.ingest.rows import StagedExports
from kpi_pipeline.ingest.telemetry import STRING_FIELDS, StagedTelemetry, stage_telemetry_partition
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.sources.importer import import_telemetry

DAY = dt.date(2026, 2, 4)
EVENTS_JSONL = "raw/telemetry/date=2026-02-04/events.jsonl"
EVENTS_CSV = "raw/telemetry/date=2026-02-04/events.csv"
TICKETS = "raw/tickets/export.csv"
INCIDENTS = "raw/incidents/log.jsonl"
EVENT_HEADER = "event_id,occurred_at,user_id,account_id,event_type,feature"
TICKET_HEADER = "ticket_id,created_at,updated_at,status,topic,subject,reopens"


def write(root: Path, relative: str, text: str) -> Path:
    """Write ``text`` exactly as given (line endings included)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def quarantine(staged: StagedTelemetry | StagedExports) -> list[tuple[str, int, str, str]]:
    """(file, line, reason, raw) of every quarantined row, in file/line order."""
    q = staged.quarantine
    return list(zip(q["file"], q["line"].tolist(), q["reason"], q["raw"], strict=True))


def event_json(event_id: str, tail: str = '"feature":"search"') -> str:
    """One JSONL line of a feature_used event on DAY; ``tail`` is the text after the common fields."""
    return (
        f'{{"event_id":"{event_id}","occurred_at":"2026-02-04T10:00:00Z","user_id":"u1",'
        f'"account_id":"a1","event_type":"feature_used",{tail}}}'
    )


def event_csv(event_id: str, feature: str = "search") -> str:
    """One CSV row of a feature_used event on DAY; ``feature`` is the raw cell text."""
    return f"{event_id},2026-02-04T10:00:00Z,u1,a1,feature_used,{feature}"


def ticket_csv(ticket_id: str, status: str = "open", subject: str = "x", reopens: str = "") -> str:
    return f"{ticket_id},2026-02-01T09:00:00Z,2026-02-01T10:00:00Z,{status},billing,{subject},{reopens}"


def stage(root: Path) -> StagedTelemetry:
    return stage_telemetry_partition(root, DAY, ())


# --- lines that are not JSON objects ----------------------------------------------------------


def test_every_telemetry_line_that_is_not_a_json_object_is_malformed(tmp_path: Path) -> None:
    # a.jsonl: the lines pyarrow's typed reader leaves to the record-by-record path
    odd = [
        event_json("j2", '"feature":"f","duration_ms":"1500",'),  # trailing comma, text in a number
        event_json("j3", '"feature":["f"],'),  # trailing comma, a list in a text field
        event_json("j4", '"feature":"f","user_id":7,'),  # trailing comma, a number in a text field
    ]
    # b.jsonl: lines that make pyarrow reject the whole body
    other = [
        event_json("j5", '"feature":"f"} {"x":1'),  # two objects on one line
        event_json("j6", '"feature":"f","x":01'),  # a number with a leading zero
        event_json("j7", '"feature":"\\ud800"'),  # a lone surrogate cannot be stored as text
        "{'event_id': 'j8'}",
        event_json("j9", '"feature":"f","duration_ms":nan'),  # only NaN, Infinity, -Infinity are numbers
    ]
    for name, broken in (("a", odd), ("b", other)):
        lines = [event_json(f"{name}1"), *broken, event_json(f"{name}2")]
        write(tmp_path, f"raw/telemetry/date=2026-02-04/{name}.jsonl", "".join(f"{text}\n" for text in lines))
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["a1", "a2", "b1", "b2"]
    assert quarantine(staged) == [
        (f"raw/telemetry/date=2026-02-04/{name}.jsonl", number, "malformed_record", text)
        for name, broken in (("a", odd), ("b", other))
        for number, text in enumerate(broken, start=2)
    ]
    assert staged.report.raw_rows == 12 and staged.report.reconciled


def test_a_line_nested_deeper_than_the_limit_is_malformed_not_a_crash(tmp_path: Path) -> None:
    deep_list = event_json("d2", '"feature":"f","x":' + "[" * 329 + "1" + "]" * 329)
    deep_object = event_json("d3", '"feature":"f","x":' + '{"a":' * 255 + "1" + "}" * 255)
    # The record's own braces count: a value may open MAX_NESTING - 1 lists, not one more.
    at_limit = event_json(
        "d4", '"feature":"f","x":' + "[" * (MAX_NESTING - 1) + "1" + "]" * (MAX_NESTING - 1)
    )
    over = event_json("d5", '"feature":"f","x":' + "[" * MAX_NESTING + "1" + "]" * MAX_NESTING)
    lines = [event_json("d1"), deep_list, deep_object, at_limit, over]
    write(tmp_path, EVENTS_JSONL, "".join(f"{text}\n" for text in lines))
    for fast in (True, False):
        staged = stage_telemetry_partition(tmp_path, DAY, (), fast=fast)
        assert staged.events["event_id"].tolist() == ["d1", "d4"]
        assert quarantine(staged) == [
            (EVENTS_JSONL, 2, "malformed_record", deep_list),
            (EVENTS_JSONL, 3, "malformed_record", deep_object),
            (EVENTS_JSONL, 5, "malformed_record", over),
        ]
        assert staged.report.unknown_fields == {"x": 1}


def test_an_incident_line_with_a_list_and_a_trailing_comma_is_malformed(tmp_path: Path) -> None:
    common = '"started_at":"2026-02-03T10:00:00Z","severity":"SEV2","service":"api"'
    lines = [
        f'{{"incident_id":"I1",{common},"affected_workflows":["wf_b","wf_a"]}}',
        f'{{"incident_id":"I2",{common},"affected_workflows":["wf"],}}',
        f'{{"incident_id":"I3",{common},"affected_workflows":"wf_c"}}',
    ]
    write(tmp_path, INCIDENTS, "".join(f"{text}\n" for text in lines))
    staged = stage_incidents(tmp_path)
    records = staged.records.sort_values("incident_id", ignore_index=True)
    assert records["incident_id"].tolist() == ["I1", "I3"]
    assert records["affected_workflows"].tolist() == ["wf_a;wf_b", "wf_c"]
    assert quarantine(staged) == [(INCIDENTS, 2, "malformed_record", lines[1])]


def status_mapping() -> Any:
    """Status-page style JSONL: ``parts`` (a list) feeds the service and the affected workflows."""
    raw = {
        "path": "status",
        "format": "jsonl",
        "fields": {
            "incident_id": "id",
            "started_at": "start",
            "resolved_at": "end",
            "severity": {"column": "impact", "values": {"minor": "SEV3"}},
            "service": "parts",
            "affected_workflows": {"column": "parts", "unmapped": "keep"},
            "title": "name",
        },
    }
    return parse_config({"sources": {"incidents": raw}}).sources.incidents


def test_a_mapped_json_line_with_a_trailing_comma_is_malformed(tmp_path: Path) -> None:
    lines = [
        '{"id":1,"start":"2026-03-01T10:00:00Z","impact":"minor","parts":["Login","Checkout"],"name":["x"]}',
        '{"id":2,"start":"2026-03-01T10:00:00Z","end":1772359200,"impact":"minor","parts":["Login"],}',
        '{"id":3,"start":"2026-03-01T10:00:00Z","impact":"minor","parts":[{"name":"Login"}],"name":"y"}',
    ]
    write(tmp_path, "status/h.jsonl", "".join(f"{text}\n" for text in lines))
    staged = stage_incidents(tmp_path, status_mapping())
    records = staged.records.sort_values("incident_id", ignore_index=True)
    assert records["incident_id"].tolist() == ["1", "3"]
    # the list column that feeds a list field is a list wherever it is mapped; another is JSON text
    assert records["service"].tolist() == ["Login;Checkout", "Login"]
    assert records["affected_workflows"].tolist() == ["Checkout;Login", "Login"]
    assert records["title"].tolist() == ['["x"]', "y"]
    assert quarantine(staged) == [("status/h.jsonl", 2, "malformed_record", lines[1])]


def test_lists_that_open_with_null_are_read_as_written(tmp_path: Path) -> None:
    """pyarrow's JSON reader drops the nulls that open a list followed by other items (and can
    then fail): such lines are read record by record."""
    write(
        tmp_path,
        EVENTS_JSONL,
        event_json("e1", '"feature":"f","tags":[null,0]')
        + "\n"
        + event_json("e2", '"feature":"f","tags":[1]')
        + "\n",
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e2"]
    assert staged.report.unknown_fields == {"tags": 2}
    lines = [
        '{"id":1,"start":"2026-03-01T10:00:00Z","impact":"minor","parts":[null,"Login"],"name":"x"}',
        '{"id":2,"start":"2026-03-01T10:00:00Z","impact":"minor","parts":["Checkout"],"name":"y"}',
    ]
    write(tmp_path, "status/h.jsonl", "".join(f"{text}\n" for text in lines))
    records = stage_incidents(tmp_path, status_mapping()).records.sort_values(
        "incident_id", ignore_index=True
    )
    assert records["affected_workflows"].tolist() == ["Login", "Checkout"]


# --- JSON numbers, lists and objects ------------------------------------------------------------


def test_json_numbers_reach_validation_as_written(tmp_path: Path) -> None:
    bad = {
        "b1": "[5]",
        "b2": "1e400",
        "b3": "NaN",
        "b4": "Infinity",
        "b5": "-Infinity",
        "b6": "1e309",
        "b7": "true",
        "b8": '{"ms":5}',
    }
    lines = [
        event_json("e1", '"feature":"f","duration_ms":12.5'),
        *(event_json(event_id, f'"feature":"f","duration_ms":{value}') for event_id, value in bad.items()),
        event_json("e2", '"feature":"f","duration_ms":"1500"'),
        event_json("e3", '"feature":"f","duration_ms":99999999999999999999'),
        '{"event_id":"e4","occurred_at":"2026-02-04T10:00:00Z","user_id":12345678901234567890,'
        '"account_id":-0.50,"event_type":"feature_used","feature":1e400}',
    ]
    path = write(tmp_path, EVENTS_JSONL, "".join(f"{text}\n" for text in lines))
    staged = stage(tmp_path)
    assert quarantine(staged) == [
        (EVENTS_JSONL, number, "bad_value:duration_ms", text) for number, text in enumerate(lines[1:9], 2)
    ]
    events = staged.events.set_index("event_id")
    assert events.index.tolist() == ["e1", "e2", "e3", "e4"]
    assert events["duration_ms"].tolist()[:3] == [12.5, 1500.0, 1e20]
    # numbers in text fields keep their spelling, digits past double precision included
    assert events.loc["e4", ["user_id", "account_id", "feature"]].tolist() == [
        "12345678901234567890",
        "-0.50",
        "1e400",
    ]
    raw = read_raw_file(path, "event_id", STRING_FIELDS, ("duration_ms",)).rows.set_index("event_id")
    assert raw["duration_ms"].tolist()[:9] == ["12.5", *bad.values()]
    assert raw.loc["e3", "duration_ms"] == "99999999999999999999"


def test_lists_and_objects_in_text_fields_are_their_json_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        EVENTS_JSONL,
        event_json("e1", '"feature":["search","filters"]')
        + "\n"
        + event_json("e2", '"feature":{"name":"search","v":1.50}')
        + "\n"
        + event_json("e3", '"feature":[]')
        + "\n",
    )
    staged = stage(tmp_path)
    assert staged.events["feature"].tolist() == ['["search","filters"]', '{"name":"search","v":1.50}', "[]"]
    assert staged.quarantine.empty


def test_mapped_json_numbers_keep_their_text(tmp_path: Path) -> None:
    """A mapped ticket export in JSON lines: a list is not a number, and a count past double
    precision stays exact even when another row turns the column into doubles."""
    raw = {
        "path": "desk",
        "format": "jsonl",
        "fields": {
            "ticket_id": "id",
            "created_at": "created",
            "updated_at": "updated",
            "status": "state",
            "topic": "area",
            "agent_work_minutes": "minutes",
            "reopens": "reopened",
        },
    }
    mapping = parse_config({"sources": {"tickets": raw}}).sources.tickets
    common = (
        '"created":"2026-02-01T09:00:00Z","updated":"2026-02-01T10:00:00Z","state":"open","area":"billing"'
    )
    lines = [
        f'{{"id":"K1",{common},"minutes":2.5,"reopened":12345678901234567}}',
        f'{{"id":"K2",{common},"minutes":[5],"reopened":1}}',
        f'{{"id":"K3",{common},"minutes":1,"reopened":99999999999999999999}}',
        f'{{"id":"K4",{common},"minutes":3,"reopened":2.0}}',
    ]
    write(tmp_path, "desk/t.jsonl", "".join(f"{text}\n" for text in lines))
    staged = stage_tickets(tmp_path, mapping)
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["ticket_id"].tolist() == ["K1", "K4"]
    assert records["reopens"].tolist() == [12345678901234567, 2]
    assert records["agent_work_minutes"].tolist() == [2.5, 3.0]
    assert quarantine(staged) == [
        ("desk/t.jsonl", 2, "bad_value:agent_work_minutes", lines[1]),
        ("desk/t.jsonl", 3, "bad_value:reopens", lines[2]),  # does not fit int64
    ]


# --- CSV records spanning lines -----------------------------------------------------------------


def test_ticket_export_with_line_breaks_in_quoted_values(tmp_path: Path) -> None:
    t2 = ticket_csv("T2", subject='"Cannot export\nthe report"')
    t3 = ticket_csv("T3", status="bogus", subject='"Says ""hi"", then\r\nleaves, twice\r\n"', reopens="1")
    lines = [
        TICKET_HEADER,
        ticket_csv("T1", subject='"a, b"'),
        t2,
        t3,
        ticket_csv("T4", reopens="99999999999999999999"),
        ticket_csv("T5", reopens="2"),
    ]
    write(tmp_path, TICKETS, "\r\n".join(lines) + "\r\n")
    staged = stage_tickets(tmp_path)
    records = staged.records.sort_values("ticket_id", ignore_index=True)
    assert records["ticket_id"].tolist() == ["T1", "T2", "T5"]
    assert records["reopens"].tolist() == [pd.NA, pd.NA, 2]
    # header = line 1, T1 = 2, T2 = 3–4, T3 = 5–7, T4 = 8, T5 = 9
    assert quarantine(staged) == [
        (TICKETS, 5, "bad_value:status", t3),
        (TICKETS, 8, "bad_value:reopens", lines[4]),
    ]
    assert staged.report.raw_rows == 5 and staged.report.reconciled


def test_telemetry_csv_record_spanning_lines_is_one_row_at_its_first_line(tmp_path: Path) -> None:
    lines = [
        EVENT_HEADER,
        event_csv("e1", '"multi\nline, with ""quotes"""'),
        "",
        event_csv("e2", '"blank line inside:\n\n"'),
        event_csv("e3", '5" screen'),  # a quote inside an unquoted value is a literal character
        event_csv("e4", '""'),
        event_csv("e5", '"""quoted"" at the start"'),
        event_csv("e6", '"ends the file\nwithout a line break"'),
    ]
    write(tmp_path, EVENTS_CSV, "\n".join(lines))
    staged = stage(tmp_path)
    events = staged.events.set_index("event_id")
    assert events.index.tolist() == ["e1", "e2", "e3", "e5", "e6"]
    assert events["feature"].tolist() == [
        'multi\nline, with "quotes"',
        "blank line inside:\n\n",
        '5" screen',
        '"quoted" at the start',
        "ends the file\nwithout a line break",
    ]
    # header 1, e1 2–3, blank 4, e2 5–7, e3 8, e4 9, e5 10, e6 11–12
    assert quarantine(staged) == [(EVENTS_CSV, 9, "missing_field:feature", lines[5])]
    assert staged.report.raw_rows == 6


def test_mapped_csv_and_import_keep_a_record_spanning_lines_whole(tmp_path: Path) -> None:
    raw = {
        "format": "csv",
        "delimiter": ";",
        "fields": {
            "event_id": "id",
            "occurred_at": "at",
            "user_id": "who",
            "account_id": "who",
            "feature": "what",
        },
        "constants": {"event_type": "feature_used"},
    }
    mapping = parse_config({"sources": {"telemetry": raw}}).sources.telemetry
    export = tmp_path / "export.csv"
    export.write_text(
        'id;at;who;what\nm1;2026-02-04T10:00:00Z;u1;"two\nlines; one value"\nm2;2026-02-04T11:00:00Z;;x\n',
        encoding="utf-8",
    )
    result = import_telemetry(export, tmp_path, mapping)
    assert result.rows_by_day == {"2026-02-04": 2}
    day_file = tmp_path / "raw/telemetry/date=2026-02-04/export.csv"
    assert day_file.read_text(encoding="utf-8") == export.read_text(encoding="utf-8")
    staged = stage_telemetry_partition(tmp_path, DAY, (), mapping)
    assert staged.events["feature"].tolist() == ["two\nlines; one value"]
    assert quarantine(staged) == [
        ("raw/telemetry/date=2026-02-04/export.csv", 4, "missing_field:user_id", "m2;2026-02-04T11:00:00Z;;x")
    ]


# --- unterminated quotes ------------------------------------------------------------------------


def test_a_quote_open_to_the_end_of_the_file_costs_only_its_line(tmp_path: Path) -> None:
    opened = event_csv("e2", '"unterminated')
    last = event_csv("e5", '"also unterminated, last record')
    write(
        tmp_path,
        EVENTS_CSV,
        "\n".join([EVENT_HEADER, event_csv("e1"), opened, event_csv("e3"), event_csv("e4"), last]),
    )
    # the only quote of only.csv opens its last record: nothing ever closes it
    only = "raw/telemetry/date=2026-02-04/only.csv"
    write(tmp_path, only, "\n".join([EVENT_HEADER, event_csv("o1"), event_csv("o2", '"open')]) + "\n")
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e3", "e4", "o1"]
    assert quarantine(staged) == [
        (EVENTS_CSV, 3, "malformed_record", opened),
        (EVENTS_CSV, 6, "malformed_record", last),
        (only, 3, "malformed_record", event_csv("o2", '"open')),
    ]


def test_a_quote_closed_lines_later_by_a_record_of_the_wrong_shape_costs_only_its_line(
    tmp_path: Path,
) -> None:
    """e2's quote is closed by the first quote of e4, but e2…e4 taken as one record has not the
    header's six fields: e2 alone is malformed, and e3, e4 are read as records of their own."""
    opened = event_csv("e2", '"unterminated')
    lines = [EVENT_HEADER, event_csv("e1"), opened, event_csv("e3"), event_csv("e4", '"search, advanced"')]
    write(tmp_path, EVENTS_CSV, "\n".join([*lines, event_csv("e5")]) + "\n")
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e3", "e4", "e5"]
    assert staged.events["feature"].tolist() == ["search", "search", "search, advanced", "search"]
    assert quarantine(staged) == [(EVENTS_CSV, 3, "malformed_record", opened)]


def test_a_record_spanning_lines_with_the_wrong_field_count_is_malformed_line_by_line(
    tmp_path: Path,
) -> None:
    """Not a record of the header's shape, so the quote does not join the lines: the opening line
    is malformed, and the next line, read on its own, is malformed too."""
    lines = [EVENT_HEADER, event_csv("e1"), event_csv("e2", '"two\nlines",surplus'), event_csv("e3")]
    write(tmp_path, EVENTS_CSV, "\n".join(lines) + "\n")
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e3"]
    assert quarantine(staged) == [
        (EVENTS_CSV, 3, "malformed_record", event_csv("e2", '"two')),
        (EVENTS_CSV, 4, "malformed_record", 'lines",surplus'),
    ]
    assert staged.report.raw_rows == 4 and staged.report.reconciled


def test_a_carriage_return_inside_an_unquoted_value_is_malformed(tmp_path: Path) -> None:
    """A lone CR ends a row for CSV readers, so the line it is on is not one record."""
    write(
        tmp_path,
        EVENTS_CSV,
        "\n".join([EVENT_HEADER, event_csv("e1", "a\rb"), event_csv("e2", '"a\rb"'), event_csv("e3")]) + "\n",
    )
    staged = stage(tmp_path)
    assert staged.events["feature"].tolist() == ["a\rb", "search"]
    assert quarantine(staged) == [(EVENTS_CSV, 2, "malformed_record", event_csv("e1", "a\rb"))]


def test_incident_csv_title_spanning_lines(tmp_path: Path) -> None:
    write(
        tmp_path,
        "raw/incidents/log.csv",
        "incident_id,started_at,severity,service,affected_workflows,title\n"
        'I1,2026-02-03T10:00:00Z,SEV2,api,wf_a;wf_b,"Login down,\nthen ""fixed"""\n'
        "I2,2026-02-03T10:00:00Z,SEV2,api,,plain\n",
    )
    staged = stage_incidents(tmp_path)
    records = staged.records.sort_values("incident_id", ignore_index=True)
    assert records["title"].tolist() == ['Login down,\nthen "fixed"', "plain"]
    assert records["affected_workflows"].tolist() == ["wf_a;wf_b", ""]
    assert staged.quarantine.empty and staged.report.raw_rows == 2


def test_a_csv_header_with_a_carriage_return_fails_naming_the_file(tmp_path: Path) -> None:
    write(
        tmp_path, EVENTS_CSV, "event_id,occurred_at\ruser_id,account_id,event_type\n" + event_csv("e1") + "\n"
    )
    with pytest.raises(UnreadableFileError, match=r"events\.csv: CSV header on line 1 cannot be read"):
        stage(tmp_path)
