"""Numbers as people read them in the report: percentages with one decimal, thousands separators,
money with the kpi.yaml currency, durations in seconds, minutes, hours or days, and p-values.

Every function takes what a table cell holds (a float, an int, NaN, None or pandas' NA) and
returns text; a missing value is an en dash, never "nan". Negative numbers take the minus sign
(U+2212), as Plotly's axes write them.
"""

from __future__ import annotations

import math

import pandas as pd

MISSING = "–"
MINUS = "−"


def missing(value: object) -> bool:
    """Whether a cell holds no number (None, NaN, NA, an infinity)."""
    if value is None or value is pd.NA:
        return True
    try:
        return not math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def _signed(text: str) -> str:
    return MINUS + text[1:] if text.startswith("-") else text


def percent(value: object, decimals: int = 1) -> str:
    """A share as a percentage: 0.7471 → ``74.7%``."""
    return MISSING if missing(value) else _signed(f"{float(value) * 100:.{decimals}f}%")  # type: ignore[arg-type]


def points(value: object) -> str:
    """The difference of two shares in percentage points, with its sign: −0.022 → ``−2.2 pts``."""
    if missing(value):
        return MISSING
    shown = f"{float(value) * 100:+.1f}"  # type: ignore[arg-type]
    return _signed(shown if shown not in ("+0.0", "-0.0") else "±0.0") + " pts"


def number(value: object, decimals: int = 0) -> str:
    """A count or amount with thousands separators: 12345 → ``12,345``."""
    return MISSING if missing(value) else _signed(f"{float(value):,.{decimals}f}")  # type: ignore[arg-type]


def money(value: object, currency: str) -> str:
    """An amount in the kpi.yaml currency, whole units: ``USD 12,345``, ``USD −1,200``.

    The ISO code, not a symbol: kpi.yaml names the currency by its code, and ``$`` would not say
    which dollar."""
    return MISSING if missing(value) else f"{currency} {number(value)}"


def change(value: object, previous: object) -> str:
    """The relative change from ``previous``: ``+12.5%`` (``–`` when previous is 0 or missing)."""
    if missing(value) or missing(previous) or float(previous) == 0:  # type: ignore[arg-type]
        return MISSING
    relative = (float(value) - float(previous)) / abs(float(previous))  # type: ignore[arg-type]
    return _signed(f"{relative * 100:+.1f}%")


def duration(seconds: object) -> str:
    """A duration at the scale people use: ``45 s``, ``12.5 min``, ``3.2 h``, ``2.5 days``."""
    if missing(seconds):
        return MISSING
    value = float(seconds)  # type: ignore[arg-type]
    sign, value = ("−", -value) if value < 0 else ("", value)
    if value < 60:
        return f"{sign}{value:.0f} s"
    if value < 3600:
        return f"{sign}{value / 60:.1f} min"
    if value < 2 * 86400:
        return f"{sign}{value / 3600:.1f} h"
    return f"{sign}{value / 86400:.1f} days"


def minutes(value: object) -> str:
    """A duration given in minutes (as the incident and support tables hold them)."""
    return MISSING if missing(value) else duration(float(value) * 60)  # type: ignore[arg-type]


def p_value(value: object) -> str:
    """A p-value: ``p 0.390``, ``p < 0.001``; ``p –`` when the test is undefined."""
    if missing(value):
        return f"p {MISSING}"
    return "p < 0.001" if float(value) < 0.001 else f"p {float(value):.3f}"  # type: ignore[arg-type]
