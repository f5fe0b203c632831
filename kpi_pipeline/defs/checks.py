"""Asset checks: the pure rules of :mod:`kpi_pipeline.quality`, shown next to each asset.

Blocking checks (severity ERROR) stop downstream assets of the same run:
reconciliation, quarantine rate, the Great Expectations suites and KPI sanity.
The others (schema drift, volume, funnel order, referential, freshness) warn.
"""

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.defs.metadata import shown
from kpi_pipeline.defs.partitions import window_dates
from kpi_pipeline.defs.resources import KpiData, WarehouseResource
from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.quality.rules import (
    FUNNEL_TABLE,
    freshness,
    funnel_monotonic,
    kpi_sanity,
    unknown_requesters,
    unknown_workflows,
)
from kpi_pipeline.tables import table

SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def check_result(outcome: CheckOutcome, check_name: str | None = None) -> dg.AssetCheckResult:
    """A Dagster check result carrying the outcome's message and metadata."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=outcome.passed,
        severity=SEVERITY[outcome.severity],
        description=outcome.message,
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else shown(v)
            for k, v in outcome.metadata.items()
        },
    )


def merge_checks(per_day: Sequence[Sequence[dg.AssetCheckResult]]) -> list[dg.AssetCheckResult]:
    """One result per check for a ranged run's days (a check is reported once per run): passed
    when every day passed; otherwise the failing days' descriptions, at the worst severity. Each
    day's description stays in the metadata. One day's results are returned as they are."""
    if len(per_day) == 1:
        return list(per_day[0])
    by_name: dict[str, list[dg.AssetCheckResult]] = {}
    for results in per_day:
        for result in results:
            by_name.setdefault(str(result.check_name), []).append(result)
    merged = []
    for name, results in by_name.items():
        failing = [r for r in results if not r.passed]
        worst = [r for r in failing if r.severity == dg.AssetCheckSeverity.ERROR] or failing or results
        description = (
            "; ".join(r.description or "" for r in failing) if failing else f"all {len(results)} days passed"
        )
        merged.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=not failing,
                severity=worst[0].severity,
                description=description,
                metadata={"days": dg.MetadataValue.json([r.description for r in results])},
            )
        )
    return merged


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _date_range(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date] | None:
    """The days a partitioned run covers (one day, or a ranged run's range)."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    return window_dates(context.partition_time_window)


def _label(context: dg.AssetExecutionContext, name: str) -> str:
    dates = _date_range(context)
    if dates is None:
        return name
    first, last = dates
    return f"{name} {first}" if first == last else f"{name} {first} … {last}"


KPI_SANITY = "kpi_sanity"
FUNNEL_STEP_ORDER = "funnel_step_order"


def kpi_check_specs(name: str) -> list[dg.AssetCheckSpec]:
    """The checks a KPI table's own asset runs on the rows it writes: the blocking invariants
    (grain unique, rates in [0, 1], …) and, on the funnel, the step-order warning. In the asset,
    not standalone: a standalone check is one more Dagster step per table and run that reads the
    rows back from the warehouse (a quarter of a small day's run, 3–4 % of a 6,000-user day's;
    docs/benchmarks.md)."""
    spec = table(name)
    specs = [
        dg.AssetCheckSpec(
            KPI_SANITY,
            asset=name,
            blocking=True,
            description=f"Invariants of {name}: grain ({', '.join(spec.grain)}) unique, rates in [0, 1], "
            "counts non-negative, parts not larger than their whole.",
        )
    ]
    if name == FUNNEL_TABLE:
        specs.append(
            dg.AssetCheckSpec(
                FUNNEL_STEP_ORDER,
                asset=name,
                description="Warns when a later funnel step is reached by more attempts than the step "
                "before it (allowed: steps count by presence, not order — but usually a sign of "
                "instrumentation gaps).",
            )
        )
    return specs


def kpi_check_results(
    name: str, frame: pd.DataFrame, context: dg.AssetExecutionContext
) -> list[dg.AssetCheckResult]:
    """The outcomes of :func:`kpi_check_specs` on ``frame``, the rows the run writes (its days, or
    the whole table), labelled with the run's days."""
    label = _label(context, name)
    results = [check_result(kpi_sanity(name, frame, label), KPI_SANITY)]
    if name == FUNNEL_TABLE:
        results.append(check_result(funnel_monotonic(frame, label), FUNNEL_STEP_ORDER))
    return results


def referential_checks(config: KpiConfig) -> list[dg.AssetChecksDefinition]:
    """Warnings: tickets whose requester telemetry does not know, incidents naming unknown workflows."""

    @dg.asset_check(
        asset="support_tickets",
        description="Warns when more than quality.unknown_requester_share of tickets with a requester "
        "name a user that staged telemetry does not know.",
    )
    def requesters_known(kpi_data: KpiData, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        tickets = warehouse.get().read("stg_support_tickets")
        users = kpi_data.staged_among(dg.AssetKey("telemetry_events"), "user_id", tickets["requester_id"])
        return check_result(unknown_requesters(tickets, users, config.quality.unknown_requester_share))

    @dg.asset_check(
        asset="incidents", description="Warns when incidents name workflows kpi.yaml does not know."
    )
    def workflows_known(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        incidents = warehouse.get().read("stg_incidents")
        return check_result(unknown_workflows(incidents, set(config.workflows)))

    return [requesters_known, workflows_known]


def freshness_checks(config: KpiConfig) -> list[dg.AssetChecksDefinition]:
    """Warnings when the newest telemetry day or ticket export is older than kpi.yaml allows."""

    @dg.asset_check(
        asset="telemetry_events",
        name="freshness",
        description="The newest staged telemetry event is no older than quality.telemetry_max_age_hours.",
    )
    def telemetry_freshness(kpi_data: KpiData) -> dg.AssetCheckResult:
        newest = kpi_data.staged_max(dg.AssetKey("telemetry_events"), "occurred_at")
        limit = config.quality.telemetry_max_age_hours
        return check_result(freshness("telemetry_events", newest, _now(), limit))

    @dg.asset_check(
        asset="support_tickets",
        name="freshness",
        description="The newest ticket version (updated_at) is no older than quality.tickets_max_age_hours.",
    )
    def tickets_freshness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        updated = warehouse.get().read("stg_support_tickets")["updated_at"]
        newest = updated.max() if len(updated) else None
        limit = config.quality.tickets_max_age_hours
        return check_result(freshness("support_tickets", newest, _now(), limit))

    return [telemetry_freshness, tickets_freshness]


def asset_checks(config: KpiConfig) -> list[dg.AssetChecksDefinition]:
    """Every standalone asset check (the thresholds from ``config``, the kpi.yaml the definitions were
    built with). The staging checks (Great Expectations suites, reconciliation, quarantine rate,
    drift, volume) run inside the staging assets, before their write; the KPI tables' checks
    (:func:`kpi_check_specs`) inside their assets, on the rows written."""
    return [*referential_checks(config), *freshness_checks(config)]
