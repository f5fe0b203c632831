"""Workflow scorecard (``kpi_scorecard``): the last 7 days against the 7 days before, per workflow.

Rates are ratios of the summed counts of each 7-day period (not means of daily rates): completions
and first-pass completions of attempts, fallback tickets of fallbacks, deflected of help sessions
(topics of the workflow) and, for the CSAT top-box rate (kpi_survey_daily's csat rows, issue 14),
top-box answers of CSAT responses.

Significance (kpis-v2.md, "kpi_scorecard — added columns and the status rule"): each rate's
``<rate>_p_value`` is the two-sided pooled two-proportion z-test of the two periods' summed counts
(``kpis.statistics.pooled_z_test``), NULL when either period's denominator is 0 or the pooled rate
is 0 or 1. The spec lists four rates; as an extension the CSAT top-box rate gets a p-value by the
same test and is flagged by the same rule. ``completion_rate_ci_low`` / ``_ci_high`` are the 95 %
Wilson interval of the current period's completion rate (``kpis.statistics.wilson_interval``,
z = the 0.975 normal quantile 1.959964…), NULL without attempts.

Status: a metric flags the workflow as regressed when it moved the wrong way by more than
``scorecard.threshold``: the absolute change for rates, the change relative to ``|previous|`` for
``attempts`` and ``net_value``. Lower is worse except for ``fallback_to_ticket_rate``. A NaN on
either side (including a previous value of 0 for the relative metrics) never flags. A rate must
moreover be significant: its p-value below ``scorecard.alpha`` (a NULL p-value is not). At
``scorecard.alpha: 1.0`` (the largest allowed) the p-value is ignored and a rate flags on the
threshold alone, which is the v1 rule (a NULL p-value then does not hold a rate back, though it
only arises where the rate did not move). ``attempts`` and ``net_value`` keep the v1 rule at any
alpha.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.kpis.statistics import pooled_z_test, wilson_interval
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
# Each rate's (successes, trials) columns of ``_period_counts``: what its z-test compares.
RATES: dict[str, tuple[str, str]] = {
    "completion_rate": ("completions", "attempts"),
    "first_pass_rate": ("first_pass_completions", "attempts"),
    "fallback_to_ticket_rate": ("fallback_tickets", "fallbacks"),
    "deflection_rate": ("deflected", "help_sessions"),
    "csat_top_box_rate": ("csat_top_box", "csat_responses"),
}
RELATIVE_METRICS: frozenset[str] = frozenset({"attempts", "net_value"})
HIGHER_IS_WORSE: frozenset[str] = frozenset({"fallback_to_ticket_rate"})
SCORECARD_COLUMNS: tuple[str, ...] = table("kpi_scorecard").column_names
# Tolerance so that a change of exactly the threshold (e.g. 0.80 -> 0.75 at 0.05) does not flag
# because of binary floating point.
_EPSILON = 1e-9


def _period_counts(
    completion: pd.DataFrame,
    deflection: pd.DataFrame,
    roi: pd.DataFrame,
    config: KpiConfig,
    workflows: pd.Index,
    first: dt.date,
    last: dt.date,
    surveys: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per workflow over the dates [first, last], the summed counts behind the scorecard metrics
    (every column ``RATES`` names, attempts among them) and the net value; 0 where there are none."""
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
    rated = pd.DataFrame({"csat_responses": 0.0, "csat_top_box": 0.0}, index=workflows)
    if surveys is not None:
        csat = in_period(surveys)
        csat = csat[csat["survey"] == "csat"]
        # Each day's top-box answers, from its rate and count (whole numbers, so exact once rounded).
        top = (csat["top_box_rate"] * csat["responses"]).round()
        rated = (
            csat.assign(csat_top_box=top, csat_responses=csat["responses"])
            .groupby("workflow")[["csat_responses", "csat_top_box"]]
            .sum()
            .reindex(workflows, fill_value=0)
        )

    out = pd.concat([done, helped, rated], axis=1).astype("float64")
    out["net_value"] = (
        in_period(roi).groupby("workflow")["net_value"].sum().reindex(workflows, fill_value=0.0)
    )
    return out


def _metrics(counts: pd.DataFrame) -> pd.DataFrame:
    """The scorecard metrics of one period from its counts (``_period_counts``)."""
    out = pd.DataFrame(index=counts.index)
    for metric, (successes, trials) in RATES.items():
        out[metric] = ratio(counts[successes], counts[trials])
    out["attempts"] = counts["attempts"].astype("int64")
    out["net_value"] = counts["net_value"].astype("float64")
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


def _significant(p_value: pd.Series, alpha: float) -> pd.Series:
    """Whether a rate's move counts as significant: p < alpha (a NULL p-value is not), or always at
    alpha >= 1, where the rule falls back to the threshold alone."""
    if alpha >= 1:
        return pd.Series(True, index=p_value.index, dtype=bool)
    return (p_value < alpha).fillna(False).astype(bool)


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
    ``status`` is ``ok`` or ``regressed: <metric>, <metric>`` in the order of ``METRICS`` (rates
    only when also significant at ``scorecard.alpha``; see the module docstring).
    """
    configured = list(config.workflows)
    seen = pd.concat([completion["workflow"], roi["workflow"]]).dropna().astype(str).unique()
    extra = sorted(set(seen) - set(configured))
    workflows = pd.Index(configured + extra, dtype="str", name="workflow")

    day = dt.timedelta(days=1)
    now = _period_counts(completion, deflection, roi, config, workflows, as_of - 6 * day, as_of, surveys)
    before = _period_counts(
        completion, deflection, roi, config, workflows, as_of - 13 * day, as_of - 7 * day, surveys
    )
    current, previous = _metrics(now), _metrics(before)

    owners = {n: config.workflow_owner(n) for n in workflows}
    outcomes = {n: wf.description for n, wf in config.workflows.items()}
    out = pd.DataFrame(index=workflows)
    out["owner"] = pd.Series(owners, dtype="str").reindex(workflows)
    out["primary_outcome"] = pd.Series(outcomes, dtype="str").reindex(workflows).fillna("")
    out["as_of"] = as_of.isoformat()
    out["completion_rate_ci_low"], out["completion_rate_ci_high"] = wilson_interval(
        now["completions"], now["attempts"]
    )
    threshold, alpha = config.scorecard.threshold, config.scorecard.alpha
    flagged = pd.Series("", index=workflows, dtype="str")
    for metric in METRICS:
        out[metric] = current[metric]
        out[f"{metric}_prev"] = previous[metric]
        hit = _regressed(current[metric], previous[metric], metric, threshold)
        if metric in RATES:
            successes, trials = RATES[metric]
            p_value = pooled_z_test(now[successes], now[trials], before[successes], before[trials])
            out[f"{metric}_p_value"] = p_value
            hit = hit & _significant(p_value, alpha)
        flagged = flagged + np.where(hit, f"{metric}, ", "")
    out["status"] = np.where(flagged == "", "ok", "regressed: " + flagged.str.removesuffix(", "))
    return out.reset_index()[list(SCORECARD_COLUMNS)]


def flagged_metrics(status: object) -> list[str]:
    """The metrics a ``status`` names, the inverse of :func:`scorecard`'s text: ``regressed: a, b``
    gives ``[a, b]``; ``ok`` (or no status) gives none."""
    text = status if isinstance(status, str) else ""
    return text.removeprefix("regressed: ").split(", ") if text.startswith("regressed") else []


def not_significant(card: pd.DataFrame, config: KpiConfig) -> pd.Series:
    """Per scorecard row, the rates that moved the wrong way by more than the threshold but whose
    p-value is not below ``scorecard.alpha``: what the threshold rule alone would have flagged."""
    names = pd.Series("", index=card.index, dtype="str")
    for metric in RATES:
        moved = _regressed(card[metric], card[f"{metric}_prev"], metric, config.scorecard.threshold)
        held = moved & ~_significant(card[f"{metric}_p_value"], config.scorecard.alpha)
        names = names + np.where(held, f"{metric}, ", "")
    return names.str.removesuffix(", ")
