"""The daily UTC partitions shared by telemetry and every daily KPI table, and how runs cover them."""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.ingest.discovery import raw_telemetry_days
from kpi_pipeline.partition_store import stored_partitions
from kpi_pipeline.settings import Settings
from kpi_pipeline.windows import days_between

TELEMETRY_KEY = dg.AssetKey("telemetry_events")

# Dagster's tags of a run over a partition range (what a backfill with a BackfillPolicy sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

CONTRACT_START_DATE = dt.date(2025, 1, 1)
"""The data contract's default first partition, used only when nothing else says where to start."""


def first_partition_day(settings: Settings, config: KpiConfig) -> dt.date:
    """Where the daily partitions start: ``KPI_START_DATE``, else kpi.yaml ``start_date``, else the
    first day with data — a ``raw/telemetry/date=…/`` folder or a staged day (raw retention may
    delete old folders; their staged days stay partitions) — else the contract's 2025-01-01.

    Following the data keeps the partition list honest (no months of empty days before the first
    export). A day folder added before the start needs a code-location reload to become a partition.
    """
    if settings.start_date is not None:
        return settings.start_date
    if config.start_date is not None:
        return config.start_date
    staged = stored_partitions(settings.staging_dir, TELEMETRY_KEY.path)
    days = [*raw_telemetry_days(settings.data_dir)[:1], *(dt.date.fromisoformat(d) for d in staged[:1])]
    return min(days) if days else CONTRACT_START_DATE


def day_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start`` (``first_partition_day``) to the last complete day, keyed YYYY-MM-DD."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", fmt="%Y-%m-%d")


def partitions_of(defs: dg.Definitions) -> dg.PartitionsDefinition:
    """The daily partitions the definitions were built with (those of ``telemetry_events``)."""
    return defs.resolve_assets_def(TELEMETRY_KEY).partitions_def


def range_policy(max_days: int) -> dg.BackfillPolicy:
    """A backfill of N days runs as ceil(N / max_days) ranged runs per asset group, not N (31 by
    default, ``KPI_MAX_DAYS_PER_RUN``). Ranged assets read their inputs a window at a time and the
    Parquet ones stage each day's output aside, so their memory stays one day's; the assets stored
    in the warehouse hold their whole range's rows until its one write (small per day, but fewer
    days per run for 10M-event days: docs/scaling.md)."""
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=max_days)


def days_per_run(defs: dg.Definitions) -> int:
    """The most days one ranged run of ``defs`` covers (its backfill policy)."""
    policy = defs.resolve_assets_def(TELEMETRY_KEY).backfill_policy
    return int(policy.max_partitions_per_run or 1) if policy else 1


# backfill_policy is beta in 1.13; its warning at every definition load says nothing a user can act on.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# A staging job also observes raw_telemetry_files, and an observable source asset takes no backfill
# policy, so Dagster warns at every load that such a job backfills one day per run: what a backfill
# launched from a job's page does anyway (ranged runs come from asset backfills and the CLI).
warnings.filterwarnings("ignore", message="Asset job .* materializes assets with varying BackfillPolicies")


def window_dates(window: dg.TimeWindow) -> tuple[dt.date, dt.date]:
    """The first and last UTC date (both included) of a daily partition window or range."""
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def run_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The UTC days a run covers: its partition range (one day for a daily run)."""
    return days_between(*window_dates(context.partition_time_window))
