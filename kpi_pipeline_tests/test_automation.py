"""Sensors, the schedule, follow-up runs and per-day data versions, with Dagster's testing APIs."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import time
import zipfile
from pathlib import Path

import dagster as dg

from kpi_pipeline.automation.file_state import (
    FileCursor,
    FileState,
    created_dates,
    scan,
    settled_changes,
    telemetry_data_versions,
)
from kpi_pipeline.automation.outdated import Node
from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.automation import (
    daily_kpi_job,
    day_spans,
    exports_job,
    followup_requests,
    kpi_day_job,
    request_span,
)
from kpi_pipeline.defs.outdated import nodes_of
from kpi_pipeline.defs.resources import KpiData
from kpi_pipeline.runner import execute, plan, ranged
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline_tests.support import PipelineRun, SmallRun, settings_for

HOUR_NS = 3600 * 10**9


def kpi_data(root: Path) -> KpiData:
    return KpiData(data_dir=str(root), staging_dir=str(root / "staging"))


def write(root: Path, relative: str, text: str, age_hours: float = 2.0) -> Path:
    """Write a file whose mtime is ``age_hours`` in the past (0 = just written)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = time.time() - age_hours * 3600
    os.utime(path, (stamp, stamp))
    return path


def tick(sensor: str, root: Path, instance: dg.DagsterInstance, cursor: str | None):
    """One evaluation of the sensor named ``sensor`` of the definitions built for ``root``."""
    definitions = build_definitions(settings_for(root))
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"kpi_data": kpi_data(root)}, definitions=definitions
    )
    return definitions.resolve_sensor_def(sensor).evaluate_tick(context)


# --- file states -------------------------------------------------------------------------------


def test_settled_changes_act_once_per_state_and_wait_for_files_being_written() -> None:
    now = 100 * HOUR_NS
    old, fresh = FileState(10, now - HOUR_NS), FileState(10, now - 10**9)
    # An old file acts at once; a just-written one waits one tick.
    ready, cursor = settled_changes(FileCursor(), {"a": old, "b": fresh}, now, settle_seconds=60)
    assert ready == {"a": old.key}
    assert cursor.pending == {"b": fresh.key}
    # Next tick: b unchanged → settled; a already seen → nothing.
    ready, cursor = settled_changes(cursor, {"a": old, "b": fresh}, now, settle_seconds=60)
    assert ready == {"b": fresh.key}
    ready, cursor = settled_changes(cursor, {"a": old, "b": fresh}, now, settle_seconds=60)
    assert ready == {}
    # b grows between two ticks: it keeps waiting until its size holds still.
    growing = [FileState(20, now - 10**9), FileState(30, now - 10**8), FileState(30, now - 10**8)]
    results = []
    for state in growing:
        ready, cursor = settled_changes(cursor, {"a": old, "b": state}, now, settle_seconds=60)
        results.append(ready)
    assert results == [{}, {}, {"b": growing[2].key}]
    # A deleted file is forgotten, so putting it back triggers again.
    _, cursor = settled_changes(cursor, {"b": growing[2]}, now, settle_seconds=60)
    ready, _ = settled_changes(cursor, {"a": old, "b": growing[2]}, now, settle_seconds=60)
    assert ready == {"a": old.key}


def test_a_file_rewritten_while_its_run_stages_it_triggers_again() -> None:
    """The run requested for a file's first state reads it; the file changes before that run
    commits, so the day is staged after the new modification time with the old content. The
    change must still get its run: the cursor remembers the state it asked for."""
    now = 100 * HOUR_NS
    first, second = FileState(100, now - HOUR_NS), FileState(200, now - HOUR_NS // 2)
    ready, cursor = settled_changes(FileCursor(), {"a": first}, now, settle_seconds=60)
    assert ready == {"a": first.key}
    staged_at = now - HOUR_NS // 4  # the run commits after the rewrite
    ready, cursor = settled_changes(cursor, {"a": second}, now, 60, processed_ns={"a": staged_at})
    assert ready == {"a": second.key}
    # Its own run stages it later: the file leaves the cursor and nothing runs again.
    ready, cursor = settled_changes(cursor, {"a": second}, now, 60, processed_ns={"a": now})
    assert (ready, cursor.requested) == ({}, {})


def test_scan_skips_files_still_being_written(tmp_path: Path) -> None:
    write(tmp_path, "raw/telemetry/date=2025-01-02/events.jsonl", "{}\n")
    write(tmp_path, "raw/telemetry/date=2025-01-02/events2.jsonl.part", "{")
    write(tmp_path, "raw/telemetry/date=2025-01-02/events3.jsonl.tmp", "{")
    assert list(scan(tmp_path / "raw" / "telemetry", tmp_path)) == [
        "raw/telemetry/date=2025-01-02/events.jsonl"
    ]


def test_alias_change_moves_exactly_the_data_versions_of_its_window() -> None:
    files = {f"raw/telemetry/date=2025-01-{d:02d}/e.jsonl": FileState(d, d) for d in range(10, 22)}
    before = telemetry_data_versions(files, ())
    aliases = parse_config(
        {
            "event_aliases": [
                {
                    "from": "task_done",
                    "to": "task_completed",
                    "valid_from": "2025-01-13",
                    "valid_until": "2025-01-19",
                }
            ]
        }
    ).event_aliases
    after = telemetry_data_versions(files, aliases)
    changed = sorted(day for day in before if before[day] != after[day])
    assert changed == [f"2025-01-{d}" for d in range(13, 20)]
    # A re-exported file moves only its own day.
    touched = {**files, "raw/telemetry/date=2025-01-11/e.jsonl": FileState(99, 99)}
    assert sorted(d for d, v in telemetry_data_versions(touched, ()).items() if v != before[d]) == [
        "2025-01-11"
    ]


def test_created_dates_of_native_ticket_exports(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "raw/tickets/a.csv",
        "ticket_id,created_at,updated_at\n1,2025-01-05T10:00:00Z,x\n2,2025-01-03T23:00:00-02:00,x\n3,bad,x\n",
    )
    # 2025-01-03T23:00-02:00 is 2025-01-04 01:00 UTC.
    assert created_dates([path]) == (dt.date(2025, 1, 4), dt.date(2025, 1, 5))
    assert created_dates([write(tmp_path, "raw/tickets/b.csv", "id,opened\n1,2\n")]) is None
    # Compressed exports, as pandas reads them by suffix: gzip, and a one-file zip.
    text = "ticket_id,created_at\n1,2025-01-07T10:00:00Z\n"
    packed = tmp_path / "raw/tickets/c.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    zipped = tmp_path / "raw/tickets/d.csv.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("d.csv", text.replace("07", "09"))
    assert created_dates([packed, zipped]) == (dt.date(2025, 1, 7), dt.date(2025, 1, 9))


# --- sensors -----------------------------------------------------------------------------------


def test_telemetry_sensor_requests_one_run_per_new_file_state(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    write(tmp_path, "raw/telemetry/date=2025-01-02/events.jsonl", "{}\n")
    first = tick("telemetry_files_sensor", tmp_path, instance, None)
    assert [(r.partition_key, r.run_key.split(":")[:2]) for r in first.run_requests] == [
        ("2025-01-02", ["telemetry", "2025-01-02"])
    ]
    # Same state on the next tick: nothing.
    second = tick("telemetry_files_sensor", tmp_path, instance, first.cursor)
    assert second.run_requests == []
    # A re-export (new size and mtime) triggers again, with a new run key.
    write(tmp_path, "raw/telemetry/date=2025-01-02/events.jsonl", "{}\n{}\n", age_hours=1)
    third = tick("telemetry_files_sensor", tmp_path, instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2025-01-02"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key


def test_telemetry_sensor_waits_for_a_file_being_written_and_survives_a_restart(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    write(tmp_path, "raw/telemetry/date=2025-01-03/events.jsonl.part", "{")
    path = write(tmp_path, "raw/telemetry/date=2025-01-03/events.jsonl", "{}\n", age_hours=0)
    first = tick("telemetry_files_sensor", tmp_path, instance, None)
    assert first.run_requests == []
    # Still growing at the next tick: still waiting.
    path.write_text("{}\n{}\n")
    second = tick("telemetry_files_sensor", tmp_path, instance, first.cursor)
    assert second.run_requests == []
    # A restarted daemon evaluates with the stored cursor: the settled file triggers once.
    third = tick("telemetry_files_sensor", tmp_path, dg.DagsterInstance.ephemeral(), second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2025-01-03"]
    assert tick("telemetry_files_sensor", tmp_path, instance, third.cursor).run_requests == []


def test_the_sensor_cursor_holds_only_what_is_in_flight(tmp_path: Path) -> None:
    """A digest and the files whose runs are pending, not every file's state: 30 days of files
    leave a cursor of a few dozen bytes once their days are staged."""
    days = [f"2025-01-{d:02d}" for d in range(2, 32)]
    for day in days:
        write(tmp_path, f"raw/telemetry/date={day}/events.jsonl", "{}\n", age_hours=3)
    first = tick("telemetry_files_sensor", tmp_path, dg.DagsterInstance.ephemeral(), None)
    assert [r.partition_key for r in first.run_requests] == days
    assert len(FileCursor.from_json(first.cursor).requested) == 30
    for day in days[:-1]:  # every run but the last one has staged its day
        write(tmp_path, f"staging/telemetry_events/date={day}/data.parquet", "staged", age_hours=1)
    second = tick("telemetry_files_sensor", tmp_path, dg.DagsterInstance.ephemeral(), first.cursor)
    assert second.run_requests == []
    cursor = FileCursor.from_json(second.cursor)
    assert list(cursor.requested) == [f"raw/telemetry/date={days[-1]}/events.jsonl"]
    assert (cursor.files, len(cursor.digest), cursor.pending) == (30, 16, {})
    assert len(second.cursor) < 150


def test_telemetry_sensor_holds_days_that_are_not_partitions_yet(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    write(tmp_path, f"raw/telemetry/date={today}/events.jsonl", "{}\n")
    result = tick("telemetry_files_sensor", tmp_path, dg.DagsterInstance.ephemeral(), None)
    assert result.run_requests == []
    assert f"raw/telemetry/date={today}/events.jsonl" not in FileCursor.from_json(result.cursor).requested


def test_ticket_sensor_requests_the_export_refresh_with_the_affected_dates(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    write(tmp_path, "raw/tickets/2025-01-06.csv", "ticket_id,created_at\n1,2025-01-02T10:00:00Z\n")
    first = tick("ticket_exports_sensor", tmp_path, instance, None)
    [request] = first.run_requests
    # The export's staging op makes its quarantine too and cannot run half: the request selects
    # both, and the run it asks for runs.
    assert request.asset_selection == [dg.AssetKey("support_tickets"), dg.AssetKey("ticket_quarantine")]
    exports = build_definitions(settings_for(tmp_path)).resolve_job_def("exports_job")
    launched = exports.execute_in_process(asset_selection=request.asset_selection, instance=instance)
    assert {e.asset_key.to_user_string() for e in launched.get_asset_materialization_events()} == {
        "support_tickets",
        "ticket_quarantine",
    }
    assert (
        request.tags["kpi_pipeline/affected_from"] == request.tags["kpi_pipeline/affected_to"] == "2025-01-02"
    )
    assert tick("ticket_exports_sensor", tmp_path, instance, first.cursor).run_requests == []


# --- schedule and follow-up runs -----------------------------------------------------------------


def test_daily_schedule_targets_yesterday(pipeline_run: PipelineRun) -> None:
    schedule = pipeline_run.defs.resolve_schedule_def("daily_kpi_schedule")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2025, 1, 10, 6, tzinfo=dt.UTC))
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2025-01-09"


def test_sensors_and_schedules_are_stopped_by_default(pipeline_run: PipelineRun) -> None:
    names = {s.name: s.default_status for s in pipeline_run.defs.sensors}
    assert set(names) == {
        "telemetry_files_sensor",
        "ticket_exports_sensor",
        "incident_logs_sensor",
        "kpi_followup_sensor",
        "inputs_current_sensor",
    }
    # Every sensor that launches runs waits to be turned on; inputs_current_sensor launches none.
    running = {name for name, status in names.items() if status == dg.DefaultSensorStatus.RUNNING}
    assert running == {"inputs_current_sensor"}


def test_daily_jobs_cover_every_daily_asset(pipeline_run: PipelineRun) -> None:
    """The schedule's and the follow-ups' jobs build every daily partitioned asset (task_starts
    included: without it a restarted task_id would count twice in scheduled runs); the schedule's
    also observes the raw files it stages."""
    graph = pipeline_run.defs.resolve_asset_graph()
    daily = {
        key.to_user_string()
        for key in graph.materializable_asset_keys
        if graph.get(key).partitions_def is not None
    }
    assert {key.to_user_string() for key in daily_kpi_job.selection.resolve(graph)} == daily | {
        "raw_telemetry_files"
    }
    day_job = kpi_day_job.selection.resolve(graph)
    assert {key.to_user_string() for key in day_job} == daily - {"telemetry_events", "telemetry_quarantine"}


def spans(requests: list[dg.RunRequest]) -> list[str | None]:
    """Each request's day, its 'first…last' for a ranged run, or None for the unpartitioned tables."""
    shown = [request_span(r) for r in requests]
    return [None if s is None else s[0] if s[0] == s[1] else f"{s[0]}…{s[1]}" for s in shown]


def test_followup_after_a_daily_run_recomputes_the_days_that_read_it(small_run: SmallRun) -> None:
    defs = build_definitions(small_run.settings)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def(daily_kpi_job.name)
    result = job.execute_in_process(instance=instance, partition_key="2025-01-03", raise_on_error=False)
    assert result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="kpi_followup_sensor",
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"kpi_data": kpi_data(small_run.settings.data_dir)},
    )
    requests = defs.resolve_sensor_def("kpi_followup_sensor")(context)
    # The 4-day small set: the day before (its attempts read the 3rd), the day before that (its
    # retries are the 2nd's attempts) and the staged day after it (its attempts read the 3rd as
    # D-1; its wau/mau/28-day adoption include it).
    # The 3rd again, as its retries are the 4th's attempts, which this follow-up recomputes; the
    # consecutive days are one ranged run, so each asset goes over all of them in dependency order.
    assert spans(requests) == ["2025-01-01…2025-01-04", None]
    assert {r.job_name for r in requests[:-1]} == {"kpi_day_job"}
    assert requests[-1].job_name == "refresh_kpis_job"
    assert requests[0].run_key == f"followup:{result.run_id}:2025-01-01…2025-01-04"
    # The ranged request runs as Dagster launches it: kpi_day_job with the range tags.
    day_job = defs.resolve_job_def(kpi_day_job.name)
    ranged_run = day_job.execute_in_process(instance=instance, tags=requests[0].tags, raise_on_error=False)
    assert ranged_run.success
    retried = [
        e.partition
        for e in ranged_run.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("kpi_retry_daily")
    ]
    assert sorted(retried) == [f"2025-01-{d:02d}" for d in range(1, 5)]


def nodes_for(root: Path, config: KpiConfig) -> list[Node]:
    """The asset graph's reads (partition mappings) with the windows of ``config``."""
    return nodes_of(build_definitions(settings_for(root), config))


def test_followup_of_yesterday_recomputes_the_days_whose_windows_reach_it(tmp_path: Path) -> None:
    run = dg.DagsterRun(job_name=daily_kpi_job.name, run_id="r0", tags={"dagster/partition": "2025-01-10"})
    staged = [f"2025-01-{d:02d}" for d in range(1, 11)]
    config = parse_config({})
    requests = followup_requests(run, staged, config, nodes_for(tmp_path, config))
    # The 9th's attempts read the 10th; the 8th's retries are the 9th's attempts.
    assert spans(requests) == ["2025-01-08…2025-01-09", None]
    # A 36 h completion window: attempts of the two days before read the 10th.
    wide = parse_config({"windows": {"completion": 36}})
    assert spans(followup_requests(run, staged, wide, nodes_for(tmp_path, wide))) == [
        "2025-01-07…2025-01-09",
        None,
    ]
    # A 48 h retry window: the 7th's retries can be the 9th's attempts too.
    late = parse_config({"windows": {"retry": 48}})
    assert spans(followup_requests(run, staged, late, nodes_for(tmp_path, late))) == [
        "2025-01-07…2025-01-09",
        None,
    ]
    # A run has at most KPI_MAX_DAYS_PER_RUN new days; where a stretch is cut, the next run also
    # recomputes the days before the cut whose retries read its attempts (1 day for 24 h).
    short = followup_requests(run, staged, wide, nodes_for(tmp_path, wide), max_days=2)
    assert spans(short) == ["2025-01-07…2025-01-08", "2025-01-08…2025-01-09", None]
    assert day_spans(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-05"], 1) == [
        ("2025-01-01", "2025-01-01"),
        ("2025-01-02", "2025-01-02"),
        ("2025-01-03", "2025-01-03"),
        ("2025-01-05", "2025-01-05"),
    ]
    lone = followup_requests(run, ["2025-01-09", "2025-01-10"], config, nodes_for(tmp_path, config))
    assert spans(lone) == ["2025-01-09", None] and lone[0].run_key == "followup:r0:2025-01-09"


def test_followup_after_a_ticket_export_recomputes_the_days_that_read_those_tickets(tmp_path: Path) -> None:
    run = dg.DagsterRun(
        job_name=exports_job.name,
        run_id="r1",
        tags={
            "kpi_pipeline/trigger": "ticket_exports_sensor",
            "kpi_pipeline/affected_from": "2025-01-06",
            "kpi_pipeline/affected_to": "2025-01-07",
        },
    )
    staged = [f"2025-01-{d:02d}" for d in range(1, 11)]
    nodes = nodes_for(tmp_path, parse_config({}))
    # Tickets of the 6th count in deflection windows from the 3rd on (72 h).
    assert spans(followup_requests(run, staged, parse_config({}), nodes)) == ["2025-01-03…2025-01-07", None]
    # A week-long deflection window reaches 7 days back.
    week = parse_config({"windows": {"deflection": 168}})
    assert spans(followup_requests(run, staged, week, nodes))[0] == "2025-01-01…2025-01-07"
    incidents_only = dg.DagsterRun(job_name=exports_job.name, run_id="r2", tags={"kpi_pipeline/trigger": "x"})
    assert [r.job_name for r in followup_requests(incidents_only, staged, parse_config({}), nodes)] == [
        "refresh_kpis_job"
    ]


def test_observation_reports_every_raw_day_and_feeds_the_staging(pipeline_run: PipelineRun) -> None:
    instance = dg.DagsterInstance.ephemeral()
    job = pipeline_run.defs.resolve_job_def("observe_raw_telemetry_job")
    assert job.execute_in_process(instance=instance).success
    records = instance.fetch_observations(dg.AssetKey("raw_telemetry_files"), limit=100).records
    observed = {r.asset_observation.partition for r in records}
    assert observed == {d.isoformat() for d in pipeline_run.days}
    graph = pipeline_run.defs.resolve_asset_graph()
    assert dg.AssetKey("raw_telemetry_files") in graph.get(dg.AssetKey("telemetry_events")).parent_keys


def test_turning_the_sensor_on_over_staged_data_runs_only_the_new_day(tmp_path: Path) -> None:
    for day in ("2025-01-02", "2025-01-03"):
        write(tmp_path, f"raw/telemetry/date={day}/events.jsonl", "{}\n", age_hours=3)
        write(tmp_path, f"staging/telemetry_events/date={day}/data.parquet", "staged", age_hours=2)
    write(tmp_path, "raw/telemetry/date=2025-01-04/events.jsonl", "{}\n", age_hours=1)
    result = tick("telemetry_files_sensor", tmp_path, dg.DagsterInstance.ephemeral(), None)
    assert [r.partition_key for r in result.run_requests] == ["2025-01-04"]
    # A re-export of a staged day after its staging is a change again.
    write(tmp_path, "raw/telemetry/date=2025-01-02/events.jsonl", "{}\n{}\n", age_hours=1)
    again = tick("telemetry_files_sensor", tmp_path, dg.DagsterInstance.ephemeral(), result.cursor)
    assert [r.partition_key for r in again.run_requests] == ["2025-01-02"]


def built_from(instance: dg.DagsterInstance, key: str) -> dict[str, str]:
    """Telemetry day → the raw_telemetry_files version its latest staging was built from: the
    day's observation at or before the input event pointer Dagster recorded (what its staleness
    compares with the day's latest observation). A day staged before any observation of the source
    has no pointer ("NULL"): its input version is INITIAL, and no later observation marks it stale."""
    raw = dg.AssetKey("raw_telemetry_files")
    staged = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
    observed = instance.fetch_observations(raw, limit=1000).records
    out: dict[str, str] = {}
    for record in sorted(staged, key=lambda r: r.storage_id):
        tag = record.asset_materialization.tags.get(f"dagster/input_event_pointer/{raw.to_user_string()}", "")
        pointer = int(tag) if tag.isdigit() else -1
        before = [o for o in observed if o.partition_key == record.partition_key and o.storage_id <= pointer]
        version = max(before, key=lambda o: o.storage_id).asset_observation.tags if before else {}
        out[str(record.partition_key)] = version.get("dagster/data_version", "INITIAL")
    return out


def latest_observed(instance: dg.DagsterInstance) -> dict[str, str]:
    records = instance.fetch_observations(dg.AssetKey("raw_telemetry_files"), limit=1000).records
    out: dict[str, str] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        out[str(record.partition_key)] = record.asset_observation.tags["dagster/data_version"]
    return out


def test_staging_runs_record_the_raw_version_so_an_alias_change_marks_exactly_its_days(
    tmp_path: Path,
) -> None:
    """On a fresh instance (a fresh demo) the CLI's ranged run and daily_kpi_job observe the raw days
    before staging them; an alias bounded to two days then changes exactly those days' versions."""
    generate_dataset(tmp_path, days=4, seed=3, start=dt.date(2025, 1, 12), users=12)
    quality = "quality: {quarantine_rate_error: 0.5}\n"  # 12 users: the injected bad rows weigh a lot
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "kpi.yaml").write_text(quality)
    settings = settings_for(tmp_path)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    days = [dt.date(2025, 1, 12) + dt.timedelta(days=i) for i in range(3)]
    results = execute(defs, ranged(plan(defs, days, ["telemetry_events"])), instance)
    assert [r.success for r in results] == [True]
    job = defs.resolve_job_def(daily_kpi_job.name)
    daily = job.execute_in_process(instance=instance, partition_key="2025-01-15")
    assert daily.success
    # A day's run observes that day only: its cost does not grow with the history.
    observed = [
        e.asset_observation_data.asset_observation.partition for e in daily.get_asset_observation_events()
    ]
    assert observed == ["2025-01-15"]

    every_day = ["2025-01-12", "2025-01-13", "2025-01-14", "2025-01-15"]
    assert sorted(built_from(instance, "telemetry_events")) == every_day
    assert built_from(instance, "telemetry_events") == latest_observed(instance)  # nothing INITIAL, all fresh

    (tmp_path / "config" / "kpi.yaml").write_text(
        quality + "event_aliases:\n  - {from: task_done, to: task_completed, "
        "valid_from: 2025-01-13, valid_until: 2025-01-14}\n"
    )
    observe = build_definitions(settings).resolve_job_def("observe_raw_telemetry_job")
    assert observe.execute_in_process(instance=instance).success
    now, then = latest_observed(instance), built_from(instance, "telemetry_events")
    assert sorted(day for day in every_day if now[day] != then[day]) == ["2025-01-13", "2025-01-14"]
