"""Tests for roi_daily: value arithmetic and which (date, workflow) rows exist."""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.kpis.roi import ROI_COLUMNS, roi_daily


def _config() -> KpiConfig:
    """Costs: 25 per ticket, 60 per hour; two workflows with topics."""
    return parse_config(
        {
            "currency": "EUR",
            "cost_per_ticket": 25.0,
            "loaded_hourly_cost": 60.0,
            "workflows": {
                "access_request": {"topics": ["access", "permissions"], "minutes_saved_per_completion": 12},
                "invoice_download": {"topics": ["billing"], "minutes_saved_per_completion": 6},
                "user_onboarding": {"topics": ["onboarding"], "minutes_saved_per_completion": 15},
            },
        }
    )


def completion_frame(rows: list[tuple[str, str, str, int, int, int]]) -> pd.DataFrame:
    """Completion rows from (date, workflow, persona, attempts, completions, fallback_tickets)."""
    df = pd.DataFrame(
        rows, columns=["date", "workflow", "persona", "attempts", "completions", "fallback_tickets"]
    )
    df["channel"] = "web"
    return df


def deflection_frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """kpi_ticket_deflection_daily rows from (date, topic, deflected)."""
    return pd.DataFrame(rows, columns=["date", "topic", "deflected"])


def test_roi_arithmetic_and_rows() -> None:
    completion = completion_frame(
        [
            ("2025-01-10", "access_request", "admin", 4, 3, 1),
            ("2025-01-10", "access_request", "developer", 2, 2, 0),
            ("2025-01-10", "not_in_yaml", "admin", 1, 1, 1),
        ]
    )
    deflection = deflection_frame(
        [
            ("2025-01-10", "access", 2),
            ("2025-01-10", "permissions", 1),
            ("2025-01-10", "billing", 0),  # a deflection row with 0 deflected still gives a row
            ("2025-01-10", "misc", 5),  # topic of no workflow: ignored
            ("2025-01-11", "onboarding", 1),  # deflection without attempts
        ]
    )
    out = roi_daily(completion, deflection, _config())
    assert tuple(out.columns) == ROI_COLUMNS
    keys = list(zip(out["date"], out["workflow"], strict=True))
    assert keys == [
        ("2025-01-10", "access_request"),
        ("2025-01-10", "invoice_download"),
        ("2025-01-10", "not_in_yaml"),
        ("2025-01-11", "user_onboarding"),
    ]
    r = out.set_index(["date", "workflow"])

    ar = r.loc[("2025-01-10", "access_request")]
    assert ar["attempts"] == 6  # 4 + 2
    assert ar["completions"] == 5  # 3 + 2
    assert ar["hours_saved"] == 1.0  # 5 * 12 / 60
    assert ar["labor_value"] == 60.0  # 1.0 * 60
    assert ar["tickets_deflected"] == 3  # access 2 + permissions 1
    assert ar["support_cost_avoided"] == 75.0  # 3 * 25
    assert ar["fallback_tickets"] == 1
    assert ar["fallback_ticket_cost"] == 25.0  # 1 * 25
    assert ar["net_value"] == 110.0  # 60 + 75 - 25
    assert ar["currency"] == "EUR"

    inv = r.loc[("2025-01-10", "invoice_download")]
    assert (inv["attempts"], inv["completions"], inv["tickets_deflected"], inv["net_value"]) == (0, 0, 0, 0.0)

    unknown = r.loc[("2025-01-10", "not_in_yaml")]
    assert unknown["hours_saved"] == 0.0  # not in kpi.yaml -> 0 minutes saved
    assert unknown["net_value"] == -25.0  # 0 + 0 - 1 * 25

    onb = r.loc[("2025-01-11", "user_onboarding")]
    assert onb["completions"] == 0
    assert onb["support_cost_avoided"] == 25.0  # 1 * 25
    assert onb["net_value"] == 25.0


def test_roi_empty_inputs() -> None:
    out = roi_daily(completion_frame([]), deflection_frame([]), _config())
    assert out.empty
    assert tuple(out.columns) == ROI_COLUMNS
