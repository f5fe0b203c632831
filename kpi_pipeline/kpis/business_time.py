"""Business minutes between two instants, for the ``*_business_*`` columns of kpi_support_daily.

A support SLA counts only the time support works: the minutes of ``[start, end)`` that fall on a
listed weekday, not on a holiday (listed, or a public holiday of ``country`` from the ``holidays``
package), and between ``start`` (included) and ``end`` (excluded) local time in ``timezone``, with
daylight-saving time as the zone defines it (a business day can be 23 or 25 hours long).

The computation is vectorised. One small table holds, for every local calendar day the rows can
touch, the UTC instants its hours open and close (zero-length on closed days). These intervals are
disjoint and sorted, so the business time before an instant is the open time of the days before
its day plus the part of its day's interval before it: a ``searchsorted`` per row, not a loop.
A country's public holidays are read for every year the table's days fall in. Instants are
handled to the microsecond (naive timestamps are read as UTC) and fractional minutes are kept.

Local opening and closing times are placed on the UTC timeline by one rule, the first instant at
which the zone's clock shows them: a wall time the zone skips (the spring-forward gap) becomes the
first instant after the gap, and a wall time the zone repeats (the fall-back hour) takes its first
occurrence. Hours that open and close inside a gap are therefore zero on that day. The rule gives
exactly the time whose wall clock is within the hours unless the opening or closing time lies
strictly inside the repeated hour (02:00-03:00 in Berlin, 01:00-02:00 in New York): then that day
opens at the first pass of the opening time and closes at the first pass of the closing time, one
interval, instead of the two pieces the wall clock would give.
"""

from __future__ import annotations

import datetime as dt

import holidays
import numpy as np
import pandas as pd

from kpi_pipeline.config import WEEKDAYS, BusinessHours

_UNIT = "us"  # the resolution of the computation: microseconds
_PER_MINUTE = 60_000_000  # microseconds in a minute
_NAT = np.iinfo(np.int64).min  # NaT as an int64


def business_minutes(start: pd.Series, end: pd.Series, hours: BusinessHours) -> pd.Series:
    """float64 business minutes of [start, end) per row (aligned by position; the result has
    ``start``'s index); NaN where either is missing; 0.0 where end <= start."""
    if len(start) != len(end):
        raise ValueError(f"start has {len(start)} rows and end {len(end)}; they must be aligned")
    begins, ends = _utc_micros(start), _utc_micros(end)
    valid = (begins != _NAT) & (ends != _NAT)
    minutes = np.full(len(start), np.nan)
    if valid.any():
        begins, ends = begins[valid], ends[valid]
        table = _DayTable(hours, min(begins.min(), ends.min()), max(begins.max(), ends.max()))
        business = np.maximum(table.before(ends) - table.before(begins), 0)
        minutes[valid] = business / _PER_MINUTE
    return pd.Series(minutes, index=start.index, dtype="float64")


def _utc_micros(instants: pd.Series) -> np.ndarray:
    """Instants (tz-aware, or naive UTC, or all missing) as int64 microseconds since the epoch."""
    utc = pd.to_datetime(instants, utc=True).dt.as_unit(_UNIT).dt.tz_convert(None)
    return utc.to_numpy().view(np.int64)


class _DayTable:
    """The UTC opening and closing instants of each local day from the day before ``first`` to the
    day after ``last`` (int64 microseconds), and the open time of all the days before each."""

    def __init__(self, hours: BusinessHours, first: int, last: int) -> None:
        zone = hours.timezone
        bounds = np.array([first, last], dtype=f"datetime64[{_UNIT}]")
        local = pd.DatetimeIndex(bounds, tz="UTC").tz_convert(zone)
        # A day either side: where the clock falls back across midnight, an instant's local date can
        # be the day before the one whose hours it is in (and the other way round at a gap).
        days = pd.date_range(
            local[0].normalize().tz_localize(None) - pd.Timedelta(days=1),
            local[1].normalize().tz_localize(None) + pd.Timedelta(days=1),
            freq="D",
            unit=_UNIT,
        )
        listed = np.isin(days.day_of_week, [WEEKDAYS.index(day) for day in hours.days])
        open_day = listed & ~days.isin(pd.DatetimeIndex(_holidays(hours, days[0].year, days[-1].year)))
        self.opens = _first_instant(days + pd.Timedelta(minutes=hours.start), zone)
        closes = _first_instant(days + pd.Timedelta(minutes=hours.end), zone)
        self.lengths = np.where(open_day, closes - self.opens, 0)
        self.before_day = np.concatenate(([0], np.cumsum(self.lengths)[:-1]))

    def before(self, instants: np.ndarray) -> np.ndarray:
        """Business microseconds from the table's first day up to each instant (int64)."""
        day = np.maximum(np.searchsorted(self.opens, instants, side="right") - 1, 0)
        into_day = np.clip(instants - self.opens[day], 0, self.lengths[day])
        return self.before_day[day] + into_day


def _holidays(hours: BusinessHours, first_year: int, last_year: int) -> list[dt.date]:
    """The listed holidays and, with a country, its public holidays from first_year to last_year."""
    dates = list(hours.holidays)
    if hours.country:
        country, _, subdivision = hours.country.partition("-")
        years = range(first_year, last_year + 1)
        dates += holidays.country_holidays(country, subdiv=subdivision or None, years=years).keys()
    return dates


def _first_instant(walls: pd.DatetimeIndex, zone: str) -> np.ndarray:
    """Naive local wall times → the UTC instant (int64 microseconds) at which the zone's clock first
    shows each: the first occurrence of a repeated time, the end of the gap for a skipped one."""
    located = [
        walls.tz_localize(zone, ambiguous=np.full(len(walls), dst), nonexistent="shift_forward")
        for dst in (True, False)
    ]
    first, second = (index.tz_convert(None).to_numpy().view(np.int64) for index in located)
    return np.minimum(first, second)
