"""kpi_feature_adoption_daily: who uses each feature, on the date and over 28 days.

Reads the per-day activity rollup of the 28 days ending on the date. Rows
with a ``feature`` count as feature use; every rollup row counts as activity
for the denominators (mau and active accounts).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from kpi_pipeline.kpis.activity import in_window
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import table

ADOPTION_COLUMNS: tuple[str, ...] = table("kpi_feature_adoption_daily").column_names


def feature_adoption_daily(activity: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """kpi_feature_adoption_daily rows for ``day``: one per feature used in D-27..D.

    ``users``/``accounts`` are 0 for a feature used in the window but not on
    the date. The median of users per account is taken over the accounts
    that used the feature in the window (linear interpolation).
    """
    window = in_window(activity, day, 28)
    mau = int(window["user_id"].nunique())
    active_accounts = int(window["account_id"].nunique())
    used = window.loc[window["feature"].notna().to_numpy(bool), ["date", "user_id", "account_id", "feature"]]
    used = used.astype({"feature": str})

    by_feature = used.groupby("feature", sort=True)
    out = pd.DataFrame(
        {
            "users_28d": by_feature["user_id"].nunique(),
            "accounts_28d": by_feature["account_id"].nunique(),
        }
    )
    today = used[(used["date"].astype(str) == day.isoformat()).to_numpy(bool)].groupby("feature")
    out["users"] = today["user_id"].nunique().reindex(out.index, fill_value=0)
    out["accounts"] = today["account_id"].nunique().reindex(out.index, fill_value=0)
    per_account = used.groupby(["feature", "account_id"])["user_id"].nunique().astype("float64")
    out["median_users_per_account_28d"] = per_account.groupby(level="feature").quantile(0.5)
    out["adoption_rate_28d"] = ratio(out["users_28d"], mau)
    out["account_adoption_rate_28d"] = ratio(out["accounts_28d"], active_accounts)
    out = out.rename_axis("feature").reset_index()
    out["date"] = day.isoformat()
    counts = {c: "int64" for c in ("users", "accounts", "users_28d", "accounts_28d")}
    rates = {
        c: "float64"
        for c in ("adoption_rate_28d", "account_adoption_rate_28d", "median_users_per_account_28d")
    }
    return out[list(ADOPTION_COLUMNS)].astype({**counts, **rates}).reset_index(drop=True)
