"""Tests for scorecard: 7-day periods, ratio-of-sums rates and regression status."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.kpis.scorecard import SCORECARD_COLUMNS, scorecard

L = dt.date(2025, 1, 14)  # current period 01-08..01-14, previous 01-01..01-07


def _config() -> KpiConfig:
    """Four workflows, threshold 0.05; user_onboarding has no explicit owner."""
    return parse_config(
        {
            "default_owner": "analytics-team",
            "scorecard": {"threshold": 0.05},
            "workflows": {
                "access_request": {
                    "owner": "identity-team",
                    "description": "Request access",
                    "topics": ["access", "permissions"],
                },
                "invoice_download": {"owner": "billing-team", "description": "Get an invoice"},
                "data_export": {"owner": "data-team", "description": "Export data"},
                "user_onboarding": {"description": "Onboard a teammate", "topics": ["onboarding"]},
            },
        }
    )


COMPLETION_COLS = ["date", "workflow", "attempts", "completions", "first_pass_completions", "fallbacks"]


def completion_frame(rows: list[tuple[str, str, int, int, int, int, int]]) -> pd.DataFrame:
    """Rows of (date, workflow, attempts, completions, first_pass, fallbacks, fallback_tickets)."""
    df = pd.DataFrame(rows, columns=[*COMPLETION_COLS, "fallback_tickets"])
    df["persona"] = "admin"
    df["channel"] = "web"
    return df


def test_scorecard_periods_rates_and_status() -> None:
    completion = completion_frame(
        [
            # access_request, current: attempts 4 + 16 = 20, completions 4 + 11 = 15, first-pass 4 + 9 = 13,
            # fallbacks 2 + 2 = 4, fallback tickets 1 + 1 = 2
            ("2025-01-08", "access_request", 4, 4, 4, 2, 1),
            ("2025-01-14", "access_request", 16, 11, 9, 2, 1),
            # access_request, previous: attempts 20, completions 16, first-pass 15, fallbacks 4, tickets 1
            ("2025-01-01", "access_request", 10, 8, 8, 4, 1),
            ("2025-01-07", "access_request", 10, 8, 7, 0, 0),
            # outside both periods: ignored
            ("2024-12-31", "access_request", 100, 0, 0, 100, 100),
            ("2025-01-15", "access_request", 100, 0, 0, 100, 100),
            # data_export: attempts 10 now vs 20 before, same completion rate 0.5
            ("2025-01-10", "data_export", 10, 5, 5, 0, 0),
            ("2025-01-03", "data_export", 20, 10, 10, 0, 0),
            # user_onboarding: attempts 21 vs 20 (+5 %), completion 0.9 vs 0.5
            ("2025-01-10", "user_onboarding", 21, 19, 19, 0, 0),
            ("2025-01-03", "user_onboarding", 20, 10, 10, 0, 0),
            # a workflow not in kpi.yaml
            ("2025-01-12", "legacy_flow", 2, 1, 1, 0, 0),
        ]
    )
    deflection = pd.DataFrame(
        [
            ("2025-01-09", "access", 10, 5),
            ("2025-01-13", "permissions", 10, 7),
            ("2025-01-02", "access", 10, 6),
            ("2025-01-02", "onboarding", 2, 1),
            ("2025-01-09", "misc", 10, 0),  # topic of no workflow
        ],
        columns=["date", "topic", "help_sessions", "deflected"],
    )
    roi = pd.DataFrame(
        [
            ("2025-01-08", "access_request", 100.0),
            ("2025-01-14", "access_request", 50.0),
            ("2025-01-05", "access_request", 200.0),
            ("2025-01-10", "user_onboarding", -150.0),
            ("2025-01-03", "user_onboarding", -100.0),
            ("2025-01-12", "legacy_flow", 0.0),
        ],
        columns=["date", "workflow", "net_value"],
    )
    out = scorecard(completion, deflection, roi, _config(), L)
    assert tuple(out.columns) == SCORECARD_COLUMNS
    assert list(out["workflow"]) == [
        "access_request",
        "invoice_download",
        "data_export",
        "user_onboarding",
        "legacy_flow",
    ]
    assert set(out["as_of"]) == {"2025-01-14"}
    s = out.set_index("workflow")

    ar = s.loc["access_request"]
    assert (ar["owner"], ar["primary_outcome"]) == ("identity-team", "Request access")
    # ratio of sums 15 / 20 = 0.75 (the mean of daily rates would be (4/4 + 11/16) / 2 = 0.84375)
    assert ar["completion_rate"] == 15 / 20
    assert ar["completion_rate_prev"] == 16 / 20  # change -0.05: not more than the threshold
    assert ar["first_pass_rate"] == 13 / 20
    assert ar["first_pass_rate_prev"] == 15 / 20  # change -0.10: regressed
    assert ar["fallback_to_ticket_rate"] == 2 / 4
    assert ar["fallback_to_ticket_rate_prev"] == 1 / 4  # +0.25, higher is worse: regressed
    assert ar["deflection_rate"] == (5 + 7) / (10 + 10)
    assert ar["deflection_rate_prev"] == 6 / 10  # unchanged 0.6
    assert (ar["attempts"], ar["attempts_prev"]) == (20, 20)
    assert (ar["net_value"], ar["net_value_prev"]) == (150.0, 200.0)  # (150 - 200) / 200 = -25 %: regressed
    assert ar["status"] == "regressed: first_pass_rate, fallback_to_ticket_rate, net_value"

    inv = s.loc["invoice_download"]
    assert math.isnan(inv["completion_rate"]) and math.isnan(inv["completion_rate_prev"])
    assert (inv["attempts"], inv["attempts_prev"], inv["net_value"]) == (0, 0, 0.0)
    assert inv["status"] == "ok"

    de = s.loc["data_export"]
    assert (de["attempts"], de["attempts_prev"]) == (10, 20)  # (10 - 20) / 20 = -50 %
    assert de["completion_rate"] == de["completion_rate_prev"] == 0.5
    assert math.isnan(de["fallback_to_ticket_rate"])  # 0 fallbacks
    assert de["status"] == "regressed: attempts"

    uo = s.loc["user_onboarding"]
    assert uo["owner"] == "analytics-team"  # no explicit owner -> default_owner
    # deflection NaN now (no help sessions) vs 0.5 before: NaN never flags.
    assert math.isnan(uo["deflection_rate"])
    assert uo["deflection_rate_prev"] == 0.5
    # attempts +5 % is an improvement; net value -150 vs -100: (-150 - -100) / |-100| = -50 %: regressed
    assert uo["status"] == "regressed: net_value"

    lf = s.loc["legacy_flow"]
    assert (lf["owner"], lf["primary_outcome"]) == ("analytics-team", "")
    assert lf["completion_rate"] == 0.5
    assert lf["attempts_prev"] == 0  # previous 0 -> relative change undefined, never flags
    assert lf["status"] == "ok"


def test_scorecard_threshold_from_config() -> None:
    completion = completion_frame(
        [
            ("2025-01-14", "data_export", 10, 7, 7, 0, 0),
            ("2025-01-07", "data_export", 10, 8, 8, 0, 0),
        ]
    )
    deflection = pd.DataFrame(columns=["date", "topic", "help_sessions", "deflected"])
    roi = pd.DataFrame(columns=["date", "workflow", "net_value"])
    loose = parse_config({"scorecard": {"threshold": 0.2}, "workflows": {"data_export": {}}})
    strict = parse_config({"scorecard": {"threshold": 0.05}, "workflows": {"data_export": {}}})
    # completion and first-pass rate 0.8 -> 0.7: change -0.1
    assert scorecard(completion, deflection, roi, loose, L)["status"].tolist() == ["ok"]
    assert scorecard(completion, deflection, roi, strict, L)["status"].tolist() == [
        "regressed: completion_rate, first_pass_rate"
    ]


def test_csat_top_box_rate_is_compared_like_the_other_rates() -> None:
    completion = completion_frame(
        [("2025-01-14", "data_export", 10, 8, 8, 0, 0), ("2025-01-07", "data_export", 10, 8, 8, 0, 0)]
    )
    deflection = pd.DataFrame(columns=["date", "topic", "help_sessions", "deflected"])
    roi = pd.DataFrame(columns=["date", "workflow", "net_value"])
    surveys = pd.DataFrame(
        [
            # current: 3 of 5 and 3 of 5 top box = 0.6; previous: 8 of 10 = 0.8 (a 0.2 drop)
            ("2025-01-09", "data_export", "csat", 5, 0.6),
            ("2025-01-13", "data_export", "csat", 5, 0.6),
            ("2025-01-04", "data_export", "csat", 10, 0.8),
            ("2025-01-09", "data_export", "nps", 10, 0.0),  # not CSAT: left out
            ("2024-12-31", "data_export", "csat", 10, 0.0),  # before both periods
        ],
        columns=["date", "workflow", "survey", "responses", "top_box_rate"],
    )
    config = parse_config({"scorecard": {"threshold": 0.05}, "workflows": {"data_export": {}, "other": {}}})
    out = scorecard(completion, deflection, roi, config, L, surveys).set_index("workflow")
    assert (
        out.loc["data_export", "csat_top_box_rate"],
        out.loc["data_export", "csat_top_box_rate_prev"],
    ) == (
        0.6,
        0.8,
    )
    assert out.loc["data_export", "status"] == "regressed: csat_top_box_rate"
    assert math.isnan(out.loc["other", "csat_top_box_rate"]) and out.loc["other", "status"] == "ok"
    without = scorecard(completion, deflection, roi, config, L)
    assert without["csat_top_box_rate"].isna().all() and set(without["status"]) == {"ok"}
