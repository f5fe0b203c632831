"""Day-window arithmetic: which days a daily KPI partition reads, decided here once.

The KPI assets turn these windows into their partition mappings; everything else
(the CLI's ranges, the follow-up sensor, the ``inputs_current`` checks) derives
which partitions read a changed day from those mappings
(``kpi_pipeline.automation.outdated.reached``), never from these numbers again.
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


def attempt_event_offsets(config: KpiConfig) -> tuple[int, int]:
    """Telemetry days D … D+end whose events fall in the windows of day D's attempts (which
    attempts those are is already known from ``task_attempts``, so the day before is not read)."""
    return 0, config.completion_days()


def retry_offsets(config: KpiConfig) -> tuple[int, int]:
    """Attempt days D … D+end that can hold the retry of an attempt started on D: up to
    ``windows.retry`` hours later. Each of those days' attempts reads its own completion window,
    so day D's retries see their completions through ``task_attempts``."""
    return 0, config.retry_days()


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from ``first`` to ``last``, both included (empty when last < first)."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
