"""Workflow scorecard (``kpi_scorecard``): the last 7 days against the 7 days before, per workflow.

The CSAT top-box rate (kpi_survey_daily's csat rows, issue 14) is flagged by the same threshold
rule as the other rates until the significance rule of the support/growth issue lands.

Rates are ratios of the summed counts of each 7-day period (not means of
daily rates). A metric flags the workflow as regressed when it moved the wrong
way by more than ``scorecard.threshold``: the absolute change for rates, the
change relative to ``|previous|`` for ``attempts`` and ``net_value``. Lower is
worse except for ``fallback_to_ticket_rate``. A NaN on either side (including a
previous value of 0 for the relative metrics) never flags.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import table

METRICS: tuple[str, ...] = (
    "completion_rate",
    "first_pass_rate",
    "fallback_to_ticket_rate",
    "deflection_rate",
    "csat_top_box_rate",
    "attempts",
    "net_value",
)
RELATIVE_METRICS: frozenset[str] = frozenset({"attempts", "net_value"})
HIGHER_IS_WORSE: frozenset[str] = frozenset({"fallback_to_ticket_rate"})
SCORECARD_COLUMNS: tuple[str, ...] = table("kpi_scorecard").column_names
# Tolerance so that a change of exactly the threshold (e.g. 0.80 -> 0.75 at 0.05) does not flag
# because of binary floating point.
_EPSILON = 1e-9


def _period_metrics(
    completion: pd.DataFrame,
    deflection: pd.DataFrame,
    roi: pd.DataFrame,
    config: KpiConfig,
    workflows: pd.Index,
    first: dt.date,
    last: dt.date,
    surveys: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The scorecard metrics per workflow over the dates [first, last]."""
    lo, hi = first.isoformat(), last.isoformat()

    def in_period(frame: pd.DataFrame) -> pd.DataFrame:
        dates = frame["date"].astype(str)
        return frame[(dates >= lo) & (dates <= hi)]

    counts = ["attempts", "completions", "first_pass_completions", "fallbacks", "fallback_tickets"]
    done = in_period(completion).groupby("workflow")[counts].sum().reindex(workflows, fill_value=0)

    defl = in_period(deflection)
    defl = defl.assign(workflow=defl["topic"].map(config.topic_to_workflow()))
    helped = (
        defl[defl["workflow"].notna()]
        .groupby("workflow")[["help_sessions", "deflected"]]
        .sum()
        .reindex(workflows, fill_value=0)
    )
    net_value = in_period(roi).groupby("workflow")["net_value"].sum().reindex(workflows, fill_value=0.0)

    out = pd.DataFrame(index=workflows)
    out["completion_rate"] = ratio(done["completions"], done["attempts"])
    out["first_pass_rate"] = ratio(done["first_pass_completions"], done["attempts"])
    out["fallback_to_ticket_rate"] = ratio(done["fallback_tickets"], done["fallbacks"])
    out["deflection_rate"] = ratio(helped["deflected"], helped["help_sessions"])
    rated = pd.DataFrame({"responses": 0, "top": 0.0}, index=workflows)
    if surveys is not None:
        csat = in_period(surveys)
        csat = csat[csat["survey"] == "csat"]
        # Each day's top-box answers, from its rate and count (whole numbers, so exact once rounded).
        top = (csat["top_box_rate"] * csat["responses"]).round()
        rated = csat.assign(top=top).groupby("workflow")[["responses", "top"]].sum()
        rated = rated.reindex(workflows, fill_value=0)
    out["csat_top_box_rate"] = ratio(rated["top"], rated["responses"])
    out["attempts"] = done["attempts"].astype("int64")
    out["net_value"] = net_value.astype(float)
    return out


def _regressed(current: pd.Series, previous: pd.Series, metric: str, threshold: float) -> pd.Series:
    """Whether ``metric`` moved the wrong way by more than ``threshold`` (never when either side is NaN)."""
    cur = current.astype(float)
    prev = previous.astype(float)
    change = cur - prev
    if metric in RELATIVE_METRICS:
        change = change / prev.abs().where(prev != 0, np.nan)
    worse = change if metric in HIGHER_IS_WORSE else -change
    return (worse > threshold + _EPSILON).fillna(False).astype(bool)


def scorecard(
    completion: pd.DataFrame,
    deflection: pd.DataFrame,
    roi: pd.DataFrame,
    config: KpiConfig,
    as_of: dt.date,
    surveys: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per workflow (configured ones first, then any other seen in the data) as of ``as_of``;
    ``surveys`` (kpi_survey_daily) give the CSAT top-box rate (NULL without CSAT answers).

    Current period: [as_of - 6, as_of]; previous period: [as_of - 13, as_of - 7].
    ``status`` is ``ok`` or ``regressed: <metric>, <metric>`` in the order of ``METRICS``.
    """
    configured = list(config.workflows)
    seen = pd.concat([completion["workflow"], roi["workflow"]]).dropna().astype(str).unique()
    extra = sorted(set(seen) - set(configured))
    workflows = pd.Index(configured + extra, dtype="str", name="workflow")

    day = dt.timedelta(days=1)
    current = _period_metrics(completion, deflection, roi, config, workflows, as_of - 6 * day, as_of, surveys)
    previous = _period_metrics(
        completion, deflection, roi, config, workflows, as_of - 13 * day, as_of - 7 * day, surveys
    )

    owners = {n: config.workflow_owner(n) for n in workflows}
    outcomes = {n: wf.description for n, wf in config.workflows.items()}
    out = pd.DataFrame(index=workflows)
    out["owner"] = pd.Series(owners, dtype="str").reindex(workflows)
    out["primary_outcome"] = pd.Series(outcomes, dtype="str").reindex(workflows).fillna("")
    out["as_of"] = as_of.isoformat()
    flagged = pd.Series("", index=workflows, dtype="str")
    for metric in METRICS:
        out[metric] = current[metric]
        out[f"{metric}_prev"] = previous[metric]
        hit = _regressed(current[metric], previous[metric], metric, config.scorecard.threshold)
        flagged = flagged + np.where(hit, f"{metric}, ", "")
    out["status"] = np.where(flagged == "", "ok", "regressed: " + flagged.str.removesuffix(", "))
    return out.reset_index()[list(SCORECARD_COLUMNS)]
