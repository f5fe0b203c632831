"""Assembles the Dagster definitions; the logic lives in the modules it imports."""

from __future__ import annotations

import dagster as dg

from kpi_pipeline.config import KpiConfig, load_config
from kpi_pipeline.defs.automation import EXECUTOR, automation_definitions, raw_telemetry_asset
from kpi_pipeline.defs.checks import asset_checks
from kpi_pipeline.defs.kpis import kpi_assets
from kpi_pipeline.defs.outdated import graph_nodes, inputs_current_definitions
from kpi_pipeline.defs.partitions import day_partitions, first_partition_day, range_policy
from kpi_pipeline.defs.report import report_assets
from kpi_pipeline.defs.resources import KpiData, ParquetIOManager, WarehouseIOManager, WarehouseResource
from kpi_pipeline.defs.staging import staging_assets
from kpi_pipeline.settings import Settings


def _shown(settings: Settings, name: str, value: str) -> str:
    """``value``, or ``dg.EnvVar(name)`` when the environment variable ``name`` set it: Dagster then
    shows the variable's name, not its value (a warehouse URL may hold a password), and reads it
    when a run starts."""
    return dg.EnvVar(name) if name in settings.from_environment else value


def build_definitions(settings: Settings, config: KpiConfig | None = None) -> dg.Definitions:
    """Definitions for one data root, warehouse and kpi.yaml (tests build their own).

    The partitions, the kpi.yaml and the resources are built here once: every asset, check and
    sensor uses these, so what a run computes is what the UI shows. After editing kpi.yaml, reload
    the code location (the UI's *Reload*; the CLI reads it at every command). ``config``: the
    settings' kpi.yaml when the caller has already read it (the CLI), else it is read here.
    """
    if config is None:
        config = load_config(settings.config_path, required=settings.config_required)
    partitions = day_partitions(first_partition_day(settings, config))
    data_dir = _shown(settings, "KPI_DATA_DIR", str(settings.data_dir))
    url = _shown(settings, "KPI_WAREHOUSE_URL", settings.warehouse_url)
    policy = range_policy(settings.max_days_per_run)
    assets = [
        *staging_assets(config, partitions, policy),
        *kpi_assets(config, partitions, policy),
        *report_assets(config),
    ]
    nodes = graph_nodes(assets)  # what each asset reads, from its partition mappings
    automation = automation_definitions(config, partitions, nodes, settings.max_days_per_run)
    current = inputs_current_definitions(nodes)
    return dg.Definitions(
        assets=[raw_telemetry_asset(config, partitions), *assets],
        asset_checks=[*asset_checks(config), *current["asset_checks"]],
        jobs=automation["jobs"],
        schedules=automation["schedules"],
        sensors=[*automation["sensors"], *current["sensors"]],
        executor=EXECUTOR,
        resources={
            "kpi_data": KpiData(data_dir=data_dir, warehouse_url=url),
            "warehouse": WarehouseResource(url=url),
            "parquet_io_manager": ParquetIOManager(data_dir=data_dir, warehouse_url=url),
            "warehouse_io_manager": WarehouseIOManager(url=url),
        },
    )


defs = build_definitions(Settings.from_env())
