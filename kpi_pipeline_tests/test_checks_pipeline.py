"""Checks inside real runs: a corrupted day stops its own KPIs and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

import kpi_pipeline.defs.kpis as kpi_defs
from kpi_pipeline.cli import main
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.checks import check_result
from kpi_pipeline.ingest.telemetry import partition_folder, stage_telemetry_partition
from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.runner import execute, plan
from kpi_pipeline.tables import KPI_TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import START, PipelineRun, SmallRun, cli_on, generate_small

DAYS = [START + dt.timedelta(days=i) for i in range(4)]
BAD_DAY = DAYS[2]


def corrupt(root: Path, day: dt.date, share: float) -> int:
    """Add a file of broken JSON lines so that ``share`` of the day's raw rows are malformed."""
    rows = stage_telemetry_partition(root, day, ()).report.raw_rows
    broken = int(rows * share / (1 - share)) + 1
    lines = "".join('{"event_id": "broken\n' for _ in range(broken))
    (partition_folder(root, day) / "zz-corrupt.jsonl").write_text(lines)
    return broken


def test_clean_run_passes_every_check(pipeline_run: PipelineRun) -> None:
    checks = [c for r in pipeline_run.results for c in r.checks]
    names = {(c.asset, c.name) for c in checks}
    assert ("telemetry_events", "quarantine_rate") in names
    assert ("telemetry_events", "telemetry_expectations") in names
    assert ("kpi_task_completion_daily", "kpi_sanity") in names
    assert ("support_tickets", "tickets_expectations") in names
    assert {(spec.name, "kpi_sanity") for spec in KPI_TABLES} <= names  # run inside every KPI asset
    assert ("kpi_funnel_daily", "funnel_step_order") in names
    blocking = [c for c in checks if not c.passed and c.severity == "ERROR"]
    assert blocking == []


def test_kpi_sanity_judges_the_rows_its_asset_wrote_for_the_runs_days(pipeline_run: PipelineRun) -> None:
    """The check runs inside the asset, on the frame it returned: one result per run, labelled with
    the run's days and counting exactly the rows the warehouse holds for them."""
    name, warehouse = "kpi_task_completion_daily", pipeline_run.warehouse
    judged = []
    for result in pipeline_run.results:
        if name not in result.step.assets or result.step.partition is None:
            continue
        days = [dt.date.fromisoformat(d) for d in result.step.days]
        [check] = [c for c in result.checks if (c.asset, c.name) == (name, "kpi_sanity")]
        rows = len(warehouse.read(name, date_range=(days[0], days[-1])))
        span = f"{days[0]}" if len(days) == 1 else f"{days[0]} … {days[-1]}"
        assert check.description == f"{name} {span}: KPI sanity passed on {rows:,} rows"
        judged += days
    assert judged == list(pipeline_run.days)  # every day judged once


@pytest.fixture
def four_days(tmp_path: Path) -> Path:
    """The small data set of conftest.small_run, generated and not materialized yet."""
    generate_small(tmp_path)
    return tmp_path


def test_corrupted_day_stops_its_kpis_and_keeps_previous_rows(small_run: SmallRun) -> None:
    four_days, settings = small_run.root, small_run.settings
    assert small_run.days == DAYS and all(r.success for r in small_run.results)
    defs = build_definitions(settings)
    warehouse = Warehouse(settings.warehouse_url)
    before = {d: warehouse.read("kpi_task_completion_daily", date_range=(d, d)) for d in DAYS}
    where = {"source": "telemetry", "partition": BAD_DAY.isoformat()}
    quarantined_before = warehouse.count("quarantine", where)

    broken = corrupt(four_days, BAD_DAY, 0.2)
    results = execute(defs, plan(defs, DAYS), dg.DagsterInstance.ephemeral())
    by_step = {(r.step.partition, r.step.assets): r for r in results}

    staging = by_step[(BAD_DAY.isoformat(), ("telemetry_events",))]
    assert not staging.success
    assert [(c.name, c.severity) for c in staging.blocking_failures] == [("quarantine_rate", "ERROR")]
    assert f"telemetry_events {BAD_DAY}" in staging.message and "(limit 5.0%)" in staging.message
    assert "malformed_record" in staging.message

    kpi_day = next(r for r in results if r.step.partition == BAD_DAY.isoformat() and len(r.step.assets) > 1)
    assert kpi_day.skipped and "quarantine_rate" in kpi_day.message
    # The day before waits too: its attempts read the corrupted day's telemetry.
    day_before = (BAD_DAY - dt.timedelta(days=1)).isoformat()
    before_kpis = next(r for r in results if r.step.partition == day_before and len(r.step.assets) > 1)
    assert before_kpis.skipped and f"it reads telemetry_events {BAD_DAY} failed" in before_kpis.message
    waiting = {BAD_DAY.isoformat(), day_before}
    # Their retries wait as well (they run after every day's other KPIs).
    retries = [r for r in results if r.step.assets == ("kpi_retry_daily",) and r.step.partition in waiting]
    assert len(retries) == 2 and all(r.skipped for r in retries)
    others = [r for r in results if r.step.partition not in waiting or r.step.assets == ("telemetry_events",)]
    assert [r.step for r in others if not r.success] == [staging.step]
    pd.testing.assert_frame_equal(
        warehouse.read("kpi_task_completion_daily", date_range=(BAD_DAY, BAD_DAY)), before[BAD_DAY]
    )
    # The blocked version was not stored: the quarantine still matches the staged (previous) version,
    # and the rejected version's quarantine rows are kept aside for inspection.
    assert warehouse.count("quarantine", where) == quarantined_before
    rejected = four_days / "staging" / "_rejected" / "telemetry_events" / f"date={BAD_DAY}"
    rejected_rows = pd.read_parquet(rejected / "quarantine.parquet")
    assert (rejected_rows["reason"] == "malformed_record").sum() >= broken
    assert rejected_rows["file"].str.endswith("zz-corrupt.jsonl").sum() == broken


def test_cli_prints_check_summary_and_exits_nonzero_on_blocking_failure(
    four_days: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt(four_days, BAD_DAY, 0.2)
    cli_on(four_days, monkeypatch)
    status = main(["materialize", "--start", DAYS[0].isoformat(), "--end", DAYS[-1].isoformat()])
    out = capsys.readouterr().out
    assert status == 1
    bad_line = next(line for line in out.splitlines() if f"] {BAD_DAY} telemetry_events" in line)
    assert "FAILED" in bad_line and "1 failed (quarantine_rate)" in bad_line
    good_line = next(line for line in out.splitlines() if f"] {DAYS[0]} telemetry_events" in line)
    assert "ok" in good_line and "0 failed" in good_line
    assert f"] {BAD_DAY} " in out and "SKIPPED" in out
    assert "1 failed, 4 skipped" in out  # the KPIs of the day and the day before, and their retries


def test_a_kpi_table_breaking_its_invariants_feeds_neither_roi_nor_the_scorecard(
    small_run: SmallRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = kpi_defs.task_completion_daily

    def broken(attempts: pd.DataFrame) -> pd.DataFrame:
        out = real(attempts)
        out.loc[out.index[:1], "completions"] = out["attempts"].iloc[:1] + 1  # more completions than attempts
        return out

    settings = small_run.settings
    assert small_run.days == DAYS and all(r.success for r in small_run.results)
    defs = build_definitions(settings)
    warehouse = Warehouse(settings.warehouse_url)
    roi_before = warehouse.read("kpi_roi_daily", date_range=(BAD_DAY, BAD_DAY))
    scorecard_before = warehouse.read("kpi_scorecard")
    monkeypatch.setattr(kpi_defs, "task_completion_daily", broken)
    results = execute(defs, plan(defs, [BAD_DAY]), dg.DagsterInstance.ephemeral())
    kpi_day = next(r for r in results if len(r.step.assets) > 1 and r.step.partition)
    assert [(c.asset, c.name) for c in kpi_day.blocking_failures] == [
        ("kpi_task_completion_daily", "kpi_sanity")
    ]
    assert "completions <= attempts" in kpi_day.message
    assert "kpi_roi_daily" not in kpi_day.metadata  # blocked downstream in the same run
    unpartitioned = results[-1]
    assert unpartitioned.skipped and "kpi_task_completion_daily.kpi_sanity" in unpartitioned.message
    pd.testing.assert_frame_equal(warehouse.read("kpi_roi_daily", date_range=(BAD_DAY, BAD_DAY)), roi_before)
    pd.testing.assert_frame_equal(warehouse.read("kpi_scorecard"), scorecard_before)


def test_check_figures_show_four_digits_and_lists_as_json() -> None:
    figures = {"share": 3 / 7, "rate": 40 / 1_000_000, "hours": np.float32(12.3456789), "unknown": 3}
    outcome = CheckOutcome(False, "WARN", "3 of 7 unknown", figures | {"examples": ["u1"]})
    result = check_result(outcome, "requesters_known")
    shown = {name: value.value for name, value in result.metadata.items()}
    # Four decimals; a smaller figure keeps four significant digits rather than showing as 0.
    assert shown == {"share": 0.4286, "rate": 4e-05, "hours": 12.3457, "unknown": 3, "examples": ["u1"]}
    assert (result.passed, result.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert result.description == "3 of 7 unknown"
