"""Staging assets: raw telemetry, ticket and incident exports → validated rows + quarantine."""

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from kpi_pipeline.automation.file_state import frame_version
from kpi_pipeline.config import KpiConfig
from kpi_pipeline.defs.checks import check_result, merge_checks
from kpi_pipeline.defs.metadata import counts_markdown, owner, root_path, table_metadata
from kpi_pipeline.defs.partitions import TELEMETRY_KEY, run_days
from kpi_pipeline.defs.resources import IO_RETRY, WAREHOUSE_POOL, KpiData, PendingDays, WarehouseResource
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.raw_files import UnreadableFileError
from kpi_pipeline.ingest.rows import StagingReport, quarantine_frame
from kpi_pipeline.ingest.telemetry import (
    EventsFile,
    MissingPartitionError,
    StagedTelemetry,
    stage_telemetry_partition,
    write_events,
)
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.partition_store import TOKEN_KEY, PendingPartition, StagedBatch
from kpi_pipeline.quality.rules import (
    quarantine_located,
    quarantine_rate,
    reconciliation,
    schema_drift,
    volume_anomaly,
)
from kpi_pipeline.tables import TELEMETRY_EVENTS, empty_frame, table

STAGING_GROUP = "staging"
QUARANTINE_OF = {
    "telemetry_events": "telemetry_quarantine",
    "support_tickets": "ticket_quarantine",
    "incidents": "incident_quarantine",
}
"""Each staging asset's quarantine asset: the rows of its raw files it did not stage. One op makes
both, and the staging asset's IO manager commits them in one transaction with the staged data, so
a reader never sees one without the other; the quarantine asset records that commit."""


RECONCILIATION_COUNTS = (
    "raw_rows",
    "staged_rows",
    "quarantined_rows",
    "superseded_versions",
    "filtered_rows",
)
"""The reconciliation counts of a staging materialization: a ranged run's total is their sum."""


def report_metadata(report: StagingReport) -> dict[str, object]:
    """Reconciliation and drift figures shown on every staging materialization."""
    return {
        "raw_rows": report.raw_rows,
        "staged_rows": report.staged_rows,
        "quarantined_rows": report.quarantined_rows,
        "superseded_versions": report.superseded_versions,
        "filtered_rows": report.filtered_rows,
        "reconciled": report.reconciled,
        "files": dg.MetadataValue.json(report.files),
        "ignored_files": dg.MetadataValue.json(report.ignored_files),
        "quarantine_reasons": counts_markdown(report.reasons, "reason"),
        "quarantine_reason_counts": dg.MetadataValue.json(report.reasons),
        "fields_seen": dg.MetadataValue.json(report.fields_seen),
        "unknown_fields": dg.MetadataValue.json(report.unknown_fields),
    }


def _fail(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


def _fields_seen_before(
    context: dg.AssetExecutionContext, key: dg.AssetKey, partition_keys: list[str] | None
) -> set[str]:
    """Contract fields that earlier materializations (of these partitions) of ``key`` reported as present."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partition_keys),
        limit=len(partition_keys) if partition_keys else 1,
    ).records
    seen: set[str] = set()
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get("fields_seen") if materialization else None
        if value is not None:
            seen |= {name for name, rows in value.value.items() if rows}
    return seen


def staging_checks(
    label: str, report: StagingReport, config: KpiConfig, seen_before: set[str], partition: bool
) -> list[dg.AssetCheckResult]:
    """Reconciliation (blocking), quarantine rate and schema drift of one staging step.

    The quarantine rate blocks only for a telemetry partition; an export (a handful of
    incidents, say) only warns, since one bad row of ten is no reason to stop every KPI.
    """
    quality = config.quality
    error_above = quality.quarantine_rate_error if partition else 1.0
    return [
        check_result(
            reconciliation(
                label,
                report.raw_rows,
                report.staged_rows,
                report.quarantined_rows,
                report.superseded_versions,
            ),
            "reconciliation",
        ),
        check_result(
            quarantine_rate(
                label,
                report.raw_rows,
                report.quarantined_rows,
                report.reasons,
                error_above,
                quality.quarantine_rate_warn,
            ),
            "quarantine_rate",
        ),
        check_result(
            schema_drift(label, report.fields_seen, report.unknown_fields, seen_before), "schema_drift"
        ),
    ]


EXPECTATIONS = {
    "telemetry_events": (
        "telemetry_expectations",
        "Great Expectations suite: required fields, unique event_id, canonical event types, "
        "timestamps inside the partition and not in the future, non-negative durations.",
    ),
    "support_tickets": (
        "tickets_expectations",
        "Great Expectations suite: required fields, unique ticket_id, canonical status, "
        "created_at not in the future, non-negative work minutes and reopens, solved not before created.",
    ),
    "incidents": (
        "incidents_expectations",
        "Great Expectations suite: required fields, unique incident_id, canonical severity, "
        "started_at not in the future, resolved not before started.",
    ),
}


def expectations(asset: str, frame: pd.DataFrame | Path, day: dt.date | None) -> dg.AssetCheckResult:
    """The asset's Great Expectations suite on the rows about to be stored (decided before the write,
    like every blocking staging check; ``frame`` may be the Parquet file a staged day was written to).
    GX is imported here, at run time, not when definitions load."""
    from kpi_pipeline.quality import expectations as gx_suites

    now = pd.Timestamp.now(tz="UTC")
    if asset == "telemetry_events" and day is not None:
        suite, label = gx_suites.telemetry_suite(day, now), f"telemetry_events {day}"
    elif asset == "support_tickets":
        suite, label = gx_suites.tickets_suite(now), asset
    else:
        suite, label = gx_suites.incidents_suite(now), asset
    return check_result(gx_suites.run_suite(asset, suite, frame, label), EXPECTATIONS[asset][0])


def blocked(checks: list[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """The blocking (ERROR) checks among ``checks`` that failed."""
    return [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]


def reject(
    kpi_data: KpiData,
    asset_path: list[str],
    partition: str | None,
    batch: StagedBatch,
    report: StagingReport,
    failed: list[dg.AssetCheckResult],
) -> dg.Failure:
    """Keep a version that failed a blocking check aside (the stored version stays) and say so."""
    folder = kpi_data.store.write_rejected(asset_path, partition, batch, asdict(report))
    label = "/".join(asset_path) + (f" {partition}" if partition else "")
    reasons = "; ".join(f"{c.check_name}: {c.description}" for c in failed)
    return dg.Failure(
        description=f"{label} was not stored: {reasons}. The previous version stays in place for every "
        f"reader; the rejected version's quarantine rows and report are in {folder}",
        metadata={"rejected_version": root_path(folder, kpi_data.root), **report_metadata(report)},
        allow_retries=False,
    )


def as_rejected(checks: list[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """The checks of a version that was not stored, saying so: Dagster shows a check evaluation
    without a new materialization next to the stored one, which did not change."""
    return [
        dg.AssetCheckResult(
            check_name=c.check_name,
            passed=c.passed,
            severity=c.severity,
            description=f"rejected version, not stored (the stored version is unchanged): {c.description}",
            metadata={**(c.metadata or {}), "version": "rejected, not stored"},
        )
        for c in checks
    ]


def no_folder(day: dt.date) -> StagedTelemetry:
    """A day without a raw folder: a day with no data (staged empty, reported, not failed)."""
    report = StagingReport(raw_rows=0, staged_rows=0, quarantined_rows=0)
    quarantine = quarantine_frame("telemetry", day.isoformat(), [], Path("."), pd.DataFrame())
    return StagedTelemetry(empty_frame(TELEMETRY_EVENTS), quarantine, report)


def kept_version(kpi_data: KpiData, warehouse: WarehouseResource, partition: str) -> StagedTelemetry:
    """The stored version of a day (events and quarantine rows), to store again unchanged."""
    events = kpi_data.staged_frame(dg.AssetKey(TELEMETRY_EVENTS.name), partition)
    quarantine = warehouse.get().read("quarantine", where={"source": "telemetry", "partition": partition})
    report = StagingReport(
        raw_rows=len(events) + len(quarantine),
        staged_rows=len(events),
        quarantined_rows=len(quarantine),
        reasons=quarantine["reason"].value_counts().to_dict(),
    )
    return StagedTelemetry(events, quarantine, report)


@dataclass(frozen=True)
class StagedDay:
    """One day of a telemetry run: staged aside, with the checks decided before its commit."""

    key: str
    pending: PendingPartition
    batch: StagedBatch
    report: StagingReport
    checks: list[dg.AssetCheckResult]
    missing_folder: str = ""


def stage_day(
    context: dg.AssetExecutionContext,
    kpi_data: KpiData,
    warehouse: WarehouseResource,
    cfg: KpiConfig,
    day: dt.date,
    earlier: list[StagedDay],
) -> StagedDay:
    """Stage one telemetry day aside and decide its checks. ``earlier`` are the days this run staged
    before it (not committed yet): the volume and drift checks count them as stored history.

    The events go straight to a pending file (DuckDB writes a big day itself), committed or
    discarded with the rest of the run; if anything fails before the day is returned, the file is
    deleted here."""
    path, token = kpi_data.store.reserve()
    try:
        key = day.isoformat()
        missing_folder = ""
        out = EventsFile(path, {TOKEN_KEY.decode(): token})
        try:
            staged = stage_telemetry_partition(
                kpi_data.root, day, cfg.event_aliases, cfg.sources.telemetry, out=out, surveys=cfg.surveys
            )
        except MissingPartitionError as exc:
            stored = kpi_data.staged_rows(TELEMETRY_KEY, [key])
            if sum(stored):
                # Raw retention or an unmounted share must not wipe a day that was staged.
                missing_folder = f"{exc}; the staged version ({stored[0]} rows) is kept"
                staged = kept_version(kpi_data, warehouse, key)
            else:
                missing_folder = f"{exc}; staged as a day with no data"
                staged = no_folder(day)
            context.log.warning(missing_folder)
        except UnreadableFileError as exc:
            raise _fail(exc) from None
        if staged.events is not None:
            write_events(staged.events, out)
        report = staged.report
        context.log.info(
            f"telemetry {day}: {report.raw_rows} raw rows = {report.staged_rows} staged "
            f"+ {report.quarantined_rows} quarantined"
        )
        checks = _history_checks(context, kpi_data, cfg, day, report, earlier)
        checks.insert(0, expectations("telemetry_events", path, day))
        # The events are on disk; the day keeps only what a rejection writes (its quarantine rows), so a
        # ranged run holds no day's events in memory.
        batch = StagedBatch(
            empty_frame(TELEMETRY_EVENTS), staged.quarantine, {"source": "telemetry", "partition": key}
        )
        pending = kpi_data.store.written(TELEMETRY_KEY.path, key, path, token, report.staged_rows, batch)
        return StagedDay(key, pending, batch, report, checks, missing_folder)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _history_checks(
    context: dg.AssetExecutionContext,
    kpi_data: KpiData,
    cfg: KpiConfig,
    day: dt.date,
    report: StagingReport,
    earlier: list[StagedDay],
) -> list[dg.AssetCheckResult]:
    """A staged day's checks against the days before it (schema drift, volume), counting the days
    this run staged before it (``earlier``, not committed yet) as stored history."""
    label = f"telemetry_events {day}"
    window = cfg.quality.volume_window
    before = [(day - dt.timedelta(days=n)).isoformat() for n in range(window, 0, -1)]
    in_run = {d.key: d for d in earlier if d.key in before}
    lookup = [k for k in before if k not in in_run]
    seen = _fields_seen_before(context, TELEMETRY_KEY, lookup) if lookup else set()
    seen |= {name for d in in_run.values() for name, rows in d.report.fields_seen.items() if rows}
    checks = staging_checks(label, report, cfg, seen, partition=True)
    stored_rows = dict(zip(before, kpi_data.staged_row_counts(TELEMETRY_KEY, before), strict=True))
    trailing = [
        in_run[k].report.staged_rows if k in in_run else stored_rows[k]
        for k in before
        if k in in_run or stored_rows[k] is not None
    ]
    checks.append(
        check_result(
            volume_anomaly(label, report.staged_rows, trailing, cfg.quality.volume_tolerance, window),
            "volume_anomaly",
        )
    )
    return checks


def _check_specs(asset: str, partition: bool) -> list[dg.AssetCheckSpec]:
    """The checks a staging asset reports on every materialization."""
    rate = (
        "Quarantined share of the partition's raw rows: fails above quality.quarantine_rate_error "
        "(blocking), warns above quality.quarantine_rate_warn; lists the top reasons."
        if partition
        else "Quarantined share of the export's raw rows: warns above quality.quarantine_rate_warn; "
        "lists the top reasons."
    )
    gx_name, gx_description = EXPECTATIONS[asset]
    specs = [
        dg.AssetCheckSpec(gx_name, asset=asset, blocking=True, description=gx_description),
        dg.AssetCheckSpec(
            "reconciliation",
            asset=asset,
            blocking=True,
            description="raw rows = staged + superseded versions + quarantined.",
        ),
        dg.AssetCheckSpec("quarantine_rate", asset=asset, blocking=partition, description=rate),
        dg.AssetCheckSpec(
            "schema_drift",
            asset=asset,
            description="Warns on raw fields the contract does not know and contract fields that "
            "vanished from a source that used to send them.",
        ),
    ]
    if partition:
        specs.append(
            dg.AssetCheckSpec(
                "volume_anomaly",
                asset=asset,
                description="Warns when staged rows are outside ± quality.volume_tolerance of the median "
                "of the previous quality.volume_window partitions.",
            )
        )
    return specs


LOCATED = "rows_located"
QUARANTINE_KEY = dg.AssetKey(QUARANTINE_OF[TELEMETRY_KEY.to_user_string()])


def on_asset(key: dg.AssetKey, checks: list[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """The check results as results of ``key``: a staging op makes two assets, so each result
    names its own."""
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=c.check_name,
            passed=c.passed,
            severity=c.severity,
            description=c.description,
            metadata=c.metadata,
        )
        for c in checks
    ]


def quarantine_out(staged: str, source: str, owners: list[str]) -> dict[str, dg.AssetOut]:
    """The quarantine asset of the staging asset ``staged`` (of ``source``): no value of its own (its
    rows are committed with the staged data by the staging asset's IO manager), so no IO manager."""
    return {
        QUARANTINE_OF[staged]: dg.AssetOut(
            dagster_type=dg.Nothing,
            owners=owners,
            kinds={"sql"},
            description=(
                f"The raw {source} rows that were not staged, one per row with its file, line, the first "
                "contract reason and the raw text: the `quarantine` warehouse table's rows with "
                f"source = '{source}'. Written in one transaction with the staged data."
            ),
            metadata={**table_metadata(table("quarantine"), source), "rows_of": f"source = '{source}'"},
        )
    }


def quarantine_metadata(quarantine: pd.DataFrame) -> dict[str, object]:
    """A quarantine asset's materialization metadata: its row count and reasons."""
    counts = quarantine["reason"].astype(str).value_counts().to_dict() if len(quarantine) else {}
    return {
        "dagster/row_count": len(quarantine),
        "reasons": counts_markdown(counts, "reason"),
        "dagster/table_name": "quarantine",
    }


def _located_spec(staged: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        LOCATED,
        asset=QUARANTINE_OF[staged],
        description="Every quarantine row names its file, its line and a contract reason (missing_field "
        "and bad_value with the field), so it can be found and fixed.",
    )


def staging_assets(
    config: KpiConfig, partitions: dg.PartitionsDefinition, policy: dg.BackfillPolicy
) -> list[dg.AssetsDefinition]:
    """The three staging assets, owned by the data-quality owner from kpi.yaml; ``config`` is the
    kpi.yaml the definitions were built with, which every run of them uses."""
    owners = [owner(config.owner_for("data_quality"))]

    @dg.multi_asset(
        name="stage_telemetry",
        outs={
            "telemetry_events": dg.AssetOut(
                io_manager_key="parquet_io_manager",
                freshness_policy=dg.FreshnessPolicy.time_window(
                    fail_window=dt.timedelta(hours=config.quality.telemetry_max_age_hours)
                ),
                owners=owners,
                kinds={"duckdb", "parquet"},
                description=(
                    "Telemetry of one UTC day from `raw/telemetry/date=YYYY-MM-DD/` (jsonl, jsonl.gz, csv, "
                    "csv.gz): aliases applied, validated, one row per valid event; every other row is in "
                    "`telemetry_quarantine`. It depends on raw_telemetry_files, whose data version per day "
                    "covers the files and the aliases of that day, so a re-export or an alias change marks "
                    "exactly those days stale."
                ),
                metadata=table_metadata(TELEMETRY_EVENTS, "telemetry", warehouse_table=False),
            ),
            **quarantine_out("telemetry_events", "telemetry", owners),
        },
        check_specs=[*_check_specs("telemetry_events", partition=True), _located_spec("telemetry_events")],
        partitions_def=partitions,
        backfill_policy=policy,
        retry_policy=IO_RETRY,
        group_name=STAGING_GROUP,
        deps=["raw_telemetry_files"],
    )
    def telemetry_events(
        context: dg.AssetExecutionContext, kpi_data: KpiData, warehouse: WarehouseResource
    ) -> Iterator[dg.Output[PendingDays] | dg.AssetCheckResult]:
        days: list[StagedDay] = []
        try:
            for day in run_days(context):
                days.append(stage_day(context, kpi_data, warehouse, config, day, days))
            checks = merge_checks([d.checks for d in days])
            failed = [d for d in days if blocked(d.checks)]
            if failed:
                yield from on_asset(TELEMETRY_KEY, as_rejected(checks))
                rejections = [
                    reject(kpi_data, TELEMETRY_KEY.path, d.key, d.batch, d.report, blocked(d.checks))
                    for d in failed
                ]
                if len(rejections) == 1:
                    raise rejections[0]
                raise dg.Failure(
                    description="; ".join(r.description or "" for r in rejections), allow_retries=False
                )
        except BaseException:
            for staged in days:  # nothing of the run is stored: every day keeps its stored version
                kpi_data.store.discard(staged.pending)
            raise
        # Each partition gets its own figures: a ranged run stages several days, and schema drift
        # reads fields_seen of each earlier day.
        for d in days:
            figures = {**report_metadata(d.report), "dagster/row_count": d.report.staged_rows}
            if d.missing_folder:
                figures["missing_folder"] = d.missing_folder
            context.add_asset_metadata(figures, asset_key=TELEMETRY_KEY, partition_key=d.key)
            quarantined = quarantine_metadata(d.batch.quarantine)
            context.add_asset_metadata(quarantined, asset_key=QUARANTINE_KEY, partition_key=d.key)
        yield dg.Output(PendingDays(tuple(d.pending for d in days)), "telemetry_events")
        yield dg.Output(None, "telemetry_quarantine")
        quarantine = pd.concat([d.batch.quarantine for d in days], ignore_index=True)
        yield from on_asset(TELEMETRY_KEY, checks)
        label = f"telemetry_quarantine {days[0].key}" + (f" … {days[-1].key}" if len(days) > 1 else "")
        yield from on_asset(QUARANTINE_KEY, [check_result(quarantine_located(label, quarantine), LOCATED)])

    def export_asset(
        name: str, source: str, stage, table_name: str, what: str, max_age_hours: float | None = None
    ) -> dg.AssetsDefinition:
        spec = table(table_name)
        freshness = (
            dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=max_age_hours))
            if max_age_hours
            else None
        )

        @dg.multi_asset(
            name=f"stage_{source}",
            outs={
                name: dg.AssetOut(
                    io_manager_key="warehouse_io_manager",
                    freshness_policy=freshness,
                    owners=owners,
                    kinds={"pandas", "sql"},
                    description=(
                        f"{what} from every export under raw/{source}/ (or its source mapping's path), "
                        "merged: the latest version wins (ties: the file whose path sorts last). Rejected "
                        f"rows go to `{QUARANTINE_OF[name]}`. Stored as warehouse table `{table_name}`."
                    ),
                    metadata=table_metadata(spec, source),
                ),
                **quarantine_out(name, source, owners),
            },
            check_specs=[*_check_specs(name, partition=False), _located_spec(name)],
            retry_policy=IO_RETRY,
            pool=WAREHOUSE_POOL,  # its staged rows are a warehouse table, replaced whole
            group_name=STAGING_GROUP,
        )
        def _asset(
            context: dg.AssetExecutionContext, kpi_data: KpiData, warehouse: WarehouseResource
        ) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
            try:
                staged = stage(kpi_data.root, getattr(config.sources, source))
            except UnreadableFileError as exc:
                raise _fail(exc) from None
            report = staged.report
            context.log.info(
                f"{source}: {report.raw_rows} raw rows = {report.staged_rows} staged "
                f"+ {report.superseded_versions} older versions + {report.quarantined_rows} quarantined"
            )
            seen = _fields_seen_before(context, dg.AssetKey(name), None)
            checks = staging_checks(name, report, config, seen, partition=False)
            checks.insert(0, expectations(name, staged.records, None))
            batch = StagedBatch(staged.records, staged.quarantine, {"source": source})
            failed = blocked(checks)
            if failed:
                yield from on_asset(dg.AssetKey(name), as_rejected(checks))
                raise reject(kpi_data, [name], None, batch, report, failed)
            version = dg.DataVersion(frame_version(staged.records, staged.quarantine))
            yield dg.Output(batch, name, metadata=report_metadata(report), data_version=version)
            kpi_data.store.clear_rejected([name], None)
            yield dg.Output(None, QUARANTINE_OF[name], metadata=quarantine_metadata(staged.quarantine))
            yield from on_asset(dg.AssetKey(name), checks)
            located = check_result(quarantine_located(QUARANTINE_OF[name], staged.quarantine), LOCATED)
            yield from on_asset(dg.AssetKey(QUARANTINE_OF[name]), [located])

        return _asset

    return [
        telemetry_events,
        export_asset(
            "support_tickets",
            "tickets",
            stage_tickets,
            "stg_support_tickets",
            "Support tickets",
            config.quality.tickets_max_age_hours,
        ),
        export_asset("incidents", "incidents", stage_incidents, "stg_incidents", "Incidents"),
    ]
