"""kpi_survey_daily: how users felt about the task they just finished or failed.

Production ``survey_response`` events by the UTC date of the response. A response is paired with
the attempt of its ``task_id`` when that attempt started on the response's date or the day before
(whoever answered: the pairing is by task_id); its workflow is its own ``workflow``, else that
attempt's, else ``none``. Boxes are inclusive ranges of the survey's scale (kpi.yaml ``surveys``;
the built-in csat, ces and nps unless redefined); ``nps`` only for a survey of kind nps.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import PRODUCTION, Events, query, ratio, utc_date_sql
from kpi_pipeline.tables import SURVEY_DAILY, conform

NO_WORKFLOW = "none"
SURVEY_ATTEMPT_COLUMNS: tuple[str, ...] = ("task_id", "workflow", "date", "completed")
# The staged telemetry columns a day's survey table reads.
SURVEY_EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "user_id",
    "event_type",
    "workflow",
    "task_id",
    "environment",
    "survey",
    "score",
)

_SQL = """
WITH responses AS (
    SELECT user_id, survey, score, task_id, workflow, {date} AS date
    FROM {production}
    WHERE event_type = 'survey_response' AND {date} = $day
),
judged AS (
    SELECT r.date, coalesce(r.workflow, a.workflow, '{none}') AS workflow, r.survey, r.user_id, r.score,
        a.task_id IS NOT NULL
            AND CAST(a.date AS DATE) BETWEEN CAST(r.date AS DATE) - 1 AND CAST(r.date AS DATE) AS paired,
        coalesce(a.completed, false) AS completed,
        r.score BETWEEN s.top_lo AND s.top_hi AS top,
        r.score BETWEEN s.bottom_lo AND s.bottom_hi AS bottom,
        s.kind
    FROM responses r
    JOIN surveys s USING (survey)
    LEFT JOIN attempts a ON a.task_id = r.task_id
)
SELECT date, workflow, survey,
    count(*) AS responses,
    count(DISTINCT user_id) AS respondents,
    avg(score) AS mean_score,
    count(*) FILTER (WHERE top) AS top_box,
    count(*) FILTER (WHERE bottom) AS bottom_box,
    any_value(kind) AS kind,
    count(*) FILTER (WHERE paired) AS paired_responses,
    count(*) FILTER (WHERE paired AND completed) AS paired_completed,
    avg(score) FILTER (WHERE paired AND completed) AS mean_score_completed,
    avg(score) FILTER (WHERE paired AND NOT completed) AS mean_score_failed,
    count(*) FILTER (WHERE paired AND completed AND bottom) AS unhappy_completions
FROM judged
GROUP BY date, workflow, survey
ORDER BY date, workflow, survey
"""

_DTYPES = {
    "date": "string",
    "workflow": "string",
    "survey": "string",
    "responses": "int64",
    "respondents": "int64",
    "mean_score": "float64",
    "top_box": "int64",
    "bottom_box": "int64",
    "kind": "string",
    "paired_responses": "int64",
    "paired_completed": "int64",
    "mean_score_completed": "float64",
    "mean_score_failed": "float64",
    "unhappy_completions": "int64",
}


def survey_boxes(config: KpiConfig) -> pd.DataFrame:
    """Each known survey's kind and box bounds (kpi.yaml ``surveys`` with the built-ins)."""
    rows = [(name, s.kind, *s.top_box, *s.bottom_box) for name, s in config.surveys.items()]
    columns = ["survey", "kind", "top_lo", "top_hi", "bottom_lo", "bottom_hi"]
    return pd.DataFrame(rows, columns=columns).astype({"survey": "string", "kind": "string"})


def survey_daily(events: Events, attempts: pd.DataFrame, config: KpiConfig, day: dt.date) -> pd.DataFrame:
    """kpi_survey_daily for ``day`` from its telemetry (``survey``/``score`` staged) and the
    attempts of the responses' task_ids (one row per task_id; those started on ``day`` or the day
    before pair, any other only names the workflow)."""
    sql = _SQL.format(date=utc_date_sql("occurred_at"), production=PRODUCTION, none=NO_WORKFLOW)
    sql = sql.replace("$day", f"'{day.isoformat()}'")
    keys = attempts[list(SURVEY_ATTEMPT_COLUMNS)]
    out = query(events, sql, _DTYPES, {"attempts": keys, "surveys": survey_boxes(config)})
    out["top_box_rate"] = ratio(out["top_box"], out["responses"])
    out["bottom_box_rate"] = ratio(out["bottom_box"], out["responses"])
    out["nps"] = (100.0 * (out["top_box_rate"] - out["bottom_box_rate"])).where(out["kind"] == "nps")
    out["unhappy_completion_rate"] = ratio(out["unhappy_completions"], out["paired_completed"])
    return conform(out, SURVEY_DAILY)


def response_task_ids(events: Events) -> pd.Series:
    """The distinct task_ids that production survey responses name (to look their attempts up)."""
    sql = (
        f"SELECT DISTINCT task_id FROM {PRODUCTION} "
        "WHERE event_type = 'survey_response' AND task_id IS NOT NULL"
    )
    return query(events, sql, {"task_id": "string"})["task_id"]
