"""Asset checks: the pure rules of :mod:`kpi_pipeline.quality`, shown next to each asset.

Blocking checks (severity ERROR) stop downstream assets of the same run:
reconciliation, quarantine rate, the Great Expectations suites and KPI sanity.
The others (schema drift, volume, funnel order, referential, freshness) warn.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from kpi_pipeline.defs.resources import KpiData, WarehouseResource
from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.quality.rules import (
    freshness,
    funnel_monotonic,
    kpi_sanity,
    unknown_requesters,
    unknown_workflows,
)
from kpi_pipeline.tables import KPI_TABLES, table

SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def check_result(outcome: CheckOutcome, check_name: str | None = None) -> dg.AssetCheckResult:
    """A Dagster check result carrying the outcome's message and metadata."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=outcome.passed,
        severity=SEVERITY[outcome.severity],
        description=outcome.message,
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v
            for k, v in outcome.metadata.items()
        },
    )


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _label(context: dg.AssetCheckExecutionContext, name: str) -> str:
    return f"{name} {context.partition_key}" if context.has_partition_key else name


def _date_range(context: dg.AssetCheckExecutionContext) -> tuple[dt.date, dt.date] | None:
    if not context.has_partition_key:
        return None
    day = dt.date.fromisoformat(context.partition_key)
    return day, day


def kpi_sanity_checks() -> list[dg.AssetChecksDefinition]:
    """A blocking invariant check on every KPI table (grain unique, rates in [0, 1], …)."""

    def sanity(name: str) -> dg.AssetChecksDefinition:
        spec = table(name)

        @dg.asset_check(
            asset=name,
            name="kpi_sanity",
            blocking=True,
            description=f"Invariants of {name}: grain ({', '.join(spec.grain)}) unique, rates in [0, 1], "
            "counts non-negative, parts not larger than their whole.",
        )
        def _check(
            context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
        ) -> dg.AssetCheckResult:
            frame = warehouse.get().read(
                name, date_range=_date_range(context) if spec.partition_column else None
            )
            return check_result(kpi_sanity(name, frame, _label(context, name)))

        return _check

    @dg.asset_check(
        asset="kpi_funnel_daily",
        description="Warns when a later funnel step is reached by more attempts than the step before it "
        "(allowed: steps count by presence, not order — but usually a sign of instrumentation gaps).",
    )
    def funnel_step_order(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        frame = warehouse.get().read("kpi_funnel_daily", date_range=_date_range(context))
        return check_result(funnel_monotonic(frame, _label(context, "kpi_funnel_daily")))

    return [*(sanity(spec.name) for spec in KPI_TABLES), funnel_step_order]


def referential_checks() -> list[dg.AssetChecksDefinition]:
    """Warnings: tickets whose requester telemetry does not know, incidents naming unknown workflows."""

    @dg.asset_check(
        asset="support_tickets",
        description="Warns when more than quality.unknown_requester_share of tickets with a requester "
        "name a user that staged telemetry does not know.",
    )
    def requesters_known(kpi_data: KpiData, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        tickets = warehouse.get().read("stg_support_tickets")
        users = kpi_data.staged_distinct(dg.AssetKey("telemetry_events"), "user_id")
        share = kpi_data.config().quality.unknown_requester_share
        return check_result(unknown_requesters(tickets, users, share))

    @dg.asset_check(
        asset="incidents", description="Warns when incidents name workflows kpi.yaml does not know."
    )
    def workflows_known(kpi_data: KpiData, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        incidents = warehouse.get().read("stg_incidents")
        return check_result(unknown_workflows(incidents, set(kpi_data.config().workflows)))

    return [requesters_known, workflows_known]


def freshness_checks() -> list[dg.AssetChecksDefinition]:
    """Warnings when the newest telemetry day or ticket export is older than kpi.yaml allows."""

    @dg.asset_check(
        asset="telemetry_events",
        name="freshness",
        description="The newest staged telemetry event is no older than quality.telemetry_max_age_hours.",
    )
    def telemetry_freshness(kpi_data: KpiData) -> dg.AssetCheckResult:
        newest = kpi_data.staged_max(dg.AssetKey("telemetry_events"), "occurred_at")
        limit = kpi_data.config().quality.telemetry_max_age_hours
        return check_result(freshness("telemetry_events", newest, _now(), limit))

    @dg.asset_check(
        asset="support_tickets",
        name="freshness",
        description="The newest ticket version (updated_at) is no older than quality.tickets_max_age_hours.",
    )
    def tickets_freshness(kpi_data: KpiData, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        updated = warehouse.get().read("stg_support_tickets")["updated_at"]
        newest = updated.max() if len(updated) else None
        limit = kpi_data.config().quality.tickets_max_age_hours
        return check_result(freshness("support_tickets", newest, _now(), limit))

    return [telemetry_freshness, tickets_freshness]


def asset_checks() -> list[dg.AssetChecksDefinition]:
    """Every standalone asset check; the staging checks (Great Expectations suites, reconciliation,
    quarantine rate, drift, volume) run inside the staging assets, before their write."""
    return [*kpi_sanity_checks(), *referential_checks(), *freshness_checks()]
