"""Task completion and funnel KPIs (``kpi_task_completion_daily``, ``kpi_funnel_daily``).

Both aggregate the attempts built by :func:`kpi_pipeline.kpis.attempts.build_attempts`.
"""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.attempts import step_token
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import table

COMPLETION_GRAIN: tuple[str, ...] = table("kpi_task_completion_daily").grain
COMPLETION_COLUMNS: tuple[str, ...] = table("kpi_task_completion_daily").column_names
FUNNEL_COLUMNS: tuple[str, ...] = table("kpi_funnel_daily").column_names

_FUNNEL_DTYPES: dict[str, str] = {
    "date": "str",
    "workflow": "str",
    "step_index": "int64",
    "step": "str",
    "reached": "int64",
    "conversion_from_start": "float64",
    "conversion_from_previous": "float64",
    "dropped_from_previous": "float64",
}


def task_completion_daily(attempts: pd.DataFrame) -> pd.DataFrame:
    """Completion KPIs per (date, workflow, persona, channel) from one row per attempt."""
    grain = list(COMPLETION_GRAIN)
    counted = attempts[grain].copy()
    counted["attempts"] = 1
    counted["completions"] = attempts["completed"].astype(int)
    counted["first_pass_completions"] = attempts["first_pass"].astype(int)
    counted["error_attempts"] = attempts["error"].astype(int)
    counted["fallbacks"] = attempts["fallback"].astype(int)
    counted["fallback_tickets"] = attempts["fallback_ticket"].astype(int)
    grouped = counted.groupby(grain, dropna=False, sort=True)
    out = grouped.sum().astype("int64")

    # seconds_to_complete is NaN for attempts not completed, so the quantiles are over completions only;
    # groupby quantile with linear interpolation equals numpy.quantile's default method.
    seconds = (
        attempts["seconds_to_complete"]
        .astype(float)
        .groupby([attempts[c] for c in grain], dropna=False, sort=True)
    )
    out["median_seconds_to_complete"] = seconds.quantile(0.5, interpolation="linear")
    out["p90_seconds_to_complete"] = seconds.quantile(0.9, interpolation="linear")
    out = out.reset_index()

    out["completion_rate"] = ratio(out["completions"], out["attempts"])
    out["first_pass_rate"] = ratio(out["first_pass_completions"], out["attempts"])
    out["error_rate"] = ratio(out["error_attempts"], out["attempts"])
    out["fallback_rate"] = ratio(out["fallbacks"], out["attempts"])
    out["fallback_to_ticket_rate"] = ratio(out["fallback_tickets"], out["fallbacks"])
    return out[list(COMPLETION_COLUMNS)]


def _has_step(steps_reached: pd.Series, step: str) -> pd.Series:
    """Whether the ';'-joined ``steps_reached`` list holds ``step`` exactly (not as a substring, and
    not as part of an item: items are percent-encoded by :func:`step_token`)."""
    item = step_token(pd.Series([step])).iloc[0]
    return (";" + steps_reached.fillna("").astype(str) + ";").str.contains(f";{item};", regex=False)


def funnel_daily(attempts: pd.DataFrame, config: KpiConfig) -> pd.DataFrame:
    """Funnel per (date, workflow, step_index) for each workflow with ``steps`` in kpi.yaml.

    Step 0 is ``started``, 1..n the configured steps (reached when present in
    the attempt's window, in any order), n+1 ``completed``. Only dates on which
    the workflow has attempts get rows.
    """
    frames: list[pd.DataFrame] = []
    for name, workflow in config.workflows.items():
        if not workflow.steps:
            continue
        of_workflow = attempts[attempts["workflow"] == name]
        if of_workflow.empty:
            continue
        names = ["started", *workflow.steps, "completed"]
        flags = pd.DataFrame(index=of_workflow.index)
        flags["started"] = True
        for step in workflow.steps:
            flags[step] = _has_step(of_workflow["steps_reached"], step)
        flags["completed"] = of_workflow["completed"].astype(bool)
        # A configured step literally named "started"/"completed" would collide; keep columns positional.
        flags.columns = range(len(names))
        reached = flags.astype(int).groupby(of_workflow["date"]).sum()
        long = reached.melt(ignore_index=False, var_name="step_index", value_name="reached").reset_index()
        long["workflow"] = name
        long["step"] = long["step_index"].map(dict(enumerate(names)))
        frames.append(long)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_FUNNEL_DTYPES[c]) for c in FUNNEL_COLUMNS})

    out = pd.concat(frames, ignore_index=True)
    out["step_index"] = out["step_index"].astype("int64")
    out["reached"] = out["reached"].astype("int64")
    out = out.sort_values(["date", "workflow", "step_index"], kind="stable").reset_index(drop=True)
    keys = [out["date"], out["workflow"]]
    start = out.groupby(keys)["reached"].transform("first")
    previous = out.groupby(keys)["reached"].shift(1)
    out["conversion_from_start"] = ratio(out["reached"], start)
    out["conversion_from_previous"] = ratio(out["reached"], previous.fillna(0)).where(previous.notna())
    out["dropped_from_previous"] = (previous - out["reached"]).astype(float)
    return out[list(FUNNEL_COLUMNS)]
