"""kpi_engagement_daily: DAU, WAU, MAU, stickiness, active accounts and new users.

Reads the per-day activity rollup (``activity.daily_activity``) of the 28
days ending on the date, never raw telemetry. Trailing windows use the days
present in the rollup; a missing day contributes nobody (none is invented).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import numpy as np
import pandas as pd

from kpi_pipeline.kpis.activity import in_window
from kpi_pipeline.tables import table

ENGAGEMENT_COLUMNS: tuple[str, ...] = table("kpi_engagement_daily").column_names


def engagement_daily(activity: pd.DataFrame, first_seen: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """One kpi_engagement_daily row for ``day``.

    ``activity`` holds rollup rows of (at least) days D-27..D; rows of other
    days are ignored. ``first_seen`` maps each user to ``first_date`` over all
    staged history (``retention.first_seen``). Stickiness is NaN when mau is 0.
    """
    on_day = in_window(activity, day, 1)
    dau = int(on_day["user_id"].nunique())
    mau = int(in_window(activity, day, 28)["user_id"].nunique())
    new_users = first_seen.loc[(first_seen["first_date"].astype(str) == day.isoformat()).to_numpy(bool)]
    row = {
        "date": day.isoformat(),
        "dau": dau,
        "wau": int(in_window(activity, day, 7)["user_id"].nunique()),
        "mau": mau,
        "stickiness": dau / mau if mau else np.nan,
        "active_accounts": int(on_day["account_id"].nunique()),
        "new_users": int(new_users["user_id"].nunique()),
    }
    out = pd.DataFrame([row], columns=list(ENGAGEMENT_COLUMNS))
    return out.astype({"stickiness": "float64"})


def active_on(activity: pd.DataFrame, day: dt.date) -> pd.Series:
    """The distinct users of the rollup active on ``day``."""
    return pd.Series(in_window(activity, day, 1)["user_id"].unique(), dtype="string")


def first_seen_on(activity: pd.DataFrame, day: dt.date, seen_before: Collection[str]) -> pd.DataFrame:
    """First-seen rows (user_id, first_date = ``day``) of the users active on ``day`` who are not in
    ``seen_before`` — the users the ``user_days`` record shows active on an earlier day. What
    :func:`engagement_daily` counts as new users, without reading all history."""
    users = active_on(activity, day)
    new = users[~users.isin(list(seen_before))].reset_index(drop=True)
    return pd.DataFrame(
        {"user_id": new, "first_date": pd.Series(day.isoformat(), index=new.index, dtype="string")}
    )
