"""Ranged runs (issue 10, item 1): a backfill of N days in a few Dagster runs, not 2N, with exactly
the tables, staged files and per-day outcomes of one run per day."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import Step, StepResult, execute, plan, ranged
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.tables import TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import START, SmallRun, settings_for

DAYS = [START + dt.timedelta(days=n) for n in range(6)]
PARQUET = ("telemetry_events", "task_attempts", "daily_activity")


def stored(root: Path) -> dict[str, pd.DataFrame]:
    """Every warehouse table (but the commit log's tokens and times) and every stored Parquet day."""
    warehouse = Warehouse(settings_for(root).warehouse_url)
    frames = {name: warehouse.read(name) for name in TABLES if name != "staging_commits"}
    for asset in PARQUET:
        for path in sorted((root / "staging" / asset).glob("date=*/data.parquet")):
            frames[f"{asset} {path.parent.name}"] = pd.read_parquet(path)
    return {
        name: frame.sort_values(list(frame.columns), ignore_index=True, kind="stable")
        for name, frame in frames.items()
    }


def run(
    root: Path, steps_of, instance: dg.DagsterInstance | None = None, days: list[dt.date] = DAYS
) -> list[StepResult]:
    defs = build_definitions(settings_for(root))
    instance = instance or dg.DagsterInstance.ephemeral()
    return execute(defs, steps_of(plan(defs, days)), instance, lookback_days=1)


def assert_same_storage(got: Path, expected: Path) -> None:
    want, have = stored(expected), stored(got)
    assert sorted(have) == sorted(want)
    for name, frame in want.items():
        pd.testing.assert_frame_equal(have[name], frame, check_exact=True, obj=name)


def test_ranged_plan_merges_consecutive_days_of_the_same_assets_up_to_the_limit() -> None:
    steps = [Step(("telemetry_events",), d.isoformat()) for d in DAYS] + [Step(("incidents",), None)]
    steps += [Step(("a", "b"), DAYS[0].isoformat(), extra="extra day: reads the range")]
    steps += [Step(("a", "b"), d.isoformat()) for d in DAYS[1:]]
    steps += [Step(("w",), d.isoformat(), extra="extra day: windows") for d in DAYS[4:]] + [
        Step(("c",), None)
    ]
    assert ranged(steps, max_days=4) == [
        Step(("telemetry_events",), "2025-01-01", last="2025-01-04"),
        Step(("telemetry_events",), "2025-01-05", last="2025-01-06"),
        Step(("incidents",), None),
        Step(("a", "b"), "2025-01-01", extra="extra day: reads the range"),
        Step(("a", "b"), "2025-01-02", last="2025-01-05"),
        Step(("a", "b"), "2025-01-06"),
        Step(("w",), "2025-01-05", extra="extra day: windows", last="2025-01-06"),  # same reason: merged
        Step(("c",), None),
    ]
    assert Step(("a",), "2025-01-30", last="2025-02-02").days == [
        "2025-01-30",
        "2025-01-31",
        "2025-02-01",
        "2025-02-02",
    ]


@dataclass
class Compared:
    """The 6-day sample run one day at a time (``per_day``) and, in a copy, in ranges of 4 days."""

    per_day: Path
    ranges: Path
    daily: list[StepResult]
    merged: list[StepResult]
    instance: dg.DagsterInstance  # the ranged runs'


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    root = tmp_path_factory.mktemp("compared")
    per_day, ranges = root / "per_day", root / "ranges"
    generate_dataset(per_day, days=len(DAYS), users=60, seed=11, start=START)
    shutil.copytree(per_day, ranges)
    daily = run(per_day, lambda steps: steps)
    # Ranges of 4 days: the KPI windows (attempts read D-1 … D+1, 28-day windows) cross a boundary.
    instance = dg.DagsterInstance.ephemeral()
    merged = run(ranges, lambda steps: ranged(steps, max_days=4), instance)
    return Compared(per_day, ranges, daily, merged, instance)


def test_ranged_runs_store_exactly_what_one_run_per_day_stores(compared: Compared) -> None:
    daily, merged = compared.daily, compared.merged
    assert all(r.success for r in daily) and all(r.success for r in merged)
    assert len(daily) == 6 + 1 + 6 + 6 + 1  # telemetry by day, the exports, the KPIs, their retries by day
    assert [r.step.label for r in merged] == [
        "2025-01-01 … 2025-01-04",
        "2025-01-05 … 2025-01-06",
        "unpartitioned",
        "2025-01-01 … 2025-01-04",
        "2025-01-05 … 2025-01-06",
        "2025-01-01 … 2025-01-04",
        "2025-01-05 … 2025-01-06",
        "unpartitioned",
    ]
    attempts = merged[3].metadata["task_attempts"]
    assert attempts["preview"].startswith("| ") and attempts["attempts"] > 0
    staged = merged[0].metadata["telemetry_events"]
    assert staged["raw_rows"] == staged["staged_rows"] + staged["quarantined_rows"] > 0
    assert_same_storage(compared.ranges, compared.per_day)
    assert len(stored(compared.ranges)["task_attempts date=2025-01-04"]) > 0


def test_window_tables_write_no_rows_for_days_whose_telemetry_was_never_staged(small_run: SmallRun) -> None:
    """A UI backfill also targets the 27 days after its range (their 28-day windows read it); days
    without staged telemetry must not get adoption or engagement rows made of earlier days alone."""
    defs = build_definitions(small_run.settings)
    assert all(r.success for r in small_run.results)  # its 4 days, staged and computed
    first, last = (small_run.days[-1] + dt.timedelta(days=n) for n in (1, 3))
    windows = ("kpi_feature_adoption_daily", "kpi_engagement_daily")
    later = Step(windows, first.isoformat(), last=last.isoformat())
    instance = dg.DagsterInstance.ephemeral()
    [result] = execute(defs, [later], instance)
    assert result.success
    warehouse = Warehouse(small_run.settings.warehouse_url)
    for name in windows:
        records = instance.fetch_materializations(dg.AssetKey(name), limit=10).records
        assert sorted(str(r.partition_key) for r in records) == later.days, name  # computed, ...
        dates = set(warehouse.read(name)["date"])
        assert dates == {d.isoformat() for d in small_run.days}, name  # ... and no rows written


def test_each_partition_of_a_ranged_staging_run_carries_its_own_figures(compared: Compared) -> None:
    """One run stages four days and one computes their KPIs; each day's materializations (events,
    quarantine, a KPI table) show that day's row counts and headline, as stored, not the range's."""
    instance, root = compared.instance, compared.ranges
    assert all(r.success for r in compared.merged)
    days = DAYS[:4]
    result = compared.merged[0]
    assert result.step.label == "2025-01-01 … 2025-01-04" and result.step.assets == ("telemetry_events",)
    kpi_run = compared.merged[3]
    assert (
        kpi_run.step.label == "2025-01-01 … 2025-01-04" and "kpi_task_completion_daily" in kpi_run.step.assets
    )
    warehouse = Warehouse(settings_for(root).warehouse_url)
    figures = []
    for day in map(str, days):
        [events] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("telemetry_events"), asset_partitions=[day]), limit=5
        ).records
        [quarantine] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("telemetry_quarantine"), asset_partitions=[day]),
            limit=5,
        ).records
        meta = {k: v.value for k, v in events.asset_materialization.metadata.items()}
        staged = len(pd.read_parquet(root / "staging" / "telemetry_events" / f"date={day}" / "data.parquet"))
        stored_quarantine = warehouse.count("quarantine", {"source": "telemetry", "partition": day})
        assert meta["dagster/row_count"] == meta["staged_rows"] == staged
        assert meta["quarantined_rows"] == stored_quarantine
        assert meta["raw_rows"] == staged + stored_quarantine
        assert quarantine.asset_materialization.metadata["dagster/row_count"].value == stored_quarantine
        [completion] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("kpi_task_completion_daily"), asset_partitions=[day]),
            limit=5,
        ).records
        rows = warehouse.read("kpi_task_completion_daily", date_range=(dt.date.fromisoformat(day),) * 2)
        shown = {k: v.value for k, v in completion.asset_materialization.metadata.items()}
        assert shown["dagster/row_count"] == len(rows) > 0
        assert shown["attempts"] == rows["attempts"].sum()
        assert shown["completion_rate"] == round(rows["completions"].sum() / rows["attempts"].sum(), 4)
        figures.append(meta["raw_rows"])
    assert len(set(figures)) == 4  # four different days, four different counts
    # The CLI's line for the run adds the days up.
    assert result.metadata["telemetry_events"]["raw_rows"] == sum(figures)
