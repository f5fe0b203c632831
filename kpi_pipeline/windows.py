"""Day-window arithmetic shared by the KPI assets, the follow-up sensor and range runs.

Which days a daily KPI partition reads, and so which KPI partitions a re-staged
telemetry day changes, is decided here once.
"""

from __future__ import annotations

import datetime as dt

from kpi_pipeline.config import KpiConfig

TRAILING_DAYS = 28  # the longest trailing window (mau, 28-day adoption)
WEEK_DAYS = 7  # a UTC week, Monday first: user_weeks of a day reads its week up to it


def attempt_offsets(config: KpiConfig) -> tuple[int, int]:
    """Telemetry days D+start … D+end that the attempts of day D read: the day before (so an
    attempt started on D−1 is not counted again on D) up to the last day its window reaches."""
    return -1, config.completion_days()


def attempt_readers(day: dt.date, config: KpiConfig) -> tuple[dt.date, dt.date]:
    """First and last KPI day whose attempts read telemetry of ``day`` (both included)."""
    start, end = attempt_offsets(config)
    return day - dt.timedelta(days=end), day - dt.timedelta(days=start)


def trailing_readers(day: dt.date) -> tuple[dt.date, dt.date]:
    """First and last KPI day whose trailing (7- and 28-day) windows contain ``day``."""
    return day, day + dt.timedelta(days=TRAILING_DAYS - 1)


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from ``first`` to ``last``, both included (empty when last < first)."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
