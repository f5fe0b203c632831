"""build_definitions builds partitions, kpi.yaml and resources once, from the settings it is given."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from kpi_pipeline.cli import default_sample_start
from kpi_pipeline.config import KpiConfig
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.partitions import CONTRACT_START_DATE, days_per_run, first_partition_day, partitions_of
from kpi_pipeline.settings import Settings
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
        assert (
            len(partitioned) == 20
        )  # raw_telemetry_files, telemetry_events, its quarantine, 17 daily tables


def test_partitions_start_at_kpi_start_date_else_kpi_yaml_else_the_first_day_with_data(
    tmp_path: Path,
) -> None:
    no_env = dataclasses.replace(settings_for(tmp_path), start_date=None)
    assert first_partition_day(no_env, KpiConfig()) == CONTRACT_START_DATE == dt.date(2025, 1, 1)
    for day in ("2026-11-09", "2026-11-10", "not-a-date"):
        (tmp_path / "raw" / "telemetry" / f"date={day}").mkdir(parents=True)
    assert first_partition_day(no_env, KpiConfig()) == dt.date(2026, 11, 9)
    configured = KpiConfig(start_date="2026-10-01")
    assert first_partition_day(no_env, configured) == dt.date(2026, 10, 1)
    from_env = dataclasses.replace(no_env, start_date=dt.date(2026, 11, 10))
    assert first_partition_day(from_env, configured) == dt.date(2026, 11, 10)
    keys = partitions_of(build_definitions(no_env)).get_partition_keys()
    assert keys[0] == "2026-11-09"
    # Raw retention deleted older folders whose days are staged: those days stay partitions.
    staged = tmp_path / "staging" / "telemetry_events" / "date=2026-10-20"
    staged.mkdir(parents=True)
    (staged / "data.parquet").write_bytes(b"")
    assert first_partition_day(no_env, KpiConfig()) == dt.date(2026, 10, 20)


def test_sample_data_ends_yesterday_unless_a_start_is_given(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KPI_START_DATE", raising=False)
    monkeypatch.setenv("KPI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KPI_CONFIG", "")
    settings = Settings.from_env()
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert default_sample_start(settings, 28) == yesterday - dt.timedelta(days=27)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "kpi.yaml").write_text("start_date: 2026-01-05\n")
    assert default_sample_start(settings, 28) == dt.date(2026, 1, 5)
    monkeypatch.setenv("KPI_START_DATE", "2026-02-01")
    assert default_sample_start(Settings.from_env(), 28) == dt.date(2026, 2, 1)


def test_settings_set_in_the_environment_reach_dagster_as_env_vars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI shows ``KPI_WAREHOUSE_URL`` (which may hold a password), not its value; runs read it."""
    url = f"sqlite:///{tmp_path / 'warehouse' / 'kpi.db'}"
    env = {"KPI_DATA_DIR": str(tmp_path), "KPI_WAREHOUSE_URL": url, "KPI_START_DATE": "2025-01-01"}
    defs = build_definitions(Settings.from_env(env))
    resources = defs.resources or {}
    assert resources["warehouse"].url == dg.EnvVar("KPI_WAREHOUSE_URL")
    assert isinstance(resources["warehouse"].url, dg.EnvVar)
    assert resources["kpi_data"].data_dir == dg.EnvVar("KPI_DATA_DIR")
    assert resources["parquet_io_manager"].data_dir == dg.EnvVar("KPI_DATA_DIR")
    (tmp_path / "raw" / "telemetry" / "date=2025-01-02").mkdir(parents=True)
    (tmp_path / "raw" / "telemetry" / "date=2025-01-02" / "events.jsonl").write_text("{}\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert list(observed_versions(defs)) == ["2025-01-02"]
    defaults = build_definitions(settings_for(tmp_path)).resources or {}
    assert defaults["warehouse"].url == url and not isinstance(defaults["warehouse"].url, dg.EnvVar)


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


def test_days_per_run_set_the_backfill_policy_of_every_daily_asset_and_the_cli_ranges(tmp_path: Path) -> None:
    """KPI_MAX_DAYS_PER_RUN reaches the BackfillPolicy of every partitioned asset (a UI backfill
    splits by it) and the CLI's ranged runs (days_per_run)."""
    settings = Settings.from_env({"KPI_DATA_DIR": str(tmp_path), "KPI_START_DATE": "2025-01-01"})
    assert settings.max_days_per_run == 31
    ten = dataclasses.replace(settings, max_days_per_run=10)
    for chosen, days in ((settings, 31), (ten, 10)):
        defs = build_definitions(chosen)
        graph = defs.resolve_asset_graph()
        policies = {
            graph.get(key).backfill_policy.max_partitions_per_run
            for key in graph.materializable_asset_keys
            if graph.get(key).is_partitioned
        }
        assert policies == {days}
        assert days_per_run(defs) == days
    from_env = Settings.from_env({"KPI_DATA_DIR": str(tmp_path), "KPI_MAX_DAYS_PER_RUN": "7"})
    assert from_env.max_days_per_run == 7
