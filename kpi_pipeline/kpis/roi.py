"""ROI KPI (``kpi_roi_daily``): value of completions and deflections net of fallback tickets."""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.tables import table

ROI_COLUMNS: tuple[str, ...] = table("kpi_roi_daily").column_names


def roi_daily(completion: pd.DataFrame, deflection: pd.DataFrame, config: KpiConfig) -> pd.DataFrame:
    """ROI per (date, workflow) from ``kpi_task_completion_daily`` and ``kpi_ticket_deflection_daily`` rows.

    A row exists for every (date, workflow) with attempts or with a deflection
    row on one of the workflow's topics. ``attempts`` is kept as an extra column
    for the scorecard. Workflows absent from kpi.yaml save 0 minutes per completion.
    """
    keys = ["date", "workflow"]
    done = completion.groupby(keys)[["attempts", "completions", "fallback_tickets"]].sum()

    topic_owner = config.topic_to_workflow()
    with_owner = deflection.assign(workflow=deflection["topic"].map(topic_owner))
    with_owner = with_owner[with_owner["workflow"].notna()]
    deflected = with_owner.groupby(keys)["deflected"].sum().rename("tickets_deflected")

    out = done.join(deflected, how="outer").fillna(0).astype("int64").reset_index()
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)

    minutes = {name: wf.minutes_saved_per_completion for name, wf in config.workflows.items()}
    minutes_saved = out["workflow"].map(minutes).fillna(0.0).astype(float)
    out["hours_saved"] = out["completions"] * minutes_saved / 60.0
    out["labor_value"] = out["hours_saved"] * config.loaded_hourly_cost
    out["support_cost_avoided"] = out["tickets_deflected"] * config.cost_per_ticket
    out["fallback_ticket_cost"] = out["fallback_tickets"] * config.cost_per_ticket
    out["net_value"] = out["labor_value"] + out["support_cost_avoided"] - out["fallback_ticket_cost"]
    out["currency"] = config.currency
    return out[list(ROI_COLUMNS)]
