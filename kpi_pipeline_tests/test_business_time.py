"""Business minutes (kpi_pipeline.kpis.business_time): hand-computed cases across weekends, DST
changes, holidays and the edges of the hours, and property tests against a plain-Python reference
that walks the local days with zoneinfo."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import holidays
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_pipeline.config import WEEKDAYS, BusinessHours
from kpi_pipeline.kpis.business_time import business_minutes

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
UTC = dt.UTC
ALL_DAYS = WEEKDAYS


def hours(zone: str = BERLIN, start: str = "09:00", end: str = "17:00", **more: object) -> BusinessHours:
    """Business hours in ``zone`` (09:00-17:00 Monday to Friday unless told)."""
    return BusinessHours(timezone=zone, start=start, end=end, **more)


def utc(*instants: str | None) -> pd.Series:
    """ISO instants (``None``: missing) → a datetime64[us, UTC] Series."""
    return pd.Series(pd.to_datetime(list(instants), utc=True, format="ISO8601")).dt.as_unit("us")


def local(zone: str, *walls: str) -> pd.Series:
    """Unambiguous local wall times in ``zone`` → a datetime64[us, UTC] Series."""
    return pd.Series(pd.DatetimeIndex(list(walls)).tz_localize(zone).tz_convert("UTC")).dt.as_unit("us")


def local_minutes(business: BusinessHours, starts: list[str], ends: list[str]) -> list[float]:
    """Business minutes between local wall times in the hours' zone, row by row."""
    zone = business.timezone
    return business_minutes(local(zone, *starts), local(zone, *ends), business).tolist()


def utc_minutes(business: BusinessHours, starts: list[str], ends: list[str]) -> list[float]:
    """Business minutes between UTC instants, row by row."""
    return business_minutes(utc(*starts), utc(*ends), business).tolist()


def test_a_weekend_is_not_counted() -> None:
    # Fri 2026-03-13 16:00 → Mon 2026-03-16 10:00 Berlin: Fri 16-17 (60) + Mon 09-10 (60)
    assert local_minutes(hours(), ["2026-03-13 16:00"], ["2026-03-16 10:00"]) == [120.0]


def test_berlin_spring_forward() -> None:
    """2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z, so the day lasts 23 hours."""
    whole_day = hours(start="00:00", end="24:00", days=ALL_DAYS)
    # 00:00 CET (03-28 23:00Z) → next 00:00 CEST (03-29 22:00Z) = 23 h
    assert utc_minutes(whole_day, ["2026-03-28T23:00Z"], ["2026-03-29T22:00Z"]) == [23 * 60.0]
    night = hours(start="01:00", end="05:00", days=ALL_DAYS)
    # whole of 03-28 and of 03-29: 01:00-05:00 CET = 4 h; then 01:00 CET (00:00Z) → 05:00 CEST (03:00Z) = 3 h
    assert utc_minutes(night, ["2026-03-27T23:00Z"] * 2, ["2026-03-28T23:00Z", "2026-03-29T22:00Z"]) == [
        4 * 60.0,
        4 * 60.0 + 3 * 60.0,
    ]
    # 02:30-04:00 opens at the end of the gap, 03:00 CEST (01:00Z), closes 04:00 CEST (02:00Z) = 60;
    # 02:00-03:00 lies wholly in the gap = 0
    day = (["2026-03-28T23:00Z"], ["2026-03-29T22:00Z"])
    assert utc_minutes(hours(start="02:30", end="04:00", days=ALL_DAYS), *day) == [60.0]
    assert utc_minutes(hours(start="02:00", end="03:00", days=ALL_DAYS), *day) == [0.0]


def test_berlin_fall_back() -> None:
    """2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z, so the day lasts 25 hours."""
    whole_day = hours(start="00:00", end="24:00", days=ALL_DAYS)
    # 00:00 CEST (10-24 22:00Z) → next 00:00 CET (10-25 23:00Z) = 25 h
    assert utc_minutes(whole_day, ["2026-10-24T22:00Z"], ["2026-10-25T23:00Z"]) == [25 * 60.0]
    # 02:15 CEST (00:15Z) → the repeated 02:45 CET (01:45Z): every minute of the 90 counts
    assert utc_minutes(whole_day, ["2026-10-25T00:15Z"], ["2026-10-25T01:45Z"]) == [90.0]
    # 01:00 CEST (10-24 23:00Z) → 05:00 CET (10-25 04:00Z) = 5 h
    night = hours(start="01:00", end="05:00", days=ALL_DAYS)
    assert utc_minutes(night, ["2026-10-24T22:00Z"], ["2026-10-25T23:00Z"]) == [5 * 60.0]
    # 02:30 is repeated: the first 02:30 (CEST, 00:30Z) opens; 04:00 CET (03:00Z) closes = 150
    late = hours(start="02:30", end="04:00", days=ALL_DAYS)
    assert utc_minutes(late, ["2026-10-24T22:00Z"], ["2026-10-25T23:00Z"]) == [150.0]


def test_new_york_dst_changes() -> None:
    """2026-03-08 02:00 EST → 03:00 EDT at 07:00Z; 2026-11-01 02:00 EDT → 01:00 EST at 06:00Z."""
    whole_day = hours(NEW_YORK, start="00:00", end="24:00", days=ALL_DAYS)
    night = hours(NEW_YORK, start="01:00", end="05:00", days=ALL_DAYS)
    # 00:00 EST (05:00Z) → next 00:00 EDT (03-09 04:00Z) = 23 h;
    # 00:00 EDT (04:00Z) → next 00:00 EST (11-02 05:00Z) = 25 h
    starts, ends = ["2026-03-08T05:00Z", "2026-11-01T04:00Z"], ["2026-03-09T04:00Z", "2026-11-02T05:00Z"]
    assert utc_minutes(whole_day, starts, ends) == [23 * 60.0, 25 * 60.0]
    # 01:00 EST (06:00Z) → 05:00 EDT (09:00Z) = 3 h;
    # 01:00 is repeated in November: the first, EDT (05:00Z) → 05:00 EST (10:00Z) = 5 h
    assert utc_minutes(night, starts, ends) == [3 * 60.0, 5 * 60.0]


def test_a_listed_holiday_is_not_counted() -> None:
    # Tue 2026-03-10 09:00 → Thu 2026-03-12 17:00: Tue 480 + Wed (holiday) 0 + Thu 480
    span = (["2026-03-10 09:00"], ["2026-03-12 17:00"])
    assert local_minutes(hours(holidays=(dt.date(2026, 3, 11),)), *span) == [960.0]
    assert local_minutes(hours(), *span) == [1440.0]  # 3 × 480 without it


def test_a_country_public_holiday_is_not_counted() -> None:
    assert holidays.country_holidays("DE", years=2026)[dt.date(2026, 5, 1)] == "Labor Day"  # a Friday
    # Thu 2026-04-30 09:00 → Mon 2026-05-04 17:00 Berlin: Thu 480 + Fri 0 + weekend 0 + Mon 480
    span = (["2026-04-30 09:00"], ["2026-05-04 17:00"])
    assert local_minutes(hours(country="DE"), *span) == [960.0]
    assert local_minutes(hours(), *span) == [1440.0]
    # The US observes Independence Day (Sat 2026-07-04) on Fri 2026-07-03
    assert holidays.country_holidays("US", years=2026)[dt.date(2026, 7, 3)] == "Independence Day (observed)"
    # Thu 2026-07-02 09:00 → Mon 2026-07-06 17:00 New York: Thu 480 + Fri 0 + Mon 480
    span = (["2026-07-02 09:00"], ["2026-07-06 17:00"])
    assert local_minutes(hours(NEW_YORK, country="US"), *span) == [960.0]


def test_a_subdivision_holiday_counts_only_there() -> None:
    epiphany = dt.date(2026, 1, 6)  # a Tuesday; a holiday in Bavaria, not in all of Germany
    assert epiphany in holidays.country_holidays("DE", subdiv="BY", years=2026)
    assert epiphany not in holidays.country_holidays("DE", years=2026)
    span = (["2026-01-06 08:00"], ["2026-01-06 18:00"])
    assert local_minutes(hours(country="DE-BY"), *span) == [0.0]
    assert local_minutes(hours(country="DE"), *span) == [480.0]  # 09:00-17:00


def test_outside_the_hours_counts_nothing() -> None:
    # created Tue 07:00, answered 08:30 before opening; Mon 17:30 → Tue 08:59; Sat 10:00 → Sun 16:00
    starts = ["2026-03-10 07:00", "2026-03-09 17:30", "2026-03-14 10:00"]
    ends = ["2026-03-10 08:30", "2026-03-10 08:59", "2026-03-15 16:00"]
    assert local_minutes(hours(), starts, ends) == [0.0, 0.0, 0.0]


def test_sub_minute_instants_keep_their_fraction() -> None:
    # 09:00:30 → 09:01:00 = 30 s; 08:59:30 → 09:00:45 = 45 s inside; 16:59:59.5 → 17:00:10 = 0.5 s
    starts = ["2026-03-10 09:00:30", "2026-03-10 08:59:30", "2026-03-10 16:59:59.5"]
    ends = ["2026-03-10 09:01:00", "2026-03-10 09:00:45", "2026-03-10 17:00:10"]
    assert local_minutes(hours(), starts, ends) == pytest.approx([0.5, 0.75, 0.5 / 60], abs=1e-12)


def test_a_whole_year() -> None:
    # 2025 in Berlin with DE holidays: (261 weekdays − 9 holidays on weekdays) × 480 = 120,960
    year = (["2025-01-01 00:00"], ["2026-01-01 00:00"])
    assert local_minutes(hours(country="DE"), *year) == [120_960.0]
    assert local_minutes(hours(), *year) == [125_280.0]  # 261 × 480 with no holidays
    # The same figures by a plain loop over the year's days
    german = holidays.country_holidays("DE", years=2025)
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=n) for n in range(365)]
    weekdays = [day for day in days if day.weekday() < 5]
    assert (len(weekdays), len([day for day in weekdays if day not in german])) == (261, 252)


def test_end_not_after_start_is_zero() -> None:
    starts = ["2026-03-10 12:00", "2026-03-10 12:00", "2026-03-16 10:00"]
    ends = ["2026-03-10 11:00", "2026-03-10 12:00", "2026-03-13 16:00"]
    assert local_minutes(hours(), starts, ends) == [0.0, 0.0, 0.0]


def test_missing_instants_give_nan() -> None:
    business = hours()
    result = business_minutes(
        utc("2026-03-10T08:00Z", None, "2026-03-10T08:00Z", None),
        utc("2026-03-10T09:00Z", "2026-03-10T09:00Z", None, None),
        business,
    )
    assert result.isna().tolist() == [False, True, True, True]
    assert result[0] == 60.0  # 09:00-10:00 CET
    missing = business_minutes(utc(None, None), utc(None, None), business)
    assert missing.dtype == "float64" and missing.isna().all() and len(missing) == 2
    empty = business_minutes(utc(), utc(), business)
    assert empty.dtype == "float64" and empty.empty


def test_from_opening_to_closing() -> None:
    # Mon 09:00 → 17:00 = 480; 17:00 → Tue 09:00 = 0; 08:00 → 09:00 = 0; 16:59 → 17:01 = 1
    starts = ["2026-03-09 09:00", "2026-03-09 17:00", "2026-03-09 08:00", "2026-03-09 16:59"]
    ends = ["2026-03-09 17:00", "2026-03-10 09:00", "2026-03-09 09:00", "2026-03-09 17:01"]
    assert local_minutes(hours(), starts, ends) == [480.0, 0.0, 0.0, 1.0]


def test_hours_until_midnight() -> None:
    evening = hours(start="18:00", end="24:00")
    # Mon 20:00 → Tue 01:00 = 20-24 (240); Mon 23:59:30 → Tue 00:00:30 = 0.5; Tue 00:00 → 18:00 = 0;
    # Fri 23:00 → Sat 02:00 = 60
    starts = ["2026-03-09 20:00", "2026-03-09 23:59:30", "2026-03-10 00:00", "2026-03-13 23:00"]
    ends = ["2026-03-10 01:00", "2026-03-10 00:00:30", "2026-03-10 18:00", "2026-03-14 02:00"]
    assert local_minutes(evening, starts, ends) == [240.0, 0.5, 0.0, 60.0]


def test_index_dtype_and_units() -> None:
    starts = utc("2026-03-09T08:00Z", "2026-03-10T15:00Z").set_axis(["a", "b"])
    ends = utc("2026-03-09T09:30:00.25Z", "2026-03-11T09:00Z").set_axis(["a", "b"])
    result = business_minutes(starts, ends, hours())
    # 09:00-10:30:00.25 CET = 90 min 0.25 s; Tue 16:00-17:00 + Wed 09:00-10:00 = 120
    assert result.index.tolist() == ["a", "b"] and result.dtype == "float64"
    assert result.tolist() == pytest.approx([90 + 0.25 / 60, 120.0], abs=1e-12)
    in_nanoseconds = business_minutes(starts.dt.as_unit("ns"), ends.dt.as_unit("ns"), hours())
    assert in_nanoseconds.tolist() == result.tolist()


# The plain-Python reference and the property tests.


def first_instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The UTC instant at which the zone's clock first shows ``wall`` (naive): its first occurrence,
    or, inside a spring-forward gap, the end of the gap."""
    candidates = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    shown = [u for u in candidates if u.astimezone(zone).replace(tzinfo=None) == wall]
    if shown:
        return min(shown)
    early, late = sorted(candidates)
    while early.astimezone(zone).utcoffset() != late.astimezone(zone).utcoffset():
        early += dt.timedelta(minutes=1)  # these zones change offset on a whole minute
    return early


def reference_minutes(start: dt.datetime, end: dt.datetime, business: BusinessHours) -> float:
    """Business minutes of [start, end): each open local day's [opening, closing) intersected with it."""
    zone = zoneinfo.ZoneInfo(business.timezone)
    day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    closed = set(business.holidays)
    if business.country:
        country, _, subdivision = business.country.partition("-")
        years = range(day.year, last.year + 1)
        closed |= set(holidays.country_holidays(country, subdiv=subdivision or None, years=years))
    total = dt.timedelta()
    while day <= last:
        if WEEKDAYS[day.weekday()] in business.days and day not in closed:
            midnight = dt.datetime.combine(day, dt.time())
            opening = first_instant(midnight + dt.timedelta(minutes=business.start), zone)
            closing = first_instant(midnight + dt.timedelta(minutes=business.end), zone)
            total += max(min(closing, end) - max(opening, start), dt.timedelta())
        day += dt.timedelta(days=1)
    return total / dt.timedelta(minutes=1)


DST_CHANGES = {
    BERLIN: [dt.datetime(2026, 3, 29, 1, tzinfo=UTC), dt.datetime(2026, 10, 25, 1, tzinfo=UTC)],
    NEW_YORK: [dt.datetime(2026, 3, 8, 7, tzinfo=UTC), dt.datetime(2026, 11, 1, 6, tzinfo=UTC)],
}
# Clock minutes at the changes' edges (01:00-03:00), at ordinary ones, and at random
CLOCK = st.one_of(st.sampled_from([0, 60, 90, 120, 150, 180, 540, 1020, 1440]), st.integers(0, 1440))
MICROS_PER_DAY = 86_400 * 10**6
# Offsets in whole minutes (to hit the edges exactly) or in microseconds
OFFSET = st.one_of(
    st.integers(-14 * 1440, 14 * 1440).map(lambda minutes: minutes * 60 * 10**6),
    st.integers(-14 * MICROS_PER_DAY, 14 * MICROS_PER_DAY),
)


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def business_hours(draw: st.DrawFn) -> BusinessHours:
    """Random hours in Berlin or New York, with some listed holidays and maybe a country."""
    zone = draw(st.sampled_from(sorted(DST_CHANGES)))
    first, second = draw(CLOCK), draw(CLOCK)
    start, end = min(first, second), max(first, second)
    if start == end:
        start, end = (start - 1, end) if end == 1440 else (start, end + 1)
    return hours(
        zone,
        start=clock(start),
        end=clock(end),
        days=tuple(draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True))),
        holidays=tuple(draw(st.lists(st.dates(dt.date(2026, 2, 15), dt.date(2026, 11, 30)), max_size=4))),
        country=draw(st.sampled_from([None, "DE", "US"])),
    )


@st.composite
def hours_and_instants(draw: st.DrawFn, count: int) -> tuple[BusinessHours, list[dt.datetime]]:
    """Random hours and ``count`` instants within two weeks of one of the zone's DST changes."""
    business = draw(business_hours())
    change = draw(st.sampled_from(DST_CHANGES[business.timezone]))
    offsets = draw(st.lists(OFFSET, min_size=count, max_size=count))
    return business, [change + dt.timedelta(microseconds=offset) for offset in offsets]


def series(instants: list[dt.datetime]) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(instants)).dt.as_unit("us")


@settings(max_examples=60, deadline=None)
@given(hours_and_instants(8))
def test_matches_the_reference(case: tuple[BusinessHours, list[dt.datetime]]) -> None:
    business, instants = case
    starts, ends = instants[::2], instants[1::2]
    expected = [reference_minutes(start, end, business) for start, end in zip(starts, ends, strict=True)]
    assert business_minutes(series(starts), series(ends), business).tolist() == pytest.approx(
        expected, abs=1e-9
    )


@settings(max_examples=40, deadline=None)
@given(hours_and_instants(3))
def test_additive(case: tuple[BusinessHours, list[dt.datetime]]) -> None:
    business, instants = case
    a, b, c = sorted(instants)
    whole, first, second = business_minutes(series([a, a, b]), series([c, b, c]), business).tolist()
    assert whole == pytest.approx(first + second, abs=1e-9)
    assert min(whole, first, second) >= 0.0
