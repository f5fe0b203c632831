"""Tests for scorecard: 7-day periods, ratio-of-sums rates, p-values, the Wilson interval and the
regression status (kpis.md "kpi_scorecard", kpis-v2.md "kpi_scorecard — added columns and the
status rule"), and the shared statistics behind them (kpis/statistics.py) on textbook examples.

Expected p-values and intervals are computed here by hand (math.erfc, the Wilson closed form with
z = NormalDist().inv_cdf(0.975)), never by the code under test.
"""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import pandas as pd
import pytest

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.kpis.scorecard import SCORECARD_COLUMNS, flagged_metrics, scorecard
from kpi_pipeline.kpis.statistics import pooled_z_test, wilson_interval

L = dt.date(2025, 1, 14)  # current period 01-08..01-14, previous 01-01..01-07
NOW, BEFORE = "2025-01-14", "2025-01-07"  # a day of each period
Z_975 = NormalDist().inv_cdf(0.975)  # 1.959963984540054…
NO_HELP = pd.DataFrame(columns=["date", "topic", "help_sessions", "deflected"])
NO_ROI = pd.DataFrame(columns=["date", "workflow", "net_value"])
RATE_METRICS = (
    "completion_rate",
    "first_pass_rate",
    "fallback_to_ticket_rate",
    "deflection_rate",
    "csat_top_box_rate",
)


def _p(x1: int, n1: int, x2: int, n2: int) -> float:
    """The pooled two-proportion z-test's two-sided p-value, by hand: erfc(|z| / √2)."""
    pooled = (x1 + x2) / (n1 + n2)
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def _wilson(x: int, n: int, z: float = Z_975) -> tuple[float, float]:
    """Wilson's score interval in Newcombe's (1998) closed form, method 3:
    (2x + z² ± z·√(z² + 4x(1 − x/n))) / (2(n + z²))."""
    root = z * math.sqrt(z * z + 4 * x * (1 - x / n))
    return (2 * x + z * z - root) / (2 * (n + z * z)), (2 * x + z * z + root) / (2 * (n + z * z))


def _config(alpha: float = 0.05) -> KpiConfig:
    """Four workflows, threshold 0.05; user_onboarding has no explicit owner."""
    return parse_config(
        {
            "default_owner": "analytics-team",
            "scorecard": {"threshold": 0.05, "alpha": alpha},
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
    # scorecard.alpha 1.0: the threshold alone decides, as in v1.
    out = scorecard(completion, deflection, roi, _config(alpha=1.0), L)
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
    # The report and the demo summary read the flagged metrics back from the status text.
    assert flagged_metrics(ar["status"]) == ["first_pass_rate", "fallback_to_ticket_rate", "net_value"]
    assert flagged_metrics("ok") == [] and flagged_metrics(None) == []
    # p-values from the summed counts of each period
    assert ar["completion_rate_p_value"] == pytest.approx(_p(15, 20, 16, 20), abs=1e-12)
    assert ar["first_pass_rate_p_value"] == pytest.approx(_p(13, 20, 15, 20), abs=1e-12)  # 0.49
    assert ar["fallback_to_ticket_rate_p_value"] == pytest.approx(_p(2, 4, 1, 4), abs=1e-12)  # 0.47
    assert ar["deflection_rate_p_value"] == pytest.approx(1.0, abs=1e-12)  # 12/20 vs 6/10: z = 0
    assert math.isnan(ar["csat_top_box_rate_p_value"])  # no surveys
    low, high = _wilson(15, 20)
    assert ar["completion_rate_ci_low"] == pytest.approx(low, abs=1e-12)
    assert ar["completion_rate_ci_high"] == pytest.approx(high, abs=1e-12)

    inv = s.loc["invoice_download"]
    assert math.isnan(inv["completion_rate"]) and math.isnan(inv["completion_rate_prev"])
    assert (inv["attempts"], inv["attempts_prev"], inv["net_value"]) == (0, 0, 0.0)
    assert inv["status"] == "ok"
    assert math.isnan(inv["completion_rate_p_value"]) and math.isnan(inv["completion_rate_ci_low"])
    assert math.isnan(inv["completion_rate_ci_high"])

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
    assert math.isnan(lf["completion_rate_p_value"])  # no attempts before

    # At the default alpha 0.05 none of those rate moves (on 4 to 20 trials) is significant:
    # first_pass_rate (p 0.49) and fallback_to_ticket_rate (p 0.47) are no longer flagged.
    default = scorecard(completion, deflection, roi, _config(), L).set_index("workflow")
    assert default["status"].to_dict() == {
        "access_request": "regressed: net_value",
        "invoice_download": "ok",
        "data_export": "regressed: attempts",
        "user_onboarding": "regressed: net_value",
        "legacy_flow": "ok",
    }
    pd.testing.assert_frame_equal(default.drop(columns="status"), s.drop(columns="status"))


def test_scorecard_threshold_from_config() -> None:
    completion = completion_frame(
        [
            (NOW, "data_export", 1000, 700, 700, 0, 0),
            (BEFORE, "data_export", 1000, 800, 800, 0, 0),
        ]
    )
    loose = parse_config({"scorecard": {"threshold": 0.2}, "workflows": {"data_export": {}}})
    strict = parse_config({"scorecard": {"threshold": 0.05}, "workflows": {"data_export": {}}})
    # completion and first-pass rate 0.8 -> 0.7 on 1,000 attempts: change -0.1, significant
    assert scorecard(completion, NO_HELP, NO_ROI, loose, L)["status"].tolist() == ["ok"]
    assert scorecard(completion, NO_HELP, NO_ROI, strict, L)["status"].tolist() == [
        "regressed: completion_rate, first_pass_rate"
    ]


def test_csat_top_box_rate_is_compared_like_the_other_rates() -> None:
    completion = completion_frame(
        [(NOW, "data_export", 10, 8, 8, 0, 0), (BEFORE, "data_export", 10, 8, 8, 0, 0)]
    )
    surveys = pd.DataFrame(
        [
            # current: 3 of 5 and 3 of 5 top box = 0.6; previous: 8 of 10 = 0.8 (a 0.2 drop)
            ("2025-01-09", "data_export", "csat", 5, 0.6),
            ("2025-01-13", "data_export", "csat", 5, 0.6),
            ("2025-01-04", "data_export", "csat", 10, 0.8),
            ("2025-01-09", "data_export", "nps", 10, 0.0),  # not CSAT: left out
            ("2024-12-31", "data_export", "csat", 10, 0.0),  # before both periods
            # big_flow: 600 of 1,000 against 800 of 1,000 (the same drop, 100 times the answers)
            ("2025-01-10", "big_flow", "csat", 1000, 0.6),
            ("2025-01-03", "big_flow", "csat", 1000, 0.8),
        ],
        columns=["date", "workflow", "survey", "responses", "top_box_rate"],
    )
    workflows = {"data_export": {}, "other": {}, "big_flow": {}}
    config = parse_config({"scorecard": {"threshold": 0.05}, "workflows": workflows})
    out = scorecard(completion, NO_HELP, NO_ROI, config, L, surveys).set_index("workflow")
    de = out.loc["data_export"]
    assert (de["csat_top_box_rate"], de["csat_top_box_rate_prev"]) == (0.6, 0.8)
    # 6 of 10 against 8 of 10: p = 0.33, not below alpha 0.05
    assert de["csat_top_box_rate_p_value"] == pytest.approx(_p(6, 10, 8, 10), abs=1e-12)
    assert de["status"] == "ok"
    big = out.loc["big_flow"]
    assert big["csat_top_box_rate_p_value"] == pytest.approx(_p(600, 1000, 800, 1000), rel=1e-9)
    assert big["csat_top_box_rate_p_value"] < 1e-20 and big["status"] == "regressed: csat_top_box_rate"
    assert math.isnan(out.loc["other", "csat_top_box_rate"]) and out.loc["other", "status"] == "ok"
    assert math.isnan(out.loc["other", "csat_top_box_rate_p_value"])
    # alpha 1.0: the threshold alone, as before the significance rule
    v1 = parse_config({"scorecard": {"threshold": 0.05, "alpha": 1.0}, "workflows": workflows})
    out = scorecard(completion, NO_HELP, NO_ROI, v1, L, surveys).set_index("workflow")
    assert out.loc["data_export", "status"] == "regressed: csat_top_box_rate"
    without = scorecard(completion, NO_HELP, NO_ROI, config, L)
    assert without["csat_top_box_rate"].isna().all() and set(without["status"]) == {"ok"}
    assert without["csat_top_box_rate_p_value"].isna().all()


# --------------------------------------------------------------------------- the significance rule


def _rule_config(alpha: float = 0.05, threshold: float = 0.03) -> KpiConfig:
    """No configured workflow (the rows are the workflows seen in the data); threshold 0.03."""
    return parse_config({"scorecard": {"threshold": threshold, "alpha": alpha}})


def test_a_small_drop_on_few_attempts_is_flagged_only_without_the_significance_rule() -> None:
    # 17 of 20 completions before, 16 of 20 now: a 5-point drop (threshold 0.03), p = 0.68.
    completion = completion_frame([(NOW, "small", 20, 16, 16, 0, 0), (BEFORE, "small", 20, 17, 17, 0, 0)])
    out = scorecard(completion, NO_HELP, NO_ROI, _rule_config(), L).iloc[0]
    expected_p = _p(16, 20, 17, 20)
    assert expected_p == pytest.approx(0.6773, abs=5e-5)
    assert out["completion_rate_p_value"] == pytest.approx(expected_p, abs=1e-12)
    assert out["first_pass_rate_p_value"] == pytest.approx(expected_p, abs=1e-12)
    assert out["status"] == "ok"
    at_one = scorecard(completion, NO_HELP, NO_ROI, _rule_config(alpha=1.0), L).iloc[0]
    assert at_one["status"] == "regressed: completion_rate, first_pass_rate"
    # p 0.68 is below 0.7: a loose alpha lets it through too
    assert scorecard(completion, NO_HELP, NO_ROI, _rule_config(alpha=0.7), L)["status"].iloc[0] == (
        "regressed: completion_rate, first_pass_rate"
    )


def test_a_big_drop_on_thousands_of_attempts_is_flagged() -> None:
    # 1,800 of 2,000 before, 1,700 of 2,000 now: -0.05, p = 1.7e-6; fallback tickets 100 -> 200 of
    # 1,000 fallbacks (higher is worse), p = 3.8e-10.
    completion = completion_frame(
        [(NOW, "big", 2000, 1700, 1700, 1000, 200), (BEFORE, "big", 2000, 1800, 1800, 1000, 100)]
    )
    out = scorecard(completion, NO_HELP, NO_ROI, _rule_config(), L).iloc[0]
    assert out["completion_rate_p_value"] == pytest.approx(_p(1700, 2000, 1800, 2000), rel=1e-9)
    assert out["completion_rate_p_value"] < 1e-5
    assert out["fallback_to_ticket_rate_p_value"] == pytest.approx(_p(200, 1000, 100, 1000), rel=1e-9)
    assert out["status"] == "regressed: completion_rate, first_pass_rate, fallback_to_ticket_rate"
    low, high = _wilson(1700, 2000)
    assert (out["completion_rate_ci_low"], out["completion_rate_ci_high"]) == (
        pytest.approx(low, abs=1e-12),
        pytest.approx(high, abs=1e-12),
    )
    # the same moves the right way are significant but no regression
    better = completion_frame(
        [(NOW, "big", 2000, 1800, 1800, 1000, 100), (BEFORE, "big", 2000, 1700, 1700, 1000, 200)]
    )
    assert scorecard(better, NO_HELP, NO_ROI, _rule_config(), L)["status"].tolist() == ["ok"]


def test_a_significant_move_within_the_threshold_is_not_flagged() -> None:
    # 18,000 of 20,000 before, 17,600 of 20,000 now: -0.02 (threshold 0.03), p = 1.6e-10.
    completion = completion_frame(
        [(NOW, "huge", 20_000, 17_600, 17_600, 0, 0), (BEFORE, "huge", 20_000, 18_000, 18_000, 0, 0)]
    )
    out = scorecard(completion, NO_HELP, NO_ROI, _rule_config(), L).iloc[0]
    assert out["completion_rate_p_value"] == pytest.approx(_p(17_600, 20_000, 18_000, 20_000), rel=1e-9)
    assert out["completion_rate_p_value"] < 1e-9 and out["status"] == "ok"
    assert scorecard(completion, NO_HELP, NO_ROI, _rule_config(threshold=0.01), L)["status"].tolist() == [
        "regressed: completion_rate, first_pass_rate"
    ]


def test_p_values_are_null_without_trials_or_without_variance() -> None:
    completion = completion_frame(
        [
            # new_flow: attempts now, none before (and vice versa for gone_flow)
            (NOW, "new_flow", 10, 5, 5, 2, 1),
            (BEFORE, "gone_flow", 10, 5, 5, 2, 1),
            # perfect: every attempt completes first time in both periods (pooled 1); no fallback
            # ticket of 10 fallbacks in either (pooled 0)
            (NOW, "perfect", 10, 10, 10, 10, 0),
            (BEFORE, "perfect", 10, 10, 10, 10, 0),
        ]
    )
    deflection = pd.DataFrame(
        [(NOW, "exports", 10, 10), (BEFORE, "exports", 5, 5)],  # pooled deflection rate 1
        columns=["date", "topic", "help_sessions", "deflected"],
    )
    workflows = {"perfect": {"topics": ["exports"]}, "new_flow": {}, "gone_flow": {}}
    p_columns = [f"{m}_p_value" for m in RATE_METRICS]
    for alpha in (0.05, 1.0):
        config = parse_config({"scorecard": {"threshold": 0.03, "alpha": alpha}, "workflows": workflows})
        out = scorecard(completion, deflection, NO_ROI, config, L).set_index("workflow")
        assert out[p_columns].isna().all().all()
        assert out["status"].tolist() == ["ok", "ok", "regressed: attempts"]  # gone_flow: 10 -> 0
    assert out.loc["perfect", "completion_rate"] == out.loc["perfect", "completion_rate_prev"] == 1.0
    assert out.loc["perfect", "fallback_to_ticket_rate"] == 0.0
    assert out.loc["perfect", "deflection_rate"] == 1.0
    low, high = _wilson(10, 10)
    assert out.loc["perfect", "completion_rate_ci_low"] == pytest.approx(low, abs=1e-12)
    assert out.loc["perfect", "completion_rate_ci_high"] == 1.0
    assert math.isnan(out.loc["gone_flow", "completion_rate_ci_low"])  # no attempts now
    assert out.loc["new_flow", "completion_rate_ci_high"] == pytest.approx(_wilson(5, 10)[1], abs=1e-12)


def test_deflection_p_value_sums_the_topics_of_the_workflow() -> None:
    completion = completion_frame([(NOW, "access", 10, 5, 5, 0, 0), (BEFORE, "access", 10, 5, 5, 0, 0)])
    deflection = pd.DataFrame(
        [
            ("2025-01-09", "login", 300, 150),
            ("2025-01-13", "sso", 200, 100),  # now: 250 of 500
            ("2025-01-02", "login", 500, 350),  # before: 350 of 500
            ("2025-01-09", "misc", 1000, 0),  # a topic of no workflow
        ],
        columns=["date", "topic", "help_sessions", "deflected"],
    )
    config = parse_config(
        {"scorecard": {"threshold": 0.05}, "workflows": {"access": {"topics": ["login", "sso"]}}}
    )
    out = scorecard(completion, deflection, NO_ROI, config, L).iloc[0]
    assert out["deflection_rate_p_value"] == pytest.approx(_p(250, 500, 350, 500), rel=1e-9)
    assert out["status"] == "regressed: deflection_rate"


def test_attempts_and_net_value_keep_the_threshold_rule_at_any_alpha() -> None:
    # 4 attempts before, 2 now (-50 %); net value 100 -> 40 (-60 %): no p-value, flagged as in v1.
    completion = completion_frame([(NOW, "tiny", 2, 1, 1, 0, 0), (BEFORE, "tiny", 4, 2, 2, 0, 0)])
    roi = pd.DataFrame(
        [(NOW, "tiny", 40.0), (BEFORE, "tiny", 100.0)], columns=["date", "workflow", "net_value"]
    )
    for alpha in (1e-9, 0.05, 1.0):
        out = scorecard(completion, NO_HELP, roi, _rule_config(alpha=alpha), L).iloc[0]
        assert out["status"] == "regressed: attempts, net_value"
    assert not {"attempts_p_value", "net_value_p_value"} & set(SCORECARD_COLUMNS)


def test_every_rate_has_a_p_value_and_completion_rate_a_wilson_interval() -> None:
    p_columns = [c for c in SCORECARD_COLUMNS if c.endswith("_p_value")]
    assert p_columns == [f"{m}_p_value" for m in RATE_METRICS]
    at = SCORECARD_COLUMNS.index("completion_rate_p_value")
    assert SCORECARD_COLUMNS[at + 1 : at + 3] == ("completion_rate_ci_low", "completion_rate_ci_high")


# --------------------------------------------------------------------------- kpis/statistics.py


def test_wilson_interval_matches_newcombe_1998_table_i() -> None:
    # Newcombe, R. G. (1998), "Two-sided confidence intervals for the single proportion: comparison
    # of seven methods", Statistics in Medicine 17: 857-872, Table I, method 3 (Wilson score
    # interval without continuity correction), 95 %, as published to 4 decimals.
    published = {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0000, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }
    x = pd.Series([k[0] for k in published], index=list("abcd"))
    n = pd.Series([k[1] for k in published], index=list("abcd"))
    low, high = wilson_interval(x, n)
    assert list(low.index) == list(high.index) == list("abcd")
    for (successes, trials), key in zip(published, "abcd", strict=True):
        assert (round(low[key], 4), round(high[key], 4)) == published[(successes, trials)]
        # the closed form by hand, to the last digit, with the exact quantile ...
        by_hand = _wilson(successes, trials)
        assert (low[key], high[key]) == (
            pytest.approx(by_hand[0], abs=1e-12),
            pytest.approx(by_hand[1], abs=1e-12),
        )
    # ... which is 1.959963984540054, not a rounded 1.96 (that would be about 2e-6 off here)
    assert math.isclose(Z_975, 1.959963984540054, rel_tol=0, abs_tol=1e-15)
    rounded = _wilson(81, 263, z=1.96)
    assert abs(low["a"] - rounded[0]) > 1e-7 and abs(high["a"] - rounded[1]) > 1e-7


def test_wilson_interval_is_null_without_trials() -> None:
    low, high = wilson_interval(pd.Series([0, 3, 2]), pd.Series([0, 4, pd.NA], dtype="Int64"))
    assert low.isna().tolist() == [True, False, True] and high.isna().tolist() == [True, False, True]
    assert (low[1], high[1]) == (
        pytest.approx(_wilson(3, 4)[0], abs=1e-12),
        pytest.approx(_wilson(3, 4)[1], abs=1e-12),
    )
    ninety = wilson_interval(pd.Series([3]), pd.Series([4]), confidence=0.9)
    z90 = NormalDist().inv_cdf(0.95)
    assert ninety[0].iloc[0] == pytest.approx(_wilson(3, 4, z=z90)[0], abs=1e-12)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(pd.Series([1]), pd.Series([2]), confidence=1.0)


def test_the_pooled_z_test_matches_the_physicians_health_study_example() -> None:
    # Agresti, An Introduction to Categorical Data Analysis (2nd ed., 2007), section 2.2.2,
    # Table 2.2 (Physicians' Health Study, N. Engl. J. Med. 318: 262-264, 1988): myocardial
    # infarction in 189 of 11,034 physicians on placebo and 104 of 11,037 on aspirin; the book's
    # sample proportions are 0.0171 and 0.0094, a difference of 0.0077. By hand: pooled proportion
    # 293 / 22,071 = 0.01328, SE = √(0.01328 · 0.98672 · (1/11,034 + 1/11,037)) = 0.001541,
    # z = 0.0077 / 0.00154 = 5.00, two-sided p = erfc(5.00 / √2) = 5.7e-7.
    assert (round(189 / 11_034, 4), round(104 / 11_037, 4)) == (0.0171, 0.0094)
    p = pooled_z_test(pd.Series([189]), pd.Series([11_034]), pd.Series([104]), pd.Series([11_037]))
    assert p.iloc[0] == pytest.approx(_p(189, 11_034, 104, 11_037), rel=1e-9)
    assert p.iloc[0] == pytest.approx(5.69e-7, rel=5e-3)
    # The same test is Pearson's chi-squared test of the 2 x 2 table (z² = X², 1 df): X² from the
    # expected counts row total × column total / N, independently of the z formula, is 25.01.
    table = [[189, 11_034 - 189], [104, 11_037 - 104]]
    rows, cols = [sum(r) for r in table], [sum(c) for c in zip(*table, strict=True)]
    total = sum(rows)
    x2 = sum(
        (table[i][j] - rows[i] * cols[j] / total) ** 2 / (rows[i] * cols[j] / total)
        for i in range(2)
        for j in range(2)
    )
    assert round(x2, 2) == 25.01
    assert p.iloc[0] == pytest.approx(math.erfc(math.sqrt(x2 / 2)), rel=1e-9)  # P(χ²₁ > X²)
