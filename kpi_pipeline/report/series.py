"""The time series and periods the report's charts (and the KPI assets' trend metadata) show,
computed from the KPI tables as frames: rates are ratios of summed counts, never means of rates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from kpi_pipeline.windows import WEEK_DAYS

REPORT_DAYS = 91
"""Days the charts over time show, ending on the last date with data (13 weeks): the page's size
and drawing time stay the same however long the history grows; the tables keep every day."""


def last_date(*frames: pd.DataFrame, column: str = "date") -> dt.date | None:
    """The latest ``column`` date among the frames that have rows (None when none has)."""
    dates = [str(f[column].dropna().max()) for f in frames if column in f and f[column].notna().any()]
    return dt.date.fromisoformat(max(dates)) if dates else None


def in_window(
    frame: pd.DataFrame, last: dt.date, days: int = REPORT_DAYS, column: str = "date"
) -> pd.DataFrame:
    """The rows of the ``days`` days ending on ``last`` (ISO date text compared as text)."""
    first = (last - dt.timedelta(days=days - 1)).isoformat()
    dates = frame[column].astype(str)
    return frame[((dates >= first) & (dates <= last.isoformat())).to_numpy(bool)]


def all_dates(first: dt.date, last: dt.date) -> list[str]:
    """Every ISO date from ``first`` to ``last``, both included."""
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def ordered(preferred: Sequence[str], seen: Iterable[str]) -> list[str]:
    """The values of ``seen`` in ``preferred``'s order, then the others sorted (what the report
    shows for workflows kpi.yaml lists and priorities the contract names)."""
    present = set(seen)
    return [p for p in preferred if p in present] + sorted(present - set(preferred))


def summed(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` summed per ``by`` (as floats, so a missing count is 0, not NA)."""
    values = frame[list(columns)].astype("float64").fillna(0.0)
    keys = {name: frame[name].astype(str) for name in by}
    return values.assign(**keys).groupby(list(by), sort=True)[list(columns)].sum()


def daily_rate(
    frame: pd.DataFrame,
    numerator: str,
    denominator: str,
    dates: Sequence[str],
    by: str = "workflow",
    trailing: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per date of ``dates`` (rows) and ``by`` group (columns): the rate ``numerator`` /
    ``denominator`` over the ``trailing`` days ending on the date, and that denominator. A date
    without any denominator has a NaN rate (a gap in the line, not a zero)."""
    if frame.empty:
        empty = pd.DataFrame(index=pd.Index(dates, name="date"))
        return empty, empty.copy()
    sums = summed(frame, ["date", by], [numerator, denominator])
    wide = sums.unstack(by, fill_value=0.0).reindex(pd.Index(dates, name="date"), fill_value=0.0)
    top = wide[numerator].rolling(trailing, min_periods=1).sum()
    bottom = wide[denominator].rolling(trailing, min_periods=1).sum()
    return top / bottom.where(bottom > 0), bottom


def complete_week(dates: Sequence[str], as_of: dt.date) -> tuple[dt.date, dt.date, bool]:
    """The latest Monday–Sunday week that ends on or before ``as_of`` and lies within ``dates``
    (True), else the days of ``dates`` up to ``as_of``, at most seven (False: no complete week)."""
    sunday = as_of - dt.timedelta(days=(as_of.weekday() + 1) % WEEK_DAYS)
    monday = sunday - dt.timedelta(days=WEEK_DAYS - 1)
    known = sorted(d for d in map(str, dates) if d <= as_of.isoformat())
    if known and known[0] <= monday.isoformat():
        return monday, sunday, True
    first = max(dt.date.fromisoformat(known[0]), as_of - dt.timedelta(days=WEEK_DAYS - 1)) if known else as_of
    return first, as_of, False


def touched_days(start: pd.Timestamp, end: pd.Timestamp) -> tuple[dt.date, dt.date]:
    """The first and last UTC day an interval touches (what daily points it can affect)."""
    return start.tz_convert("UTC").date(), end.tz_convert("UTC").date()


def utc_text(stamps: pd.Series | Sequence[pd.Timestamp]) -> list[str]:
    """Timestamps as naive UTC text, as Plotly's date axis reads them."""
    out = []
    for stamp in stamps:
        if stamp is None or pd.isna(stamp):
            out.append("")
            continue
        utc = pd.Timestamp(stamp)
        utc = utc.tz_convert("UTC") if utc.tzinfo is not None else utc
        out.append(utc.strftime("%Y-%m-%d %H:%M:%S"))
    return out


def floats(values: pd.Series | Sequence[object]) -> np.ndarray:
    """Values as a float array (NA → NaN), what a chart trace is given."""
    return (
        pd.to_numeric(pd.Series(list(values), dtype="object"), errors="coerce").astype("float64").to_numpy()
    )
