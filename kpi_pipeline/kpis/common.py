"""Rules every KPI shares: only production events count, and a rate over 0 is NULL."""

from __future__ import annotations

import numpy as np
import pandas as pd


def production(events: pd.DataFrame) -> pd.DataFrame:
    """Events whose environment is ``production``, the only ones the KPIs count."""
    return events[events["environment"].eq("production").fillna(False).astype(bool)]


def ratio(numerator: pd.Series, denominator: pd.Series | float) -> pd.Series:
    """numerator / denominator as float, NaN (a NULL rate) where the denominator is 0."""
    den = (
        denominator.astype("float64")
        if isinstance(denominator, pd.Series)
        else pd.Series(float(denominator), index=numerator.index)
    )
    return (numerator.astype("float64") / den.where(den != 0, np.nan)).astype("float64")
