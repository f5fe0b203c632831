"""Tests for build_attempts: windows, start rules, first-pass and fallback tickets."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.contract import TELEMETRY_FIELDS, TICKET_FIELDS
from kpi_pipeline.kpis.attempts import ATTEMPT_COLUMNS, build_attempts, drop_earlier_starts, task_starts
from kpi_pipeline.kpis.completion import funnel_daily

D = dt.date(2025, 1, 10)


def _config() -> KpiConfig:
    """Completion and fallback-ticket windows of 24 h; one workflow without topics."""
    return parse_config(
        {
            "windows": {"completion": 24, "fallback_ticket": 24},
            "workflows": {
                "access_request": {
                    "steps": ["form_opened", "submitted"],
                    "topics": ["access", "permissions"],
                },
                "data_export": {"topics": ["export"]},
                "no_topics": {"steps": ["a"]},
            },
        }
    )


def ev(
    event_id: str,
    at: str,
    task_id: str,
    event_type: str,
    *,
    user: str = "u1",
    workflow: str = "access_request",
    step: str | None = None,
    persona: str = "admin",
    channel: str = "web",
    environment: str = "production",
) -> dict[str, object]:
    """One staged telemetry row."""
    return {
        "event_id": event_id,
        "occurred_at": at,
        "user_id": user,
        "account_id": "acc1",
        "event_type": event_type,
        "workflow": workflow,
        "task_id": task_id,
        "step": step,
        "persona": persona,
        "channel": channel,
        "environment": environment,
    }


def events_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Staged events frame with every telemetry column."""
    df = pd.DataFrame(rows).reindex(columns=list(TELEMETRY_FIELDS))
    df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True)
    df["duration_ms"] = df["duration_ms"].astype(float)
    return df


def tickets_frame(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    """Staged tickets from (ticket_id, created_at, topic, requester_id)."""
    df = pd.DataFrame(rows, columns=["ticket_id", "created_at", "topic", "requester_id"])
    df = df.reindex(columns=list(TICKET_FIELDS))
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    df["updated_at"] = df["created_at"]
    df["status"] = "open"
    return df


NO_TICKETS = tickets_frame([])


def by_task(attempts: pd.DataFrame) -> pd.DataFrame:
    """Attempts indexed by task_id for readable assertions."""
    return attempts.set_index("task_id")


def test_columns_and_completion_window_both_ends_included() -> None:
    events = events_frame(
        [
            ev("e1", "2025-01-10T00:00:00Z", "t1", "task_started"),
            ev("e2", "2025-01-11T00:00:00Z", "t1", "task_completed"),  # exactly +24 h: counts
            ev("e3", "2025-01-10T01:00:00Z", "t2", "task_started"),
            ev("e4", "2025-01-11T01:00:01Z", "t2", "task_completed"),  # +24 h + 1 s: outside
            ev("e5", "2025-01-10T02:00:00Z", "t3", "task_started"),
            ev("e6", "2025-01-10T02:00:00Z", "t3", "task_completed"),  # at the start itself: counts
        ]
    )
    out = build_attempts(events, NO_TICKETS, _config(), D)
    assert tuple(out.columns) == ATTEMPT_COLUMNS
    a = by_task(out)
    assert a.loc["t1", "completed"]
    assert a.loc["t1", "completed_at"] == pd.Timestamp("2025-01-11T00:00:00Z")
    assert a.loc["t1", "seconds_to_complete"] == 86400.0  # 24 h * 3600
    assert not a.loc["t2", "completed"]
    assert pd.isna(a.loc["t2", "completed_at"])
    assert math.isnan(a.loc["t2", "seconds_to_complete"])
    assert a.loc["t3", "completed"]
    assert a.loc["t3", "seconds_to_complete"] == 0.0
    assert list(out["date"]) == ["2025-01-10", "2025-01-10", "2025-01-10"]


def test_first_completion_is_used_for_time_to_complete() -> None:
    events = events_frame(
        [
            ev("e1", "2025-01-10T10:00:00Z", "t1", "task_started"),
            ev("e2", "2025-01-10T10:30:00Z", "t1", "task_completed"),
            ev("e3", "2025-01-10T10:10:00Z", "t1", "task_completed"),
        ]
    )
    a = by_task(build_attempts(events, NO_TICKETS, _config(), D))
    # first completion 10:10 - start 10:00 = 600 s
    assert a.loc["t1", "seconds_to_complete"] == 600.0


def test_events_before_start_are_ignored() -> None:
    events = events_frame(
        [
            ev("e1", "2025-01-10T09:00:00Z", "t1", "task_error"),
            ev("e2", "2025-01-10T09:30:00Z", "t1", "task_step", step="form_opened"),
            ev("e3", "2025-01-10T09:45:00Z", "t1", "task_completed"),
            ev("e4", "2025-01-10T09:50:00Z", "t1", "task_fallback"),
            ev("e5", "2025-01-10T10:00:00Z", "t1", "task_started"),
        ]
    )
    a = by_task(build_attempts(events, NO_TICKETS, _config(), D))
    row = a.loc["t1"]
    assert not row["error"]
    assert not row["fallback"]
    assert not row["completed"]
    assert row["steps_reached"] == ""
    assert pd.isna(row["first_fallback_at"])


def test_earliest_task_started_wins_with_its_persona_and_channel() -> None:
    events = events_frame(
        [
            ev("e2", "2025-01-10T09:00:00Z", "t1", "task_started", persona="developer", channel="mobile"),
            ev("e1", "2025-01-10T08:00:00Z", "t1", "task_started", persona="admin", channel="web"),
            # 08:30 next day is within 24 h of the later start (09:00) but not of the earliest (08:00).
            ev("e3", "2025-01-11T08:30:00Z", "t1", "task_completed"),
        ]
    )
    out = build_attempts(events, NO_TICKETS, _config(), D)
    assert len(out) == 1
    row = by_task(out).loc["t1"]
    assert row["started_at"] == pd.Timestamp("2025-01-10T08:00:00Z")
    assert row["persona"] == "admin"
    assert row["channel"] == "web"
    assert not row["completed"]


def test_attempt_started_on_previous_day_belongs_to_that_day() -> None:
    events = events_frame(
        [
            ev("e1", "2025-01-09T23:00:00Z", "t1", "task_started"),
            ev("e2", "2025-01-10T01:00:00Z", "t1", "task_started"),
            ev("e3", "2025-01-10T02:00:00Z", "t2", "task_started"),
        ]
    )
    on_d = build_attempts(events, NO_TICKETS, _config(), D)
    assert list(on_d["task_id"]) == ["t2"]
    on_d_minus_1 = build_attempts(events, NO_TICKETS, _config(), dt.date(2025, 1, 9))
    assert list(on_d_minus_1["task_id"]) == ["t1"]
    assert list(on_d_minus_1["date"]) == ["2025-01-09"]
    every = build_attempts(events, NO_TICKETS, _config())
    assert sorted(every["task_id"]) == ["t1", "t2"]


def test_non_production_events_are_ignored() -> None:
    events = events_frame(
        [
            ev("e1", "2025-01-10T08:00:00Z", "t1", "task_started", environment="staging"),
            ev("e2", "2025-01-10T08:00:00Z", "t2", "task_started"),
            ev("e3", "2025-01-10T08:05:00Z", "t2", "task_completed", environment="staging"),
            ev("e4", "2025-01-10T08:06:00Z", "t2", "task_error", environment="development"),
            # A staging start earlier than the production one does not move the start.
            ev("e5", "2025-01-10T07:00:00Z", "t2", "task_started", environment="staging", persona="x"),
        ]
    )
    out = build_attempts(events, NO_TICKETS, _config(), D)
    assert list(out["task_id"]) == ["t2"]
    row = by_task(out).loc["t2"]
    assert row["started_at"] == pd.Timestamp("2025-01-10T08:00:00Z")
    assert row["persona"] == "admin"
    assert not row["completed"]
    assert not row["error"]


def test_first_pass_error_before_after_and_at_completion() -> None:
    events = events_frame(
        [
            # t1: error before completion -> completed, not first-pass
            ev("a1", "2025-01-10T08:00:00Z", "t1", "task_started"),
            ev("a2", "2025-01-10T08:01:00Z", "t1", "task_error"),
            ev("a3", "2025-01-10T08:02:00Z", "t1", "task_completed"),
            # t2: error after completion -> first-pass, but still an error attempt
            ev("b1", "2025-01-10T08:00:00Z", "t2", "task_started"),
            ev("b2", "2025-01-10T08:02:00Z", "t2", "task_completed"),
            ev("b3", "2025-01-10T08:03:00Z", "t2", "task_error"),
            # t3: error at the same instant as the completion is not "before" -> first-pass
            ev("c1", "2025-01-10T08:00:00Z", "t3", "task_started"),
            ev("c2", "2025-01-10T08:02:00Z", "t3", "task_error"),
            ev("c3", "2025-01-10T08:02:00Z", "t3", "task_completed"),
            # t4: fallback before completion -> not first-pass
            ev("d1", "2025-01-10T08:00:00Z", "t4", "task_started"),
            ev("d2", "2025-01-10T08:01:00Z", "t4", "task_fallback"),
            ev("d3", "2025-01-10T08:02:00Z", "t4", "task_completed"),
            # t5: clean completion -> first-pass
            ev("e1", "2025-01-10T08:00:00Z", "t5", "task_started"),
            ev("e2", "2025-01-10T08:02:00Z", "t5", "task_completed"),
            # t6: error, never completed -> not first-pass
            ev("f1", "2025-01-10T08:00:00Z", "t6", "task_started"),
            ev("f2", "2025-01-10T08:02:00Z", "t6", "task_error"),
        ]
    )
    a = by_task(build_attempts(events, NO_TICKETS, _config(), D))
    assert a["first_pass"].to_dict() == {
        "t1": False,
        "t2": True,
        "t3": True,
        "t4": False,
        "t5": True,
        "t6": False,
    }
    assert a["error"].to_dict() == {"t1": True, "t2": True, "t3": True, "t4": False, "t5": False, "t6": True}
    assert a["fallback"].to_dict() == {
        "t1": False,
        "t2": False,
        "t3": False,
        "t4": True,
        "t5": False,
        "t6": False,
    }
    assert a.loc["t4", "first_fallback_at"] == pd.Timestamp("2025-01-10T08:01:00Z")


def test_fallback_ticket_window_topic_and_user() -> None:
    rows: list[dict[str, object]] = []
    # Each attempt has its own user so tickets are attributed unambiguously; fallback at 09:00.
    for task, user, workflow in [
        ("inside", "u1", "access_request"),
        ("edge", "u2", "access_request"),
        ("late", "u3", "access_request"),
        ("wrong_topic", "u4", "access_request"),
        ("other_user", "u5", "access_request"),
        ("before", "u6", "access_request"),
        ("no_topics", "u7", "no_topics"),
        ("unknown_wf", "u8", "not_in_yaml"),
        ("no_fallback", "u9", "access_request"),
    ]:
        rows.append(
            ev(f"{task}-s", "2025-01-10T08:00:00Z", task, "task_started", user=user, workflow=workflow)
        )
        if task != "no_fallback":
            rows.append(
                ev(f"{task}-f", "2025-01-10T09:00:00Z", task, "task_fallback", user=user, workflow=workflow)
            )
    # A second, later fallback does not move the window start (first fallback 09:00).
    rows.append(ev("late-f2", "2025-01-10T10:00:00Z", "late", "task_fallback", user="u3"))
    tickets = tickets_frame(
        [
            ("k1", "2025-01-10T12:00:00Z", "permissions", "u1"),  # 3 h after, workflow topic -> yes
            ("k2", "2025-01-11T09:00:00Z", "access", "u2"),  # exactly +24 h -> yes
            ("k3", "2025-01-11T09:00:01Z", "access", "u3"),  # +24 h + 1 s after first fallback -> no
            ("k4", "2025-01-10T10:00:00Z", "billing", "u4"),  # topic of another workflow -> no
            ("k5", "2025-01-10T10:00:00Z", "access", "someone_else"),  # not the attempt's user -> no
            ("k6", "2025-01-10T08:59:59Z", "access", "u6"),  # before the fallback -> no
            ("k7", "2025-01-10T10:00:00Z", "anything", "u7"),  # workflow has no topics -> any topic
            ("k8", "2025-01-10T10:00:00Z", "billing", "u8"),  # workflow not in kpi.yaml -> any topic
            ("k9", "2025-01-10T10:00:00Z", "access", "u9"),  # no fallback -> no
            ("k10", "2025-01-10T10:00:00Z", "access", None),  # no requester
        ]
    )
    a = by_task(build_attempts(events_frame(rows), tickets, _config(), D))
    assert a["fallback_ticket"].to_dict() == {
        "inside": True,
        "edge": True,
        "late": False,
        "wrong_topic": False,
        "other_user": False,
        "before": False,
        "no_topics": True,
        "unknown_wf": True,
        "no_fallback": False,
    }


def test_steps_reached_distinct_sorted_in_window_any_order() -> None:
    events = events_frame(
        [
            ev("e1", "2025-01-10T08:00:00Z", "t1", "task_started"),
            ev("e2", "2025-01-10T08:01:00Z", "t1", "task_step", step="submitted"),
            ev("e3", "2025-01-10T08:02:00Z", "t1", "task_step", step="form_opened"),
            ev("e4", "2025-01-10T08:03:00Z", "t1", "task_step", step="submitted"),
            ev("e5", "2025-01-10T08:04:00Z", "t1", "task_step", step="extra_step"),
            ev("e6", "2025-01-11T08:00:01Z", "t1", "task_step", step="zz_late"),  # outside window
            ev("e7", "2025-01-10T08:00:00Z", "t2", "task_started"),
        ]
    )
    a = by_task(build_attempts(events, NO_TICKETS, _config(), D))
    assert a.loc["t1", "steps_reached"] == "extra_step;form_opened;submitted"
    assert a.loc["t2", "steps_reached"] == ""


def test_empty_input_gives_empty_frame_with_columns() -> None:
    out = build_attempts(events_frame([]), NO_TICKETS, _config(), D)
    assert out.empty
    assert tuple(out.columns) == ATTEMPT_COLUMNS


def test_task_started_again_on_a_later_day_belongs_to_its_first_start() -> None:
    """kpis.md: an attempt is one task_id; its start is its earliest task_started. Day D knows the
    task_ids that started before it from the task_starts record, not from reading all history."""
    first_day = dt.date(2025, 3, 1)
    restart_day = dt.date(2025, 3, 3)
    events = events_frame(
        [
            ev("s1", "2025-03-01T08:00:00Z", "t", "task_started"),
            ev("s2", "2025-03-03T08:00:00Z", "t", "task_started"),
            ev("c1", "2025-03-03T09:00:00Z", "t", "task_completed"),
            ev("s3", "2025-03-03T10:00:00Z", "fresh", "task_started"),
        ]
    )
    record = task_starts(events, first_day)
    assert record.to_dict("records") == [
        {"date": "2025-03-01", "task_id": "t", "started_at": pd.Timestamp("2025-03-01T08:00:00Z")}
    ]
    later = events[events["occurred_at"] >= pd.Timestamp("2025-03-02", tz="UTC")]
    # The day's candidates, before the task_starts lookup, and after it (as the asset does).
    candidates = build_attempts(later, NO_TICKETS, _config(), restart_day)
    assert candidates["task_id"].tolist() == ["fresh", "t"]
    assert drop_earlier_starts(candidates, {"t"})["task_id"].tolist() == ["fresh"]
    on_restart_day = build_attempts(later, NO_TICKETS, _config(), restart_day, started_earlier={"t"})
    assert on_restart_day["task_id"].tolist() == ["fresh"]
    # The completion comes 49 h after the first start: outside a 24 h and a 48 h window alike.
    first = by_task(build_attempts(events, NO_TICKETS, _config(), first_day))
    assert first.loc["t", "completed"] == False  # noqa: E712
    wide = parse_config({"windows": {"completion": 48}})
    assert by_task(build_attempts(events, NO_TICKETS, wide, first_day)).loc["t", "completed"] == False  # noqa: E712
    assert build_attempts(later, NO_TICKETS, wide, restart_day, started_earlier={"t"})[
        "task_id"
    ].tolist() == ["fresh"]


def test_step_names_are_matched_exactly_not_split_on_separators() -> None:
    """A task_step ``a;b`` reaches the configured step ``a;b`` only, never ``a`` or ``b``."""
    config = parse_config({"workflows": {"w": {"steps": ["a", "b", "a;b", "50%"]}}})
    events = events_frame(
        [
            ev("e1", "2025-01-10T08:00:00Z", "t1", "task_started", workflow="w"),
            ev("e2", "2025-01-10T08:01:00Z", "t1", "task_step", workflow="w", step="a;b"),
            ev("e3", "2025-01-10T08:00:00Z", "t2", "task_started", workflow="w"),
            ev("e4", "2025-01-10T08:01:00Z", "t2", "task_step", workflow="w", step="a"),
            ev("e5", "2025-01-10T08:02:00Z", "t2", "task_step", workflow="w", step="50%"),
            ev("e6", "2025-01-10T08:03:00Z", "t2", "task_step", workflow="w", step="50%3B"),
        ]
    )
    attempts = build_attempts(events, NO_TICKETS, config, D)
    assert by_task(attempts)["steps_reached"].to_dict() == {"t1": "a%3Bb", "t2": "50%25;50%253B;a"}
    reached = funnel_daily(attempts, config).set_index("step")["reached"].to_dict()
    assert reached == {"started": 2, "a": 1, "b": 0, "a;b": 1, "50%": 1, "completed": 0}
