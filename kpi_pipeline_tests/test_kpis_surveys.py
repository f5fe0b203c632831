"""kpi_survey_daily on a hand-computed fixture (kpis-v2.md), and the ``surveys:`` config.

Day D = 2025-03-10. Attempts: t1 access_request started on D (completed), t2 access_request on
D−1 (failed), t3 data_export two days before (completed: too old to pair, it only names the
workflow), t4 access_request on D at 15:00 (completed; its response came at 09:00, before it
started, and still pairs: the rule is the start date).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from kpi_pipeline.config import BUILTIN_SURVEYS, ConfigError, parse_config
from kpi_pipeline.kpis.surveys import survey_daily
from kpi_pipeline.tables import SURVEY_DAILY

D = dt.date(2025, 3, 10)
CONFIG = parse_config(
    {"surveys": {"effort": {"kind": "other", "scale": [1, 10], "top_box": [8, 10], "bottom_box": [1, 3]}}}
)
ATTEMPTS = pd.DataFrame(
    {
        "task_id": ["t1", "t2", "t3", "t4"],
        "workflow": ["access_request", "access_request", "data_export", "access_request"],
        "date": ["2025-03-10", "2025-03-09", "2025-03-08", "2025-03-10"],
        "completed": [True, False, True, True],
    }
)


def _responses() -> pd.DataFrame:
    rows = []

    def add(at: str, user: str, survey: str, score: float, task: str | None = None, **extra: object) -> None:
        rows.append(
            {
                "event_id": f"r{len(rows) + 1}",
                "occurred_at": pd.Timestamp(at, tz="UTC"),
                "user_id": user,
                "account_id": "acc",
                "event_type": "survey_response",
                "task_id": task,
                "survey": survey,
                "score": float(score),
                "environment": extra.pop("environment", "production"),
                "workflow": extra.pop("workflow", None),
            }
        )

    add("2025-03-10T10:00", "u1", "csat", 5, "t1")
    add("2025-03-10T10:05", "u2", "csat", 2, "t1")  # another user's answer about t1: still paired
    add("2025-03-10T10:10", "u1", "csat", 4, "t2")  # 4 is the top box's edge; t2 started the day before
    add("2025-03-10T11:00", "u3", "csat", 3, "t3")  # two days after t3 started: not paired
    add("2025-03-10T09:00", "u4", "csat", 1, "t4")  # before t4 started, on its start date: paired
    add("2025-03-10T12:00", "u5", "csat", 2)  # no task, no workflow: 'none'
    add("2025-03-10T13:00", "u1", "nps", 9, workflow="access_request")
    add("2025-03-10T13:05", "u2", "nps", 6, "t1", workflow="access_request")  # 6 is the bottom box's edge
    add("2025-03-10T13:10", "u6", "nps", 7, workflow="access_request")  # a passive
    add("2025-03-10T14:00", "u9", "csat", 1, "t1", environment="staging")  # not production
    add("2025-03-11T00:00", "u9", "csat", 1, "t1")  # the next day
    add("2025-03-10T15:00", "u1", "effort", 8, "t3", workflow="data_export")  # custom survey, top edge
    add("2025-03-10T16:00", "u7", "csat", 4, "t1", workflow="data_export")  # its own workflow wins
    return pd.DataFrame(rows)


def _rows(frame: pd.DataFrame) -> dict[tuple, list]:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    columns = [c for c in SURVEY_DAILY.column_names if c not in SURVEY_DAILY.grain]
    return {tuple(r[k] for k in SURVEY_DAILY.grain): [r[c] for c in columns] for r in records}


def test_survey_daily_pairs_responses_with_the_attempt_they_rate() -> None:
    out = survey_daily(_responses(), ATTEMPTS, CONFIG, D)
    assert tuple(out.columns) == SURVEY_DAILY.column_names
    # responses, respondents, mean, top, bottom, nps, paired, mean completed, mean failed,
    # unhappy completions, unhappy rate
    assert _rows(out) == {
        ("2025-03-10", "access_request", "csat"): [4, 3, 3.0, 0.5, 0.5, None, 4, 8 / 3, 4.0, 2, 2 / 3],
        ("2025-03-10", "access_request", "nps"): [3, 3, 22 / 3, 1 / 3, 1 / 3, 0.0, 1, 6.0, None, 1, 1.0],
        ("2025-03-10", "data_export", "csat"): [2, 2, 3.5, 0.5, 0.0, None, 1, 4.0, None, 0, 0.0],
        ("2025-03-10", "data_export", "effort"): [1, 1, 8.0, 1.0, 0.0, None, 0, None, None, 0, None],
        ("2025-03-10", "none", "csat"): [1, 1, 2.0, 0.0, 1.0, None, 0, None, None, 0, None],
    }


def test_nps_is_100_times_promoters_minus_detractors() -> None:
    responses = _responses()
    nps = responses[responses["survey"] == "nps"].assign(score=[10.0, 10.0, 3.0])
    out = survey_daily(nps, ATTEMPTS, CONFIG, D)
    assert out["nps"].tolist() == pytest.approx([100 * (2 / 3 - 1 / 3)])


def test_an_empty_day_has_no_rows() -> None:
    out = survey_daily(_responses(), ATTEMPTS, CONFIG, D + dt.timedelta(days=5))
    assert out.empty and tuple(out.columns) == SURVEY_DAILY.column_names


def test_built_in_surveys_apply_unless_redefined() -> None:
    assert parse_config({}).surveys == BUILTIN_SURVEYS
    assert (BUILTIN_SURVEYS["nps"].scale, BUILTIN_SURVEYS["nps"].bottom_box) == ((0, 10), (0, 6))
    strict = parse_config(
        {"surveys": {"csat": {"kind": "csat", "scale": [1, 5], "top_box": [5, 5], "bottom_box": [1, 1]}}}
    )
    assert strict.surveys["csat"].top_box == (5, 5) and strict.surveys["nps"] == BUILTIN_SURVEYS["nps"]
    assert sorted(CONFIG.surveys) == ["ces", "csat", "effort", "nps"]


@pytest.mark.parametrize(
    ("survey", "message"),
    [
        (
            {"kind": "csat", "scale": [1, 5], "top_box": [4, 6], "bottom_box": [1, 2]},
            "surveys.s: top_box [4, 6] is not inside scale [1, 5]",
        ),
        (
            {"kind": "csat", "scale": [1, 5], "top_box": [4, 5], "bottom_box": [0, 2]},
            "surveys.s: bottom_box [0, 2] is not inside scale [1, 5]",
        ),
        (
            {"kind": "other", "scale": [5, 1], "top_box": [4, 5], "bottom_box": [1, 2]},
            "surveys.s: scale [5, 1]: its low end is above its high end",
        ),
        (
            {"kind": "other", "scale": [1, 5], "top_box": [5, 4], "bottom_box": [1, 2]},
            "surveys.s: top_box [5, 4]: its low end is above its high end",
        ),
        (
            {"kind": "smile", "scale": [1, 5], "top_box": [4, 5], "bottom_box": [1, 2]},
            "surveys.s.kind: Input should be 'csat', 'ces', 'nps' or 'other', got 'smile'",
        ),
        (
            {"kind": "other", "scale": [1, ".inf"], "top_box": [4, 5], "bottom_box": [1, 2]},
            "surveys.s.scale.1: Input should be a valid number, got '.inf' (write numbers without quotes)",
        ),
    ],
)
def test_bad_surveys_fail_at_load_naming_the_key(survey: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"surveys": {"s": survey}})
    assert str(info.value) == f"kpi.yaml: invalid configuration: {message}"


def test_the_demo_summary_shows_csat_and_unhappy_completions_per_workflow() -> None:
    from kpi_pipeline.summary import survey_lines

    out = survey_daily(_responses(), ATTEMPTS, CONFIG, D)
    assert survey_lines(out) == [
        "CSAT over all dates (completed but unhappy: a bottom-box answer about a completed attempt):",
        "  access_request            4 answers  mean 3.00  top box  50.0%  completed but unhappy 2",
        "  data_export               2 answers  mean 3.50  top box  50.0%  completed but unhappy 0",
        "  none                      1 answers  mean 2.00  top box   0.0%  completed but unhappy 0",
    ]
    assert survey_lines(out[out["survey"] == "nps"]) == []
