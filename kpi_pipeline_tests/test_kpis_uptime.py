"""kpi_uptime_monthly on hand-computed cases: overlapping incidents of one service (the largest
weight at each instant), incidents across month boundaries, open incidents until the as-of time,
and the as-of rule itself."""

from __future__ import annotations

import pandas as pd
import pytest

from kpi_pipeline.config import Reliability, parse_config
from kpi_pipeline.kpis.uptime import uptime_as_of, uptime_monthly
from kpi_pipeline.summary import uptime_line

DEFAULT = Reliability()


def incidents(*rows: tuple[str, str, str, str | None]) -> pd.DataFrame:
    """(service, severity, started_at, resolved_at) rows as the staged incidents hold them."""
    frame = pd.DataFrame(rows, columns=["service", "severity", "started_at", "resolved_at"])
    frame["incident_id"] = [f"i{n}" for n in range(len(frame))]
    for column in ("started_at", "resolved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def rows(frame: pd.DataFrame) -> list[tuple]:
    return [
        (r.month, r.service, r.minutes, r.incidents, round(r.outage_minutes, 9))
        for r in frame.itertuples(index=False)
    ]


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_overlapping_incidents_of_one_service_count_the_largest_weight_at_each_instant() -> None:
    # SEV3 (0.3) 10:00-14:00 contains SEV1 (1.0) 11:00-12:00; SEV2 (1.0) 13:30-15:00 overlaps its end.
    # 10-11 at 0.3 = 18; 11-12 at 1 = 60; 12-13:30 at 0.3 = 27; 13:30-15 at 1 = 90: 195 minutes.
    frame = incidents(
        ("api", "SEV3", "2025-03-10T10:00:00Z", "2025-03-10T14:00:00Z"),
        ("api", "SEV1", "2025-03-10T11:00:00Z", "2025-03-10T12:00:00Z"),
        ("api", "SEV2", "2025-03-10T13:30:00Z", "2025-03-10T15:00:00Z"),
        ("api", "SEV4", "2025-03-10T09:00:00Z", "2025-03-10T16:00:00Z"),  # weight 0: counted, no outage
    )
    out = uptime_monthly(frame, at("2025-03-31T00:00:00"), DEFAULT)
    assert rows(out) == [("2025-03-01", "api", 30 * 1440.0, 4, 195.0)]
    [row] = out.itertuples(index=False)
    assert row.uptime == pytest.approx(1 - 195 / 43200, abs=1e-12)
    assert row.slo == 0.999
    assert row.error_budget_minutes == pytest.approx(0.001 * 43200, abs=1e-9)
    assert row.budget_used == pytest.approx(195 / 43.2, abs=1e-9)


def test_an_incident_across_month_boundaries_is_split_at_midnight_utc() -> None:
    # SEV1 from Jan 31 23:00 to Mar 1 00:30: 60 minutes of January, all of February, 30 of March.
    frame = incidents(("db", "SEV1", "2025-01-31T23:00:00Z", "2025-03-01T00:30:00Z"))
    out = uptime_monthly(frame, at("2025-03-02T00:00:00"), DEFAULT)
    assert rows(out) == [
        ("2025-01-01", "db", 31 * 1440.0, 1, 60.0),
        ("2025-02-01", "db", 28 * 1440.0, 1, 28 * 1440.0),
        ("2025-03-01", "db", 1440.0, 1, 30.0),
    ]
    assert out["uptime"].tolist()[1] == 0.0  # a whole month down at full weight: exactly 0


def test_an_open_incident_lasts_until_the_as_of_time_and_months_run_to_it() -> None:
    # web: a resolved incident in January, an open SEV3 from Mar 5 00:00; as-of Mar 6 12:00.
    # January: 120 minutes; February: nothing (a row all the same); March: 36 h at 0.3 = 648.
    frame = incidents(
        ("web", "SEV2", "2025-01-15T08:00:00Z", "2025-01-15T10:00:00Z"),
        ("web", "SEV3", "2025-03-05T00:00:00Z", None),
    )
    out = uptime_monthly(frame, at("2025-03-06T12:00:00"), DEFAULT)
    assert rows(out) == [
        ("2025-01-01", "web", 31 * 1440.0, 1, 120.0),
        ("2025-02-01", "web", 28 * 1440.0, 0, 0.0),
        ("2025-03-01", "web", 5.5 * 1440.0, 1, 648.0),
    ]
    assert out["uptime"].tolist()[1] == 1.0


def test_services_are_apart_and_empty_or_future_incidents_are_no_outage() -> None:
    frame = incidents(
        ("api", "SEV1", "2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z"),
        ("api", "SEV1", "2025-03-02T00:00:00Z", "2025-03-02T00:00:00Z"),  # zero length: never active
        ("api", "SEV1", "2025-03-03T00:00:00Z", "2025-03-02T00:00:00Z"),  # resolved before it started
        ("web", "SEV1", "2025-03-01T00:30:00Z", "2025-03-01T02:00:00Z"),
        ("late", "SEV1", "2025-04-02T00:00:00Z", None),  # starts after the as-of time: no month yet
    )
    out = uptime_monthly(frame, at("2025-03-11T00:00:00"), DEFAULT)
    assert rows(out) == [
        ("2025-03-01", "api", 14400.0, 1, 60.0),
        ("2025-03-01", "web", 14400.0, 1, 90.0),
    ]


def test_no_minutes_yet_and_a_zero_budget_leave_their_ratios_null() -> None:
    frame = incidents(("api", "SEV1", "2025-02-28T23:00:00Z", None))
    strict = parse_config({"reliability": {"slo": 1}}, "kpi.yaml").reliability
    out = uptime_monthly(frame, at("2025-03-01T00:00:00"), strict)
    assert rows(out) == [("2025-02-01", "api", 28 * 1440.0, 1, 60.0), ("2025-03-01", "api", 0.0, 0, 0.0)]
    assert out["uptime"].isna().tolist() == [False, True]
    assert out["error_budget_minutes"].tolist() == [0.0, 0.0]
    assert out["budget_used"].isna().all()


def test_outage_weights_given_in_kpi_yaml_replace_only_their_severities() -> None:
    weights = parse_config({"reliability": {"outage_weight": {"SEV3": 0.5}}}, "kpi.yaml").reliability
    assert weights.outage_weight == {"SEV1": 1.0, "SEV2": 1.0, "SEV3": 0.5, "SEV4": 0.0}
    frame = incidents(("api", "SEV3", "2025-03-01T00:00:00Z", "2025-03-01T02:00:00Z"))
    assert rows(uptime_monthly(frame, at("2025-03-02T00:00:00"), weights))[0][4] == 60.0


def test_the_as_of_time_is_the_latest_telemetry_else_the_latest_incident_time() -> None:
    frame = incidents(("api", "SEV1", "2025-03-01T00:00:00Z", "2025-03-04T00:00:00Z"))
    frame["updated_at"] = pd.to_datetime(["2025-03-05T06:00:00Z"], utc=True)
    assert uptime_as_of(frame, at("2025-03-09T00:00:00")) == pd.Timestamp("2025-03-09T00:00:00")
    assert uptime_as_of(frame, None) == pd.Timestamp("2025-03-05T06:00:00")
    assert uptime_as_of(frame.iloc[0:0], None) is None
    assert uptime_monthly(frame.iloc[0:0], None, DEFAULT).empty


def test_the_demo_summary_names_the_latest_months_lowest_uptime() -> None:
    frame = incidents(
        ("api", "SEV1", "2025-02-27T00:00:00Z", "2025-02-27T01:00:00Z"),
        ("api", "SEV3", "2025-03-01T00:00:00Z", "2025-03-01T10:00:00Z"),  # 180 weighted minutes
        ("web", "SEV2", "2025-03-02T00:00:00Z", "2025-03-02T00:30:00Z"),  # 30
    )
    out = uptime_monthly(frame, at("2025-03-11T00:00:00"), DEFAULT)  # 14,400 minutes of March
    assert uptime_line(out) == (
        "uptime in 2025-03: lowest api 98.750% of 2 service(s), error budget used 1250% (SLO 99.900%)"
    )
