"""build_definitions builds partitions, kpi.yaml and resources once, from the settings it is given."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline_tests.support import settings_for

ALIAS = (
    "event_aliases:\n"
    "  - {from: task_done, to: task_completed, valid_from: 2025-01-02, valid_until: 2025-01-02}\n"
)


def observed_versions(defs: dg.Definitions) -> dict[str, str]:
    """raw_telemetry_files' data version per day, observed by the definitions' observe job."""
    result = defs.resolve_job_def("observe_raw_telemetry_job").execute_in_process()
    assert result.success
    observations = [e.asset_observation_data.asset_observation for e in result.get_asset_observation_events()]
    return {str(o.partition): o.tags["dagster/data_version"] for o in observations}


def test_partitions_start_at_the_settings_start_date(tmp_path: Path) -> None:
    early = build_definitions(settings_for(tmp_path))
    late = build_definitions(dataclasses.replace(settings_for(tmp_path), start_date=dt.date(2025, 3, 1)))
    for defs, first in ((early, "2025-01-01"), (late, "2025-03-01")):
        graph = defs.resolve_asset_graph()
        nodes = [graph.get(key) for key in graph.get_all_asset_keys()]
        partitioned = [node.partitions_def for node in nodes if node.is_partitioned]
        assert {p.get_first_partition_key() for p in partitioned} == {first}
        assert len(partitioned) == 13  # raw_telemetry_files, telemetry_events and the 11 daily tables


def test_runs_use_the_kpi_yaml_the_definitions_were_built_with(tmp_path: Path) -> None:
    """Editing kpi.yaml changes nothing until the definitions are built again (a code-location reload),
    so a run never mixes the kpi.yaml the UI shows with another."""
    for day in ("2025-01-01", "2025-01-02"):
        folder = tmp_path / "raw" / "telemetry" / f"date={day}"
        folder.mkdir(parents=True)
        (folder / "events.jsonl").write_text("{}\n")
    built = build_definitions(settings_for(tmp_path))
    before = observed_versions(built)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "kpi.yaml").write_text(ALIAS)
    assert observed_versions(built) == before
    rebuilt = observed_versions(build_definitions(settings_for(tmp_path)))
    assert sorted(day for day in before if rebuilt[day] != before[day]) == ["2025-01-02"]
