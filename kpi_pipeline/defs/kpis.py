"""KPI assets: each wires one pure function of :mod:`kpi_pipeline.kpis` to its inputs.

Daily tables share the telemetry partitions. Attempts of day D read telemetry
D-1 … D+n, n = ceil(windows.completion / 24) (an attempt's events may arrive
until ``windows.completion`` hours later), and look up in ``task_starts`` which
of the day's task_ids started before (``kpi_pipeline.windows`` holds the window
arithmetic); 7- and 28-day windows read the small ``daily_activity`` rollup,
never raw events. Unpartitioned tables are recomputed from all partitions.
"""

import datetime as dt
import warnings
from collections.abc import Callable, Mapping

import dagster as dg
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.defs.metadata import markdown_preview, owner, table_metadata
from kpi_pipeline.defs.partitions import daily_partitions
from kpi_pipeline.defs.resources import KpiData, WarehouseResource
from kpi_pipeline.kpis.activity import daily_activity as build_daily_activity
from kpi_pipeline.kpis.adoption import feature_adoption_daily
from kpi_pipeline.kpis.attempts import build_attempts, started_on, task_starts
from kpi_pipeline.kpis.completion import funnel_daily, task_completion_daily
from kpi_pipeline.kpis.deflection import ticket_deflection_daily
from kpi_pipeline.kpis.engagement import engagement_daily
from kpi_pipeline.kpis.reliability import incident_impact, reliability_weekly
from kpi_pipeline.kpis.retention import first_seen, retention_weekly, time_to_value_weekly
from kpi_pipeline.kpis.roi import roi_daily
from kpi_pipeline.kpis.scorecard import scorecard
from kpi_pipeline.tables import ATTEMPTS, DAILY_ACTIVITY, TELEMETRY_EVENTS, TableSpec, empty_frame, table
from kpi_pipeline.windows import TRAILING_DAYS, attempt_offsets

KPI_GROUP = "kpis"
INTERMEDIATE_GROUP = "intermediate"
# new_users needs each user's first event in all staged history: engagement of D reads
# the rollup of every earlier day (up to this many), which is small (one row per active user-day).
HISTORY_DAYS = 3660


def day_window(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    """Days D+start_offset … D+end_offset of a daily upstream, those that exist.

    allow_nonexistent_upstream_partitions (beta in 1.13) lets the first day have no
    D-1 and windows start before the first partition; its warning says nothing a
    user can act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(
            start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
        )


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _output(frame: pd.DataFrame, headline: Mapping[str, object] | None = None) -> dg.Output[pd.DataFrame]:
    """The frame with a markdown preview and its headline numbers as metadata."""
    metadata: dict[str, object] = {"preview": markdown_preview(frame)}
    for key, value in (headline or {}).items():
        metadata[key] = None if pd.isna(value) else float(value) if isinstance(value, float) else value
    return dg.Output(frame, metadata={k: v for k, v in metadata.items() if v is not None})


def _rate(numerator: pd.Series, denominator: pd.Series) -> float:
    total = float(denominator.sum())
    return float(numerator.sum()) / total if total else float("nan")


def kpi_assets(config: KpiConfig) -> list[dg.AssetsDefinition]:
    """Every KPI table of the spec plus the attempts and activity rollup they share."""
    attempt_window = day_window(*attempt_offsets(config))
    last_28_days = day_window(-(TRAILING_DAYS - 1), 0)
    all_history = day_window(-HISTORY_DAYS, 0)
    workflow_owners = sorted({owner(config.workflow_owner(w)) for w in config.workflows}) or [
        owner(config.default_owner)
    ]
    engagement_owners = [owner(config.owner_for("engagement"))]
    support_owners = [owner(config.owner_for("support"))]
    reliability_owners = [owner(config.owner_for("reliability"))]

    def warehouse_asset(
        name: str,
        owners: list[str],
        partitioned: bool,
        ins: Mapping[str, dg.AssetIn],
        source: str = "telemetry",
        group_name: str = KPI_GROUP,
        **extra: object,
    ) -> Callable:
        spec = table(name)
        return dg.asset(
            name=name,
            partitions_def=daily_partitions if partitioned else None,
            io_manager_key="warehouse_io_manager",
            group_name=group_name,
            owners=owners,
            kinds={"pandas", "sql"},
            description=f"{spec.description} Grain: {', '.join(spec.grain)}. See README, '{name}'.",
            metadata=table_metadata(spec, source),
            ins=dict(ins),
            **extra,
        )

    def parquet_asset(
        spec: TableSpec, owners: list[str], ins: Mapping[str, dg.AssetIn], **extra: object
    ) -> Callable:
        return dg.asset(
            name=spec.name,
            partitions_def=daily_partitions,
            io_manager_key="parquet_io_manager",
            group_name=INTERMEDIATE_GROUP,
            owners=owners,
            kinds={"pandas", "parquet"},
            description=spec.description,
            metadata=table_metadata(spec, "telemetry", warehouse_table=False),
            ins=dict(ins),
            **extra,
        )

    # task_starts of D waits for D-1's (a chain), so every earlier day's record exists before a
    # day's attempts look it up, in UI backfills as in CLI runs.
    @warehouse_asset(
        "task_starts",
        workflow_owners,
        True,
        {"telemetry_events": dg.AssetIn()},
        group_name=INTERMEDIATE_GROUP,
        deps=[dg.AssetDep("task_starts", partition_mapping=day_window(-1, -1))],
    )
    def task_starts_asset(
        context: dg.AssetExecutionContext, telemetry_events: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        out = task_starts(telemetry_events, _day(context))
        return _output(out, {"task_ids": len(out)})

    @parquet_asset(
        ATTEMPTS,
        workflow_owners,
        {"telemetry_events": dg.AssetIn(partition_mapping=attempt_window), "support_tickets": dg.AssetIn()},
        deps=[dg.AssetDep("task_starts", partition_mapping=day_window(-1, 0))],
    )
    def task_attempts(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        warehouse: WarehouseResource,
        telemetry_events: pd.DataFrame,
        support_tickets: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        day = _day(context)
        earlier = warehouse.started_before(started_on(telemetry_events, day), day)
        attempts = build_attempts(telemetry_events, support_tickets, kpi_data.config(), day, earlier)
        headline = {"attempts": len(attempts), "completed": int(attempts["completed"].sum())}
        if earlier:
            context.log.info(f"{len(earlier)} task_id(s) started again on {day} belong to earlier attempts")
        return _output(attempts, {**headline, "restarted_earlier_tasks": len(earlier)})

    @parquet_asset(DAILY_ACTIVITY, engagement_owners, {"telemetry_events": dg.AssetIn()})
    def daily_activity(telemetry_events: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        activity = build_daily_activity(telemetry_events)
        return _output(activity, {"active_users": int(activity["user_id"].nunique())})

    @warehouse_asset("kpi_task_completion_daily", workflow_owners, True, {"task_attempts": dg.AssetIn()})
    def kpi_task_completion_daily(task_attempts: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        out = task_completion_daily(task_attempts)
        return _output(
            out,
            {
                "attempts": int(out["attempts"].sum()),
                "completion_rate": _rate(out["completions"], out["attempts"]),
                "first_pass_rate": _rate(out["first_pass_completions"], out["attempts"]),
            },
        )

    @warehouse_asset("kpi_funnel_daily", workflow_owners, True, {"task_attempts": dg.AssetIn()})
    def kpi_funnel_daily(kpi_data: KpiData, task_attempts: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        return _output(funnel_daily(task_attempts, kpi_data.config()))

    @warehouse_asset(
        "kpi_ticket_deflection_daily",
        support_owners,
        True,
        {"telemetry_events": dg.AssetIn(), "support_tickets": dg.AssetIn()},
    )
    def kpi_ticket_deflection_daily(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        telemetry_events: pd.DataFrame,
        support_tickets: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        out = ticket_deflection_daily(telemetry_events, support_tickets, kpi_data.config(), _day(context))
        return _output(
            out,
            {
                "help_sessions": int(out["help_sessions"].sum()),
                "deflection_rate": _rate(out["deflected"], out["help_sessions"]),
            },
        )

    @warehouse_asset(
        "kpi_engagement_daily",
        engagement_owners,
        True,
        {"daily_activity": dg.AssetIn(partition_mapping=all_history)},
    )
    def kpi_engagement_daily(
        context: dg.AssetExecutionContext, kpi_data: KpiData, daily_activity: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        if not sum(kpi_data.staged_rows(dg.AssetKey(TELEMETRY_EVENTS.name), [context.partition_key])):
            context.log.info(f"no staged telemetry on {context.partition_key}: no engagement row (kpis.md)")
            return _output(empty_frame(table("kpi_engagement_daily")))
        out = engagement_daily(daily_activity, first_seen(daily_activity), _day(context))
        return _output(out, out.iloc[0][["dau", "wau", "mau", "new_users"]].astype(int).to_dict())

    @warehouse_asset(
        "kpi_feature_adoption_daily",
        engagement_owners,
        True,
        {"daily_activity": dg.AssetIn(partition_mapping=last_28_days)},
    )
    def kpi_feature_adoption_daily(
        context: dg.AssetExecutionContext, daily_activity: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        out = feature_adoption_daily(daily_activity, _day(context))
        return _output(out.sort_values("users_28d", ascending=False), {"features": len(out)})

    @warehouse_asset(
        "kpi_roi_daily",
        workflow_owners,
        True,
        {"kpi_task_completion_daily": dg.AssetIn(), "kpi_ticket_deflection_daily": dg.AssetIn()},
    )
    def kpi_roi_daily(
        kpi_data: KpiData, kpi_task_completion_daily: pd.DataFrame, kpi_ticket_deflection_daily: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        out = roi_daily(kpi_task_completion_daily, kpi_ticket_deflection_daily, kpi_data.config())
        return _output(out, {"net_value": float(out["net_value"].sum())})

    @warehouse_asset("kpi_retention_weekly", engagement_owners, False, {"daily_activity": dg.AssetIn()})
    def kpi_retention_weekly(kpi_data: KpiData, daily_activity: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        # Weeks run to the last staged date: any environment counts, as for open incidents' as-of.
        latest = kpi_data.staged_max(dg.AssetKey(TELEMETRY_EVENTS.name), "occurred_at")
        last = latest.tz_convert("UTC").date() if latest is not None else dt.date.min
        out = retention_weekly(daily_activity, last)
        week1 = out[out["week_number"] == 1]
        return _output(out, {"week_1_retention": _rate(week1["retained_users"], week1["cohort_users"])})

    @warehouse_asset(
        "kpi_time_to_value_weekly",
        engagement_owners,
        False,
        {"daily_activity": dg.AssetIn(), "task_attempts": dg.AssetIn()},
    )
    def kpi_time_to_value_weekly(
        kpi_data: KpiData, daily_activity: pd.DataFrame, task_attempts: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        out = time_to_value_weekly(daily_activity, task_attempts, kpi_data.config())
        return _output(out, {"activation_rate": _rate(out["activated_users"], out["cohort_users"])})

    @warehouse_asset(
        "kpi_incidents",
        reliability_owners,
        False,
        {"incidents": dg.AssetIn(), "task_attempts": dg.AssetIn(), "support_tickets": dg.AssetIn()},
        source="incidents",
        deps=["telemetry_events"],
    )
    def kpi_incidents(
        kpi_data: KpiData,
        incidents: pd.DataFrame,
        task_attempts: pd.DataFrame,
        support_tickets: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        until = kpi_data.staged_max(dg.AssetKey("telemetry_events"), "occurred_at")
        out = incident_impact(incidents, task_attempts, support_tickets, kpi_data.config(), until)
        return _output(out, {"incidents": len(out), "open": int(out["resolved_at"].isna().sum())})

    @warehouse_asset(
        "kpi_reliability_weekly",
        reliability_owners,
        False,
        {"kpi_incidents": dg.AssetIn()},
        source="incidents",
    )
    def kpi_reliability_weekly(kpi_incidents: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        return _output(reliability_weekly(kpi_incidents))

    @warehouse_asset(
        "kpi_scorecard",
        workflow_owners,
        False,
        {
            "kpi_task_completion_daily": dg.AssetIn(),
            "kpi_ticket_deflection_daily": dg.AssetIn(),
            "kpi_roi_daily": dg.AssetIn(),
        },
    )
    def kpi_scorecard(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        kpi_task_completion_daily: pd.DataFrame,
        kpi_ticket_deflection_daily: pd.DataFrame,
        kpi_roi_daily: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        dates = kpi_task_completion_daily["date"]
        if dates.empty:
            context.log.warning("kpi_task_completion_daily has no rows (no task events yet): empty scorecard")
            return _output(empty_frame(table("kpi_scorecard")))
        # The latest day's attempts can still complete the next day: L is the day before it.
        as_of = dt.date.fromisoformat(dates.max()) - dt.timedelta(days=1)
        context.log.info(f"scorecard as of {as_of}")
        out = scorecard(
            kpi_task_completion_daily, kpi_ticket_deflection_daily, kpi_roi_daily, kpi_data.config(), as_of
        )
        return _output(out, {"as_of": as_of.isoformat(), "regressed": int((out["status"] != "ok").sum())})

    return [
        task_starts_asset,
        task_attempts,
        daily_activity,
        kpi_task_completion_daily,
        kpi_funnel_daily,
        kpi_ticket_deflection_daily,
        kpi_engagement_daily,
        kpi_feature_adoption_daily,
        kpi_roi_daily,
        kpi_retention_weekly,
        kpi_time_to_value_weekly,
        kpi_incidents,
        kpi_reliability_weekly,
        kpi_scorecard,
    ]
