"""KPI assets: each wires one pure function of :mod:`kpi_pipeline.kpis` to its inputs.

Daily tables share the telemetry partitions. Attempts of day D read telemetry
D-1 … D+n, n = ceil(windows.completion / 24) (an attempt's events may arrive
until ``windows.completion`` hours later), and look up in ``task_starts`` which
of the day's task_ids started before (``kpi_pipeline.windows`` holds the window
arithmetic); 7- and 28-day windows read the small ``daily_activity`` rollup,
never raw events, and new users are looked up in ``user_days``, so a day's run
costs the same at day 7 as at day 700. Cohort tables read the narrow
``user_weeks`` record (a user's first active day of each week, O(users × weeks));
the other unpartitioned tables are recomputed from the daily attempts and KPI
tables.

Every daily asset computes day by day over its run's days: one day for a
scheduled run, a range for a backfill (``range_policy``). Inputs are read a
window at a time (:class:`StagedDays`) and Parquet outputs are staged aside day
by day (:class:`PendingDays`), so a ranged run's memory is one day's. The
assets that read telemetry (task starts, attempts, the activity rollup,
deflection) get it as a DuckDB relation over the window's Parquet files, read by
column and out of core; their KPI functions run SQL on it and return small frames.
"""

import datetime as dt
import functools
import inspect
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

import dagster as dg
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.defs.checks import kpi_check_results, kpi_check_specs
from kpi_pipeline.defs.metadata import (
    completion_trend,
    markdown_preview,
    owner,
    shown,
    table_metadata,
    workflow_owner_table,
)
from kpi_pipeline.defs.partitions import run_days
from kpi_pipeline.defs.resources import (
    IO_RETRY,
    WAREHOUSE_POOL,
    KpiData,
    PendingDays,
    StagedDays,
    WarehouseResource,
)
from kpi_pipeline.kpis.activity import ACCOUNT_WEEK_COLUMNS, account_weeks, user_days, user_weeks
from kpi_pipeline.kpis.activity import EVENT_COLUMNS as ACTIVITY_EVENT_COLUMNS
from kpi_pipeline.kpis.activity import daily_activity as build_daily_activity
from kpi_pipeline.kpis.adoption import feature_adoption_daily
from kpi_pipeline.kpis.attempts import EVENT_COLUMNS as ATTEMPT_EVENT_COLUMNS
from kpi_pipeline.kpis.attempts import (
    WINDOW_EVENT_COLUMNS,
    attempt_events,
    build_attempts,
    drop_earlier_starts,
    task_starts,
)
from kpi_pipeline.kpis.completion import funnel_daily, task_completion_daily
from kpi_pipeline.kpis.deflection import EVENT_COLUMNS as DEFLECTION_EVENT_COLUMNS
from kpi_pipeline.kpis.deflection import ticket_deflection_daily
from kpi_pipeline.kpis.engagement import active_on, engagement_daily, first_seen_on
from kpi_pipeline.kpis.errors import ERROR_ATTEMPT_COLUMNS, errors_daily
from kpi_pipeline.kpis.latency import step_latency_daily
from kpi_pipeline.kpis.lifecycle import lifecycle_weekly
from kpi_pipeline.kpis.releases import RELEASE_ATTEMPT_COLUMNS, RELEASE_EVENT_COLUMNS, release_quality
from kpi_pipeline.kpis.reliability import attempt_days, incident_impact, reliability_weekly
from kpi_pipeline.kpis.retention import (
    TIME_TO_VALUE_ATTEMPT_COLUMNS,
    cohort_retention,
    retention_weekly,
    time_to_value_weekly,
)
from kpi_pipeline.kpis.retries import RETRY_ATTEMPT_COLUMNS, retry_daily
from kpi_pipeline.kpis.roi import roi_daily
from kpi_pipeline.kpis.scorecard import scorecard
from kpi_pipeline.kpis.support import support_daily, ticket_as_of
from kpi_pipeline.kpis.surveys import (
    NO_WORKFLOW,
    SURVEY_ATTEMPT_COLUMNS,
    SURVEY_EVENT_COLUMNS,
    response_task_ids,
    survey_daily,
)
from kpi_pipeline.kpis.uptime import uptime_as_of, uptime_monthly
from kpi_pipeline.partition_store import PendingPartition
from kpi_pipeline.tables import (
    ATTEMPT_EVENTS,
    ATTEMPTS,
    DAILY_ACTIVITY,
    KPI_TABLES,
    TELEMETRY_EVENTS,
    TableSpec,
    empty_frame,
    table,
)
from kpi_pipeline.windows import (
    TRAILING_DAYS,
    WEEK_DAYS,
    attempt_event_offsets,
    attempt_offsets,
    retry_offsets,
)

KPI_GROUP = "kpis"
KPI_TABLE_NAMES = frozenset(spec.name for spec in KPI_TABLES)
INTERMEDIATE_GROUP = "intermediate"


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


def per_day(
    context: dg.AssetExecutionContext,
    compute: Callable[[dt.date], pd.DataFrame],
    headline: Callable[[pd.DataFrame], Mapping[str, object]] | None = None,
) -> pd.DataFrame:
    """``compute`` for each day of the run (one, or a ranged run's days), rows in date order. Each
    partition's materialization gets its own row count and ``headline`` of its own rows, so a
    ranged run shows every day's figures, not the range's."""
    frames = []
    for day in run_days(context):
        frame = compute(day)
        frames.append(frame)
        figures: dict[str, object] = {"dagster/row_count": len(frame)}
        if headline is not None and len(frame):
            figures |= _headline(headline(frame))
        context.add_asset_metadata(figures, partition_key=day.isoformat())
    filled = [f for f in frames if len(f)]
    return pd.concat(filled, ignore_index=True) if len(filled) > 1 else (filled or frames)[0]


def if_staged(
    context: dg.AssetExecutionContext,
    kpi_data: KpiData,
    spec: TableSpec,
    compute: Callable[[dt.date], pd.DataFrame],
) -> Callable[[dt.date], pd.DataFrame]:
    """``compute``, except on a day whose telemetry was never staged, which gets no rows. A UI
    backfill also targets days after its range whose partitions read it (the next day's attempts,
    28-day windows): such a day gets no rows rather than invented ones, and its readers do not wait
    for partitions that cannot exist."""

    def guarded(day: dt.date) -> pd.DataFrame:
        counts = kpi_data.staged_row_counts(dg.AssetKey(TELEMETRY_EVENTS.name), [day.isoformat()])
        if counts[0] is None:
            context.log.info(f"telemetry of {day} is not staged: no {spec.name} rows")
            return empty_frame(spec)
        return compute(day)

    return guarded


def on_date(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The rows of a daily table (read for a run's range) that belong to ``day``."""
    return frame[(frame["date"].astype(str) == day.isoformat()).to_numpy(bool)].reset_index(drop=True)


def staged_per_day(
    context: dg.AssetExecutionContext,
    kpi_data: KpiData,
    compute: Callable[[dt.date], pd.DataFrame],
    count: Callable[[pd.DataFrame], Mapping[str, int]],
) -> tuple[PendingDays, dict[str, object]]:
    """``compute`` for each day of the run, each day's rows staged aside as it is computed (the IO
    manager commits them all), so a ranged run holds one day in memory. Each partition gets its row
    count and ``count``'s figures; the returned metadata: those summed over the days, and a preview
    of the last day's rows."""
    pending: list[PendingPartition] = []
    totals: Counter[str] = Counter()
    frame = pd.DataFrame()
    try:
        for day in run_days(context):
            frame = compute(day)
            figures = count(frame)
            totals.update(figures)
            context.add_asset_metadata(
                {"dagster/row_count": len(frame), **figures}, partition_key=day.isoformat()
            )
            pending.append(kpi_data.store.stage(context.asset_key.path, day.isoformat(), frame, None))
    except BaseException:
        for staged in pending:
            kpi_data.store.discard(staged)
        raise
    return PendingDays(tuple(pending)), {"preview": markdown_preview(frame), **dict(totals)}


def _output(frame: pd.DataFrame, headline: Mapping[str, object] | None = None) -> dg.Output[pd.DataFrame]:
    """The frame with a markdown preview and its headline numbers as metadata."""
    metadata: dict[str, object] = {"preview": markdown_preview(frame)}
    metadata.update(_headline(headline))
    return dg.Output(frame, metadata=metadata)


def _headline(headline: Mapping[str, object] | None) -> dict[str, object]:
    """Headline numbers as metadata values (NaN and None left out)."""
    metadata: dict[str, object] = {}
    for key, value in (headline or {}).items():
        metadata[key] = None if pd.isna(value) else shown(float(value) if isinstance(value, float) else value)
    return {k: v for k, v in metadata.items() if v is not None}


def _rate(numerator: pd.Series, denominator: pd.Series) -> float:
    total = float(denominator.sum())
    return float(numerator.sum()) / total if total else float("nan")


def with_kpi_checks(name: str, compute: Callable[..., dg.Output[pd.DataFrame]]) -> Callable:
    """``compute`` (a KPI table's asset function), then the table's checks on the rows it returned
    (:func:`kpi_check_specs`): yielded after the output, so the rows are written first and a
    failed blocking check stops what reads them in the run, as a standalone check did. Dagster
    reads the asset's parameters from ``compute``'s signature."""

    @functools.wraps(compute)
    def checked(*args: object, **kwargs: object) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
        output = compute(*args, **kwargs)
        yield output
        yield from kpi_check_results(name, output.value, dg.AssetExecutionContext.get())

    checked.__signature__ = inspect.signature(compute).replace(  # type: ignore[attr-defined]
        return_annotation=Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]
    )
    return checked


def kpi_assets(
    config: KpiConfig, partitions: dg.PartitionsDefinition, policy: dg.BackfillPolicy
) -> list[dg.AssetsDefinition]:
    """Every KPI table of the spec plus the attempts and activity rollup they share; ``config`` is the
    kpi.yaml the definitions were built with, which every run of them uses."""
    attempt_window = day_window(*attempt_offsets(config))
    last_28_days = day_window(-(TRAILING_DAYS - 1), 0)
    # One accountable team per table; the workflows' own owners are in its metadata (and the
    # scorecard's rows), not in the asset's owners, where four teams would mean no one.
    workflow_owners = [owner(config.owner_for("workflows"))]
    by_workflow = {"workflow_owners": workflow_owner_table(config)}
    engagement_owners = [owner(config.owner_for("engagement"))]
    support_owners = [owner(config.owner_for("support"))]
    reliability_owners = [owner(config.owner_for("reliability"))]
    release_owners = [owner(config.owner_for("releases"))]

    def warehouse_asset(
        name: str,
        owners: list[str],
        partitioned: bool,
        ins: Mapping[str, dg.AssetIn],
        source: str = "telemetry",
        group_name: str = KPI_GROUP,
        engine: str = "pandas",
        no_workflow: str | None = None,
        **extra: object,
    ) -> Callable:
        """A warehouse table; ``engine`` is its compute kind (``duckdb`` where it reads telemetry);
        ``no_workflow``: the workflow name of its rows about no workflow (their owner is
        ``default_owner``, listed with the workflows' owners)."""
        spec = table(name)
        owned = {"workflow_owners": workflow_owner_table(config, [no_workflow] if no_workflow else [])}
        checked = name in KPI_TABLE_NAMES
        asset = dg.asset(
            name=name,
            partitions_def=partitions if partitioned else None,
            backfill_policy=policy if partitioned else None,
            retry_policy=IO_RETRY,
            pool=WAREHOUSE_POOL,
            io_manager_key="warehouse_io_manager",
            group_name=group_name,
            owners=owners,
            kinds={engine, "sql"},
            description=f"{spec.description} Grain: {', '.join(spec.grain)}. See docs/tables.md, '{name}'.",
            metadata={**table_metadata(spec, source), **(owned if owners is workflow_owners else {})},
            ins=dict(ins),
            check_specs=kpi_check_specs(name) if checked else None,
            **extra,
        )
        return (lambda compute: asset(with_kpi_checks(name, compute))) if checked else asset

    def parquet_asset(
        spec: TableSpec, owners: list[str], ins: Mapping[str, dg.AssetIn], **extra: object
    ) -> Callable:
        """An intermediate Parquet table (attempts, the activity rollup): computed in DuckDB from
        raw-sized telemetry."""
        return dg.asset(
            name=spec.name,
            partitions_def=partitions,
            backfill_policy=policy,
            retry_policy=IO_RETRY,
            io_manager_key="parquet_io_manager",
            group_name=INTERMEDIATE_GROUP,
            owners=owners,
            kinds={"duckdb", "parquet"},
            description=spec.description,
            metadata={
                **table_metadata(spec, "telemetry", warehouse_table=False),
                **(by_workflow if owners is workflow_owners else {}),
            },
            ins=dict(ins),
            **extra,
        )

    # task_starts of D waits for D-1's (a chain), so every earlier day's record exists before a
    # day's attempts look it up, in UI backfills as in CLI runs.
    @warehouse_asset(
        "task_starts",
        workflow_owners,
        True,
        {"telemetry_events": dg.AssetIn(metadata={"columns": list(ATTEMPT_EVENT_COLUMNS)})},
        group_name=INTERMEDIATE_GROUP,
        engine="duckdb",
        deps=[dg.AssetDep("task_starts", partition_mapping=day_window(-1, -1))],
    )
    def task_starts_asset(
        context: dg.AssetExecutionContext, telemetry_events: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        starts = per_day(
            context,
            lambda day: task_starts(telemetry_events.relation(day, day), day),
            lambda day: {"task_ids": len(day)},
        )
        return _output(starts)

    @parquet_asset(
        ATTEMPTS,
        workflow_owners,
        {
            "telemetry_events": dg.AssetIn(
                partition_mapping=attempt_window, metadata={"columns": list(ATTEMPT_EVENT_COLUMNS)}
            ),
            "support_tickets": dg.AssetIn(),
        },
        deps=[dg.AssetDep("task_starts", partition_mapping=day_window(-1, 0))],
    )
    def task_attempts(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        warehouse: WarehouseResource,
        telemetry_events: StagedDays,
        support_tickets: pd.DataFrame,
    ) -> dg.Output[PendingDays]:
        first, last = attempt_offsets(config)

        restarted: Counter[str] = Counter()

        def attempts_of(day: dt.date) -> pd.DataFrame:
            # One read of the window: the day's candidates, then the task_starts lookup on them.
            events = telemetry_events.relation(day + dt.timedelta(days=first), day + dt.timedelta(days=last))
            candidates = build_attempts(events, support_tickets, config, day)
            earlier = warehouse.started_before(candidates["task_id"], day)
            if earlier:
                context.log.info(
                    f"{len(earlier)} task_id(s) started again on {day} belong to earlier attempts"
                )
            restarted["restarted_earlier_tasks"] += len(earlier)
            return drop_earlier_starts(candidates, earlier)

        def count(attempts: pd.DataFrame) -> dict[str, int]:
            return {"attempts": len(attempts), "completed": int(attempts["completed"].sum())}

        days, headline = staged_per_day(context, kpi_data, attempts_of, count)
        return dg.Output(days, metadata=_headline({**headline, **restarted}))

    @parquet_asset(
        ATTEMPT_EVENTS,
        workflow_owners,
        {
            "telemetry_events": dg.AssetIn(
                partition_mapping=day_window(*attempt_event_offsets(config)),
                metadata={"columns": list(WINDOW_EVENT_COLUMNS)},
            ),
            "task_attempts": dg.AssetIn(),
        },
    )
    def attempt_events_asset(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        telemetry_events: StagedDays,
        task_attempts: StagedDays,
    ) -> dg.Output[PendingDays]:
        first, last = attempt_event_offsets(config)

        def events_of(day: dt.date) -> pd.DataFrame:
            window = telemetry_events.relation(day + dt.timedelta(days=first), day + dt.timedelta(days=last))
            return attempt_events(window, task_attempts.day(day), config)

        def count(events: pd.DataFrame) -> dict[str, int]:
            kinds = events["event_type"]
            return {
                "step_events": int((kinds == "task_step").sum()),
                "error_events": int((kinds == "task_error").sum()),
            }

        days, headline = staged_per_day(
            context, kpi_data, if_staged(context, kpi_data, ATTEMPT_EVENTS, events_of), count
        )
        return dg.Output(days, metadata=_headline(headline))

    # user_days of D waits for D-1's (a chain, as task_starts): new users of D look up every earlier day.
    @warehouse_asset(
        "user_days",
        engagement_owners,
        True,
        {"daily_activity": dg.AssetIn()},
        group_name=INTERMEDIATE_GROUP,
        deps=[dg.AssetDep("user_days", partition_mapping=day_window(-1, -1))],
    )
    def user_days_asset(
        context: dg.AssetExecutionContext, daily_activity: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        return _output(
            per_day(
                context, lambda day: user_days(daily_activity.day(day)), lambda day: {"user_days": len(day)}
            )
        )

    # user_weeks of D reads user_days of D's week up to D (the 6 days before D cover any weekday).
    @warehouse_asset(
        "user_weeks",
        engagement_owners,
        True,
        {"user_days": dg.AssetIn(partition_mapping=day_window(-(WEEK_DAYS - 1), 0))},
        group_name=INTERMEDIATE_GROUP,
    )
    def user_weeks_asset(
        context: dg.AssetExecutionContext, user_days: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        return _output(
            per_day(context, lambda day: user_weeks(user_days, day), lambda day: {"user_weeks": len(day)})
        )

    # account_weeks of D reads the rollup of D's week up to D (the 6 days before D cover any weekday).
    @warehouse_asset(
        "account_weeks",
        engagement_owners,
        True,
        {
            "daily_activity": dg.AssetIn(
                partition_mapping=day_window(-(WEEK_DAYS - 1), 0),
                metadata={"columns": list(ACCOUNT_WEEK_COLUMNS)},
            )
        },
        group_name=INTERMEDIATE_GROUP,
    )
    def account_weeks_asset(
        context: dg.AssetExecutionContext, daily_activity: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        def weeks_of(day: dt.date) -> pd.DataFrame:
            return account_weeks(daily_activity.frame(day - dt.timedelta(days=WEEK_DAYS - 1), day), day)

        return _output(per_day(context, weeks_of, lambda day: {"account_weeks": len(day)}))

    @parquet_asset(
        DAILY_ACTIVITY,
        engagement_owners,
        {"telemetry_events": dg.AssetIn(metadata={"columns": list(ACTIVITY_EVENT_COLUMNS)})},
    )
    def daily_activity(
        context: dg.AssetExecutionContext, kpi_data: KpiData, telemetry_events: StagedDays
    ) -> dg.Output[PendingDays]:
        def count(activity: pd.DataFrame) -> dict[str, int]:
            return {"active_users": int(activity["user_id"].nunique())}

        days, headline = staged_per_day(
            context, kpi_data, lambda day: build_daily_activity(telemetry_events.relation(day, day)), count
        )
        return dg.Output(days, metadata=_headline(headline))

    @warehouse_asset("kpi_task_completion_daily", workflow_owners, True, {"task_attempts": dg.AssetIn()})
    def kpi_task_completion_daily(
        context: dg.AssetExecutionContext, task_attempts: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        def headline(day: pd.DataFrame) -> dict[str, object]:
            # Each workflow's rate too: the asset page's partition plots then show each one's trend.
            by_workflow = day.groupby("workflow")[["completions", "attempts"]].sum()
            return {
                "attempts": int(day["attempts"].sum()),
                "completion_rate": _rate(day["completions"], day["attempts"]),
                "first_pass_rate": _rate(day["first_pass_completions"], day["attempts"]),
                **{
                    f"completion_rate/{name}": _rate(row[["completions"]], row[["attempts"]])
                    for name, row in by_workflow.iterrows()
                },
            }

        return _output(per_day(context, lambda day: task_completion_daily(task_attempts.day(day)), headline))

    @warehouse_asset("kpi_funnel_daily", workflow_owners, True, {"task_attempts": dg.AssetIn()})
    def kpi_funnel_daily(
        context: dg.AssetExecutionContext, task_attempts: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        return _output(per_day(context, lambda day: funnel_daily(task_attempts.day(day), config)))

    @warehouse_asset("kpi_step_latency_daily", workflow_owners, True, {"attempt_events": dg.AssetIn()})
    def kpi_step_latency_daily(
        context: dg.AssetExecutionContext, kpi_data: KpiData, attempt_events: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        def latency_of(day: dt.date) -> pd.DataFrame:
            return step_latency_daily(attempt_events.relation(day, day), config)

        def headline(day: pd.DataFrame) -> dict[str, object]:
            slow = day["slow_events"].dropna()
            return {
                "step_events": int(day["events"].sum()),
                "slowest_p95_ms": float(day["p95_ms"].max()),
                "slow_rate": _rate(slow, day.loc[slow.index, "events"]),
            }

        return _output(
            per_day(
                context, if_staged(context, kpi_data, table("kpi_step_latency_daily"), latency_of), headline
            )
        )

    @warehouse_asset(
        "kpi_errors_daily",
        workflow_owners,
        True,
        {
            "task_attempts": dg.AssetIn(metadata={"columns": list(ERROR_ATTEMPT_COLUMNS)}),
            "attempt_events": dg.AssetIn(),
        },
    )
    def kpi_errors_daily(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        task_attempts: StagedDays,
        attempt_events: StagedDays,
    ) -> dg.Output[pd.DataFrame]:
        def errors_of(day: dt.date) -> pd.DataFrame:
            return errors_daily(task_attempts.day(day), attempt_events.day(day))

        def headline(day: pd.DataFrame) -> dict[str, object]:
            return {
                "error_attempts": int(day["error_attempts"].sum()),
                "recovery_rate": _rate(day["recovered_attempts"], day["error_attempts"]),
            }

        return _output(
            per_day(context, if_staged(context, kpi_data, table("kpi_errors_daily"), errors_of), headline)
        )

    @warehouse_asset(
        "kpi_retry_daily",
        workflow_owners,
        True,
        {
            "task_attempts": dg.AssetIn(
                partition_mapping=day_window(*retry_offsets(config)),
                metadata={"columns": list(RETRY_ATTEMPT_COLUMNS)},
            )
        },
    )
    def kpi_retry_daily(
        context: dg.AssetExecutionContext, task_attempts: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        first, last = retry_offsets(config)

        def retries_of(day: dt.date) -> pd.DataFrame:
            window = task_attempts.frame(day + dt.timedelta(days=first), day + dt.timedelta(days=last))
            return retry_daily(window, day, config)

        def headline(day: pd.DataFrame) -> dict[str, object]:
            return {
                "failed_attempts": int(day["failed_attempts"].sum()),
                "retry_rate": _rate(day["retried"], day["failed_attempts"]),
                "recovery_rate": _rate(day["recovered"], day["failed_attempts"]),
            }

        return _output(per_day(context, retries_of, headline))

    @warehouse_asset(
        "kpi_survey_daily",
        workflow_owners,
        True,
        {
            "telemetry_events": dg.AssetIn(),
            "task_attempts": dg.AssetIn(
                partition_mapping=day_window(-1, 0), metadata={"columns": list(SURVEY_ATTEMPT_COLUMNS)}
            ),
        },
        engine="duckdb",
        deps=[dg.AssetDep("task_starts", partition_mapping=day_window(-1, 0))],
        no_workflow=NO_WORKFLOW,
    )
    def kpi_survey_daily(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        warehouse: WarehouseResource,
        telemetry_events: StagedDays,
        task_attempts: StagedDays,
    ) -> dg.Output[pd.DataFrame]:
        def surveys_of(day: dt.date) -> pd.DataFrame:
            events = telemetry_events.relation(day, day)
            if "survey" not in events.columns:
                context.log.info(
                    f"telemetry of {day} was staged before survey_response existed: no survey rows"
                )
                return empty_frame(table("kpi_survey_daily"))
            events = events.project(", ".join(SURVEY_EVENT_COLUMNS))
            attempts = task_attempts.frame(day - dt.timedelta(days=1), day)
            # Responses about older attempts take their workflow from them: task_starts says which days.
            older = response_task_ids(events)
            older = older[~older.isin(attempts["task_id"])]
            days = warehouse.start_days(older, day - dt.timedelta(days=1))
            frames = [kpi_data.staged_frame(dg.AssetKey("task_attempts"), d) for d in days]
            earlier = [f.loc[f["task_id"].isin(older), list(SURVEY_ATTEMPT_COLUMNS)] for f in frames]
            return survey_daily(events, pd.concat([attempts, *earlier], ignore_index=True), config, day)

        def headline(day: pd.DataFrame) -> dict[str, object]:
            return {
                "responses": int(day["responses"].sum()),
                "unhappy_completions": int(day["unhappy_completions"].sum()),
            }

        return _output(
            per_day(context, if_staged(context, kpi_data, table("kpi_survey_daily"), surveys_of), headline)
        )

    @warehouse_asset(
        "kpi_ticket_deflection_daily",
        support_owners,
        True,
        {
            "telemetry_events": dg.AssetIn(metadata={"columns": list(DEFLECTION_EVENT_COLUMNS)}),
            "support_tickets": dg.AssetIn(),
        },
        engine="duckdb",
    )
    def kpi_ticket_deflection_daily(
        context: dg.AssetExecutionContext,
        telemetry_events: StagedDays,
        support_tickets: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        def headline(day: pd.DataFrame) -> dict[str, object]:
            return {
                "help_sessions": int(day["help_sessions"].sum()),
                "deflection_rate": _rate(day["deflected"], day["help_sessions"]),
            }

        out = per_day(
            context,
            lambda day: ticket_deflection_daily(
                telemetry_events.relation(day, day), support_tickets, config, day
            ),
            headline,
        )
        return _output(out)

    @warehouse_asset(
        "kpi_engagement_daily",
        engagement_owners,
        True,
        {"daily_activity": dg.AssetIn(partition_mapping=last_28_days)},
        deps=[dg.AssetDep("user_days", partition_mapping=day_window(-1, 0))],
    )
    def kpi_engagement_daily(
        context: dg.AssetExecutionContext,
        kpi_data: KpiData,
        warehouse: WarehouseResource,
        daily_activity: StagedDays,
    ) -> dg.Output[pd.DataFrame]:
        def engagement_of(day: dt.date) -> pd.DataFrame:
            if not sum(kpi_data.staged_rows(dg.AssetKey(TELEMETRY_EVENTS.name), [day.isoformat()])):
                context.log.info(f"no staged telemetry on {day}: no engagement row (kpis.md)")
                return empty_frame(table("kpi_engagement_daily"))
            window = daily_activity.frame(day - dt.timedelta(days=TRAILING_DAYS - 1), day)
            seen = warehouse.seen_before(active_on(window, day), day)
            return engagement_daily(window, first_seen_on(window, day, seen), day)

        def headline(day: pd.DataFrame) -> dict[str, object]:
            return day.iloc[-1][["dau", "wau", "mau", "new_users"]].astype(int).to_dict()

        return _output(per_day(context, engagement_of, headline))

    @warehouse_asset(
        "kpi_feature_adoption_daily",
        engagement_owners,
        True,
        {"daily_activity": dg.AssetIn(partition_mapping=last_28_days)},
    )
    def kpi_feature_adoption_daily(
        context: dg.AssetExecutionContext, kpi_data: KpiData, daily_activity: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        def adoption_of(day: dt.date) -> pd.DataFrame:
            window = daily_activity.frame(day - dt.timedelta(days=TRAILING_DAYS - 1), day)
            return feature_adoption_daily(window, day).sort_values("users_28d", ascending=False)

        adoption = if_staged(context, kpi_data, table("kpi_feature_adoption_daily"), adoption_of)
        return _output(per_day(context, adoption, lambda day: {"features": len(day)}))

    @warehouse_asset(
        "kpi_roi_daily",
        workflow_owners,
        True,
        {"kpi_task_completion_daily": dg.AssetIn(), "kpi_ticket_deflection_daily": dg.AssetIn()},
    )
    def kpi_roi_daily(
        context: dg.AssetExecutionContext,
        kpi_task_completion_daily: pd.DataFrame,
        kpi_ticket_deflection_daily: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        completion, deflection = kpi_task_completion_daily, kpi_ticket_deflection_daily
        out = per_day(
            context,
            lambda day: roi_daily(on_date(completion, day), on_date(deflection, day), config),
            lambda day: {"net_value": float(day["net_value"].sum())},
        )
        return _output(out)

    def last_staged_date(kpi_data: KpiData) -> dt.date:
        """The last staged date: the UTC date of the newest staged event of any environment, as for
        open incidents' as-of (``date.min`` when nothing is staged)."""
        latest = kpi_data.staged_max(dg.AssetKey(TELEMETRY_EVENTS.name), "occurred_at")
        return latest.tz_convert("UTC").date() if latest is not None else dt.date.min

    @warehouse_asset("kpi_retention_weekly", engagement_owners, False, {"user_weeks": dg.AssetIn()})
    def kpi_retention_weekly(kpi_data: KpiData, user_weeks: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        out = retention_weekly(user_weeks, last_staged_date(kpi_data))
        week1 = out[out["week_number"] == 1]
        return _output(out, {"week_1_retention": _rate(week1["retained_users"], week1["cohort_users"])})

    @warehouse_asset(
        "kpi_cohort_retention",
        engagement_owners,
        False,
        {"user_weeks": dg.AssetIn(), "account_weeks": dg.AssetIn()},
    )
    def kpi_cohort_retention(
        kpi_data: KpiData, user_weeks: pd.DataFrame, account_weeks: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        out = cohort_retention(user_weeks, account_weeks, last_staged_date(kpi_data))
        week4 = out[(out["unit"] == "account") & (out["mode"] == "on_or_after") & (out["week_number"] == 4)]
        return _output(out, {"account_week_4_on_or_after": _rate(week4["retained"], week4["cohort_size"])})

    @warehouse_asset("kpi_lifecycle_weekly", engagement_owners, False, {"user_weeks": dg.AssetIn()})
    def kpi_lifecycle_weekly(kpi_data: KpiData, user_weeks: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        # Weeks run from the first staged date (the earliest telemetry partition) to the last.
        staged = kpi_data.staged_keys(dg.AssetKey(TELEMETRY_EVENTS.name))
        if not staged:
            return _output(empty_frame(table("kpi_lifecycle_weekly")))
        out = lifecycle_weekly(user_weeks, dt.date.fromisoformat(min(staged)), last_staged_date(kpi_data))
        latest = out[out["week"] == out["week"].max()]
        return _output(out, {"quick_ratio": float(latest["quick_ratio"].iloc[0]) if len(latest) else None})

    @warehouse_asset(
        "kpi_support_daily", support_owners, False, {"support_tickets": dg.AssetIn()}, source="tickets"
    )
    def kpi_support_daily(support_tickets: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        # Unpartitioned: a ticket's row moves with each new export (replies, solves, the as-of time).
        out = support_daily(support_tickets, config)
        as_of = ticket_as_of(support_tickets)
        return _output(
            out,
            {
                "as_of": None if as_of is None else as_of.isoformat(),
                "tickets": int(out["tickets"].sum()),
                "first_reply_breaches": int(out["first_reply_breaches"].sum()),
                "resolution_breaches": int(out["resolution_breaches"].sum()),
            },
        )

    @warehouse_asset(
        "kpi_time_to_value_weekly",
        engagement_owners,
        False,
        {"user_weeks": dg.AssetIn(), "task_attempts": dg.AssetIn()},
    )
    def kpi_time_to_value_weekly(
        user_weeks: pd.DataFrame, task_attempts: StagedDays
    ) -> dg.Output[pd.DataFrame]:
        attempts = task_attempts.every_day(TIME_TO_VALUE_ATTEMPT_COLUMNS)
        out = time_to_value_weekly(user_weeks, attempts, config)
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
        task_attempts: StagedDays,
        support_tickets: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        until = kpi_data.staged_max(dg.AssetKey("telemetry_events"), "occurred_at")
        attempts = task_attempts.days(attempt_days(incidents, until))
        out = incident_impact(incidents, attempts, support_tickets, config, until)
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
        "kpi_release_quality",
        release_owners,
        False,
        {"task_attempts": dg.AssetIn(), "attempt_events": dg.AssetIn()},
        engine="duckdb",
    )
    def kpi_release_quality(task_attempts: StagedDays, attempt_events: StagedDays) -> dg.Output[pd.DataFrame]:
        # Every staged day's attempts and step durations, read by column out of core: no raw events.
        out = release_quality(
            task_attempts.every_day(RELEASE_ATTEMPT_COLUMNS), attempt_events.every_day(RELEASE_EVENT_COLUMNS)
        )
        regressions = out["completion_rate_delta"] < 0
        return _output(out, {"releases": len(out), "completion_drops": int(regressions.sum())})

    @warehouse_asset(
        "kpi_uptime_monthly",
        reliability_owners,
        False,
        {"incidents": dg.AssetIn()},
        source="incidents",
        deps=["telemetry_events"],
    )
    def kpi_uptime_monthly(kpi_data: KpiData, incidents: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        # The staged incidents and the newest staged event only: no raw events are read.
        until = kpi_data.staged_max(dg.AssetKey("telemetry_events"), "occurred_at")
        as_of = uptime_as_of(incidents, until)
        out = uptime_monthly(incidents, as_of, config.reliability)
        headline = {
            "as_of": None if as_of is None else as_of.isoformat(),
            "services": int(out["service"].nunique()),
            "lowest_uptime": float(out["uptime"].min()) if out["uptime"].notna().any() else None,
        }
        return _output(out, headline)

    @warehouse_asset(
        "kpi_scorecard",
        workflow_owners,
        False,
        {
            "kpi_task_completion_daily": dg.AssetIn(),
            "kpi_ticket_deflection_daily": dg.AssetIn(),
            "kpi_roi_daily": dg.AssetIn(),
            "kpi_survey_daily": dg.AssetIn(),
        },
    )
    def kpi_scorecard(
        context: dg.AssetExecutionContext,
        kpi_task_completion_daily: pd.DataFrame,
        kpi_ticket_deflection_daily: pd.DataFrame,
        kpi_roi_daily: pd.DataFrame,
        kpi_survey_daily: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        dates = kpi_task_completion_daily["date"]
        if dates.empty:
            context.log.warning("kpi_task_completion_daily has no rows (no task events yet): empty scorecard")
            return _output(empty_frame(table("kpi_scorecard")))
        # The latest day's attempts can still complete the next day: L is the day before it.
        as_of = dt.date.fromisoformat(dates.max()) - dt.timedelta(days=1)
        context.log.info(f"scorecard as of {as_of}")
        out = scorecard(
            kpi_task_completion_daily,
            kpi_ticket_deflection_daily,
            kpi_roi_daily,
            config,
            as_of,
            kpi_survey_daily,
        )
        # Each workflow's 7-day rate (the UI plots it across materializations, one a day) and the
        # last 28 days by day as a picture and JSON (a trend from the first materialization on).
        rates = {f"completion_rate/{r.workflow}": r.completion_rate for r in out.itertuples(index=False)}
        regressed = int((out["status"] != "ok").sum())
        trend = completion_trend(kpi_task_completion_daily, as_of, config)
        return _output(out, {"as_of": as_of.isoformat(), "regressed": regressed, **rates, **trend})

    return [
        task_starts_asset,
        task_attempts,
        attempt_events_asset,
        daily_activity,
        user_days_asset,
        user_weeks_asset,
        account_weeks_asset,
        kpi_task_completion_daily,
        kpi_funnel_daily,
        kpi_step_latency_daily,
        kpi_errors_daily,
        kpi_retry_daily,
        kpi_survey_daily,
        kpi_ticket_deflection_daily,
        kpi_engagement_daily,
        kpi_feature_adoption_daily,
        kpi_roi_daily,
        kpi_retention_weekly,
        kpi_cohort_retention,
        kpi_lifecycle_weekly,
        kpi_time_to_value_weekly,
        kpi_support_daily,
        kpi_incidents,
        kpi_reliability_weekly,
        kpi_release_quality,
        kpi_uptime_monthly,
        kpi_scorecard,
    ]
