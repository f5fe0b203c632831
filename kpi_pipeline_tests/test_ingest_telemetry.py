"""Telemetry ingestion against the data contract: row outcomes, precedence, line numbers,
file formats, unreadable files, defaults, typed output and alias windows."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import kpi_pipeline.ingest.raw_files as raw_files
from kpi_pipeline.config import EventAlias, parse_config
from kpi_pipeline.contract import TELEMETRY_REQUIRED
from kpi_pipeline.ingest.raw_files import UnreadableFileError
from kpi_pipeline.ingest.telemetry import (
    MissingPartitionError,
    StagedTelemetry,
    apply_aliases,
    stage_telemetry_partition,
)
from kpi_pipeline.tables import TELEMETRY_EVENTS

DAY = dt.date(2026, 2, 4)
PART = "raw/telemetry/date=2026-02-04"
ABSENT = object()  # marks a field left out of a JSON record

BASE: dict[str, dict[str, str]] = {
    "feature_used": {"feature": "search"},
    "help_viewed": {"topic": "billing"},
    "task_started": {"workflow": "access_request", "task_id": "t1"},
    "task_step": {"workflow": "access_request", "task_id": "t1", "step": "form_opened"},
    "task_completed": {"workflow": "access_request", "task_id": "t1"},
    "task_error": {"workflow": "access_request", "task_id": "t1"},
    "task_fallback": {"workflow": "access_request", "task_id": "t1"},
}


def event(event_id: str = "e1", event_type: str = "feature_used", /, **fields: Any) -> dict[str, Any]:
    """A valid event of ``event_type`` on DAY; ``fields`` override it (ABSENT drops a key)."""
    record: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": "2026-02-04T10:00:00Z",
        "user_id": "u1",
        "account_id": "a1",
        "event_type": event_type,
        **BASE.get(event_type, {}),
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ABSENT}


def line(record: dict[str, Any]) -> str:
    return json.dumps(record)


def folder(root: Path, day: dt.date = DAY) -> Path:
    path = root / "raw" / "telemetry" / f"date={day.isoformat()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write(root: Path, name: str, lines: Sequence[str], day: dt.date = DAY) -> Path:
    """Write ``lines`` (newline-terminated) into the partition folder; gzip for ``.gz`` names."""
    path = folder(root, day) / name
    data = "".join(f"{text}\n" for text in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def stage(root: Path, day: dt.date = DAY, aliases: Sequence[EventAlias] = ()) -> StagedTelemetry:
    return stage_telemetry_partition(root, day, aliases)


def outcomes(staged: StagedTelemetry) -> list[tuple[str, int, str]]:
    """(file name, line, reason) of every quarantined row, in file/line order."""
    q = staged.quarantine
    return list(zip(q["file"].str.rsplit("/", n=1).str[-1], q["line"], q["reason"], strict=True))


def aliases(*entries: dict[str, str]) -> tuple[EventAlias, ...]:
    return parse_config({"event_aliases": list(entries)}).event_aliases


# --- malformed_record -------------------------------------------------------------------------


def test_malformed_json_lines_are_quarantined_with_their_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [line(event("e1")), '{"event_id": "e2", "occurred_at"', "[1, 2]", '"just text"', line(event("e5"))],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e5"]
    assert staged.quarantine[["line", "reason", "raw"]].to_dict("records") == [
        {"line": 2, "reason": "malformed_record", "raw": '{"event_id": "e2", "occurred_at"'},
        {"line": 3, "reason": "malformed_record", "raw": "[1, 2]"},
        {"line": 4, "reason": "malformed_record", "raw": '"just text"'},
    ]
    assert staged.quarantine["file"].tolist() == [f"{PART}/events.jsonl"] * 3
    assert staged.quarantine["source"].tolist() == ["telemetry"] * 3
    assert staged.quarantine["partition"].tolist() == ["2026-02-04"] * 3


def test_csv_row_with_wrong_number_of_columns_is_malformed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.csv",
        [
            "event_id,occurred_at,user_id,account_id,event_type,feature",
            "e1,2026-02-04T10:00:00Z,u1,a1,feature_used,search",
            "e2,2026-02-04T10:00:00Z,u1,a1",
            "e3,2026-02-04T10:00:00Z,u1,a1,feature_used,search,surplus",
            "e4,2026-02-04T11:00:00Z,u1,a1,feature_used,export",
        ],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e4"]
    # header = line 1, so the short row is line 3 and the long one line 4
    assert staged.quarantine[["line", "reason", "raw"]].to_dict("records") == [
        {"line": 3, "reason": "malformed_record", "raw": "e2,2026-02-04T10:00:00Z,u1,a1"},
        {
            "line": 4,
            "reason": "malformed_record",
            "raw": "e3,2026-02-04T10:00:00Z,u1,a1,feature_used,search,surplus",
        },
    ]


# --- missing_field ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TELEMETRY_REQUIRED)
def test_always_required_field_absent_null_empty_or_blank(tmp_path: Path, name: str) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1", **{name: ABSENT})),
            line(event("e2", **{name: None})),
            line(event("e3", **{name: ""})),
            line(event("e4", **{name: "   "})),
            line(event("e5")),
        ],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e5"]
    reason = f"missing_field:{name}"
    assert outcomes(staged) == [("events.jsonl", n, reason) for n in (1, 2, 3, 4)]


CONDITIONAL: list[tuple[str, str]] = [
    *((t, f) for t in BASE if t.startswith("task_") for f in ("workflow", "task_id")),
    ("task_step", "step"),
    ("feature_used", "feature"),
    ("help_viewed", "topic"),
]


@pytest.mark.parametrize(("event_type", "name"), CONDITIONAL)
def test_event_type_conditional_field_missing(tmp_path: Path, event_type: str, name: str) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1", event_type, **{name: ABSENT})),
            line(event("e2", event_type, **{name: None})),
            line(event("e3", event_type, **{name: ""})),
            line(event("e4", event_type, **{name: " \t "})),
            line(event("e5", event_type)),
        ],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e5"]
    assert outcomes(staged) == [("events.jsonl", n, f"missing_field:{name}") for n in (1, 2, 3, 4)]


def test_conditional_fields_are_not_required_by_other_event_types(tmp_path: Path) -> None:
    # feature_used needs no workflow/task_id/step/topic; help_viewed needs no feature
    write(tmp_path, "events.jsonl", [line(event("e1", "feature_used")), line(event("e2", "help_viewed"))])
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e1", "e2"]
    assert staged.quarantine.empty


def test_empty_csv_cell_is_a_missing_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.csv",
        [
            "event_id,occurred_at,user_id,account_id,event_type,topic",
            "e1,2026-02-04T10:00:00Z,,a1,help_viewed,billing",
            "e2,2026-02-04T10:00:00Z,u1,a1,help_viewed,  ",
        ],
    )
    assert outcomes(stage(tmp_path)) == [
        ("events.csv", 2, "missing_field:user_id"),
        ("events.csv", 3, "missing_field:topic"),
    ]


# --- timestamps and partition -----------------------------------------------------------------


def test_unparseable_timestamps_are_bad_timestamp(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1", occurred_at="yesterday")),
            line(event("e2", occurred_at="2026-02-30T10:00:00Z")),
            line(event("e3", occurred_at="2026-02-04T25:00:00Z")),
            line(event("e4")),
        ],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e4"]
    assert outcomes(staged) == [("events.jsonl", n, "bad_timestamp") for n in (1, 2, 3)]


def test_partition_is_the_utc_date_and_naive_timestamps_are_utc(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1", occurred_at="2026-02-03T23:59:59Z")),  # the day before
            line(event("e2", occurred_at="2026-02-05T00:00:00Z")),  # the day after
            line(event("e3", occurred_at="2026-02-04T00:30:00+01:00")),  # = 2026-02-03 23:30 UTC
            line(event("e4", occurred_at="2026-02-03T23:30:00-01:00")),  # = 2026-02-04 00:30 UTC
            line(event("e5", occurred_at="2026-02-04T23:59:59")),  # naive = UTC, last second of the day
            line(event("e6", occurred_at="2026-02-05T00:00:00")),  # naive = UTC, next day
            line(event("e7", occurred_at="2026-02-04T00:00:00Z")),  # first instant of the day
        ],
    )
    staged = stage(tmp_path)
    assert outcomes(staged) == [("events.jsonl", n, "outside_partition") for n in (1, 2, 3, 6)]
    assert staged.events["event_id"].tolist() == ["e4", "e5", "e7"]
    assert staged.events["occurred_at"].tolist() == [
        pd.Timestamp("2026-02-04T00:30:00Z"),
        pd.Timestamp("2026-02-04T23:59:59Z"),
        pd.Timestamp("2026-02-04T00:00:00Z"),
    ]


def test_non_canonical_event_type_is_unknown(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1", event_type="task_done", workflow="access_request", task_id="t1")),
            line(event("e2", event_type="page_view")),
            line(event("e3", event_type="help_viewed", topic="billing")),
        ],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e3"]
    assert outcomes(staged) == [
        ("events.jsonl", 1, "unknown_event_type"),
        ("events.jsonl", 2, "unknown_event_type"),
    ]


def test_duration_must_be_a_non_negative_number(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1", duration_ms=-1)),
            line(event("e2", duration_ms="-0.5")),
            line(event("e3", duration_ms="fast")),
            line(event("e4", duration_ms=0)),
            line(event("e5", duration_ms="1250.5")),
            line(event("e6", duration_ms="")),
            line(event("e7")),
        ],
    )
    staged = stage(tmp_path)
    assert outcomes(staged) == [("events.jsonl", n, "bad_value:duration_ms") for n in (1, 2, 3)]
    assert staged.events["event_id"].tolist() == ["e4", "e5", "e6", "e7"]
    durations = staged.events["duration_ms"].tolist()
    assert durations[:2] == [0.0, 1250.5]
    assert pd.isna(durations[2]) and pd.isna(durations[3])


def test_duplicate_event_id_keeps_the_first_copy_in_path_order(tmp_path: Path) -> None:
    # written in reverse order so that only path order (a < b) can decide
    write(tmp_path, "b.jsonl", [line(event("e1", user_id="u-second")), line(event("e2"))])
    write(
        tmp_path,
        "a.csv",
        [
            "event_id,occurred_at,user_id,account_id,event_type,feature",
            "e1,2026-02-04T09:00:00Z,u-first,a1,feature_used,search",
            "e3,2026-02-04T09:00:00Z,u1,a1,feature_used,search",
            "e3,2026-02-04T09:30:00Z,u1,a1,feature_used,search",
        ],
    )
    staged = stage(tmp_path)
    assert staged.events[["event_id", "user_id"]].values.tolist() == [
        ["e1", "u-first"],
        ["e3", "u1"],
        ["e2", "u1"],
    ]
    assert outcomes(staged) == [("a.csv", 4, "duplicate_event_id"), ("b.jsonl", 1, "duplicate_event_id")]
    assert staged.quarantine["raw"].tolist() == [
        "e3,2026-02-04T09:30:00Z,u1,a1,feature_used,search",
        line(event("e1", user_id="u-second")),
    ]


# --- precedence -------------------------------------------------------------------------------


def test_first_applicable_reason_wins(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.csv",
        [
            "event_id,occurred_at,user_id,account_id,event_type,workflow,task_id,feature,duration_ms",
            # 2: every later check would also fail, but the row cannot be parsed
            ",never,,a1,bogus,,,,-1,surplus",
            # 3: missing event_id and user_id, bad timestamp, unknown type, bad duration
            ",never,,a1,bogus,,,,-1",
            # 4: missing user_id, bad timestamp, unknown type, bad duration
            "e4,never,,a1,bogus,,,,-1",
            # 5: task_started without workflow, bad timestamp
            "e5,never,u1,a1,task_started,,t5,,",
            # 6: bad timestamp, unknown type, bad duration
            "e6,never,u1,a1,bogus,,,,-1",
            # 7: outside the partition, unknown type, bad duration
            "e7,2026-02-05T10:00:00Z,u1,a1,bogus,,,,-1",
            # 8: unknown type (so no task fields needed), bad duration
            "e8,2026-02-04T10:00:00Z,u1,a1,task_done,,,,-1",
            # 9: valid first copy of e9
            "e9,2026-02-04T10:00:00Z,u1,a1,feature_used,,,search,1",
            # 10: duplicate of e9 with a bad duration
            "e9,2026-02-04T10:00:00Z,u1,a1,feature_used,,,search,-1",
        ],
    )
    staged = stage(tmp_path)
    assert staged.events["event_id"].tolist() == ["e9"]
    assert outcomes(staged) == [
        ("events.csv", 2, "malformed_record"),
        ("events.csv", 3, "missing_field:event_id"),
        ("events.csv", 4, "missing_field:user_id"),
        ("events.csv", 5, "missing_field:workflow"),
        ("events.csv", 6, "bad_timestamp"),
        ("events.csv", 7, "outside_partition"),
        ("events.csv", 8, "unknown_event_type"),
        ("events.csv", 10, "bad_value:duration_ms"),
    ]


# --- lines, raw text and formats --------------------------------------------------------------


def test_blank_lines_are_not_rows_and_lines_are_one_based(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl.gz",
        ["", line(event("e1")), "   ", "", line(event("e2", user_id="")), "\t", line(event("e3"))],
    )
    write(
        tmp_path,
        "events.csv",
        [
            "event_id,occurred_at,user_id,account_id,event_type,feature",
            "",
            "c1,2026-02-04T10:00:00Z,u1,a1,feature_used,search",
            "  ",
            "c2,2026-02-04T10:00:00Z,u1,,feature_used,search",
        ],
    )
    staged = stage(tmp_path)
    assert staged.report.raw_rows == 5  # 3 JSON records + 2 CSV data rows; header and blanks are not rows
    assert staged.events["event_id"].tolist() == ["c1", "e1", "e3"]
    # gz: blank lines 1, 3, 4 and 6 still count, so e2 is on line 5 of the decompressed file
    assert outcomes(staged) == [
        ("events.csv", 5, "missing_field:account_id"),
        ("events.jsonl.gz", 5, "missing_field:user_id"),
    ]
    assert staged.quarantine["raw"].tolist() == [
        "c2,2026-02-04T10:00:00Z,u1,,feature_used,search",
        line(event("e2", user_id="")),
    ]


def test_crlf_line_endings_are_not_part_of_the_raw_text(tmp_path: Path) -> None:
    path = folder(tmp_path) / "events.csv"
    path.write_bytes(
        b"event_id,occurred_at,user_id,account_id,event_type,feature\r\n"
        b"e1,2026-02-04T10:00:00Z,u1,a1,feature_used,search\r\n"
        b"e2,2026-02-04T10:00:00Z,u1,a1,feature_used,\r\n"
    )
    staged = stage(tmp_path)
    assert staged.events["feature"].tolist() == ["search"]
    assert staged.quarantine[["line", "reason", "raw"]].to_dict("records") == [
        {"line": 3, "reason": "missing_field:feature", "raw": "e2,2026-02-04T10:00:00Z,u1,a1,feature_used,"}
    ]


FORMAT_RECORDS: list[dict[str, Any]] = [
    event("e1", "task_started", persona="admin", channel="web", duration_ms=1500, release="1.2.0"),
    event("e2", "help_viewed", occurred_at="2026-02-04T12:30:00+02:00", device="ios"),
    event("e3", "feature_used", occurred_at="not a time"),
    event("e4", "task_error", error_code="E42", environment="staging", duration_ms=12.5),
]
CSV_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "user_id",
    "account_id",
    "event_type",
    "workflow",
    "task_id",
    "feature",
    "topic",
    "persona",
    "channel",
    "device",
    "environment",
    "release",
    "duration_ms",
    "error_code",
)


def format_lines(name: str) -> list[str]:
    if ".jsonl" in name:
        return [line(r) for r in FORMAT_RECORDS]
    rows = [",".join(str(r.get(c, "")) for c in CSV_COLUMNS) for r in FORMAT_RECORDS]
    return [",".join(CSV_COLUMNS), *rows]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz", "events.csv", "events.csv.gz"])
def test_every_format_stages_the_same_records(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, format_lines(name))
    staged = stage(tmp_path)
    events = staged.events
    assert events["event_id"].tolist() == ["e1", "e2", "e4"]
    assert events["occurred_at"].tolist() == [
        pd.Timestamp("2026-02-04T10:00:00Z"),
        pd.Timestamp("2026-02-04T10:30:00Z"),  # 12:30 at +02:00
        pd.Timestamp("2026-02-04T10:00:00Z"),
    ]
    assert events["event_type"].tolist() == ["task_started", "help_viewed", "task_error"]
    assert events["workflow"].tolist() == ["access_request", pd.NA, "access_request"]
    assert events["task_id"].tolist() == ["t1", pd.NA, "t1"]
    assert events["topic"].tolist() == [pd.NA, "billing", pd.NA]
    assert events["persona"].tolist() == ["admin", "unknown", "unknown"]
    assert events["channel"].tolist() == ["web", "unknown", "unknown"]
    assert events["device"].tolist() == [pd.NA, "ios", pd.NA]
    assert events["environment"].tolist() == ["production", "production", "staging"]
    assert events["release"].tolist() == ["1.2.0", pd.NA, pd.NA]
    assert events["error_code"].tolist() == [pd.NA, pd.NA, "E42"]
    assert events["duration_ms"].iloc[0] == 1500.0
    assert pd.isna(events["duration_ms"].iloc[1])
    assert events["duration_ms"].iloc[2] == 12.5
    # e3 is the third record: line 3 of a JSONL file, line 4 of a CSV (header = line 1)
    expected_line = 3 if ".jsonl" in name else 4
    assert outcomes(staged) == [(name, expected_line, "bad_timestamp")]
    assert staged.quarantine["raw"].tolist() == [format_lines(name)[expected_line - 1]]


def test_formats_give_identical_frames(tmp_path: Path) -> None:
    frames = []
    for index, name in enumerate(["events.jsonl", "events.jsonl.gz", "events.csv", "events.csv.gz"]):
        root = tmp_path / str(index)
        write(root, name, format_lines(name))
        frames.append(stage(root).events)
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])


# --- files ------------------------------------------------------------------------------------


def test_other_files_are_ignored_reported_and_never_read(tmp_path: Path) -> None:
    write(tmp_path, "events.jsonl", [line(event("e1"))])
    (folder(tmp_path) / "notes.txt").write_bytes(b"\xff\xfe not even utf-8")
    (folder(tmp_path) / "events.jsonl.tmp").write_text("{broken")
    (folder(tmp_path) / "sub").mkdir()
    (folder(tmp_path) / "sub" / "more.jsonl").write_text(line(event("e9")) + "\n")
    staged = stage(tmp_path)
    assert staged.report.files == [f"{PART}/events.jsonl"]
    assert staged.report.ignored_files == [
        f"{PART}/events.jsonl.tmp",
        f"{PART}/notes.txt",
        f"{PART}/sub/more.jsonl",
    ]
    assert staged.report.raw_rows == 1
    assert staged.events["event_id"].tolist() == ["e1"]
    assert staged.quarantine.empty


def test_not_gzip_fails_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, "good.jsonl", [line(event("e1"))])
    path = folder(tmp_path) / "events.jsonl.gz"
    path.write_text(line(event("e2")) + "\n")
    with pytest.raises(UnreadableFileError, match="not a valid gzip file") as info:
        stage(tmp_path)
    assert str(path) in str(info.value)


def test_not_utf8_fails_naming_the_file(tmp_path: Path) -> None:
    path = folder(tmp_path) / "events.jsonl"
    text = json.dumps(event("e1", user_id="café"), ensure_ascii=False)
    path.write_bytes(text.encode("latin-1") + b"\n")
    with pytest.raises(UnreadableFileError, match="not UTF-8") as info:
        stage(tmp_path)
    assert str(path) in str(info.value)


def test_csv_header_without_event_id_fails_naming_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "events.csv",
        ["id,occurred_at,user_id,account_id,event_type", "e1,2026-02-04T10:00:00Z,u1,a1,feature_used"],
    )
    with pytest.raises(UnreadableFileError, match="no event_id column") as info:
        stage(tmp_path)
    assert str(path) in str(info.value)


def test_missing_partition_folder_fails(tmp_path: Path) -> None:
    folder(tmp_path, dt.date(2026, 2, 3))
    with pytest.raises(MissingPartitionError, match="2026-02-04"):
        stage(tmp_path)


# --- output -----------------------------------------------------------------------------------


def test_persona_channel_environment_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [
            line(event("e1")),
            line(event("e2", persona=None, channel="", environment="  ")),
            line(event("e3", persona="developer", channel="cli", environment="staging")),
        ],
    )
    events = stage(tmp_path).events
    assert events["persona"].tolist() == ["unknown", "unknown", "developer"]
    assert events["channel"].tolist() == ["unknown", "unknown", "cli"]
    assert events["environment"].tolist() == ["production", "production", "staging"]


def test_staged_frame_is_typed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "events.jsonl",
        [line(event("e1", duration_ms=7)), line(event("e2", occurred_at="2026-02-04T08:00:00-05:00"))],
    )
    events = stage(tmp_path).events
    assert list(events.columns) == list(TELEMETRY_EVENTS.column_names)
    assert events.dtypes.astype(str).to_dict() == TELEMETRY_EVENTS.dtypes()
    assert str(events["occurred_at"].dt.tz) == "UTC"
    assert events["occurred_at"].tolist() == [
        pd.Timestamp("2026-02-04T10:00:00Z"),
        pd.Timestamp("2026-02-04T13:00:00Z"),  # 08:00 at -05:00
    ]
    assert events["duration_ms"].dtype == "float64"
    assert events["duration_ms"].iloc[0] == 7.0


def test_mixed_fixture_reconciles(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.jsonl",
        [
            line(event("e1")),
            "{oops",
            line(event("e2", user_id=None)),
            line(event("e3", occurred_at="2026-02-05T01:00:00Z")),
            "",
            line(event("e4", event_type="page_view")),
        ],
    )
    write(
        tmp_path,
        "b.csv.gz",
        [
            "event_id,occurred_at,user_id,account_id,event_type,feature,duration_ms,extra_field",
            "e1,2026-02-04T10:00:00Z,u1,a1,feature_used,search,,x",
            "e5,2026-02-04T10:00:00Z,u1,a1,feature_used,search,-3,x",
            "e6,2026-02-04T10:00:00Z,u1,a1,feature_used,search,3,x",
            "e7,2026-02-04T10:00:00Z,u1,a1,feature_used,search,3",
            "e8,later,u1,a1,feature_used,search,3,x",
        ],
    )
    staged = stage(tmp_path)
    report = staged.report
    # a.jsonl: 5 records (blank line excluded); b.csv.gz: 5 data rows
    assert report.raw_rows == 10
    assert staged.events["event_id"].tolist() == ["e1", "e6"]
    assert report.staged_rows == 2
    assert report.quarantined_rows == 8
    assert report.raw_rows == report.staged_rows + report.quarantined_rows
    assert report.reconciled
    assert report.reasons == {
        "malformed_record": 2,
        "missing_field:user_id": 1,
        "outside_partition": 1,
        "unknown_event_type": 1,
        "duplicate_event_id": 1,
        "bad_value:duration_ms": 1,
        "bad_timestamp": 1,
    }
    assert report.unknown_fields == {"extra_field": 4}
    assert "extra_field" not in staged.events.columns


# --- aliases ----------------------------------------------------------------------------------


def test_alias_window_is_inclusive_on_utc_dates() -> None:
    window = aliases(
        {
            "from": "task_done",
            "to": "task_completed",
            "valid_from": "2026-02-03",
            "valid_until": "2026-02-09",
        },
        {"from": "help_open", "to": "help_viewed"},
    )
    occurred_at = pd.to_datetime(
        pd.Series(
            [
                "2026-02-02T23:59:59Z",  # before the window
                "2026-02-03T00:00:00Z",  # first instant of valid_from
                "2026-02-09T23:59:59Z",  # last second of valid_until
                "2026-02-10T00:00:00Z",  # after the window
                "2026-02-10T00:30:00+01:00",  # = 2026-02-09 23:30 UTC, inside
                "2020-01-01T00:00:00Z",  # unbounded alias: any date
                "2026-02-05T00:00:00Z",  # names without an alias are untouched
            ]
        ),
        utc=True,
        format="ISO8601",
    )
    names = pd.Series(
        ["task_done", "task_done", "task_done", "task_done", "task_done", "help_open", "task_started"],
        dtype="string",
    )
    assert apply_aliases(names, occurred_at, window).tolist() == [
        "task_done",
        "task_completed",
        "task_completed",
        "task_done",
        "task_completed",
        "help_viewed",
        "task_started",
    ]


def test_half_open_alias_windows() -> None:
    since = aliases({"from": "old", "to": "feature_used", "valid_from": "2026-02-04"})
    until = aliases({"from": "old", "to": "feature_used", "valid_until": "2026-02-04"})
    occurred_at = pd.Series(
        pd.to_datetime(["2026-02-03T12:00:00Z", "2026-02-04T12:00:00Z", "2026-02-05T12:00:00Z"])
    )
    names = pd.Series(["old", "old", "old"], dtype="string")
    assert apply_aliases(names, occurred_at, since).tolist() == ["old", "feature_used", "feature_used"]
    assert apply_aliases(names, occurred_at, until).tolist() == ["feature_used", "feature_used", "old"]


def test_aliases_apply_before_validation_and_only_inside_their_window(tmp_path: Path) -> None:
    window = aliases(
        {
            "from": "task_done",
            "to": "task_completed",
            "valid_from": "2026-02-03",
            "valid_until": "2026-02-09",
        },
        {"from": "help_open", "to": "help_viewed"},
    )
    inside, outside = dt.date(2026, 2, 9), dt.date(2026, 2, 10)
    for day in (inside, outside):
        iso = day.isoformat()
        write(
            tmp_path,
            "events.jsonl",
            [
                line(event("e1", "task_done", occurred_at=f"{iso}T10:00:00Z", workflow="wf", task_id="t1")),
                line(event("e2", "task_done", occurred_at=f"{iso}T11:00:00Z")),  # no workflow/task_id
                line(event("e3", "help_open", occurred_at=f"{iso}T12:00:00Z", topic="billing")),
            ],
            day,
        )
    staged_inside = stage(tmp_path, inside, window)
    assert staged_inside.events["event_id"].tolist() == ["e1", "e3"]
    assert staged_inside.events["event_type"].tolist() == ["task_completed", "help_viewed"]
    # aliased to a task_* type first, so the task fields become required
    assert outcomes(staged_inside) == [("events.jsonl", 2, "missing_field:workflow")]

    staged_outside = stage(tmp_path, outside, window)
    assert staged_outside.events["event_id"].tolist() == ["e3"]
    assert staged_outside.events["event_type"].tolist() == ["help_viewed"]
    assert outcomes(staged_outside) == [
        ("events.jsonl", 1, "unknown_event_type"),
        ("events.jsonl", 2, "unknown_event_type"),
    ]


# --- parser paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("conflicting_extra", [False, True])
def test_every_parser_path_gives_the_same_outcomes(tmp_path: Path, conflicting_extra: bool) -> None:
    """Broken lines that look like objects, numbers in text fields and text in duration_ms take
    slower paths than the columnar reader; a drift field with mixed types forces the slowest one.
    The staged rows and reasons must not depend on the path."""
    lines = [
        line(event("e1", duration_ms=5)),
        '{"event_id": "e2", }',  # starts with { and ends with }, but is not JSON
        line(event("e3", user_id=123)),  # a number in a text field: staged as text "123"
        line(event("e4", duration_ms="abc")),
        line(event("e5", duration_ms="7")),  # a numeric string is a valid duration
        line(event("e6", extra=1)),
        line(event("e7", extra="text" if conflicting_extra else 2)),
    ]
    write(tmp_path, "events.jsonl", lines)
    staged = stage(tmp_path)
    assert outcomes(staged) == [
        ("events.jsonl", 2, "malformed_record"),
        ("events.jsonl", 4, "bad_value:duration_ms"),
    ]
    events = staged.events.set_index("event_id")
    assert list(events.index) == ["e1", "e3", "e5", "e6", "e7"]
    assert events.loc["e3", "user_id"] == "123"
    assert events["duration_ms"].tolist()[:3] == [5.0, pytest.approx(float("nan"), nan_ok=True), 7.0]
    assert staged.report.unknown_fields == {"extra": 2}


def test_a_drift_field_of_mixed_types_sends_only_its_rare_kind_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[bytes] = []
    real = raw_files._parse_json_line
    monkeypatch.setattr(raw_files, "_parse_json_line", lambda line: built.append(line) or real(line))
    # 200 events; session_id is a number except on every 50th line, where it is text.
    lines = [line(event(f"e{i}", session_id=("s" if i % 50 == 0 else i))) for i in range(200)]
    write(tmp_path, "events.jsonl", lines)
    # The exact reader's own strategy (DuckDB's fast pass would take every one of these lines).
    staged = stage_telemetry_partition(tmp_path, DAY, (), fast=False)
    assert len(staged.events) == 200
    assert len(built) == 4  # lines 1, 51, 101, 151: the text values; the numbers parse columnar
    assert staged.report.unknown_fields == {"session_id": 200}
