"""The daily UTC partitions shared by telemetry and every daily KPI table."""

from __future__ import annotations

import dagster as dg

from kpi_pipeline.settings import Settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=Settings.from_env().start_date.isoformat(), timezone="UTC", fmt="%Y-%m-%d"
)
