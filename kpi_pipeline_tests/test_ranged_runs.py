"""Ranged runs (issue 10, item 1): a backfill of N days in a few Dagster runs, not 2N, with exactly
the tables, staged files and per-day outcomes of one run per day."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import Step, StepResult, execute, plan, ranged
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.tables import TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import START, settings_for

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


def run(root: Path, steps_of) -> list[StepResult]:
    defs = build_definitions(settings_for(root))
    return execute(defs, steps_of(plan(defs, DAYS)), dg.DagsterInstance.ephemeral(), lookback_days=1)


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


def test_ranged_runs_store_exactly_what_one_run_per_day_stores(tmp_path: Path) -> None:
    per_day, ranges = tmp_path / "per_day", tmp_path / "ranges"
    generate_dataset(per_day, days=len(DAYS), users=60, seed=11, start=START)
    shutil.copytree(per_day, ranges)

    daily = run(per_day, lambda steps: steps)
    # Ranges of 4 days: the KPI windows (attempts read D-1 … D+1, 28-day windows) cross a boundary.
    merged = run(ranges, lambda steps: ranged(steps, max_days=4))

    assert all(r.success for r in daily) and all(r.success for r in merged)
    assert len(daily) == 6 + 2 + 6 + 6 + 1  # telemetry, exports, the KPIs, then their retries, by day
    assert [r.step.label for r in merged] == [
        "2025-01-01 … 2025-01-04",
        "2025-01-05 … 2025-01-06",
        "unpartitioned",
        "unpartitioned",
        "2025-01-01 … 2025-01-04",
        "2025-01-05 … 2025-01-06",
        "2025-01-01 … 2025-01-04",
        "2025-01-05 … 2025-01-06",
        "unpartitioned",
    ]
    attempts = merged[4].metadata["task_attempts"]
    assert attempts["preview"].startswith("| ") and attempts["attempts"] > 0
    staged = merged[0].metadata["telemetry_events"]
    assert staged["raw_rows"] == staged["staged_rows"] + staged["quarantined_rows"] > 0
    assert_same_storage(ranges, per_day)
    assert len(stored(ranges)["task_attempts date=2025-01-04"]) > 0


def test_a_blocked_day_runs_its_range_again_one_day_at_a_time(tmp_path: Path) -> None:
    per_day, ranges = tmp_path / "per_day", tmp_path / "ranges"
    generate_dataset(per_day, days=len(DAYS), users=60, seed=11, start=START)
    blocked_day = DAYS[3]
    folder = per_day / "raw" / "telemetry" / f"date={blocked_day}"
    broken = "".join(f'{{"event_id": "x{n}", "occurred_at": "not a time"\n' for n in range(50_000))
    (folder / "broken.jsonl").write_text(broken, encoding="utf-8")  # quarantine_rate blocks the day
    shutil.copytree(per_day, ranges)

    daily = run(per_day, lambda steps: steps)
    merged = run(ranges, lambda steps: ranged(steps))

    [split] = [r for r in merged if r.split]
    assert split.step == Step(("telemetry_events",), DAYS[0].isoformat(), last=DAYS[-1].isoformat())
    assert f"telemetry_events {blocked_day} was not stored: quarantine_rate" in split.message

    def outcomes(results: list[StepResult]) -> list[tuple[str, str, bool, bool]]:
        return [
            (r.step.label, ",".join(r.step.assets), r.success, r.skipped)
            for r in results
            if not r.split and r.step.partition
        ]

    # After the split every day has the outcome it has with one run per day: the blocked day and
    # the day before it (its attempts read the blocked day) wait; the others are computed.
    assert sorted(outcomes(merged)) == sorted(outcomes(daily))
    failed = {label for label, _, ok, _ in outcomes(merged) if not ok}
    assert failed == {blocked_day.isoformat(), DAYS[2].isoformat()}
    assert_same_storage(ranges, per_day)


def test_window_tables_write_no_rows_for_days_whose_telemetry_was_never_staged(tmp_path: Path) -> None:
    """A UI backfill also targets the 27 days after its range (their 28-day windows read it); days
    without staged telemetry must not get adoption or engagement rows made of earlier days alone."""
    generate_dataset(tmp_path, days=2, users=40, seed=3, start=START)
    defs = build_definitions(settings_for(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    assert all(r.success for r in execute(defs, ranged(plan(defs, DAYS[:2])), instance))
    later = Step(
        ("kpi_feature_adoption_daily", "kpi_engagement_daily"), DAYS[2].isoformat(), last=DAYS[4].isoformat()
    )
    [result] = execute(defs, [later], instance)
    assert result.success
    warehouse = Warehouse(settings_for(tmp_path).warehouse_url)
    for name in ("kpi_feature_adoption_daily", "kpi_engagement_daily"):
        dates = set(warehouse.read(name)["date"])
        assert dates == {DAYS[0].isoformat(), DAYS[1].isoformat()}, name


def test_each_partition_of_a_ranged_staging_run_carries_its_own_figures(tmp_path: Path) -> None:
    """One run stages four days and one computes their KPIs; each day's materializations (events,
    quarantine, a KPI table) show that day's row counts and headline, as stored, not the range's."""
    generate_dataset(tmp_path, days=4, users=60, seed=11, start=START)
    defs = build_definitions(settings_for(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    days = [START + dt.timedelta(days=n) for n in range(4)]
    results = execute(defs, ranged(plan(defs, days)), instance)
    assert all(r.success for r in results)
    result = results[0]
    assert result.step.label == "2025-01-01 … 2025-01-04" and result.step.assets == ("telemetry_events",)
    warehouse = Warehouse(settings_for(tmp_path).warehouse_url)
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
        staged = len(
            pd.read_parquet(tmp_path / "staging" / "telemetry_events" / f"date={day}" / "data.parquet")
        )
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
