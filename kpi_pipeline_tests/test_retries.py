"""Transient I/O errors are retried with backoff; errors another try cannot fix fail at once."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.resources import IO_RETRY
from kpi_pipeline.partition_store import PartitionStore, PendingPartition
from kpi_pipeline.warehouse import WarehouseError
from kpi_pipeline_tests.support import settings_for

DAY = "2025-01-02"


def stage_one_day(root: Path) -> dg.ExecuteInProcessResult:
    """``telemetry_events`` of DAY (two events), as one run of the definitions' assets."""
    folder = root / "raw" / "telemetry" / f"date={DAY}"
    folder.mkdir(parents=True)
    events = [
        {"event_id": f"e{n}", "occurred_at": f"{DAY}T08:0{n}:00Z", "user_id": "u1", "account_id": "acme",
         "event_type": "feature_used", "feature": "search"}
        for n in range(2)
    ]  # fmt: skip
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    defs = build_definitions(settings_for(root))
    return dg.materialize(
        list(defs.assets or []),
        selection=["telemetry_events", "telemetry_quarantine"],
        partition_key=DAY,
        resources=defs.resources,
        raise_on_error=False,
    )


def failing_commit(monkeypatch: pytest.MonkeyPatch, error: Exception, times: int) -> list[str]:
    """Make the first ``times`` commits of a staged day raise ``error``; the partitions tried."""
    tried: list[str] = []
    commit = PartitionStore.commit

    def flaky(self: PartitionStore, pending: PendingPartition) -> Path:
        tried.append(str(pending.partition))
        if len(tried) <= times:
            raise error
        return commit(self, pending)

    monkeypatch.setattr(PartitionStore, "commit", flaky)
    return tried


def events_of(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def test_a_transient_warehouse_error_is_retried_and_the_day_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = WarehouseError("table quarantine: database is locked", transient=True)
    tried = failing_commit(monkeypatch, locked, times=1)
    result = stage_one_day(tmp_path)
    assert result.success
    assert tried == [DAY, DAY]
    [retry] = events_of(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert "database is locked" in str(retry.event_specific_data)
    stored = {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }
    assert stored == {"telemetry_events": 2, "telemetry_quarantine": 0}


def test_a_permanent_warehouse_error_fails_at_once_naming_the_asset_and_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    denied = WarehouseError("table quarantine: permission denied for table quarantine")
    tried = failing_commit(monkeypatch, denied, times=10)
    result = stage_one_day(tmp_path)
    assert not result.success
    assert tried == [DAY]
    assert events_of(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    [failure] = events_of(result, dg.DagsterEventType.STEP_FAILURE)
    description = failure.step_failure_data.user_failure_data.description
    assert description == f"telemetry_events {DAY}: table quarantine: permission denied for table quarantine"


def test_every_asset_retries_with_exponential_backoff(tmp_path: Path) -> None:
    defs = build_definitions(settings_for(tmp_path))
    graph = defs.resolve_asset_graph()
    materializable = [key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable]
    # 3 staging, their 3 quarantines, 4 intermediate, 23 KPI tables, the HTML report
    assert len(materializable) == 34
    policies = {key.to_user_string(): defs.resolve_assets_def(key).op.retry_policy for key in materializable}
    assert set(policies.values()) == {IO_RETRY}
    assert (IO_RETRY.max_retries, IO_RETRY.delay, IO_RETRY.backoff) == (3, 1, dg.Backoff.EXPONENTIAL)
