"""kpi_pipeline: outcome-based product KPIs from telemetry, support tickets and incident logs."""

__version__ = "0.1.0"
