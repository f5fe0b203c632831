"""The statistics the KPI tables share, vectorised over pandas Series: the pooled two-proportion
z-test (kpi_release_quality, kpi_scorecard) and the Wilson score interval of a proportion
(kpi_scorecard).

Both take the normal quantiles and tails from ``scipy.stats`` (statsmodels' Wilson interval uses
``scipy.stats.norm.isf((1 - confidence) / 2)``, i.e. 1.959963984540054 at 95 %, never a rounded
1.96). Where a statistic is undefined the result is NaN (a NULL in the tables), never a warning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint


def _floats(values: pd.Series) -> np.ndarray:
    """``values`` as a float64 array, missing values (of any dtype) as NaN."""
    return values.astype("float64").to_numpy(dtype="float64", na_value=np.nan)


def pooled_z_test(x1: pd.Series, n1: pd.Series, x2: pd.Series, n2: pd.Series) -> pd.Series:
    """Two-sided p-value of the pooled two-proportion z-test of x1/n1 against x2/n2; NaN where
    either has no trials or the pooled proportion is 0 or 1 (no variance to test against)."""
    a, b = n1.astype("float64"), n2.astype("float64")
    pooled = (x1.astype("float64") + x2.astype("float64")) / (a + b)
    defined = (a > 0) & (b > 0) & (pooled > 0) & (pooled < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(pooled * (1 - pooled) * (1 / a + 1 / b))
        z = (x1 / a - x2 / b) / se
    p = 2 * stats.norm.sf(np.abs(z.to_numpy(dtype="float64", na_value=np.nan)))
    return pd.Series(p, index=x1.index, dtype="float64").where(defined.fillna(False).astype(bool))


def wilson_interval(
    successes: pd.Series, trials: pd.Series, confidence: float = 0.95
) -> tuple[pd.Series, pd.Series]:
    """The Wilson score interval (without continuity correction) of successes/trials at
    ``confidence``, two-sided: ``(low, high)``, each indexed like ``successes``; NaN where
    ``trials`` is 0 or missing, else low exactly 0 at no successes and high exactly 1 at all.
    Computed by ``statsmodels.stats.proportion.proportion_confint`` (``method="wilson"``), whose
    z is the exact normal quantile (1.959964… at 95 %)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    x, n = _floats(successes), _floats(trials)
    n = np.where(n > 0, n, np.nan)  # no trials: no interval (and no 0/0 warning in statsmodels)
    low, high = proportion_confint(x, n, alpha=1 - confidence, method="wilson")
    # The ends are exactly 0 at x = 0 and exactly 1 at x = n (where rounding can leave 1 - 1e-16).
    low = np.where((x == 0) & (n > 0), 0.0, np.asarray(low, dtype="float64"))
    high = np.where((x == n) & (n > 0), 1.0, np.asarray(high, dtype="float64"))
    return (
        pd.Series(low, index=successes.index, dtype="float64"),
        pd.Series(high, index=successes.index, dtype="float64"),
    )
