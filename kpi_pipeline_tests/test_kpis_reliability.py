"""Tests of kpi_incidents (incident_impact) and kpi_reliability_weekly."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kpi_pipeline.config import KpiConfig, Workflow
from kpi_pipeline.kpis.reliability import (
    INCIDENT_COLUMNS,
    RELIABILITY_COLUMNS,
    incident_impact,
    reliability_weekly,
)

CONFIG = KpiConfig(
    workflows={
        "access_request": Workflow(topics=("access", "permissions")),
        "data_export": Workflow(topics=("export",)),
        "invoice_download": Workflow(topics=("billing",)),
    }
)


def _ts(value: str | None) -> pd.Timestamp:
    """UTC timestamp (NaT for None)."""
    return pd.Timestamp(value, tz="UTC") if value else pd.NaT


def _incidents(rows: list[tuple[str, str, str, str, str | None, str]]) -> pd.DataFrame:
    """Staged incidents from (id, severity, started_at, detected_at, resolved_at, affected) tuples."""
    frame = pd.DataFrame(
        rows,
        columns=["incident_id", "severity", "started_at", "detected_at", "resolved_at", "affected_workflows"],
    )
    for col in ("started_at", "detected_at", "resolved_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["service"] = "api"
    frame["title"] = "t"
    frame["root_cause"] = pd.NA
    frame["updated_at"] = frame["started_at"]
    return frame


def _attempts(rows: list[tuple[str, str, bool]]) -> pd.DataFrame:
    """Attempts from (workflow, started_at, completed) tuples."""
    frame = pd.DataFrame(rows, columns=["workflow", "started_at", "completed"])
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    frame["user_id"] = "u1"
    frame["completed_at"] = frame["started_at"].where(frame["completed"])
    return frame


def _tickets(rows: list[tuple[str, str]]) -> pd.DataFrame:
    """Tickets from (topic, created_at) tuples."""
    frame = pd.DataFrame(rows, columns=["topic", "created_at"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["ticket_id"] = [f"t{i}" for i in range(len(frame))]
    return frame


def test_resolved_incident_half_open_window_baseline_and_topics() -> None:
    incidents = _incidents(
        [
            # affected list given unsorted: output is sorted
            (
                "I1",
                "SEV2",
                "2025-03-10T10:00:00Z",
                "2025-03-10T10:15:00Z",
                "2025-03-10T12:00:00Z",
                "data_export;access_request",
            )
        ]
    )
    attempts = _attempts(
        [
            ("access_request", "2025-03-10T10:00:00Z", True),  # exactly started_at: during
            ("access_request", "2025-03-10T11:00:00Z", False),  # during
            ("data_export", "2025-03-10T11:59:59Z", True),  # during
            ("access_request", "2025-03-10T12:00:00Z", True),  # exactly resolved_at: not during
            ("invoice_download", "2025-03-10T11:00:00Z", False),  # not an affected workflow
            ("access_request", "2025-03-03T10:00:00Z", True),  # started_at - 168 h: baseline
            ("access_request", "2025-03-09T10:00:00Z", True),  # baseline
            ("data_export", "2025-03-08T10:00:00Z", True),  # baseline
            ("data_export", "2025-03-10T09:59:59Z", False),  # baseline (1 s before start)
            ("access_request", "2025-03-03T09:59:59Z", True),  # before the baseline
        ]
    )
    tickets = _tickets(
        [
            ("access", "2025-03-10T10:30:00Z"),  # during
            ("export", "2025-03-10T11:00:00Z"),  # during
            ("billing", "2025-03-10T11:00:00Z"),  # topic of an unaffected workflow
            ("permissions", "2025-03-10T12:00:00Z"),  # at resolved_at: not during
            ("unmapped", "2025-03-10T10:45:00Z"),  # topic of no workflow
            ("access", "2025-03-09T10:00:00Z"),  # baseline
            ("export", "2025-03-05T10:00:00Z"),  # baseline
            ("access", "2025-03-03T09:00:00Z"),  # before the baseline
        ]
    )
    out = incident_impact(incidents, attempts, tickets, CONFIG, pd.Timestamp("2025-03-20T00:00:00Z"))
    assert tuple(out.columns) == INCIDENT_COLUMNS
    row = out.iloc[0]
    assert row["affected_workflows"] == "access_request;data_export"
    assert row["resolved_at"] == _ts("2025-03-10T12:00:00Z")
    assert str(out["started_at"].dt.tz) == "UTC"
    assert row["minutes_to_detect"] == 15.0
    assert row["minutes_to_resolve"] == 120.0
    # during [10:00, 12:00): 3 attempts, 2 completed -> 2/3
    assert row["attempts_during"] == 3
    assert row["completion_rate_during"] == pytest.approx(2 / 3)
    # baseline [03-03 10:00, 03-10 10:00): 4 attempts, 3 completed -> 3/4
    assert row["baseline_attempts"] == 4
    assert row["baseline_completion_rate"] == 0.75
    # 2/3 - 3/4 = -1/12
    assert row["completion_rate_delta"] == pytest.approx(-1 / 12)
    # tickets on access/permissions/export in the window: 2 over 2 hours -> 1.0 per hour
    assert row["tickets_during"] == 2
    assert row["window_hours"] == 2.0
    assert row["tickets_per_hour_during"] == 1.0
    # 2 baseline tickets / 168 hours
    assert row["baseline_tickets_per_hour"] == 2 / 168


def test_open_incident_window_ends_at_telemetry_until() -> None:
    incidents = _incidents(
        [("I2", "SEV1", "2025-03-11T08:00:00Z", "2025-03-11T08:30:00Z", None, "access_request")]
    )
    attempts = _attempts(
        [
            ("access_request", "2025-03-11T09:00:00Z", True),  # during
            ("access_request", "2025-03-11T13:00:00Z", False),  # during
            ("access_request", "2025-03-11T14:00:00Z", True),  # = telemetry_until: not during
            ("access_request", "2025-03-10T10:00:00Z", True),  # baseline
            ("access_request", "2025-03-10T11:00:00Z", False),  # baseline
            ("access_request", "2025-03-04T08:00:00Z", True),  # baseline start: baseline
            ("access_request", "2025-03-04T07:59:59Z", True),  # before the baseline
        ]
    )
    tickets = _tickets([("access", "2025-03-11T09:00:00Z"), ("permissions", "2025-03-10T12:00:00Z")])
    out = incident_impact(incidents, attempts, tickets, CONFIG, pd.Timestamp("2025-03-11T14:00:00Z"))
    row = out.iloc[0]
    assert pd.isna(row["resolved_at"])
    assert math.isnan(row["minutes_to_resolve"])
    assert row["minutes_to_detect"] == 30.0
    assert row["window_end"] == _ts("2025-03-11T14:00:00Z")
    # window [08:00, 14:00) = 6 hours: 2 attempts, 1 completed -> 0.5
    assert row["window_hours"] == 6.0
    assert row["attempts_during"] == 2
    assert row["completion_rate_during"] == 0.5
    # baseline: 3 attempts, 2 completed -> 2/3; delta 0.5 - 2/3 = -1/6
    assert row["baseline_completion_rate"] == pytest.approx(2 / 3)
    assert row["completion_rate_delta"] == pytest.approx(-1 / 6)
    # 1 ticket in 6 hours; 1 baseline ticket / 168
    assert row["tickets_per_hour_during"] == pytest.approx(1 / 6)
    assert row["baseline_tickets_per_hour"] == 1 / 168


def test_open_incident_without_telemetry_has_an_empty_window() -> None:
    incidents = _incidents(
        [("I3", "SEV3", "2025-03-11T08:00:00Z", "2025-03-11T08:00:00Z", None, "access_request")]
    )
    attempts = _attempts(
        [("access_request", "2025-03-11T08:00:00Z", True), ("access_request", "2025-03-11T07:00:00Z", True)]
    )
    tickets = _tickets([("access", "2025-03-11T08:00:00Z")])
    row = incident_impact(incidents, attempts, tickets, CONFIG, None).iloc[0]
    # [08:00, 08:00) is empty: nothing during, rates NULL
    assert (row["attempts_during"], row["tickets_during"], row["window_hours"]) == (0, 0, 0.0)
    assert math.isnan(row["completion_rate_during"])
    assert math.isnan(row["completion_rate_delta"])
    assert math.isnan(row["tickets_per_hour_during"])
    # the baseline is still measured: 1 attempt, completed
    assert row["baseline_completion_rate"] == 1.0
    assert row["minutes_to_detect"] == 0.0
    # telemetry ending before the incident started also gives an empty window, never a negative one
    early = incident_impact(incidents, attempts, tickets, CONFIG, pd.Timestamp("2025-03-11T07:30:00Z")).iloc[
        0
    ]
    assert (early["window_end"], early["window_hours"]) == (_ts("2025-03-11T08:00:00Z"), 0.0)


def test_unknown_or_no_workflows_have_no_topics() -> None:
    incidents = _incidents(
        [
            ("I4", "SEV2", "2025-03-11T08:00:00Z", "2025-03-11T08:00:00Z", "2025-03-11T10:00:00Z", "legacy"),
            ("I5", "SEV4", "2025-03-11T08:00:00Z", "2025-03-11T08:00:00Z", "2025-03-11T10:00:00Z", ""),
        ]
    )
    attempts = _attempts([("legacy", "2025-03-11T09:00:00Z", False)])
    tickets = _tickets([("access", "2025-03-11T09:00:00Z")])
    out = incident_impact(incidents, attempts, tickets, CONFIG, None).set_index("incident_id")
    # I4: the attempt of its (unconfigured) workflow counts, no topic so no tickets
    assert out.loc["I4", "affected_workflows"] == "legacy"
    assert out.loc["I4", "attempts_during"] == 1
    assert out.loc["I4", "completion_rate_during"] == 0.0
    assert out.loc["I4", "tickets_during"] == 0
    assert out.loc["I4", "tickets_per_hour_during"] == 0.0  # 0 tickets / 2 hours
    # I5: no affected workflow at all
    assert out.loc["I5", "affected_workflows"] == ""
    assert out.loc["I5", "attempts_during"] == 0
    assert math.isnan(out.loc["I5", "completion_rate_during"])


def test_no_incidents_gives_an_empty_table() -> None:
    out = incident_impact(_incidents([]), _attempts([]), _tickets([]), CONFIG, None)
    assert out.empty
    assert tuple(out.columns) == INCIDENT_COLUMNS
    weekly = reliability_weekly(out)
    assert weekly.empty
    assert tuple(weekly.columns) == RELIABILITY_COLUMNS


def test_reliability_weekly_means_with_an_open_incident() -> None:
    incidents = _incidents(
        [
            # week 2025-03-10, SEV2: detect 15 / resolve 120; detect 5 / resolve 60; open, detect 45
            ("A", "SEV2", "2025-03-10T10:00:00Z", "2025-03-10T10:15:00Z", "2025-03-10T12:00:00Z", ""),
            ("B", "SEV2", "2025-03-12T10:00:00Z", "2025-03-12T10:05:00Z", "2025-03-12T11:00:00Z", ""),
            ("C", "SEV2", "2025-03-16T23:59:00Z", "2025-03-17T00:44:00Z", None, ""),  # Sunday
            # week 2025-03-10, SEV1: open only, detect 30
            ("D", "SEV1", "2025-03-11T08:00:00Z", "2025-03-11T08:30:00Z", None, ""),
            # week 2025-03-17, SEV2: Monday 00:00, detect 0 / resolve 30
            ("E", "SEV2", "2025-03-17T00:00:00Z", "2025-03-17T00:00:00Z", "2025-03-17T00:30:00Z", ""),
        ]
    )
    kpis = incident_impact(
        incidents, _attempts([]), _tickets([]), CONFIG, pd.Timestamp("2025-03-18T00:00:00Z")
    )
    out = reliability_weekly(kpis)
    assert tuple(out.columns) == RELIABILITY_COLUMNS
    assert list(zip(out["week"], out["severity"], strict=True)) == [
        ("2025-03-10", "SEV1"),
        ("2025-03-10", "SEV2"),
        ("2025-03-17", "SEV2"),
    ]
    assert out["incidents"].tolist() == [1, 3, 1]
    assert out["open_incidents"].tolist() == [1, 1, 0]
    # SEV1: 30; SEV2 week 03-10: (15 + 5 + 45) / 3 = 65 / 3; week 03-17: 0
    assert out["mean_minutes_to_detect"].tolist() == pytest.approx([30.0, 65 / 3, 0.0])
    # SEV1: none resolved -> NaN; SEV2 week 03-10: (120 + 60) / 2 = 90 (C is open); week 03-17: 30
    assert math.isnan(out["mean_minutes_to_resolve"].iloc[0])
    assert out["mean_minutes_to_resolve"].tolist()[1:] == [90.0, 30.0]
