"""Staging assets: raw telemetry, ticket and incident exports → validated rows + quarantine."""

import datetime as dt

import dagster as dg
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.defs.metadata import column_schema, counts_markdown, owner, table_metadata
from kpi_pipeline.defs.partitions import daily_partitions
from kpi_pipeline.defs.resources import KpiData, WarehouseResource
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.raw_files import UnreadableFileError
from kpi_pipeline.ingest.rows import StagingReport
from kpi_pipeline.ingest.telemetry import MissingPartitionError, stage_telemetry_partition
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.tables import TELEMETRY_EVENTS, table

STAGING_GROUP = "staging"


def report_metadata(report: StagingReport) -> dict[str, object]:
    """Reconciliation and drift figures shown on every staging materialization."""
    return {
        "raw_rows": report.raw_rows,
        "staged_rows": report.staged_rows,
        "quarantined_rows": report.quarantined_rows,
        "superseded_versions": report.superseded_versions,
        "reconciled": report.reconciled,
        "files": dg.MetadataValue.json(report.files),
        "ignored_files": dg.MetadataValue.json(report.ignored_files),
        "quarantine_reasons": counts_markdown(report.reasons, "reason"),
        "quarantine_reason_counts": dg.MetadataValue.json(report.reasons),
        "fields_seen": dg.MetadataValue.json(report.fields_seen),
        "unknown_fields": dg.MetadataValue.json(report.unknown_fields),
    }


def _fail(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc))


def staging_assets(config: KpiConfig) -> list[dg.AssetsDefinition]:
    """The three staging assets, owned by the data-quality owner from kpi.yaml."""
    owners = [owner(config.owner_for("data_quality"))]

    @dg.asset(
        name="telemetry_events",
        partitions_def=daily_partitions,
        io_manager_key="parquet_io_manager",
        group_name=STAGING_GROUP,
        owners=owners,
        kinds={"pandas", "parquet"},
        code_version=f"1+aliases.{config.staging_fingerprint()}",
        description=(
            "Telemetry of one UTC day from raw/telemetry/date=<day>/ (jsonl, jsonl.gz, csv, csv.gz): "
            "aliases applied, validated, one row per valid event; every other row is in `quarantine`. "
            "The code version carries a hash of kpi.yaml's event_aliases, so an alias change marks "
            "the partitions to re-stage."
        ),
        metadata={"grain": "event_id", "dagster/column_schema": column_schema(TELEMETRY_EVENTS)},
    )
    def telemetry_events(
        context: dg.AssetExecutionContext, kpi_data: KpiData, warehouse: WarehouseResource
    ) -> dg.Output[pd.DataFrame]:
        day = dt.date.fromisoformat(context.partition_key)
        try:
            staged = stage_telemetry_partition(kpi_data.root, day, kpi_data.config().event_aliases)
        except (MissingPartitionError, UnreadableFileError) as exc:
            raise _fail(exc) from None
        warehouse.get().replace(
            "quarantine", staged.quarantine, where={"source": "telemetry", "partition": day.isoformat()}
        )
        context.log.info(
            f"telemetry {day}: {staged.report.raw_rows} raw rows = {staged.report.staged_rows} staged "
            f"+ {staged.report.quarantined_rows} quarantined"
        )
        return dg.Output(staged.events, metadata=report_metadata(staged.report))

    def export_asset(name: str, source: str, stage, table_name: str, what: str) -> dg.AssetsDefinition:
        spec = table(table_name)

        @dg.asset(
            name=name,
            io_manager_key="warehouse_io_manager",
            group_name=STAGING_GROUP,
            owners=owners,
            kinds={"pandas", "sql"},
            description=(
                f"{what} from every export under raw/{source}/, merged: the version with the latest "
                "updated_at wins (ties: the file whose path sorts last). Rejected rows go to "
                f"`quarantine`. Stored as warehouse table `{table_name}`."
            ),
            metadata=table_metadata(spec),
        )
        def _asset(
            context: dg.AssetExecutionContext, kpi_data: KpiData, warehouse: WarehouseResource
        ) -> dg.Output[pd.DataFrame]:
            try:
                staged = stage(kpi_data.root)
            except UnreadableFileError as exc:
                raise _fail(exc) from None
            warehouse.get().replace("quarantine", staged.quarantine, where={"source": source})
            report = staged.report
            context.log.info(
                f"{source}: {report.raw_rows} raw rows = {report.staged_rows} staged "
                f"+ {report.superseded_versions} older versions + {report.quarantined_rows} quarantined"
            )
            return dg.Output(staged.records, metadata=report_metadata(report))

        return _asset

    return [
        telemetry_events,
        export_asset("support_tickets", "tickets", stage_tickets, "stg_support_tickets", "Support tickets"),
        export_asset("incidents", "incidents", stage_incidents, "stg_incidents", "Incidents"),
    ]
