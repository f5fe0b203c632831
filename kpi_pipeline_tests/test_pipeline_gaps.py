"""Days without a folder, task_ids restarted days later and a last day without production events,
materialized end to end over one range (issue 9, items 5–7).

Folders exist for 2025-03-02 (Sun), 03-03 (Mon), 03-06 (Thu) and 03-10 (Mon, staging events only);
03-04, 03-05 and 03-07 … 03-09 have none. kpi.yaml sets a 48 h completion window.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pytest

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import StepResult, execute, plan, ranged
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import settings_for

DAYS = [dt.date(2025, 3, 2) + dt.timedelta(days=i) for i in range(9)]


def _event(event_id: str, at: str, user: str, event_type: str, **fields: str) -> dict[str, str]:
    return {
        "event_id": event_id,
        "occurred_at": at,
        "user_id": user,
        "account_id": "acme",
        "event_type": event_type,
        **fields,
    }


EVENTS = {
    "2025-03-02": [
        _event("a1", "2025-03-02T08:00:00Z", "u1", "task_started", workflow="w", task_id="t"),
        _event("a2", "2025-03-02T09:00:00Z", "u1", "feature_used", feature="export"),
    ],
    "2025-03-03": [_event("b1", "2025-03-03T12:00:00Z", "u2", "feature_used", feature="export")],
    "2025-03-06": [
        # t started again four days later: still the attempt of 03-02 (not completed in its window).
        _event("c1", "2025-03-06T08:00:00Z", "u1", "task_started", workflow="w", task_id="t"),
        _event("c2", "2025-03-06T09:00:00Z", "u1", "task_completed", workflow="w", task_id="t"),
        _event("c3", "2025-03-06T10:00:00Z", "u3", "task_started", workflow="w", task_id="t2"),
        _event("c4", "2025-03-06T10:30:00Z", "u3", "task_completed", workflow="w", task_id="t2"),
    ],
    "2025-03-10": [
        _event("d1", "2025-03-10T07:00:00Z", "u4", "feature_used", feature="export", environment="staging")
    ],
}


@dataclass
class Gaps:
    warehouse: Warehouse
    results: list[StepResult]
    staged: dict[str, dict[str, object]]  # day → the metadata of its telemetry_events partition


@pytest.fixture(scope="module")
def gaps(tmp_path_factory: pytest.TempPathFactory) -> Gaps:
    root = tmp_path_factory.mktemp("gaps")
    for day, events in EVENTS.items():
        folder = root / "raw" / "telemetry" / f"date={day}"
        folder.mkdir(parents=True)
        (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    config = root / "config" / "kpi.yaml"
    config.parent.mkdir()
    config.write_text("windows: {completion: 48}\nworkflows: {w: {}}\n", encoding="utf-8")
    settings = settings_for(root)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    results = execute(defs, ranged(plan(defs, DAYS)), instance)  # as the CLI runs them
    # What each day's partition shows in the UI: the ranged run records every day's own figures.
    records = instance.fetch_materializations(dg.AssetKey("telemetry_events"), limit=100).records
    staged = {str(r.partition_key): r.asset_materialization.metadata for r in records}
    staged = {day: {k: v.value for k, v in meta.items()} for day, meta in staged.items()}
    return Gaps(Warehouse(settings.warehouse_url), results, staged)


def test_days_without_a_folder_fail_nothing_and_skip_no_neighbour(gaps: Gaps) -> None:
    assert [(r.step.label, r.message) for r in gaps.results if not r.success] == []
    assert [r.step.label for r in gaps.results if r.step.assets == ("telemetry_events",)] == [
        "2025-03-02 … 2025-03-10"
    ]
    staged = gaps.staged
    assert sorted(staged) == [d.isoformat() for d in DAYS]
    assert {day for day, meta in staged.items() if "missing_folder" in meta} == {
        "2025-03-04",
        "2025-03-05",
        "2025-03-07",
        "2025-03-08",
        "2025-03-09",
    }
    assert staged["2025-03-04"]["raw_rows"] == 0
    assert staged["2025-03-06"]["raw_rows"] == 4


def test_trailing_windows_use_the_partitions_that_exist(gaps: Gaps) -> None:
    warehouse = gaps.warehouse
    engagement = warehouse.read("kpi_engagement_daily").set_index("date")
    # A row for every date with staged telemetry: none for the days without a folder.
    assert engagement.index.tolist() == ["2025-03-02", "2025-03-03", "2025-03-06", "2025-03-10"]
    assert engagement.loc["2025-03-06", ["dau", "wau", "mau", "new_users"]].tolist() == [2, 3, 3, 1]
    # 03-10 has only staging events: staged telemetry, nobody active in production.
    assert engagement.loc["2025-03-10", ["dau", "wau", "mau", "new_users"]].tolist() == [0, 2, 3, 0]


def test_a_restarted_task_id_is_one_attempt_of_its_first_start(gaps: Gaps) -> None:
    warehouse = gaps.warehouse
    completion = warehouse.read("kpi_task_completion_daily").set_index("date")
    assert completion[["attempts", "completions"]].to_dict("index") == {
        "2025-03-02": {"attempts": 1, "completions": 0},
        "2025-03-06": {"attempts": 1, "completions": 1},
    }
    starts = warehouse.read("task_starts").sort_values(["date", "task_id"])
    assert starts[["date", "task_id"]].values.tolist() == [
        ["2025-03-02", "t"],
        ["2025-03-06", "t"],
        ["2025-03-06", "t2"],
    ]


def test_retention_runs_to_the_week_of_the_last_staged_date(gaps: Gaps) -> None:
    warehouse = gaps.warehouse
    retention = warehouse.read("kpi_retention_weekly").sort_values(["cohort_week", "week_number"])
    rows = retention[["cohort_week", "week_number", "cohort_users", "retained_users"]]
    assert rows.values.tolist() == [
        ["2025-02-24", 0, 1, 1],
        ["2025-02-24", 1, 1, 1],
        ["2025-02-24", 2, 1, 0],
        ["2025-03-03", 0, 2, 2],
        ["2025-03-03", 1, 2, 0],
    ]
    assert pd.api.types.is_integer_dtype(retention["week_number"])


def test_no_row_of_the_fixture_is_quarantined(gaps: Gaps) -> None:
    warehouse = gaps.warehouse
    assert warehouse.count("quarantine") == 0
