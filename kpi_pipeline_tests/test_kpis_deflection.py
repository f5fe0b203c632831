"""Tests for ticket_deflection_daily: the 72 h window, topics, NULL ratios."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.contract import TELEMETRY_FIELDS, TICKET_FIELDS
from kpi_pipeline.kpis.deflection import DEFLECTION_COLUMNS, ticket_deflection_daily

D = dt.date(2025, 1, 10)


def _config() -> KpiConfig:
    """Deflection window of 72 h."""
    return parse_config({"windows": {"deflection": 72}})


def view(user: str, at: str, topic: str, environment: str = "production") -> dict[str, object]:
    """One staged help_viewed event."""
    return {
        "event_id": f"{user}-{at}-{topic}",
        "occurred_at": at,
        "user_id": user,
        "account_id": "acc",
        "event_type": "help_viewed",
        "topic": topic,
        "persona": "unknown",
        "channel": "unknown",
        "environment": environment,
    }


def events_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Staged events frame with every telemetry column."""
    df = pd.DataFrame(rows).reindex(columns=list(TELEMETRY_FIELDS))
    df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True)
    return df


def tickets_frame(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    """Staged tickets from (ticket_id, created_at, topic, requester_id)."""
    df = pd.DataFrame(rows, columns=["ticket_id", "created_at", "topic", "requester_id"])
    df = df.reindex(columns=list(TICKET_FIELDS))
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    return df


def test_deflection_window_topics_and_ratios() -> None:
    events = events_frame(
        [
            view("u1", "2025-01-10T10:00:00Z", "access"),
            view("u1", "2025-01-10T12:00:00Z", "access"),  # first view of the day stays 10:00
            view("u2", "2025-01-10T09:00:00Z", "access"),
            view("u3", "2025-01-10T08:00:00Z", "access"),
            view("u4", "2025-01-10T08:00:00Z", "access", environment="staging"),  # ignored
            view("u5", "2025-01-10T10:00:00Z", "export"),
            view("u7", "2025-01-10T10:00:00Z", "invoices"),
            view("u8", "2025-01-09T10:00:00Z", "onboarding"),  # other date: ignored
        ]
    )
    tickets = tickets_frame(
        [
            ("k1", "2025-01-13T10:00:00Z", "access", "u1"),  # first view + 72 h exactly: not deflected
            ("k2", "2025-01-13T09:00:01Z", "access", "u2"),  # + 72 h + 1 s: deflected
            ("k3", "2025-01-10T09:00:00Z", "billing", "u3"),  # other topic: u3 deflected on access
            ("k4", "2025-01-10T11:00:00Z", "access", None),  # on D, anonymous: counts as created
            ("k5", "2025-01-10T07:00:00Z", "export", "u5"),  # before the view: u5 still deflected
            ("k6", "2025-01-10T11:00:00Z", "access", "u4"),  # u4's view was staging
            ("k7", "2025-01-11T00:00:00Z", "access", "u9"),  # D + 1: not created on D
        ]
    )
    out = ticket_deflection_daily(events, tickets, _config(), D)
    assert tuple(out.columns) == DEFLECTION_COLUMNS
    assert list(out["topic"]) == ["access", "billing", "export", "invoices"]
    assert set(out["date"]) == {"2025-01-10"}
    t = out.set_index("topic")

    # access: sessions u1, u2, u3 = 3; deflected u2, u3 = 2; created on D: k4, k6 = 2
    assert t.loc["access", "help_sessions"] == 3
    assert t.loc["access", "deflected"] == 2
    assert t.loc["access", "deflection_rate"] == 2 / 3
    assert t.loc["access", "tickets_created"] == 2
    assert t.loc["access", "self_service_ratio"] == 3 / 2

    # billing: a ticket on D and no views -> 0 sessions, NULL deflection rate, ratio 0 / 1
    assert t.loc["billing", "help_sessions"] == 0
    assert t.loc["billing", "deflected"] == 0
    assert math.isnan(t.loc["billing", "deflection_rate"])
    assert t.loc["billing", "tickets_created"] == 1
    assert t.loc["billing", "self_service_ratio"] == 0.0

    # export: u5 deflected (ticket before the view); 1 ticket on D -> ratio 1 / 1
    assert t.loc["export", "deflected"] == 1
    assert t.loc["export", "deflection_rate"] == 1.0
    assert t.loc["export", "self_service_ratio"] == 1.0

    # invoices: views but no tickets -> NULL self-service ratio
    assert t.loc["invoices", "help_sessions"] == 1
    assert t.loc["invoices", "tickets_created"] == 0
    assert math.isnan(t.loc["invoices", "self_service_ratio"])


def test_deflection_window_from_config() -> None:
    events = events_frame([view("u1", "2025-01-10T10:00:00Z", "access")])
    tickets = tickets_frame([("k1", "2025-01-10T11:00:00Z", "access", "u1")])  # 1 h after the view
    narrow = parse_config({"windows": {"deflection": 0.5}})
    assert ticket_deflection_daily(events, tickets, narrow, D)["deflected"].tolist() == [1]
    assert ticket_deflection_daily(events, tickets, _config(), D)["deflected"].tolist() == [0]


def test_deflection_empty_day() -> None:
    out = ticket_deflection_daily(events_frame([]), tickets_frame([]), _config(), D)
    assert out.empty
    assert tuple(out.columns) == DEFLECTION_COLUMNS
