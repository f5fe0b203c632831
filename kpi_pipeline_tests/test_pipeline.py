"""End to end: the generated data set staged and materialized through Dagster."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from kpi_pipeline.config import load_config
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.metadata import root_path
from kpi_pipeline.ingest.telemetry import partition_folder, stage_telemetry_partition
from kpi_pipeline.partition_store import COMMITS_TABLE
from kpi_pipeline.runner import execute, plan
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.tables import TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import START, PipelineRun, SmallRun, materialize_all, settings_for


def _snapshot(run: PipelineRun) -> dict[str, pd.DataFrame]:
    """Every warehouse table, sorted by its grain, for comparing two runs."""
    out = {}
    for name, spec in TABLES.items():
        if name == COMMITS_TABLE:  # version bookkeeping: every write commits a new token, by design
            continue
        frame = run.warehouse.read(name)
        out[name] = frame.sort_values(list(spec.grain), ignore_index=True)
    return out


def test_every_run_succeeds(pipeline_run: PipelineRun) -> None:
    failed = [(r.step, r.message) for r in pipeline_run.results if not r.success]
    assert failed == []
    # As the CLI runs 21 days: their telemetry in one ranged run, the incident and ticket exports in
    # one run, the 21 KPI days in one ranged run, their retries (which read the next days' attempts)
    # in another, then the unpartitioned KPIs and the report.
    days = f"{pipeline_run.days[0]} … {pipeline_run.days[-1]}"
    assert [
        (r.step.label, r.step.assets if len(r.step.assets) < 3 else len(r.step.assets))
        for r in pipeline_run.results
    ] == [
        (days, ("telemetry_events",)),
        ("unpartitioned", ("incidents", "support_tickets")),
        (days, 16),
        (days, ("kpi_retry_daily",)),
        ("unpartitioned", 11),
    ]


def test_staged_plus_quarantined_equals_raw_for_every_partition(pipeline_run: PipelineRun) -> None:
    warehouse = pipeline_run.warehouse
    root = pipeline_run.settings.data_dir
    aliases = load_config(pipeline_run.settings.config_path).event_aliases
    staged_total = quarantined_total = 0
    for day in pipeline_run.days:
        staged = len(pd.read_parquet(root / "staging" / "telemetry_events" / f"date={day}" / "data.parquet"))
        quarantined = warehouse.count("quarantine", {"source": "telemetry", "partition": day.isoformat()})
        # What the ranged run stored for the day is what staging the day on its own gives.
        alone = stage_telemetry_partition(root, day, aliases).report
        assert (staged, quarantined) == (alone.staged_rows, alone.quarantined_rows)
        assert staged + quarantined == alone.raw_rows
        staged_total, quarantined_total = staged_total + staged, quarantined_total + quarantined
    [run] = [r for r in pipeline_run.results if r.step.assets == ("telemetry_events",)]
    meta = run.metadata["telemetry_events"]
    assert (meta["staged_rows"], meta["quarantined_rows"]) == (staged_total, quarantined_total)
    assert meta["raw_rows"] == staged_total + quarantined_total == pipeline_run.summary.telemetry_rows


def test_quarantine_holds_one_row_per_injected_bad_row(pipeline_run: PipelineRun) -> None:
    quarantine = pipeline_run.warehouse.read("quarantine")
    telemetry = quarantine[quarantine["source"] == "telemetry"]
    assert not telemetry.duplicated(["file", "line"]).any()
    counts = telemetry["reason"].value_counts().to_dict()
    expected = dict(pipeline_run.summary.bad_rows["telemetry"])
    # Without an alias, the bug week's task_done events are unknown event types too.
    expected["unknown_event_type"] = expected.get("unknown_event_type", 0) + pipeline_run.summary.bug_events
    assert counts == expected
    for source in ("tickets", "incidents"):
        rows = quarantine[quarantine["source"] == source]
        assert rows["reason"].value_counts().to_dict() == pipeline_run.summary.bad_rows[source]
        assert (rows["partition"] == "").all()


def test_quarantined_raw_text_is_the_original_line(pipeline_run: PipelineRun) -> None:
    quarantine = pipeline_run.warehouse.read("quarantine")
    sample = quarantine[quarantine["file"].str.endswith(".jsonl")].head(20)
    for row in sample.itertuples(index=False):
        lines = (pipeline_run.settings.data_dir / row.file).read_text().split("\n")
        assert lines[row.line - 1] == row.raw


def test_latest_ticket_version_wins(pipeline_run: PipelineRun) -> None:
    tickets = pipeline_run.warehouse.read("stg_support_tickets")
    assert tickets["ticket_id"].is_unique
    raw = pd.concat(
        [
            pd.read_csv(path, dtype=str, on_bad_lines="skip")
            for path in sorted((pipeline_run.settings.data_dir / "raw" / "tickets").rglob("*.csv*"))
        ]
    )
    raw["updated"] = pd.to_datetime(raw["updated_at"], utc=True, format="ISO8601", errors="coerce")
    newest = raw.dropna(subset=["updated"]).groupby("ticket_id")["updated"].max()
    merged = tickets.set_index("ticket_id")["updated_at"]
    common = merged.index.intersection(newest.index)
    assert len(common) > 0.9 * len(merged)
    # Every staged version is the newest valid one; a newer raw version exists only when it was rejected.
    assert (merged[common] <= newest[common]).all()
    assert (merged[common] == newest[common]).mean() > 0.95


def test_rematerializing_a_day_changes_nothing(pipeline_run: PipelineRun) -> None:
    before = _snapshot(pipeline_run)
    day = dt.date(2025, 1, 10)
    # The day staged again, its KPIs and the tables over all days: all come out as they were.
    results = execute(pipeline_run.defs, plan(pipeline_run.defs, [day]), dg.DagsterInstance.ephemeral())
    assert all(r.success for r in results)
    after = _snapshot(pipeline_run)
    for name in before:
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)


def test_definitions_carry_descriptions_owners_kinds_and_schemas(pipeline_run: PipelineRun) -> None:
    graph = pipeline_run.defs.resolve_asset_graph()
    materializable = {k.to_user_string() for k in graph.materializable_asset_keys}
    specs = {
        s.key.to_user_string(): s
        for s in pipeline_run.defs.resolve_all_asset_specs()
        if s.key.to_user_string() in materializable
    }
    assert set(TABLES) - {"quarantine", "stg_support_tickets", "stg_incidents", COMMITS_TABLE} <= set(specs)
    for name, spec in specs.items():
        assert spec.description, name
        assert spec.owners and all(o.startswith("team:") for o in spec.owners), name
        if name == "kpi_report":  # an HTML file under the data root, not a table: no column schema
            assert spec.kinds == {"plotly", "html"}, name
            continue
        assert spec.kinds & {"sql", "parquet"}, name
        schema = spec.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns][:1], name
    # One accountable owner per asset; the four workflows' owners are listed in its metadata.
    assert {len(spec.owners) for spec in specs.values()} == {1}
    completion = specs["kpi_task_completion_daily"]
    assert completion.owners == ["team:product-analytics"]
    assert completion.metadata["workflow_owners"].value.splitlines() == [
        "| workflow | owner |",
        "|---|---|",
        "| access_request | identity-team |",
        "| data_export | data-platform-team |",
        "| invoice_download | billing-team |",
        "| user_onboarding | growth-team |",
    ]
    # Survey answers about no workflow belong to default_owner.
    surveys = specs["kpi_survey_daily"].metadata["workflow_owners"].value.splitlines()
    assert surveys[-1] == "| none | product-analytics |"
    # Releases belong to the product owner (owners.releases), uptime to the reliability owners.
    assert specs["kpi_release_quality"].owners == ["team:product-analytics"]
    assert specs["kpi_uptime_monthly"].owners == ["team:sre-team"]


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    generate_dataset(tmp_path, days=3, seed=3, start=START, users=30)
    return tmp_path


def test_unreadable_file_fails_the_partition_and_keeps_previous_rows(small_run: SmallRun) -> None:
    settings, days = small_run.settings, small_run.days
    assert all(r.success for r in small_run.results)
    defs = build_definitions(settings)
    day = days[1]
    staged_file = settings.staging_dir / "telemetry_events" / f"date={day}" / "data.parquet"
    staged_before = pd.read_parquet(staged_file)
    warehouse = Warehouse(settings.warehouse_url)
    partition = {"source": "telemetry", "partition": day.isoformat()}
    quarantine_before = warehouse.count("quarantine", partition)
    completion_before = warehouse.read("kpi_task_completion_daily", date_range=(day, day))

    broken = partition_folder(small_run.root, day) / "zz-broken.jsonl.gz"
    broken.write_bytes(b"this is not gzip")
    results = execute(defs, plan(defs, [day]), dg.DagsterInstance.ephemeral())
    staging = results[0]
    assert not staging.success
    assert str(broken) in staging.message and "not a valid gzip file" in staging.message
    pd.testing.assert_frame_equal(pd.read_parquet(staged_file), staged_before)
    assert (
        warehouse.count("quarantine", {"source": "telemetry", "partition": day.isoformat()})
        == quarantine_before
    )
    pd.testing.assert_frame_equal(
        warehouse.read("kpi_task_completion_daily", date_range=(day, day)), completion_before
    )


def test_partition_without_folder_is_a_day_with_no_data(small_root: Path) -> None:
    settings = settings_for(small_root)
    day = START + dt.timedelta(days=1)
    shutil.rmtree(partition_folder(small_root, day))
    defs, results = materialize_all(settings, [day])
    assert [r.message for r in results if not r.success] == []
    staged = results[0].metadata["telemetry_events"]
    assert (staged["raw_rows"], staged["staged_rows"], staged["quarantined_rows"]) == (0, 0, 0)
    assert f"no telemetry folder for partition {day}" in staged["missing_folder"]
    assert str(partition_folder(small_root, day)) in staged["missing_folder"]
    volume = next(c for c in results[0].checks if c.name == "volume_anomaly")
    assert volume.severity == "WARN"


def _weekly_completion(warehouse: Warehouse, workflow: str, first: dt.date, last: dt.date) -> float:
    rows = warehouse.read("kpi_task_completion_daily", date_range=(first, last))
    rows = rows[rows["workflow"] == workflow]
    return rows["completions"].sum() / rows["attempts"].sum()


def test_alias_fix_and_backfill_restore_the_bug_week(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    # A copy of the session's materialized sample (raw files, staging, warehouse): the fix edits it.
    shutil.copytree(pipeline_run.settings.data_dir, tmp_path, dirs_exist_ok=True)
    summary = pipeline_run.summary
    first, last = summary.bug_week
    settings = settings_for(tmp_path)
    days = pipeline_run.days
    assert all(r.success for r in pipeline_run.results)
    warehouse = Warehouse(settings.warehouse_url)
    week_before = (first - dt.timedelta(days=7), first - dt.timedelta(days=1))
    normal = _weekly_completion(warehouse, summary.bug_workflow, *week_before)
    assert _weekly_completion(warehouse, summary.bug_workflow, first, last) < 0.05 < 0.6 < normal
    quarantine = warehouse.read("quarantine")
    task_done = quarantine[quarantine["raw"].str.contains("task_done", regex=False)]
    assert len(task_done) == summary.bug_events
    assert set(task_done["reason"]) == {"unknown_event_type"}
    untouched = {
        d: warehouse.read("kpi_task_completion_daily", date_range=(d, d)) for d in (days[0], days[-1])
    }

    config = settings.config_path.read_text().replace(
        "event_aliases: []",
        f"event_aliases:\n  - from: task_done\n    to: task_completed\n"
        f"    valid_from: {first}\n    valid_until: {last}",
    )
    settings.config_path.write_text(config)
    week = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    defs, results = materialize_all(settings, week)
    assert all(r.success for r in results)

    fixed = _weekly_completion(warehouse, summary.bug_workflow, first, last)
    assert abs(fixed - normal) < 0.08
    quarantine = warehouse.read("quarantine")
    assert not quarantine["raw"].str.contains("task_done", regex=False).any()
    for day, before in untouched.items():
        pd.testing.assert_frame_equal(
            warehouse.read("kpi_task_completion_daily", date_range=(day, day)), before
        )


def test_definitions_load_as_the_ui_loads_them(pipeline_run: PipelineRun) -> None:
    """What `dagster definitions validate -w workspace.yaml` checks, in process."""
    dg.Definitions.validate_loadable(pipeline_run.defs)
    jobs = {job.name for job in pipeline_run.defs.jobs or []}
    assert {"daily_kpi_job", "kpi_day_job", "exports_job", "refresh_kpis_job"} <= jobs


def test_ui_texts_show_as_written(pipeline_run: PipelineRun) -> None:
    """The UI renders descriptions as markdown, where ``<day>`` outside a code span is an HTML tag
    and disappears (``date=<day>/`` showed as ``date=/``); the schedule says what it runs."""
    defs = pipeline_run.defs
    graph = defs.resolve_asset_graph()
    texts = {key.to_user_string(): graph.get(key).description or "" for key in graph.get_all_asset_keys()}
    for check in defs.asset_checks or []:
        for spec in check.check_specs:
            texts[f"{spec.asset_key.to_user_string()}.{spec.name}"] = spec.description or ""
    texts |= {f"sensor {s.name}": s.description or "" for s in defs.sensors or []}
    texts |= {f"job {j.name}": j.description or "" for j in defs.jobs or []}
    [schedule] = defs.schedules or []
    texts[f"schedule {schedule.name}"] = schedule.description or ""
    outside_code = {name: re.sub(r"`[^`]*`", "", text) for name, text in texts.items()}
    assert {name: re.findall(r"<[^>]*>", text) for name, text in outside_code.items() if "<" in text} == {}
    assert "06:00 UTC" in texts["schedule daily_kpi_schedule"]
    assert "`raw/telemetry/date=YYYY-MM-DD/`" in texts["telemetry_events"]


def test_rates_in_metadata_keep_four_digits(pipeline_run: PipelineRun) -> None:
    """A rate shows as 0.6776, not 0.6775868...: each day's headline (here the last day of the
    ranged run, whose materialization the run's result keeps) and the checks' figures are rounded
    to four digits."""
    [day_run] = [r for r in pipeline_run.results if "kpi_task_completion_daily" in r.step.assets]
    last = pipeline_run.days[-1]
    rows = pipeline_run.warehouse.read("kpi_task_completion_daily", date_range=(last, last))
    exact = float(rows["completions"].sum() / rows["attempts"].sum())
    assert round(exact, 4) != exact  # the sample's rate has more digits than the UI shows
    assert day_run.metadata["kpi_task_completion_daily"]["completion_rate"] == round(exact, 4)


def test_stored_paths_show_relative_to_the_data_root(pipeline_run: PipelineRun) -> None:
    """The UI shows where a partition is stored the same way on every machine."""
    staged = {a: m["path"] for r in pipeline_run.results for a, m in r.metadata.items() if "path" in m}
    assert staged == {
        "telemetry_events": "staging/telemetry_events",  # a ranged run: the asset's folder
        "task_attempts": "staging/task_attempts",
        "attempt_events": "staging/attempt_events",
        "daily_activity": "staging/daily_activity",
    }
    root = pipeline_run.settings.data_dir
    assert root_path(root / "staging" / "x" / "date=2025-01-01", root).value == "staging/x/date=2025-01-01"
    assert root_path(Path("/elsewhere/x"), root).value == "/elsewhere/x"


def test_quarantine_assets_record_the_rows_committed_with_their_staged_data(
    pipeline_run: PipelineRun,
) -> None:
    """Each staging op makes its quarantine asset too: same raw inputs in the lineage and its own
    check (its row count per partition: test_ranged_runs)."""
    graph = pipeline_run.defs.resolve_asset_graph()
    pairs = (
        ("telemetry_events", "telemetry_quarantine", "telemetry"),
        ("support_tickets", "ticket_quarantine", "tickets"),
        ("incidents", "incident_quarantine", "incidents"),
    )
    for staged, quarantine, source in pairs:
        assert graph.get(dg.AssetKey(quarantine)).parent_keys == graph.get(dg.AssetKey(staged)).parent_keys
        assert pipeline_run.warehouse.count("quarantine", {"source": source}) > 0, quarantine
        checks = [(c.name, c.passed) for r in pipeline_run.results for c in r.checks if c.asset == quarantine]
        assert checks and set(checks) == {("rows_located", True)}, quarantine


def test_a_day_after_the_data_that_a_ui_backfill_reaches_gets_empty_observability_rows(
    pipeline_run: PipelineRun, tmp_path: Path
) -> None:
    """A UI backfill of the data's days also targets the next day's attempts and their readers
    (the partition mappings reach it), but not the telemetry or attempt events of a day that has
    none: the errors, step latency and surveys of such a day are no rows, not a failed run."""
    shutil.copytree(pipeline_run.settings.data_dir, tmp_path, dirs_exist_ok=True)
    settings = settings_for(tmp_path)
    defs = build_definitions(settings)
    after = (pipeline_run.days[-1] + dt.timedelta(days=1)).isoformat()
    names = ("task_attempts", "kpi_errors_daily", "kpi_step_latency_daily", "kpi_survey_daily")
    selection = [dg.AssetKey(n) for n in names]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        partition_key=after, asset_selection=selection, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    warehouse = Warehouse(settings.warehouse_url)
    day = dt.date.fromisoformat(after)
    for name in names[1:]:
        assert warehouse.read(name, date_range=(day, day)).empty
        assert len(warehouse.read(name)) > 0  # the data's own days are untouched
