"""Great Expectations suites for the staged sources: clean data passes, each kind of defect fails the
right expectation with the right count, and the outcome's metadata is JSON-serialisable."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kpi_pipeline import contract
from kpi_pipeline.ingest.telemetry import EventsFile, write_events
from kpi_pipeline.quality import violations
from kpi_pipeline.quality.expectations import incidents_suite, run_suite, telemetry_suite, tickets_suite
from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.tables import TELEMETRY_EVENTS

DAY = dt.date(2025, 1, 3)
NOW = pd.Timestamp("2025-01-04 06:00", tz="UTC")
LABEL = "telemetry_events 2025-01-03"


def _utc(*values: str | None) -> pd.Series:
    """Tz-aware UTC timestamps in microseconds, as staging writes them."""
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601")).astype("datetime64[us, UTC]")


def _text(*values: str | None) -> pd.Series:
    """Nullable strings, as staging writes them."""
    return pd.Series(list(values), dtype="string")


def telemetry_frame() -> pd.DataFrame:
    """Four valid production events of 2025-01-03; one has no duration (allowed)."""
    return pd.DataFrame(
        {
            "event_id": _text("e1", "e2", "e3", "e4"),
            # the partition's first and last microseconds are inside it
            "occurred_at": _utc(
                "2025-01-03T00:00:00Z",
                "2025-01-03T08:00:00Z",
                "2025-01-03T08:05:00Z",
                "2025-01-03T23:59:59.999999Z",
            ),
            "user_id": _text("u1", "u1", "u2", "u2"),
            "account_id": _text("a1", "a1", "a2", "a2"),
            "event_type": _text("task_started", "task_completed", "feature_used", "help_viewed"),
            "workflow": _text("data_export", "data_export", None, None),
            "task_id": _text("t1", "t1", None, None),
            "step": _text(None, None, None, None),
            "feature": _text(None, None, "reports", None),
            "topic": _text(None, None, None, "billing"),
            "persona": _text("admin", "admin", "unknown", "unknown"),
            "channel": _text("web", "web", "unknown", "unknown"),
            "device": _text("desktop", "desktop", None, None),
            "environment": _text("production", "production", "production", "staging"),
            "release": _text("1.2.0", "1.2.0", "1.2.0", "1.2.0"),
            "duration_ms": [0.0, 1500.0, np.nan, 20.0],
            "error_code": _text(None, None, None, None),
        }
    )


def tickets_frame() -> pd.DataFrame:
    """Three valid tickets; the open one has no solved_at, work minutes or reopens (allowed)."""
    return pd.DataFrame(
        {
            "ticket_id": _text("T1", "T2", "T3"),
            "created_at": _utc("2025-01-02T09:00:00Z", "2025-01-03T10:00:00Z", "2025-01-04T06:00:00Z"),
            "updated_at": _utc("2025-01-02T12:00:00Z", "2025-01-03T10:00:00Z", "2025-01-04T06:00:00Z"),
            "status": _text("solved", "closed", "open"),
            "topic": _text("billing", "exports", "access"),
            "channel": _text("email", "chat", "web"),
            "priority": _text("normal", "high", "low"),
            "requester_id": _text("u1", "u2", "u3"),
            "account_id": _text("a1", "a2", "a3"),
            "first_reply_at": _utc("2025-01-02T10:00:00Z", "2025-01-03T10:00:00Z", None),
            # T2 is solved the instant it was created: equal is not "before"
            "solved_at": _utc("2025-01-02T12:00:00Z", "2025-01-03T10:00:00Z", None),
            "agent_work_minutes": [12.5, 0.0, np.nan],
            "reopens": pd.array([1, 0, None], dtype="Int64"),
        }
    )


def incidents_frame() -> pd.DataFrame:
    """Three valid incidents; INC3 is still open (no resolved_at) and started exactly at NOW."""
    return pd.DataFrame(
        {
            "incident_id": _text("INC1", "INC2", "INC3"),
            "started_at": _utc("2025-01-02T09:00:00Z", "2025-01-03T10:00:00Z", "2025-01-04T06:00:00Z"),
            "severity": _text("SEV1", "SEV3", "SEV4"),
            "service": _text("api", "exports", "auth"),
            "detected_at": _utc("2025-01-02T09:10:00Z", "2025-01-03T10:00:00Z", "2025-01-04T06:00:00Z"),
            "resolved_at": _utc("2025-01-02T11:00:00Z", "2025-01-03T10:00:00Z", None),
            "affected_workflows": _text("data_export;invoice_download", "", "access_request"),
            "title": _text("API down", "Slow exports", "Login errors"),
            "root_cause": _text("deploy", None, None),
            "updated_at": _utc("2025-01-02T12:00:00Z", "2025-01-03T11:00:00Z", "2025-01-04T06:00:00Z"),
        }
    )


def _telemetry(frame: pd.DataFrame, now: pd.Timestamp = NOW) -> CheckOutcome:
    return run_suite("telemetry_events", telemetry_suite(DAY, now), frame, label=LABEL)


def _tickets(frame: pd.DataFrame) -> CheckOutcome:
    return run_suite("stg_support_tickets", tickets_suite(NOW), frame, label="stg_support_tickets")


def _incidents(frame: pd.DataFrame) -> CheckOutcome:
    return run_suite("stg_incidents", incidents_suite(NOW), frame, label="stg_incidents")


def _failed(outcome: CheckOutcome) -> list[dict]:
    return [entry for entry in outcome.metadata["expectations"] if not entry["success"]]


def _assert_one_failure(outcome: CheckOutcome, description: str, count: int, rows: int) -> dict:
    """Exactly one expectation failed, with ``count`` unexpected values, named in the message."""
    json.dumps(outcome.metadata)
    assert outcome.passed is False
    assert outcome.severity == "ERROR"
    failed = _failed(outcome)
    assert [entry["description"] for entry in failed] == [description]
    assert failed[0]["unexpected_count"] == count
    assert outcome.metadata["failed"] == 1
    assert outcome.metadata["rows"] == rows
    assert f"{description} ({count} unexpected of {rows} rows)" in outcome.message
    return failed[0]


def test_telemetry_suite_passes_on_clean_data() -> None:
    outcome = _telemetry(telemetry_frame())
    json.dumps(outcome.metadata)
    assert outcome.passed is True
    # 5 required not-null + unique + in set + inside the day + not after now + duration >= 0 = 10
    assert outcome.metadata["evaluated"] == 10
    assert outcome.metadata["failed"] == 0
    assert outcome.metadata["rows"] == 4
    assert outcome.message == "telemetry_events 2025-01-03: all 10 expectations passed on 4 rows"
    assert [entry["description"] for entry in outcome.metadata["expectations"]] == [
        "event_id not null",
        "occurred_at not null",
        "user_id not null",
        "account_id not null",
        "event_type not null",
        "event_id unique",
        "event_type in allowed values",
        "occurred_at inside 2025-01-03 UTC",
        "occurred_at not after now (2025-01-04 06:00:00 UTC)",
        "duration_ms >= 0",
    ]


def test_tickets_suite_passes_on_clean_data() -> None:
    outcome = _tickets(tickets_frame())
    json.dumps(outcome.metadata)
    assert outcome.passed is True
    # 5 required not-null + unique + status in set + not after now + 2 × (>= 0)
    # + solved not before created = 11
    assert outcome.metadata["evaluated"] == 11
    assert outcome.metadata["failed"] == 0
    assert outcome.message == "stg_support_tickets: all 11 expectations passed on 3 rows"


def test_incidents_suite_passes_on_clean_data() -> None:
    outcome = _incidents(incidents_frame())
    json.dumps(outcome.metadata)
    assert outcome.passed is True
    # 4 required not-null + unique + severity in set + not after now + resolved not before = 8
    assert outcome.metadata["evaluated"] == 8
    assert outcome.metadata["failed"] == 0
    assert outcome.message == "stg_incidents: all 8 expectations passed on 3 rows"


def test_telemetry_null_required_field() -> None:
    frame = telemetry_frame()
    frame.loc[2, "user_id"] = pd.NA
    outcome = _telemetry(frame)
    entry = _assert_one_failure(outcome, "user_id not null", 1, 4)
    assert outcome.message == (
        "telemetry_events 2025-01-03: 1 of 10 expectations failed: user_id not null (1 unexpected of 4 rows)"
    )
    assert entry["expectation"] == "expect_column_values_to_not_be_null"
    assert entry["column"] == "user_id"
    assert entry["partial_unexpected_list"] == ["null"]
    # 1 null of 4 rows = 25 %
    assert entry["unexpected_percent"] == 25.0


def test_telemetry_duplicate_event_id() -> None:
    frame = telemetry_frame()
    frame.loc[1, "event_id"] = "e1"
    entry = _assert_one_failure(_telemetry(frame), "event_id unique", 2, 4)
    # both copies of e1 are unexpected: 2 of 4 rows = 50 %
    assert entry["partial_unexpected_list"] == ["e1", "e1"]
    assert entry["unexpected_percent"] == 50.0


def test_telemetry_unknown_event_type() -> None:
    frame = telemetry_frame()
    frame.loc[3, "event_type"] = "task_done"
    entry = _assert_one_failure(_telemetry(frame), "event_type in allowed values", 1, 4)
    assert entry["partial_unexpected_list"] == ["task_done"]


def test_telemetry_timestamp_outside_the_partition() -> None:
    frame = telemetry_frame()
    # the next midnight is outside the half-open day; one microsecond before the day is outside too
    frame.loc[1, "occurred_at"] = pd.Timestamp("2025-01-04T00:00:00Z")
    frame.loc[2, "occurred_at"] = pd.Timestamp("2025-01-02T23:59:59.999999Z")
    entry = _assert_one_failure(_telemetry(frame), "occurred_at inside 2025-01-03 UTC", 2, 4)
    assert entry["partial_unexpected_list"] == [
        "2025-01-04T00:00:00+00:00",
        "2025-01-02T23:59:59.999999+00:00",
    ]


def test_telemetry_timestamp_in_the_future() -> None:
    frame = telemetry_frame()
    now = pd.Timestamp("2025-01-03T08:00:00Z")
    # e2 happened exactly at now (allowed); e3 at 08:05 and e4 at 23:59:59.999999 are after now
    outcome = _telemetry(frame, now=now)
    _assert_one_failure(outcome, "occurred_at not after now (2025-01-03 08:00:00 UTC)", 2, 4)


def test_telemetry_negative_duration() -> None:
    frame = telemetry_frame()
    frame.loc[1, "duration_ms"] = -1.0
    entry = _assert_one_failure(_telemetry(frame), "duration_ms >= 0", 1, 4)
    assert entry["partial_unexpected_list"] == ["-1.0"]
    # percentages are of non-null values: 1 of the 3 non-null durations
    assert entry["unexpected_percent"] == pytest.approx(100 / 3)


def test_tickets_null_required_field() -> None:
    frame = tickets_frame()
    frame.loc[0, "topic"] = pd.NA
    _assert_one_failure(_tickets(frame), "topic not null", 1, 3)


def test_tickets_duplicate_ticket_id() -> None:
    frame = tickets_frame()
    frame.loc[2, "ticket_id"] = "T1"
    _assert_one_failure(_tickets(frame), "ticket_id unique", 2, 3)


def test_tickets_unknown_status() -> None:
    frame = tickets_frame()
    frame.loc[1, "status"] = "Escalated"
    entry = _assert_one_failure(_tickets(frame), "status in allowed values", 1, 3)
    assert entry["partial_unexpected_list"] == ["Escalated"]


def test_tickets_created_in_the_future() -> None:
    frame = tickets_frame()
    # one microsecond after NOW; updated_at is not judged
    frame.loc[2, "created_at"] = pd.Timestamp("2025-01-04T06:00:00.000001Z")
    entry = _assert_one_failure(_tickets(frame), "created_at not after now (2025-01-04 06:00:00 UTC)", 1, 3)
    assert entry["partial_unexpected_list"] == ["2025-01-04T06:00:00.000001+00:00"]


def test_tickets_negative_work_minutes() -> None:
    frame = tickets_frame()
    frame.loc[0, "agent_work_minutes"] = -5.0
    _assert_one_failure(_tickets(frame), "agent_work_minutes >= 0", 1, 3)


def test_tickets_negative_reopens() -> None:
    frame = tickets_frame()
    frame.loc[0, "reopens"] = -1
    entry = _assert_one_failure(_tickets(frame), "reopens >= 0", 1, 3)
    assert entry["partial_unexpected_list"] == ["-1"]


def test_tickets_solved_before_created() -> None:
    frame = tickets_frame()
    frame.loc[0, "solved_at"] = pd.Timestamp("2025-01-02T08:59:00Z")
    entry = _assert_one_failure(_tickets(frame), "solved_at not before created_at", 1, 3)
    assert entry["expectation"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert entry["column"] == ["solved_at", "created_at"]
    assert entry["partial_unexpected_list"] == ["(2025-01-02T08:59:00+00:00, 2025-01-02T09:00:00+00:00)"]


def test_incidents_null_required_field() -> None:
    frame = incidents_frame()
    frame.loc[1, "service"] = pd.NA
    frame.loc[2, "service"] = pd.NA
    _assert_one_failure(_incidents(frame), "service not null", 2, 3)


def test_incidents_duplicate_incident_id() -> None:
    frame = incidents_frame()
    frame.loc[1, "incident_id"] = "INC1"
    _assert_one_failure(_incidents(frame), "incident_id unique", 2, 3)


def test_incidents_unknown_severity() -> None:
    frame = incidents_frame()
    frame.loc[0, "severity"] = "sev1"
    entry = _assert_one_failure(_incidents(frame), "severity in allowed values", 1, 3)
    assert entry["partial_unexpected_list"] == ["sev1"]


def test_incidents_started_in_the_future() -> None:
    frame = incidents_frame()
    frame.loc[2, ["started_at", "detected_at", "updated_at"]] = pd.Timestamp("2025-01-05T00:00:00Z")
    _assert_one_failure(_incidents(frame), "started_at not after now (2025-01-04 06:00:00 UTC)", 1, 3)


def test_incidents_resolved_before_started() -> None:
    frame = incidents_frame()
    frame.loc[1, "resolved_at"] = pd.Timestamp("2025-01-03T09:59:59Z")
    _assert_one_failure(_incidents(frame), "resolved_at not before started_at", 1, 3)


def test_incidents_detected_before_started_is_not_an_integrity_failure() -> None:
    # The contract does not constrain detected_at, so staging keeps such rows and the blocking
    # suite must not stop the incident KPIs over them.
    frame = incidents_frame()
    frame.loc[0, "detected_at"] = pd.Timestamp("2025-01-02T08:00:00Z")
    assert _incidents(frame).passed is True


def test_several_failures_are_all_named_in_suite_order() -> None:
    frame = telemetry_frame()
    frame.loc[1, "event_id"] = "e1"
    frame.loc[3, "event_type"] = "bogus"
    frame.loc[0, "duration_ms"] = -2.0
    outcome = _telemetry(frame)
    json.dumps(outcome.metadata)
    assert outcome.passed is False
    assert outcome.metadata["failed"] == 3
    assert outcome.message == (
        "telemetry_events 2025-01-03: 3 of 10 expectations failed: "
        "event_id unique (2 unexpected of 4 rows), "
        "event_type in allowed values (1 unexpected of 4 rows), "
        "duration_ms >= 0 (1 unexpected of 4 rows)"
    )


def test_empty_frame_passes_with_zero_rows() -> None:
    outcome = _telemetry(telemetry_frame().iloc[0:0])
    json.dumps(outcome.metadata)
    assert outcome.passed is True
    assert outcome.metadata == {"expectations": [], "evaluated": 0, "failed": 0, "rows": 0}
    assert (
        outcome.message == "telemetry_events 2025-01-03: no rows to validate; 10 expectations not evaluated"
    )
    assert _tickets(pd.DataFrame()).passed is True


def test_missing_column_fails_with_the_reason() -> None:
    frame = incidents_frame().drop(columns=["resolved_at"])
    outcome = _incidents(frame)
    json.dumps(outcome.metadata)
    assert outcome.passed is False
    failed = _failed(outcome)
    assert [entry["description"] for entry in failed] == ["resolved_at not before started_at"]
    assert failed[0]["unexpected_count"] is None
    assert "resolved_at" in failed[0]["exception"]
    assert "resolved_at not before started_at (could not evaluate: " in outcome.message


StringCast = Callable[[pd.Series], pd.Series]


@pytest.mark.parametrize(
    "cast",
    [lambda s: s.astype("str"), lambda s: s.astype(object)],
    ids=["pandas-str", "object"],
)
def test_other_string_dtypes_and_nanosecond_timestamps_give_the_same_counts(cast: StringCast) -> None:
    frame = tickets_frame()
    frame.loc[1, "status"] = "escalated"
    frame.loc[0, "solved_at"] = pd.Timestamp("2025-01-02T08:00:00Z")
    for column in ("ticket_id", "status", "topic"):
        frame[column] = cast(frame[column])
    frame["solved_at"] = frame["solved_at"].astype("datetime64[ns, UTC]")
    outcome = _tickets(frame)
    json.dumps(outcome.metadata)
    assert {entry["description"]: entry["unexpected_count"] for entry in _failed(outcome)} == {
        "status in allowed values": 1,
        "solved_at not before created_at": 1,
    }


def test_suites_use_the_contract_values() -> None:
    in_set = {
        expectation.column: expectation.value_set
        for suite in (telemetry_suite(DAY, NOW), tickets_suite(NOW), incidents_suite(NOW))
        for expectation in suite.expectations
        if expectation.expectation_type == "expect_column_values_to_be_in_set"
    }
    assert in_set == {
        "event_type": list(contract.EVENT_TYPES),
        "status": list(contract.TICKET_STATUSES),
        "severity": list(contract.SEVERITIES),
    }


# --- big frames: GX judges the breaking rows plus a sample, with the whole frame's outcome ---------


def _big(frame: pd.DataFrame, copies: int, key: str) -> pd.DataFrame:
    """``copies`` of ``frame`` one after the other, with ``key`` made unique."""
    big = pd.concat([frame] * copies, ignore_index=True)
    big[key] = pd.Series([f"{k}_{i}" for i, k in enumerate(big[key])], dtype="string")
    return big


def _whole_and_sampled(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[pd.DataFrame], CheckOutcome], frame: pd.DataFrame
) -> tuple[CheckOutcome, CheckOutcome]:
    sampled = run(frame)
    with monkeypatch.context() as patch:
        patch.setattr(violations, "SAMPLE_ROWS", len(frame) + 1)
        whole = run(frame)
    return whole, sampled


def _same(whole: CheckOutcome, sampled: CheckOutcome) -> None:
    assert sampled.passed == whole.passed
    assert sampled.message == whole.message
    assert whole.metadata["rows_given_to_gx"] == whole.metadata["rows"]
    for a, b in zip(whole.metadata["expectations"], sampled.metadata["expectations"], strict=True):
        assert b == {**a, "unexpected_percent": pytest.approx(a["unexpected_percent"], nan_ok=True)}


def test_a_big_telemetry_day_is_judged_on_its_breaking_rows_and_a_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = _big(telemetry_frame(), 4_000, "event_id")  # 16,000 rows
    # Defects of every kind, all past the sample's first 10,000 rows but one.
    frame.loc[15_000, "user_id"] = pd.NA
    frame.loc[[12_001, 14_002], "event_id"] = "dup"
    frame.loc[5, "event_id"] = "dup"
    frame.loc[13_000, "event_type"] = "task_done"
    frame.loc[11_111, "occurred_at"] = pd.Timestamp("2025-01-04T00:00:00Z")
    frame.loc[15_999, "duration_ms"] = -1.0
    frame.loc[10_500, "occurred_at"] = pd.Timestamp("2025-01-03T07:00:00Z")
    whole, sampled = _whole_and_sampled(
        monkeypatch, lambda f: _telemetry(f, now=pd.Timestamp("2025-01-03T08:00:00Z")), frame
    )
    _same(whole, sampled)
    assert sampled.passed is False
    failed = {
        e["description"]: e["unexpected_count"] for e in sampled.metadata["expectations"] if not e["success"]
    }
    # 3 copies of "dup"; 8,000 events after 08:00 (e3 and e4 of each copy; row 11,111 is an e4)
    assert failed["occurred_at not after now (2025-01-03 08:00:00 UTC)"] == 8_000
    assert failed["user_id not null"] == 1
    assert failed["event_id unique"] == 3
    assert failed["event_type in allowed values"] == 1
    assert failed["occurred_at inside 2025-01-03 UTC"] == 1
    assert failed["duration_ms >= 0"] == 1
    # The sample, plus the breaking rows after it (the future events are every 3rd and 4th row).
    assert 10_000 < sampled.metadata["rows_given_to_gx"] < 16_000
    # Percentages are of the whole frame: 1 null user of 16,000 rows.
    entry = next(e for e in sampled.metadata["expectations"] if e["description"] == "user_id not null")
    assert entry["unexpected_percent"] == pytest.approx(100 / 16_000)


def test_a_big_clean_day_gives_gx_only_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _big(telemetry_frame(), 5_000, "event_id")
    whole, sampled = _whole_and_sampled(monkeypatch, _telemetry, frame)
    _same(whole, sampled)
    assert sampled.passed is True
    assert sampled.metadata["rows_given_to_gx"] == violations.SAMPLE_ROWS


def test_big_ticket_and_incident_exports_are_judged_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = _big(tickets_frame(), 4_000, "ticket_id")
    tickets.loc[11_000, "solved_at"] = pd.Timestamp("2025-01-01T00:00:00Z")  # solved before created
    tickets.loc[11_500, "reopens"] = -2
    tickets.loc[11_700, "status"] = "Solved"
    _same(*_whole_and_sampled(monkeypatch, _tickets, tickets))
    incidents = _big(incidents_frame(), 4_000, "incident_id")
    incidents.loc[11_000, "resolved_at"] = pd.Timestamp("2025-01-01T00:00:00Z")
    incidents.loc[11_001, "severity"] = pd.NA
    _same(*_whole_and_sampled(monkeypatch, _incidents, incidents))


def test_a_staged_day_on_disk_is_judged_a_batch_at_a_time_with_the_whole_frames_outcome(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    frame = _big(telemetry_frame(), 4_000, "event_id")  # 16,000 rows
    frame.loc[15_000, "user_id"] = pd.NA
    # Copies of one id in three different batches of 3,000 rows, one of them inside the sample.
    frame.loc[[5, 12_001, 14_002], "event_id"] = "dup"
    frame.loc[13_000, "event_type"] = "task_done"
    frame.loc[15_999, "duration_ms"] = -1.0
    frame = frame.reindex(columns=list(TELEMETRY_EVENTS.column_names)).astype(TELEMETRY_EVENTS.dtypes())
    path = tmp_path / "events.parquet"
    write_events(frame, EventsFile(path, {"kpi_pipeline.token": "t"}))
    monkeypatch.setattr(violations, "BATCH_ROWS", 3_000)
    whole, _ = _whole_and_sampled(monkeypatch, _telemetry, frame)
    on_disk = _telemetry(path)
    _same(whole, on_disk)
    failed = {
        e["description"]: e["unexpected_count"] for e in on_disk.metadata["expectations"] if not e["success"]
    }
    assert failed == {
        "user_id not null": 1,
        "event_id unique": 3,
        "event_type in allowed values": 1,
        "duration_ms >= 0": 1,
    }
    # The first 10,000 rows and the 5 breaking rows after them, never the whole file.
    assert on_disk.metadata["rows_given_to_gx"] == 10_005
