"""Tests for the non-GX data-quality rules on hand-made numbers and frames."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.quality.rules import (
    freshness,
    funnel_monotonic,
    is_rate_column,
    kpi_sanity,
    quarantine_rate,
    reconciliation,
    schema_drift,
    unknown_requesters,
    unknown_workflows,
    volume_anomaly,
)
from kpi_pipeline.tables import TABLES

NAN = float("nan")
LABEL = "telemetry_events 2025-01-03"


def jsonable(outcome: CheckOutcome) -> dict[str, object]:
    """The outcome's metadata after a strict JSON round trip (no NaN allowed)."""
    return json.loads(json.dumps(outcome.metadata, allow_nan=False))


# --- reconciliation -------------------------------------------------------------------------


def test_reconciliation_passes_when_every_raw_row_is_accounted_for() -> None:
    # 100 raw = 90 staged + 4 superseded + 6 quarantined
    out = reconciliation("support_tickets", 100, 90, 6, superseded_versions=4)
    assert out.passed is True
    assert out.severity == "ERROR"
    assert jsonable(out) == {
        "raw_rows": 100,
        "staged_rows": 90,
        "superseded_versions": 4,
        "quarantined_rows": 6,
        "difference": 0,
    }
    assert out.message.startswith("support_tickets: reconciled, 100 raw rows")


def test_reconciliation_fails_with_the_difference() -> None:
    # 10,000 raw − (9,400 staged + 0 superseded + 500 quarantined = 9,900) = 100 lost
    out = reconciliation(LABEL, 10_000, 9_400, 500)
    assert out.passed is False
    assert out.severity == "ERROR"
    assert jsonable(out)["difference"] == 100
    assert jsonable(out)["superseded_versions"] == 0
    assert "reconciliation failed" in out.message
    assert LABEL in out.message
    assert "= 9,900 (difference +100)" in out.message


def test_reconciliation_reports_a_negative_difference_for_double_counting() -> None:
    # 10 raw − (8 staged + 1 superseded + 3 quarantined = 12) = −2
    out = reconciliation(LABEL, 10, 8, 3, superseded_versions=1)
    assert out.passed is False
    assert out.metadata["difference"] == -2
    assert "(difference -2)" in out.message


# --- quarantine_rate ------------------------------------------------------------------------


def test_quarantine_rate_above_error_limit_fails_with_error_and_top_reasons() -> None:
    reasons = {
        "bad_timestamp": 50,
        "malformed_record": 2_000,
        "duplicate_event_id": 50,
        "missing_field:user_id": 10,
    }
    # 2,100 of 10,000 = 0.21 > 0.05; top 3 by rows desc, then name: the two 50s in name order
    out = quarantine_rate(LABEL, 10_000, 2_100, reasons, error_above=0.05, warn_above=0.005, top=3)
    assert out.passed is False
    assert out.severity == "ERROR"
    meta = jsonable(out)
    assert meta["rate"] == pytest.approx(0.21)
    assert meta["error_above"] == 0.05
    assert meta["warn_above"] == 0.005
    assert meta["top_reasons"] == [
        {"reason": "malformed_record", "rows": 2000, "share": 0.2},  # 2,000 / 10,000
        {"reason": "bad_timestamp", "rows": 50, "share": 0.005},  # 50 / 10,000
        {"reason": "duplicate_event_id", "rows": 50, "share": 0.005},
    ]
    assert out.message == (
        "telemetry_events 2025-01-03: 21.0% of 10,000 raw rows quarantined (limit 5.0%); "
        "top reasons: malformed_record 2,000, bad_timestamp 50, duplicate_event_id 50"
    )


def test_quarantine_rate_between_limits_warns() -> None:
    # 10 / 1,000 = 0.01: above 0.005, not above 0.05
    out = quarantine_rate(LABEL, 1_000, 10, {"bad_value:duration_ms": 10}, 0.05, 0.005)
    assert out.passed is False
    assert out.severity == "WARN"
    assert jsonable(out)["rate"] == 0.01
    assert "1.0% of 1,000 raw rows quarantined (warn above 0.5%)" in out.message


def test_quarantine_rate_at_the_limit_passes_because_limits_are_strict() -> None:
    # 5 / 1,000 = 0.005, not strictly above warn_above 0.005
    out = quarantine_rate(LABEL, 1_000, 5, {"bad_timestamp": 5}, 0.05, 0.005)
    assert out.passed is True
    assert out.severity == "ERROR"
    assert jsonable(out)["top_reasons"] == [{"reason": "bad_timestamp", "rows": 5, "share": 0.005}]
    assert "0.5% of 1,000 raw rows quarantined (within 0.5%)" in out.message


def test_quarantine_rate_without_raw_rows_passes_with_no_rate() -> None:
    out = quarantine_rate(LABEL, 0, 0, {}, 0.05, 0.005)
    assert out.passed is True
    meta = jsonable(out)
    assert meta["rate"] is None
    assert meta["top_reasons"] == []
    assert "no raw rows" in out.message


# --- schema_drift ---------------------------------------------------------------------------


def test_schema_drift_passes_when_fields_are_stable() -> None:
    out = schema_drift(LABEL, {"event_id": 10, "release": 4}, {}, {"event_id", "release"})
    assert out.passed is True
    assert out.severity == "WARN"
    assert jsonable(out) == {"unknown_fields": {}, "vanished_fields": []}


def test_schema_drift_warns_on_unknown_and_vanished_fields() -> None:
    # release: seen before, 0 values now; device: seen before, absent now; event_id still carries values
    fields_seen = {"event_id": 10, "release": 0}
    out = schema_drift(LABEL, fields_seen, {"session_id": 7}, {"event_id", "release", "device"})
    assert out.passed is False
    assert out.severity == "WARN"
    assert jsonable(out) == {"unknown_fields": {"session_id": 7}, "vanished_fields": ["device", "release"]}
    assert out.message == (
        "telemetry_events 2025-01-03: schema drift, 1 unknown field(s): session_id (7 rows); "
        "2 vanished field(s): device, release"
    )


def test_schema_drift_warns_on_unknown_field_alone() -> None:
    out = schema_drift(LABEL, {"event_id": 3}, {"extra": 0}, set())
    assert out.passed is False
    assert jsonable(out) == {"unknown_fields": {"extra": 0}, "vanished_fields": []}


# --- volume_anomaly -------------------------------------------------------------------------


def test_volume_within_tolerance_passes() -> None:
    # last 3 of [1, 100, 120, 80] = [100, 120, 80], median 100 → [50, 150]; 150 is inside
    out = volume_anomaly(LABEL, 150, [1, 100, 120, 80], tolerance=0.5, window=3)
    assert out.passed is True
    assert out.severity == "WARN"
    assert jsonable(out) == {"staged_rows": 150, "median": 100.0, "lower": 50.0, "upper": 150.0, "history": 3}


def test_volume_outside_tolerance_warns() -> None:
    # history [100, 200] (window 7 > 2 values), median (100 + 200) / 2 = 150 → [75, 225]; 40 < 75
    out = volume_anomaly(LABEL, 40, [100, 200], tolerance=0.5, window=7)
    assert out.passed is False
    assert out.severity == "WARN"
    assert jsonable(out) == {"staged_rows": 40, "median": 150.0, "lower": 75.0, "upper": 225.0, "history": 2}
    assert "40 staged rows, outside [75.0, 225.0]" in out.message
    assert "median 150.0 of the last 2 partitions" in out.message


def test_volume_without_history_passes_with_a_note() -> None:
    out = volume_anomaly(LABEL, 999, [], tolerance=0.5, window=7)
    assert out.passed is True
    assert jsonable(out) == {"staged_rows": 999, "median": None, "lower": None, "upper": None, "history": 0}
    assert "not enough history" in out.message


def test_volume_rejects_a_window_below_one() -> None:
    with pytest.raises(ValueError, match="window must be at least 1"):
        volume_anomaly(LABEL, 1, [1], tolerance=0.5, window=0)


# --- kpi_sanity -----------------------------------------------------------------------------


def completion_row(**values: object) -> dict[str, object]:
    """A consistent kpi_task_completion_daily row (10 attempts), overridden by ``values``."""
    row: dict[str, object] = {
        "date": "2025-01-03",
        "workflow": "w",
        "persona": "admin",
        "channel": "web",
        "attempts": 10,
        "completions": 8,
        "completion_rate": 0.8,
        "first_pass_completions": 6,
        "first_pass_rate": 0.6,
        "error_attempts": 3,
        "error_rate": 0.3,
        "fallbacks": 2,
        "fallback_rate": 0.2,
        "fallback_tickets": 1,
        "fallback_to_ticket_rate": 0.5,
        "median_seconds_to_complete": 30.0,
        "p90_seconds_to_complete": 90.0,
    }
    row.update(values)
    return row


def completion(rows: list[dict[str, object]]) -> pd.DataFrame:
    """kpi_task_completion_daily frame with the warehouse dtypes."""
    return pd.DataFrame(rows).astype(TABLES["kpi_task_completion_daily"].dtypes())


def test_rate_columns_follow_the_naming_rule() -> None:
    assert is_rate_column("completion_rate", "float")
    assert is_rate_column("adoption_rate_28d", "float")
    assert is_rate_column("completion_rate_prev", "float")
    assert is_rate_column("completion_rate_during", "float")
    assert is_rate_column("stickiness", "float")
    assert is_rate_column("conversion_from_start", "float")
    assert is_rate_column("baseline_completion_rate", "float")
    assert not is_rate_column("conversion_from_previous", "float")
    assert not is_rate_column("self_service_ratio", "float")
    assert not is_rate_column("completion_rate_delta", "float")


def test_kpi_sanity_passes_on_consistent_rows_with_null_rates() -> None:
    rows = [
        completion_row(),
        # no fallbacks: fallback_to_ticket_rate is NULL, which is allowed
        completion_row(
            persona="dev", fallbacks=0, fallback_rate=0.0, fallback_tickets=0, fallback_to_ticket_rate=NAN
        ),
    ]
    out = kpi_sanity("kpi_task_completion_daily", completion(rows), "kpi_task_completion_daily 2025-01-03")
    assert out.passed is True
    assert out.severity == "ERROR"
    assert jsonable(out) == {"rows": 2, "violations": {}}
    assert out.message == "kpi_task_completion_daily 2025-01-03: KPI sanity passed on 2 rows"


def test_kpi_sanity_passes_on_an_empty_frame() -> None:
    out = kpi_sanity("kpi_engagement_daily", pd.DataFrame())
    assert out.passed is True
    assert jsonable(out) == {"rows": 0, "violations": {}}


def test_kpi_sanity_reports_duplicate_grain_keys() -> None:
    # key (…, admin, web) 3 times, (…, dev, web) twice, (…, ops, web) once → 2 duplicate keys over 5 rows
    rows = [completion_row()] * 3 + [completion_row(persona="dev")] * 2 + [completion_row(persona="ops")]
    out = kpi_sanity("kpi_task_completion_daily", completion(rows))
    assert out.passed is False
    assert out.severity == "ERROR"
    entry = jsonable(out)["violations"]["unique grain (date, workflow, persona, channel)"]
    assert entry == {
        "rows": 5,
        "duplicate_keys": 2,
        "examples": [
            {"date": "2025-01-03", "workflow": "w", "persona": "admin", "channel": "web"},
            {"date": "2025-01-03", "workflow": "w", "persona": "dev", "channel": "web"},
        ],
    }
    assert list(jsonable(out)["violations"]) == ["unique grain (date, workflow, persona, channel)"]
    assert "unique grain (date, workflow, persona, channel): 5 rows" in out.message


def test_kpi_sanity_reports_a_rate_above_one() -> None:
    rows = [completion_row(), completion_row(persona="dev", completion_rate=1.2)]
    out = kpi_sanity("kpi_task_completion_daily", completion(rows))
    assert out.passed is False
    assert jsonable(out)["violations"] == {
        "completion_rate in [0, 1]": {
            "rows": 1,
            "examples": [
                {
                    "date": "2025-01-03",
                    "workflow": "w",
                    "persona": "dev",
                    "channel": "web",
                    "completion_rate": 1.2,
                }
            ],
        }
    }
    assert (
        "KPI sanity failed, 1 invariant(s) broken in 2 rows — completion_rate in [0, 1]: 1 rows"
        in out.message
    )


def test_kpi_sanity_reports_a_negative_count() -> None:
    # attempts −1: negative, and completions 0 > −1 also breaks completions <= attempts
    rows = [
        completion_row(
            attempts=-1,
            completions=0,
            first_pass_completions=0,
            error_attempts=0,
            fallbacks=0,
            fallback_tickets=0,
            completion_rate=NAN,
            first_pass_rate=NAN,
            error_rate=NAN,
            fallback_rate=NAN,
            fallback_to_ticket_rate=NAN,
        )
    ]
    out = kpi_sanity("kpi_task_completion_daily", completion(rows))
    assert out.passed is False
    violations = jsonable(out)["violations"]
    assert set(violations) == {
        "attempts >= 0",
        "completions <= attempts",
        "error_attempts <= attempts",
        "fallbacks <= attempts",
    }
    assert violations["attempts >= 0"]["rows"] == 1
    assert violations["attempts >= 0"]["examples"][0]["attempts"] == -1


def test_kpi_sanity_reports_completions_above_attempts_and_its_siblings() -> None:
    rows = [
        completion_row(completions=11, completion_rate=1.0),  # 11 > 10 attempts
        completion_row(persona="dev", first_pass_completions=9, first_pass_rate=0.9),  # 9 > 8 completions
        completion_row(persona="ops", fallback_tickets=3, fallback_to_ticket_rate=1.0),  # 3 > 2 fallbacks
        completion_row(persona="pm", error_attempts=12, error_rate=1.0),  # 12 > 10 attempts
    ]
    out = kpi_sanity("kpi_task_completion_daily", completion(rows))
    assert out.passed is False
    violations = jsonable(out)["violations"]
    assert set(violations) == {
        "completions <= attempts",
        "first_pass_completions <= completions",
        "fallback_tickets <= fallbacks",
        "error_attempts <= attempts",
    }
    assert violations["completions <= attempts"] == {
        "rows": 1,
        "examples": [
            {
                "date": "2025-01-03",
                "workflow": "w",
                "persona": "admin",
                "channel": "web",
                "completions": 11,
                "attempts": 10,
            }
        ],
    }
    assert violations["first_pass_completions <= completions"]["examples"][0]["persona"] == "dev"
    assert violations["fallback_tickets <= fallbacks"]["examples"][0]["persona"] == "ops"
    assert "4 invariant(s) broken in 4 rows" in out.message


def funnel(rows: list[tuple[str, str, int, str, int]]) -> pd.DataFrame:
    """kpi_funnel_daily rows from (date, workflow, step_index, step, reached); conversions from reached."""
    data = pd.DataFrame(rows, columns=["date", "workflow", "step_index", "step", "reached"])
    group = data.groupby(["date", "workflow"])["reached"]
    start = group.transform("first")
    previous = group.shift(1)
    data["conversion_from_start"] = (data["reached"] / start).where(start > 0)
    data["conversion_from_previous"] = (data["reached"] / previous).where(previous > 0)
    data["dropped_from_previous"] = previous - data["reached"]
    return data.astype(TABLES["kpi_funnel_daily"].dtypes())


def test_kpi_sanity_passes_on_a_consistent_funnel() -> None:
    rows = [
        ("2025-01-03", "w", 0, "started", 10),
        ("2025-01-03", "w", 1, "a", 6),
        ("2025-01-03", "w", 2, "b", 8),  # more than step 1 (presence) but not more than started
        ("2025-01-03", "w", 3, "completed", 5),
    ]
    out = kpi_sanity("kpi_funnel_daily", funnel(rows))
    assert out.passed is True
    assert jsonable(out)["violations"] == {}


def test_kpi_sanity_reports_a_funnel_step_above_started() -> None:
    rows = [
        ("2025-01-03", "w", 0, "started", 10),
        ("2025-01-03", "w", 1, "a", 11),  # 11 > 10 started; conversion_from_start 1.1 > 1 too
        ("2025-01-03", "w", 2, "completed", 4),
        ("2025-01-03", "v", 0, "started", 20),
        ("2025-01-03", "v", 1, "a", 15),  # 15 ≤ 20 of its own date and workflow
    ]
    out = kpi_sanity("kpi_funnel_daily", funnel(rows))
    assert out.passed is False
    violations = jsonable(out)["violations"]
    assert set(violations) == {"reached <= reached at step_index 0", "conversion_from_start in [0, 1]"}
    assert violations["reached <= reached at step_index 0"] == {
        "rows": 1,
        "examples": [{"date": "2025-01-03", "workflow": "w", "step_index": 1, "step": "a", "reached": 11}],
    }


def test_kpi_sanity_reports_a_funnel_whose_step_zero_is_not_started() -> None:
    rows = [
        ("2025-01-03", "w", 0, "begun", 10),  # step 0 must be named 'started'
        ("2025-01-03", "w", 1, "completed", 5),
        ("2025-01-03", "v", 1, "a", 3),  # no step 0 at all for (2025-01-03, v)
        ("2025-01-03", "v", 2, "completed", 2),
    ]
    out = kpi_sanity("kpi_funnel_daily", funnel(rows))
    assert out.passed is False
    violations = jsonable(out)["violations"]
    assert violations["step_index 0 is 'started'"]["rows"] == 1
    assert violations["step_index 0 is 'started'"]["examples"][0]["step"] == "begun"
    assert violations["every (date, workflow) has step_index 0"]["rows"] == 2


def engagement(rows: list[tuple[str, int, int, int, int]]) -> pd.DataFrame:
    """kpi_engagement_daily rows from (date, dau, wau, mau, active_accounts)."""
    data = pd.DataFrame(rows, columns=["date", "dau", "wau", "mau", "active_accounts"])
    data["stickiness"] = data["dau"] / data["mau"]
    data["new_users"] = 0
    return data[list(TABLES["kpi_engagement_daily"].column_names)].astype(
        TABLES["kpi_engagement_daily"].dtypes()
    )


def test_kpi_sanity_reports_dau_above_mau() -> None:
    rows = [
        ("2025-01-02", 5, 8, 10, 3),  # consistent
        ("2025-01-03", 12, 11, 10, 4),  # dau 12 > wau 11 > mau 10; stickiness 12 / 10 = 1.2
        ("2025-01-04", 5, 6, 10, 6),  # active_accounts 6 > dau 5 is fine: a user may act in 2 accounts
    ]
    out = kpi_sanity("kpi_engagement_daily", engagement(rows), "kpi_engagement_daily 2025-01-04")
    assert out.passed is False
    violations = jsonable(out)["violations"]
    assert set(violations) == {"dau <= wau", "wau <= mau", "stickiness in [0, 1]"}
    assert violations["dau <= wau"] == {"rows": 1, "examples": [{"date": "2025-01-03", "dau": 12, "wau": 11}]}
    assert violations["wau <= mau"] == {"rows": 1, "examples": [{"date": "2025-01-03", "wau": 11, "mau": 10}]}
    assert out.message.startswith("kpi_engagement_daily 2025-01-04: KPI sanity failed, 3 invariant(s)")


@pytest.mark.parametrize(
    ("table_name", "row", "invariant"),
    [
        (
            "kpi_ticket_deflection_daily",
            {"date": "d", "topic": "t", "help_sessions": 2, "deflected": 3, "deflection_rate": 1.0,
             "tickets_created": 0, "self_service_ratio": NAN},
            "deflected <= help_sessions",
        ),
        (
            "kpi_feature_adoption_daily",
            {"date": "d", "feature": "f", "users": 3, "accounts": 1, "users_28d": 2, "accounts_28d": 1,
             "adoption_rate_28d": 0.5, "account_adoption_rate_28d": 0.5, "median_users_per_account_28d": 2.0},
            "users <= users_28d",
        ),
        (
            "kpi_feature_adoption_daily",
            {"date": "d", "feature": "f", "users": 1, "accounts": 2, "users_28d": 2, "accounts_28d": 1,
             "adoption_rate_28d": 0.5, "account_adoption_rate_28d": 0.5, "median_users_per_account_28d": 2.0},
            "accounts <= accounts_28d",
        ),
        (
            "kpi_retention_weekly",
            {"cohort_week": "2025-01-06", "week_number": 1, "cohort_users": 4, "retained_users": 5,
             "retention_rate": 1.0},
            "retained_users <= cohort_users",
        ),
        (
            "kpi_time_to_value_weekly",
            {"cohort_week": "2025-01-06", "cohort_users": 4, "activated_users": 5, "activation_rate": 1.0,
             "median_hours_to_first_completion": 2.0},
            "activated_users <= cohort_users",
        ),
        (
            "kpi_roi_daily",
            {"date": "d", "workflow": "w", "attempts": 1, "completions": 2, "hours_saved": 0.0,
             "labor_value": 0.0, "tickets_deflected": 0, "support_cost_avoided": 0.0, "fallback_tickets": 0,
             "fallback_ticket_cost": 0.0, "net_value": 0.0, "currency": "USD"},
            "completions <= attempts",
        ),
        (
            "kpi_reliability_weekly",
            {"week": "2025-01-06", "severity": "SEV1", "incidents": 1, "mean_minutes_to_detect": 5.0,
             "mean_minutes_to_resolve": NAN, "open_incidents": 2},
            "open_incidents <= incidents",
        ),
    ],
)  # fmt: skip
def test_kpi_sanity_reports_each_table_specific_invariant(
    table_name: str, row: dict[str, object], invariant: str
) -> None:
    frame = pd.DataFrame([row]).astype(TABLES[table_name].dtypes())
    out = kpi_sanity(table_name, frame)
    assert out.passed is False
    assert out.severity == "ERROR"
    assert list(jsonable(out)["violations"]) == [invariant]
    assert jsonable(out)["violations"][invariant]["rows"] == 1


def test_kpi_sanity_leaves_a_negative_completion_rate_delta_alone() -> None:
    # completion_rate_delta 0.4 − 0.9 = −0.5 is allowed by definition; the rates themselves are in [0, 1]
    ts = pd.Timestamp("2025-01-03T10:00:00Z")
    row = {
        "incident_id": "INC-1", "severity": "SEV1", "service": "api", "started_at": ts, "detected_at": ts,
        "resolved_at": ts + pd.Timedelta(hours=2), "affected_workflows": "data_export",
        "minutes_to_detect": 0.0, "minutes_to_resolve": 120.0, "attempts_during": 5,
        "completion_rate_during": 0.4, "baseline_completion_rate": 0.9, "completion_rate_delta": -0.5,
        "tickets_during": 2, "tickets_per_hour_during": 1.0, "baseline_tickets_per_hour": 0.0,
        "window_end": ts + pd.Timedelta(hours=2), "window_hours": 2.0, "baseline_attempts": 10,
        "baseline_tickets": 0,
    }  # fmt: skip
    frame = pd.DataFrame([row]).astype(TABLES["kpi_incidents"].dtypes())
    out = kpi_sanity("kpi_incidents", frame)
    assert out.passed is True
    assert jsonable(out) == {"rows": 1, "violations": {}}
    broken = kpi_sanity("kpi_incidents", frame.assign(baseline_completion_rate=1.5))
    assert broken.passed is False
    assert jsonable(broken)["violations"]["baseline_completion_rate in [0, 1]"]["examples"] == [
        {"incident_id": "INC-1", "baseline_completion_rate": 1.5}
    ]


def test_kpi_sanity_leaves_unbounded_ratios_alone_but_reports_missing_columns() -> None:
    # self_service_ratio 3 / 1 = 3 is allowed by definition
    deflection = pd.DataFrame(
        [{"date": "d", "topic": "t", "help_sessions": 3, "deflected": 1, "deflection_rate": 1 / 3,
          "tickets_created": 1, "self_service_ratio": 3.0}]
    ).astype(TABLES["kpi_ticket_deflection_daily"].dtypes())  # fmt: skip
    assert kpi_sanity("kpi_ticket_deflection_daily", deflection).passed is True
    out = kpi_sanity("kpi_ticket_deflection_daily", deflection.drop(columns=["deflected"]))
    assert out.passed is False
    assert jsonable(out)["violations"] == {"has the spec's columns": {"missing_columns": ["deflected"]}}


# --- funnel_monotonic -----------------------------------------------------------------------


def test_funnel_monotonic_passes_when_reached_never_grows() -> None:
    rows = [
        ("2025-01-03", "w", 0, "started", 10),
        ("2025-01-03", "w", 1, "a", 8),
        ("2025-01-03", "w", 2, "b", 8),  # equal is fine
        ("2025-01-03", "w", 3, "completed", 7),
    ]
    out = funnel_monotonic(funnel(rows), "kpi_funnel_daily 2025-01-03")
    assert out.passed is True
    assert out.severity == "WARN"
    assert jsonable(out) == {"rows": 0, "examples": []}


def test_funnel_monotonic_warns_where_a_later_step_has_more_attempts() -> None:
    rows = [
        ("2025-01-03", "w", 3, "completed", 9),  # 9 > 7 at step b (rows deliberately out of order)
        ("2025-01-03", "w", 0, "started", 10),
        ("2025-01-03", "w", 1, "a", 6),
        ("2025-01-03", "w", 2, "b", 7),  # 7 > 6 at step a
        ("2025-01-03", "v", 0, "started", 5),
        ("2025-01-03", "v", 1, "a", 2),
        ("2025-01-03", "v", 2, "completed", 2),
    ]
    out = funnel_monotonic(funnel(rows), "kpi_funnel_daily 2025-01-03")
    assert out.passed is False
    assert out.severity == "WARN"
    meta = jsonable(out)
    assert meta["rows"] == 2
    assert meta["examples"] == [
        {"date": "2025-01-03", "workflow": "w", "step_index": 2, "step": "b", "reached": 7,
         "previous_reached": 6},
        {"date": "2025-01-03", "workflow": "w", "step_index": 3, "step": "completed", "reached": 9,
         "previous_reached": 7},
    ]  # fmt: skip
    assert out.message.startswith("kpi_funnel_daily 2025-01-03: funnel not monotonic")
    assert "on 2 (date, workflow, step) row(s)" in out.message


# --- unknown_requesters ---------------------------------------------------------------------


def tickets(requesters: list[str | None]) -> pd.DataFrame:
    """Staged tickets T1, T2, … with the given requester ids."""
    ids = [f"T{i}" for i in range(1, len(requesters) + 1)]
    return pd.DataFrame({"ticket_id": ids, "requester_id": pd.array(requesters, dtype="string")})


def test_unknown_requesters_passes_below_the_share() -> None:
    # 5 tickets, 4 with a requester, 1 unknown (u9): 1 / 4 = 0.25 ≤ 0.3
    frame = tickets(["u1", "u2", None, "u9", "u1"])
    out = unknown_requesters(frame, pd.Series(["u1", "u2", "u3"], dtype="string"), max_share=0.3)
    assert out.passed is True
    assert out.severity == "WARN"
    assert jsonable(out) == {
        "tickets": 5,
        "with_requester": 4,
        "unknown": 1,
        "share": 0.25,
        "max_share": 0.3,
        "examples": ["u9"],
    }


def test_unknown_requesters_warns_above_the_share() -> None:
    # 6 tickets, 5 with a requester (one blank), 3 unknown (x2, x1, x2): 3 / 5 = 0.6 > 0.2
    frame = tickets(["u1", "x2", " ", "x1", "u2", "x2"])
    out = unknown_requesters(frame, {"u1", "u2"}, max_share=0.2)
    assert out.passed is False
    assert out.severity == "WARN"
    meta = jsonable(out)
    assert (meta["tickets"], meta["with_requester"], meta["unknown"]) == (6, 5, 3)
    assert meta["share"] == 0.6
    assert meta["examples"] == ["x1", "x2"]
    assert out.message == (
        "support_tickets: 3 of 5 tickets with a requester (60.0%) have a requester unknown to telemetry "
        "(limit 20.0%), e.g. x1, x2"
    )


def test_unknown_requesters_without_requesters_passes() -> None:
    out = unknown_requesters(tickets([None, None]), set(), max_share=0.2)
    assert out.passed is True
    assert jsonable(out)["share"] is None
    assert jsonable(out)["with_requester"] == 0


# --- unknown_workflows ----------------------------------------------------------------------


def incidents(affected: list[str | None]) -> pd.DataFrame:
    """Staged incidents INC-1, INC-2, … with the given affected_workflows."""
    ids = [f"INC-{i}" for i in range(1, len(affected) + 1)]
    return pd.DataFrame({"incident_id": ids, "affected_workflows": pd.array(affected, dtype="string")})


WORKFLOWS = {"access_request", "data_export", "invoice_download", "user_onboarding"}


def test_unknown_workflows_passes_when_all_names_are_configured() -> None:
    out = unknown_workflows(
        incidents(["access_request;data_export", "", None, "invoice_download"]), WORKFLOWS
    )
    assert out.passed is True
    assert out.severity == "WARN"
    assert jsonable(out) == {"unknown_workflows": [], "incident_ids": []}
    assert "all 4 incidents" in out.message


def test_unknown_workflows_warns_with_names_and_incidents() -> None:
    frame = incidents(["access_request;billing", "data_export", "billing;payroll", ""])
    out = unknown_workflows(frame, WORKFLOWS)
    assert out.passed is False
    assert out.severity == "WARN"
    assert jsonable(out) == {"unknown_workflows": ["billing", "payroll"], "incident_ids": ["INC-1", "INC-3"]}
    assert out.message == (
        "incidents: 2 incident(s) name 2 workflow(s) not in kpi.yaml: billing, payroll "
        "(incidents INC-1, INC-3)"
    )


def test_freshness_passes_within_the_limit_and_warns_beyond_it() -> None:
    now = pd.Timestamp("2025-01-10T12:00:00Z")
    fresh = freshness("telemetry_events", pd.Timestamp("2025-01-09T12:00:00Z"), now, 48)
    assert (fresh.passed, fresh.severity, jsonable(fresh)["age_hours"]) == (True, "WARN", 24.0)
    stale = freshness("telemetry_events", pd.Timestamp("2025-01-07T11:00:00Z"), now, 48)
    assert (stale.passed, stale.severity) == (False, "WARN")
    assert jsonable(stale) == {"newest": "2025-01-07T11:00:00+00:00", "age_hours": 73.0, "max_age_hours": 48}
    assert "73.0 h old" in stale.message and "older than the 48 h limit" in stale.message
    # Exactly at the limit is still fresh (48 h).
    assert freshness("x", pd.Timestamp("2025-01-08T12:00:00Z"), now, 48).passed


def test_freshness_without_data_warns() -> None:
    outcome = freshness("support_tickets", None, pd.Timestamp("2025-01-10T12:00:00Z"), 48)
    assert (outcome.passed, outcome.message) == (False, "support_tickets: nothing staged yet")


def test_kpi_sanity_bounds_nps_and_the_survey_and_observability_parts() -> None:
    from kpi_pipeline.kpis.surveys import survey_daily
    from kpi_pipeline_tests import test_kpis_surveys as fixture

    good = survey_daily(fixture._responses(), fixture.ATTEMPTS, fixture.CONFIG, fixture.D)
    assert kpi_sanity("kpi_survey_daily", good).passed
    bad = good.copy()
    bad.loc[0, "nps"] = 120.0
    bad.loc[1, "paired_responses"] = bad.loc[1, "responses"] + 1
    bad.loc[2, "unhappy_completion_rate"] = 1.5
    violations = jsonable(kpi_sanity("kpi_survey_daily", bad))["violations"]
    assert set(violations) == {
        "nps in [-100, 100]",
        "paired_responses <= responses",
        "unhappy_completion_rate in [0, 1]",
    }
    retries = pd.DataFrame(
        {"date": ["2025-01-03"], "workflow": ["w"], "failed_attempts": [2], "retried": [3], "recovered": [3]}
    )
    assert set(jsonable(kpi_sanity("kpi_retry_daily", retries))["violations"]) == {
        "has the spec's columns",
        "retried <= failed_attempts",
    }
