"""Tests for task_completion_daily and funnel_daily on hand-made attempts."""

from __future__ import annotations

import math

import pandas as pd

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.kpis.completion import (
    COMPLETION_COLUMNS,
    FUNNEL_COLUMNS,
    funnel_daily,
    task_completion_daily,
)

NAN = float("nan")


def attempt(
    date: str,
    workflow: str,
    *,
    persona: str = "admin",
    channel: str = "web",
    seconds: float = NAN,
    first_pass: bool = False,
    error: bool = False,
    fallback: bool = False,
    fallback_ticket: bool = False,
    steps: str = "",
) -> dict[str, object]:
    """One attempt row; completed exactly when ``seconds`` is given."""
    return {
        "date": date,
        "workflow": workflow,
        "persona": persona,
        "channel": channel,
        "completed": not math.isnan(seconds),
        "seconds_to_complete": seconds,
        "first_pass": first_pass,
        "error": error,
        "fallback": fallback,
        "fallback_ticket": fallback_ticket,
        "steps_reached": steps,
    }


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Attempts frame from rows."""
    return pd.DataFrame(rows)


def test_completion_counts_rates_and_quantiles() -> None:
    rows = [
        attempt("2025-01-10", "w", seconds=10.0, first_pass=True),
        attempt("2025-01-10", "w", seconds=20.0, first_pass=True),
        attempt("2025-01-10", "w", seconds=40.0, error=True),
        attempt("2025-01-10", "w", seconds=100.0, fallback=True),
        attempt("2025-01-10", "w", error=True, fallback=True, fallback_ticket=True),
        # another group: no completion, no fallback
        attempt("2025-01-10", "w", persona="developer", error=True),
        # another date
        attempt("2025-01-11", "w", seconds=5.0, first_pass=True),
    ]
    out = task_completion_daily(frame(rows))
    assert tuple(out.columns) == COMPLETION_COLUMNS
    assert len(out) == 3
    g = out.set_index(["date", "persona"]).loc[("2025-01-10", "admin")]
    assert g["attempts"] == 5
    assert g["completions"] == 4
    assert g["completion_rate"] == 4 / 5
    assert g["first_pass_completions"] == 2
    assert g["first_pass_rate"] == 2 / 5
    assert g["error_attempts"] == 2
    assert g["error_rate"] == 2 / 5
    assert g["fallbacks"] == 2
    assert g["fallback_rate"] == 2 / 5
    assert g["fallback_tickets"] == 1
    assert g["fallback_to_ticket_rate"] == 1 / 2
    # completed seconds sorted [10, 20, 40, 100]; median = (20 + 40) / 2 = 30
    assert g["median_seconds_to_complete"] == 30.0
    # p90: position 0.9 * (4 - 1) = 2.7 -> 40 + 0.7 * (100 - 40) = 82
    assert math.isclose(g["p90_seconds_to_complete"], 82.0)

    dev = out.set_index(["date", "persona"]).loc[("2025-01-10", "developer")]
    assert dev["attempts"] == 1
    assert dev["completions"] == 0
    assert dev["completion_rate"] == 0.0
    assert dev["error_rate"] == 1.0
    # 0 fallbacks -> NULL rate; no completions -> NULL quantiles
    assert math.isnan(dev["fallback_to_ticket_rate"])
    assert math.isnan(dev["median_seconds_to_complete"])
    assert math.isnan(dev["p90_seconds_to_complete"])

    single = out.set_index(["date", "persona"]).loc[("2025-01-11", "admin")]
    # one value: median = p90 = 5
    assert single["median_seconds_to_complete"] == 5.0
    assert single["p90_seconds_to_complete"] == 5.0


def test_completion_grain_splits_channel() -> None:
    rows = [
        attempt("2025-01-10", "w", channel="web", seconds=1.0),
        attempt("2025-01-10", "w", channel="mobile"),
        attempt("2025-01-10", "w2", channel="web"),
    ]
    out = task_completion_daily(frame(rows)).set_index(["workflow", "channel"])
    assert out.loc[("w", "web"), "completion_rate"] == 1.0
    assert out.loc[("w", "mobile"), "completion_rate"] == 0.0
    assert out.loc[("w2", "web"), "attempts"] == 1


def _funnel_config() -> KpiConfig:
    """access_request has three steps; data_export has none (no funnel)."""
    return parse_config(
        {
            "workflows": {
                "access_request": {"steps": ["form_opened", "approver_selected", "submitted"]},
                "data_export": {},
            }
        }
    )


def test_funnel_presence_not_order() -> None:
    rows = [
        # all steps, completed
        attempt("2025-01-10", "access_request", steps="approver_selected;form_opened;submitted", seconds=9.0),
        # submitted without the earlier steps (presence, not order), completed
        attempt("2025-01-10", "access_request", steps="submitted", seconds=9.0),
        # form_opened and approver_selected only
        attempt("2025-01-10", "access_request", steps="approver_selected;form_opened"),
        # nothing reached
        attempt("2025-01-10", "access_request"),
        # a step name that only contains a configured name does not count
        attempt("2025-01-10", "access_request", steps="form_opened_v2"),
        # other workflows never produce funnel rows
        attempt("2025-01-10", "data_export", steps="form_opened", seconds=1.0),
        attempt("2025-01-10", "not_in_yaml", seconds=1.0),
    ]
    out = funnel_daily(frame(rows), _funnel_config())
    assert tuple(out.columns) == FUNNEL_COLUMNS
    assert set(out["workflow"]) == {"access_request"}
    assert list(out["step_index"]) == [0, 1, 2, 3, 4]
    assert list(out["step"]) == ["started", "form_opened", "approver_selected", "submitted", "completed"]
    # started 5; form_opened 2; approver_selected 2; submitted 2; completed 2
    assert list(out["reached"]) == [5, 2, 2, 2, 2]
    assert list(out["conversion_from_start"]) == [1.0, 2 / 5, 2 / 5, 2 / 5, 2 / 5]
    assert math.isnan(out["conversion_from_previous"].iloc[0])
    assert list(out["conversion_from_previous"].iloc[1:]) == [2 / 5, 2 / 2, 2 / 2, 2 / 2]
    assert math.isnan(out["dropped_from_previous"].iloc[0])
    # 5 - 2 = 3, then 0, 0, 0
    assert list(out["dropped_from_previous"].iloc[1:]) == [3.0, 0.0, 0.0, 0.0]


def test_funnel_negative_drop_and_zero_previous() -> None:
    rows = [
        # day 1: nobody opened the form, one submitted
        attempt("2025-01-10", "access_request", steps="submitted"),
        attempt("2025-01-10", "access_request", steps="approver_selected;submitted"),
        # day 2 only
        attempt("2025-01-12", "access_request", steps="form_opened", seconds=3.0),
    ]
    out = funnel_daily(frame(rows), _funnel_config())
    assert sorted(set(out["date"])) == ["2025-01-10", "2025-01-12"]  # no row for 2025-01-11
    day1 = out[out["date"] == "2025-01-10"].set_index("step_index")
    # reached: started 2, form_opened 0, approver_selected 1, submitted 2, completed 0
    assert list(day1["reached"]) == [2, 0, 1, 2, 0]
    # approver_selected after form_opened 0 -> NULL conversion; drop 0 - 1 = -1 (not clipped)
    assert math.isnan(day1.loc[2, "conversion_from_previous"])
    assert day1.loc[2, "dropped_from_previous"] == -1.0
    assert day1.loc[3, "conversion_from_previous"] == 2 / 1
    assert day1.loc[3, "dropped_from_previous"] == -1.0  # 1 - 2
    assert day1.loc[4, "conversion_from_previous"] == 0 / 2
    day2 = out[out["date"] == "2025-01-12"].set_index("step_index")
    assert list(day2["reached"]) == [1, 1, 0, 0, 1]


def test_funnel_without_attempts_is_empty() -> None:
    out = funnel_daily(frame([attempt("2025-01-10", "data_export")]), _funnel_config())
    assert out.empty
    assert tuple(out.columns) == FUNNEL_COLUMNS
