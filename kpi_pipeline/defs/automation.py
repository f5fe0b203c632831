"""Jobs, the daily schedule and the sensors that make the pipeline run itself.

One model: runs are requested explicitly, never by declarative automation
(``AutomationCondition.eager()`` only targets the latest partition, and a
re-exported historical day must reach its KPIs too).

- ``daily_kpi_job`` (partitioned): observe one telemetry day's raw files, stage the
  day and compute its KPIs.
- ``daily_kpi_schedule``: built from that job; yesterday's partition at
  ``automation.daily_hour_utc``.
- ``telemetry_files_sensor``: a new, replaced or changed file under
  ``raw/telemetry/date=D/`` requests ``daily_kpi_job`` for D.
- ``ticket_exports_sensor`` / ``incident_logs_sensor``: a new or changed export
  requests ``exports_job`` for ``support_tickets`` / ``incidents``.
- ``kpi_followup_sensor``: when one of those runs succeeds, it requests the KPIs
  that read what changed and were not in the run — the days whose attempts read
  D's telemetry (D−1 for a 24 h window), and, when D is a historical day, the
  27 days after it (their next-day attempts, wau/mau and 28-day windows
  include D); the days whose deflection and fallback windows see the changed
  tickets; and once the unpartitioned tables. Each KPI day is requested once per
  change, and never before the data it reads is staged; consecutive days are one
  ranged run. ``refresh_kpis_job`` ends with ``kpi_report``, so the HTML report follows
  every change.

The sensors and ``raw_telemetry_files`` are built by factories from the partitions
and the kpi.yaml that :func:`kpi_pipeline.definitions.build_definitions` built.
"""

import datetime as dt
import json
import time
import warnings
from collections.abc import Sequence

import dagster as dg

from kpi_pipeline.automation.file_state import (
    FileCursor,
    created_dates,
    scan,
    settled_changes,
    state_hash,
    states,
    telemetry_data_versions,
    telemetry_day,
)
from kpi_pipeline.automation.outdated import UNPARTITIONED, Node, reached
from kpi_pipeline.config import BUILTIN_SURVEYS, KpiConfig
from kpi_pipeline.defs.outdated import without_inputs_current
from kpi_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, TELEMETRY_KEY, run_days
from kpi_pipeline.defs.resources import KpiData
from kpi_pipeline.defs.staging import QUARANTINE_OF
from kpi_pipeline.partition_store import FILE_NAME, stored_partitions
from kpi_pipeline.settings import DEFAULT_DAYS_PER_RUN
from kpi_pipeline.sources.files import export_files
from kpi_pipeline.storage import list_tree, named

SETTLE_SECONDS = 60.0
SENSOR_INTERVAL_SECONDS = 30
AFFECTED_FROM = "kpi_pipeline/affected_from"
AFFECTED_TO = "kpi_pipeline/affected_to"

EXECUTOR = dg.in_process_executor
"""Every job's executor, and the default of UI materializations and asset backfills: each step in the
run's own process. A multiprocess step pays a fresh interpreter, ``import kpi_pipeline.definitions``
and Dagster's step set-up (~3-4 s on two cores) before it starts; our steps take less at a day's
scale, and the heavy ones (staging, history scans) run DuckDB, which already uses every core. See
docs/automation.md, "Executors", and ``benchmarks/ui_vs_cli.py``."""

# A staging run observes its raw days, then stages them (see raw_telemetry_files).
DAY_STAGING_ASSETS = ("raw_telemetry_files", "telemetry_events", "telemetry_quarantine")
DAY_KPI_ASSETS = (
    "task_starts",
    "task_attempts",
    "attempt_events",
    "daily_activity",
    "user_days",
    "user_weeks",
    "account_weeks",
    "kpi_task_completion_daily",
    "kpi_funnel_daily",
    "kpi_step_latency_daily",
    "kpi_errors_daily",
    "kpi_retry_daily",
    "kpi_survey_daily",
    "kpi_ticket_deflection_daily",
    "kpi_engagement_daily",
    "kpi_feature_adoption_daily",
    "kpi_roi_daily",
)
UNPARTITIONED_KPI_ASSETS = (
    "kpi_retention_weekly",
    "kpi_cohort_retention",
    "kpi_lifecycle_weekly",
    "kpi_time_to_value_weekly",
    "kpi_support_daily",
    "kpi_incidents",
    "kpi_reliability_weekly",
    "kpi_release_quality",
    "kpi_uptime_monthly",
    "kpi_scorecard",
    "kpi_report",  # the HTML report of the tables above (defs/report.py)
)

daily_kpi_job = dg.define_asset_job(
    "daily_kpi_job",
    selection=without_inputs_current(*DAY_STAGING_ASSETS, *DAY_KPI_ASSETS),
    description="Stage one UTC day of telemetry and compute that day's KPIs (with their checks).",
    executor_def=EXECUTOR,
)
kpi_day_job = dg.define_asset_job(
    "kpi_day_job",
    selection=without_inputs_current(*DAY_KPI_ASSETS),
    description="Recompute one day's KPIs from staged data (the next day's telemetry or tickets changed).",
    executor_def=EXECUTOR,
)
exports_job = dg.define_asset_job(
    "exports_job",
    selection=without_inputs_current(
        "support_tickets", "ticket_quarantine", "incidents", "incident_quarantine"
    ),
    description="Stage the ticket and incident exports.",
    executor_def=EXECUTOR,
)
refresh_kpis_job = dg.define_asset_job(
    "refresh_kpis_job",
    selection=without_inputs_current(*UNPARTITIONED_KPI_ASSETS),
    description="Recompute the unpartitioned KPI tables from all partitions, then the HTML report.",
    executor_def=EXECUTOR,
)
observe_telemetry_job = dg.define_asset_job(
    "observe_raw_telemetry_job",
    selection=dg.AssetSelection.assets("raw_telemetry_files"),
    description="Observe the raw telemetry files (and the aliases) so changed days show as stale.",
    executor_def=EXECUTOR,
)


def raw_telemetry_asset(config: KpiConfig, partitions: dg.PartitionsDefinition) -> dg.SourceAsset:
    """The observable source asset ``raw_telemetry_files`` over ``partitions``, versioned with the
    aliases and telemetry mapping of ``config``."""
    mapping = config.sources.telemetry
    mapping_json = json.dumps(mapping.model_dump(mode="json"), sort_keys=True) if mapping else ""

    def observe(context: dg.OpExecutionContext, kpi_data: KpiData) -> dg.DataVersionsByPartition:
        """Data versions of the run's days (every day when the run has no partition): a staging run
        observes its days first, so its materializations record the versions they were built from."""
        folder = kpi_data.root / "raw" / "telemetry"
        if context.has_partition_key or context.has_partition_key_range:  # one day, or a ranged run
            files = {}
            for day in run_days(context):
                files |= scan(folder / f"date={day.isoformat()}", kpi_data.root)
        else:
            files = scan(folder, kpi_data.root)
        versions = telemetry_data_versions(files, config.event_aliases, mapping_json, surveys_json(config))
        valid = set(partitions.get_partition_keys())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)  # the API that gives per-partition versions
            return dg.DataVersionsByPartition({day: v for day, v in versions.items() if day in valid})

    # observable_source_asset is beta in 1.13; it is the API that gives per-partition data versions.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.observable_source_asset(
            name="raw_telemetry_files",
            partitions_def=partitions,
            group_name="staging",
            description="The raw telemetry files of each day as exporters wrote them. Its data version "
            "per day is a hash of the day's file states and the kpi.yaml aliases that apply to that day, "
            "so a re-export or an alias change marks exactly the affected days of telemetry_events stale. "
            "Every staging run observes its days first, so each staged day records the version it was "
            "built from.",
        )(observe)


def daily_kpi_schedule(hour_utc: int) -> dg.ScheduleDefinition:
    """Yesterday's partition of ``daily_kpi_job`` every day at ``hour_utc`` (the day before and the
    unpartitioned tables follow through ``kpi_followup_sensor``)."""
    return dg.build_schedule_from_partitioned_job(
        daily_kpi_job,
        name="daily_kpi_schedule",
        hour_of_day=hour_utc,
        minute_of_hour=0,
        description=f"Every day at {hour_utc:02d}:00 UTC (automation.daily_hour_utc in kpi.yaml): stage "
        "yesterday's telemetry and compute its KPIs; kpi_followup_sensor then recomputes the day "
        "before it (its attempts read yesterday) and the unpartitioned tables.",
    )


def _now_ns() -> int:
    return time.time_ns()


def telemetry_files_sensor(partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """Requests ``daily_kpi_job`` for the days of ``partitions`` whose raw files changed."""

    @dg.sensor(
        name="telemetry_files_sensor",
        job=daily_kpi_job,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        description="Requests daily_kpi_job for a day when a file under `raw/telemetry/date=YYYY-MM-DD/` "
        "is new, replaced or changed (size or mtime) and has settled; the run key carries the day's file "
        "states.",
    )
    def _sensor(context: dg.SensorEvaluationContext, kpi_data: KpiData) -> dg.SensorResult:
        folder = kpi_data.root / "raw" / "telemetry"
        current = scan(folder, kpi_data.root)
        staged = _staged_at(kpi_data)
        processed = {
            p: staged[d.isoformat()] for p in current if (d := telemetry_day(p)) and d.isoformat() in staged
        }
        ready, cursor = settled_changes(
            FileCursor.from_json(context.cursor), current, _now_ns(), SETTLE_SECONDS, processed
        )
        valid = set(partitions.get_partition_keys())
        days: dict[str, list[str]] = {}
        for path in ready:
            day = telemetry_day(path)
            if day is not None and day.isoformat() in valid:
                days.setdefault(day.isoformat(), []).append(path)
            elif day is not None:
                # Not a partition yet (today, or before KPI_START_DATE): act on it once it is.
                cursor.requested.pop(path, None)
        requests = []
        for day in sorted(days):
            day_files = [
                (p, s.key) for p, s in current.items() if telemetry_day(p) == dt.date.fromisoformat(day)
            ]
            requests.append(
                dg.RunRequest(
                    run_key=f"telemetry:{day}:{state_hash(day_files)}",
                    partition_key=day,
                    tags={"kpi_pipeline/trigger": "telemetry_files_sensor"},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor.to_json())

    return _sensor


def _export_sensor(name: str, source: str, asset: str, config: KpiConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        job=exports_job,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        description=f"Requests exports_job for {asset} when an export under raw/{source}/ (or the path of "
        "its source mapping) is new or changed and has settled; the run key carries every export's state.",
    )
    def _sensor(context: dg.SensorEvaluationContext, kpi_data: KpiData) -> dg.SensorResult:
        mapping = getattr(config.sources, source)
        current = states(export_files(kpi_data.root, source, mapping), kpi_data.root)
        event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
        processed = dict.fromkeys(current, int(event.timestamp * 1e9)) if event else {}
        ready, cursor = settled_changes(
            FileCursor.from_json(context.cursor), current, _now_ns(), SETTLE_SECONDS, processed
        )
        if not ready:
            return dg.SensorResult(cursor=cursor.to_json())
        tags = {"kpi_pipeline/trigger": name, "kpi_pipeline/changed_files": str(len(ready))}
        if source == "tickets":
            dates = created_dates(named(kpi_data.root, path) for path in ready)
            if dates is not None:
                tags |= {AFFECTED_FROM: dates[0].isoformat(), AFFECTED_TO: dates[1].isoformat()}
        request = dg.RunRequest(
            run_key=f"{source}:{state_hash((p, s.key) for p, s in current.items())}",
            # The staging op makes the export's quarantine asset too: a run selects both.
            asset_selection=[dg.AssetKey(asset), dg.AssetKey(QUARANTINE_OF[asset])],
            tags=tags,
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor.to_json())

    return _sensor


def _staged_at(kpi_data: KpiData) -> dict[str, int]:
    """Staged telemetry days → when they were last staged (ns), from one listing of the asset's
    folder (an object store answers it in one paginated request, not one per day)."""
    folder = kpi_data.staging.joinpath(*TELEMETRY_KEY.path)
    return {
        f.path.parent.name.removeprefix("date="): f.mtime_ns
        for f in list_tree(folder)
        if f.path.name == FILE_NAME and f.path.parent.name.startswith("date=")
    }


def _staged_days(kpi_data: KpiData) -> list[str]:
    """Telemetry days that are staged (their KPIs can be recomputed without re-staging)."""
    return stored_partitions(kpi_data.staging, TELEMETRY_KEY.path)


def _shift(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def surveys_json(config: KpiConfig) -> str:
    """kpi.yaml's surveys as JSON when they are not just the built-ins (staging judges
    survey_response events by them), else empty."""
    if config.surveys == BUILTIN_SURVEYS:
        return ""
    return json.dumps({name: s.model_dump(mode="json") for name, s in config.surveys.items()}, sort_keys=True)


def day_readers(nodes: Sequence[Node], day: str, staged_days: Sequence[str]) -> list[str]:
    """The staged days but ``day`` whose KPIs read what a ``daily_kpi_job`` run of ``day`` changes
    (its telemetry and KPIs), through the asset graph's partition mappings (:func:`reached`)."""
    present = {n.name: staged_days if n.partitioned else [UNPARTITIONED] for n in nodes}
    changed = {name: [day] for name in (*DAY_STAGING_ASSETS, *DAY_KPI_ASSETS) if name in present}
    found = reached(nodes, present, changed)
    return sorted({d for name in DAY_KPI_ASSETS for d in found.get(name, {})} - {day})


def day_spans(days: Sequence[str], max_days: int, overlap: int = 0) -> list[tuple[str, str]]:
    """Sorted ISO days as (first, last) stretches of consecutive days, each with at most
    ``max_days`` new days. Where a stretch is cut, the next one starts ``overlap`` days earlier:
    those days' retries read the next days' attempts, which only the next run recomputes, so it
    recomputes them too (whichever of the two runs goes first, the last one is right)."""
    spans: list[tuple[str, str]] = []
    for day in sorted(days):
        if spans and day == _shift(spans[-1][1], 1) and _span_days(spans[-1]) < max_days:
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    for i in range(1, len(spans)):
        before, (first, last) = spans[i - 1], spans[i]
        if first == _shift(before[1], 1):
            spans[i] = (max(before[0], _shift(first, -overlap)), last)
    return spans


def kpi_reach(nodes: Sequence[Node]) -> int:
    """The most days after its own that a daily KPI asset reads of another daily KPI asset (a
    day's retries read the next ceil(windows.retry / 24) days' attempts), from the mappings."""
    kpis = set(DAY_KPI_ASSETS)
    ahead = [
        r.days[1]
        for n in nodes
        if n.name in kpis
        for r in n.reads
        if r.days and r.upstream in kpis and r.upstream != n.name
    ]
    return max([0, *ahead])


def _span_days(span: tuple[str, str]) -> int:
    return (dt.date.fromisoformat(span[1]) - dt.date.fromisoformat(span[0])).days + 1


def _day_request(run_id: str, first: str, last: str) -> dg.RunRequest:
    """``kpi_day_job`` for one day, or for a stretch of days as one ranged run (Dagster's partition
    range tags): its assets then run in dependency order over the whole stretch, so a day's
    retries read the next day's attempts as that run recomputed them."""
    if first == last:
        return dg.RunRequest(
            run_key=f"followup:{run_id}:{first}", job_name=kpi_day_job.name, partition_key=first
        )
    return dg.RunRequest(
        run_key=f"followup:{run_id}:{first}…{last}",
        job_name=kpi_day_job.name,
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
    )


def request_span(request: dg.RunRequest) -> tuple[str, str] | None:
    """The first and last day a ``kpi_day_job`` request covers (None for an unpartitioned run)."""
    if request.partition_key is not None:
        return request.partition_key, request.partition_key
    if RANGE_START_TAG in request.tags:
        return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]
    return None


def followup_requests(
    run: dg.DagsterRun,
    staged_days: list[str],
    config: KpiConfig,
    nodes: Sequence[Node],
    max_days: int = DEFAULT_DAYS_PER_RUN,
) -> list[dg.RunRequest]:
    """The KPI runs a successful run makes necessary (see the module docstring).

    After day D is (re)staged: the staged days whose KPI partitions read D's, directly or not, as the
    graph's partition mappings say (:func:`day_readers`: D-n … D-1 for an n-day completion window,
    and D+1 … D+27 for the next day's attempts, wau/mau and 28-day adoption). After tickets change:
    every staged day from ticket_reach_days() before the first changed ticket to the last (the
    graph says every day reads the ticket export; the export's dates narrow it). Consecutive days
    are one ranged run of up to ``max_days`` days (``KPI_MAX_DAYS_PER_RUN``): fewer runs, and the
    days of a stretch computed in dependency order in one run, not in whatever order the queue
    starts one-day runs. When later days are recomputed, D is too: its retries read their attempts.
    """
    partition = run.tags.get("dagster/partition")
    reach = kpi_reach(nodes)
    if run.job_name == daily_kpi_job.name and partition is not None:
        days = day_readers(nodes, partition, staged_days)
        if reach and any(d > partition for d in days):
            # D's retries read the later days' attempts that this follow-up recomputes: D again too.
            days = sorted({*days, partition})
    elif run.job_name == exports_job.name and AFFECTED_FROM in run.tags:
        first = _shift(run.tags[AFFECTED_FROM], -config.ticket_reach_days())
        days = [d for d in staged_days if first <= d <= run.tags[AFFECTED_TO]]
    elif run.job_name == exports_job.name and "support_tickets" in run.tags.get("kpi_pipeline/trigger", ""):
        days = staged_days  # the changed exports' dates are unknown (a mapped source): every staged day
    else:
        days = []
    spans = day_spans(days, max_days, overlap=reach)
    requests = [_day_request(run.run_id, first, last) for first, last in spans]
    requests.append(dg.RunRequest(run_key=f"refresh:{run.run_id}", job_name=refresh_kpis_job.name))
    return requests


def kpi_followup_sensor(config: KpiConfig, nodes: Sequence[Node], max_days: int) -> dg.SensorDefinition:
    """The run-status sensor that requests :func:`followup_requests` with the windows of ``config``
    and the partition mappings of ``nodes``."""

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="kpi_followup_sensor",
        monitored_jobs=[daily_kpi_job, exports_job],
        request_jobs=[kpi_day_job, refresh_kpis_job],
        description="After daily_kpi_job for D succeeds: recompute the staged days whose KPIs read D (the "
        "day before, and for a historical day the next 27) and the unpartitioned tables. After exports_job: "
        "recompute the days whose windows see the changed tickets, then the unpartitioned tables.",
    )
    def _sensor(context: dg.RunStatusSensorContext, kpi_data: KpiData) -> list[dg.RunRequest]:
        return followup_requests(context.dagster_run, _staged_days(kpi_data), config, nodes, max_days)

    return _sensor


def automation_definitions(
    config: KpiConfig, partitions: dg.PartitionsDefinition, nodes: Sequence[Node], max_days: int
) -> dict[str, list]:
    """Jobs, schedules and sensors for :class:`dagster.Definitions` (all stopped by default)."""
    return {
        "jobs": [daily_kpi_job, kpi_day_job, exports_job, refresh_kpis_job, observe_telemetry_job],
        "schedules": [daily_kpi_schedule(config.automation.daily_hour_utc)],
        "sensors": [
            telemetry_files_sensor(partitions),
            _export_sensor("ticket_exports_sensor", "tickets", "support_tickets", config),
            _export_sensor("incident_logs_sensor", "incidents", "incidents", config),
            kpi_followup_sensor(config, nodes, max_days),
        ],
    }
