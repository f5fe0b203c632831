"""Growth accounting (``kpi_lifecycle_weekly``): each week's users as new, returning, resurrecting
or dormant, and the quick ratio.

Reads the narrow ``user_weeks`` record (each user's first active day of each week, O(users × active
weeks) rows), never raw telemetry, so a run costs the same whatever the number of events. Weeks
are UTC weeks starting on Monday; a user is new in the week of their first production event in all
staged history, as for the retention cohorts.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.kpis.activity import week_index, week_label
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.kpis.retention import active_weeks
from kpi_pipeline.tables import empty_frame, table

LIFECYCLE_COLUMNS: tuple[str, ...] = table("kpi_lifecycle_weekly").column_names
STATUSES: tuple[str, ...] = ("new", "returning", "resurrecting", "dormant")


def lifecycle_weekly(user_weeks: pd.DataFrame, first_date: dt.date, last_date: dt.date) -> pd.DataFrame:
    """kpi_lifecycle_weekly: the four statuses of every week from the week of ``first_date`` (the
    first staged date) to the week of ``last_date``, users 0 where none.

    A user active in week w is new there when w is their cohort week, else returning when also
    active in w − 1, else resurrecting; a user active in w − 1 and not in w is dormant in w.
    """
    weeks = active_weeks(user_weeks, "user_id", last_date)
    first_week = int(week_index(pd.Series([first_date.isoformat()])).iloc[0])
    last_week = int(week_index(pd.Series([last_date.isoformat()])).iloc[0])
    active = pd.MultiIndex.from_frame(weeks[["unit", "week"]])
    before = pd.MultiIndex.from_arrays([weeks["unit"], weeks["week"] - 1])
    after = pd.MultiIndex.from_arrays([weeks["unit"], weeks["week"] + 1])
    came_back = before.isin(active)
    status = np.select([weeks["week"] == weeks["cohort"], came_back], ["new", "returning"], "resurrecting")
    dormant = weeks.loc[~after.isin(active), "week"] + 1
    labelled = pd.concat(
        [
            pd.DataFrame({"week": weeks["week"], "status": status}),
            pd.DataFrame({"week": dormant, "status": "dormant"}),
        ],
        ignore_index=True,
    )
    counts = labelled.groupby(["week", "status"]).size()
    if last_week < first_week:
        return empty_frame(table("kpi_lifecycle_weekly"))
    grid = pd.MultiIndex.from_product(
        [np.arange(first_week, last_week + 1, dtype="int64"), STATUSES],
        names=["week", "status"],
    )
    out = counts.reindex(grid, fill_value=0).rename("users").reset_index()
    wide = out.pivot(index="week", columns="status", values="users")
    quick = ratio(wide["new"] + wide["resurrecting"], wide["dormant"])
    out["quick_ratio"] = out["week"].map(quick)
    out["week"] = week_label(out["week"].to_numpy())
    return out[list(LIFECYCLE_COLUMNS)].astype(table("kpi_lifecycle_weekly").dtypes())
