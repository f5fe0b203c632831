"""The data root in an object store: the whole pipeline, its crash recovery, sensors and source
mappings on ``s3://`` through s3fs, against moto's standalone S3 server on 127.0.0.1 (no real
cloud storage is reachable from CI). The warehouse is the local PostgreSQL server, whose advisory
locks stand in for the partition files' lock files."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import s3fs
from upath import UPath

from kpi_pipeline.automation.file_state import FileCursor, states
from kpi_pipeline.cli import main
from kpi_pipeline.config import parse_config
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.resources import KpiData
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.partition_store import PartitionStore, stored_partitions
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.settings import Settings
from kpi_pipeline.sources.files import export_files
from kpi_pipeline.sources.model import TicketMapping
from kpi_pipeline.storage import list_tree, location, read_parquet
from kpi_pipeline.tables import PARQUET_TABLES, TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.object_store import new_bucket, s3_server, upload
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON, postgres_schema_url
from kpi_pipeline_tests.support import DAYS, START, materialize_all, settings_for
from kpi_pipeline_tests.test_partition_store import (
    ASSET,
    DAY,
    KILLS,
    kill_a_second_version,
    stage_and_store,
    stored,
    write_version,
)

pytestmark = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=POSTGRES_SKIP_REASON)


@pytest.fixture(scope="module", autouse=True)
def s3() -> Iterator[dict[str, str]]:
    with s3_server() as variables:
        yield variables


@pytest.fixture
def warehouse_url() -> Iterator[str]:
    with postgres_schema_url() as url:
        yield url


def s3_settings(root: UPath, url: str) -> Settings:
    return Settings(
        data_dir=root, warehouse_url=url, config_path=root / "config" / "kpi.yaml", start_date=START
    )


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    columns = list(frame.columns)
    return frame.astype(str).sort_values(columns, kind="stable").reset_index(drop=True)


# --- the whole pipeline ----------------------------------------------------------------------------


def test_the_pipeline_on_s3_equals_the_pipeline_on_a_local_folder(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample data set (21 days: telemetry with its bad lines and duplicates, gzip and CSV
    files, tickets, incidents) staged and computed from s3:// gives every warehouse table and
    every staged Parquet partition of a run on a local folder, and writes nothing locally."""
    local = tmp_path / "local"
    generate_dataset(local, days=DAYS, seed=11, start=START, users=120)
    root = new_bucket("data")
    upload(local, root)
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]

    _, reference = materialize_all(settings_for(local), days)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a path taken for a local one would land here
    requests: list[str] = []
    call_s3 = s3fs.S3FileSystem._call_s3

    async def recorded(self: s3fs.S3FileSystem, method: str, *args: Any, **kwargs: Any) -> Any:
        requests.append(method)
        return await call_s3(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", recorded)
    _, results = materialize_all(s3_settings(root, warehouse_url), days)
    monkeypatch.undo()
    # Only object requests: a role scoped to the prefix may not look at (or create) the bucket.
    assert requests and not {m for m in requests if "bucket" in m}

    assert [(r.step, r.success, r.message) for r in results] == [
        (r.step, r.success, r.message) for r in reference
    ]
    assert list(work.iterdir()) == []
    local_warehouse = Warehouse(settings_for(local).warehouse_url)
    remote_warehouse = Warehouse(warehouse_url)
    compared = 0
    for name in sorted(TABLES):
        if name == "staging_commits":  # each run's own commit tokens and times
            continue
        expected = local_warehouse.read(name)
        got = remote_warehouse.read(name)
        pd.testing.assert_frame_equal(sorted_frame(got), sorted_frame(expected), obj=name)
        compared += len(expected) > 0
    assert compared >= 15
    for asset in PARQUET_TABLES:
        folder = local / "staging" / asset
        partitions = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("data.parquet"))
        stored = sorted(
            p.relative_to(root / "staging" / asset).as_posix()
            for p in (root / "staging" / asset).rglob("data.parquet")
        )
        assert stored == partitions and partitions, asset
        for partition in partitions:
            pd.testing.assert_frame_equal(
                read_parquet(root / "staging" / asset / partition),
                pd.read_parquet(folder / partition),
                obj=f"{asset}/{partition}",
            )
    leftovers = [p for p in (root / "staging").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_the_data_root_sees_what_other_processes_write() -> None:
    """No listing is cached: an object another process writes after this one listed its folder is
    found at once (s3fs caches listings by default)."""
    import s3fs

    data = location(str(new_bucket("data")))
    folder = data / "staging" / "telemetry_events"
    (folder / "date=2025-01-01" / "data.parquet").write_bytes(b"1")
    assert [p.name for p in folder.iterdir()] == ["date=2025-01-01"]
    other = s3fs.S3FileSystem(skip_instance_cache=True)
    other.pipe(f"{folder.path}/date=2025-01-02/data.parquet", b"2")
    assert (folder / "date=2025-01-02" / "data.parquet").exists()
    assert stored_partitions(data / "staging", ["telemetry_events"]) == ["2025-01-01", "2025-01-02"]


# --- crash recovery --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boundary", "expected"),
    [
        *KILLS,
        ("after_pending_copy", (8, 2)),  # the staged file copied beside the day, not yet deleted
        ("after_rename_copy", (5, 7)),  # committed and copied into place, the pending copy not deleted
    ],
)
def test_a_writer_killed_at_each_boundary_leaves_one_whole_version_in_s3(
    warehouse_url: str, boundary: str, expected: tuple[int, int]
) -> None:
    """In an object store a "rename" is a copy and a delete: killed after either, the next reader
    finishes the move (the local test's cases, on s3://, with no lock file beside the day)."""
    folder = kill_a_second_version(new_bucket("data"), warehouse_url, boundary, expected)
    assert sorted(p.name for p in folder.iterdir()) == ["data.parquet"]


def test_the_partition_lock_is_the_warehouse_lock_in_an_object_store(warehouse_url: str) -> None:
    """Two writers of one partition take turns across machines: the lock is PostgreSQL's, named for
    the partition's folder, and held while the commit runs."""
    root = new_bucket("data")
    write_version(root, good=3, bad=1)
    store = PartitionStore(root / "staging", warehouse_url)
    name = f"kpi_pipeline.partition:{root}/staging/telemetry_events/date={DAY.isoformat()}"
    held = []
    original = Warehouse.replace_all

    def observe(self: Warehouse, writes: list) -> list[int]:
        probe = Warehouse(warehouse_url).engine
        with probe.connect() as conn:
            free = conn.exec_driver_sql(
                "SELECT pg_try_advisory_lock(19280, hashtext(%(name)s))", {"name": name}
            ).scalar()
            if free:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(19280, hashtext(%(name)s))", {"name": name})
        held.append(not free)
        return original(self, writes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Warehouse, "replace_all", observe)
        stage_and_store(str(root), warehouse_url)
    assert held == [True]
    assert stored(root, warehouse_url) == (3, 1)
    assert store.ready(ASSET, DAY.isoformat()).exists()


# --- sensors ---------------------------------------------------------------------------------------


def tick(sensor: str, root: UPath, url: str, instance: dg.DagsterInstance, cursor: str | None):
    definitions = build_definitions(s3_settings(root, url))
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"kpi_data": KpiData(data_dir=str(root), warehouse_url=url)},
        definitions=definitions,
    )
    return definitions.resolve_sensor_def(sensor).evaluate_tick(context)


def test_the_file_sensors_watch_an_object_store(warehouse_url: str) -> None:
    """An object is acted on once settled (the same state on two ticks: an object store's
    modification time cannot be set back), once per state: an object rewritten with the same size
    in the same second starts a new run, as its ETag changed. The ticket sensor reads the affected
    dates from the object."""
    root = new_bucket("data")
    instance = dg.DagsterInstance.ephemeral()
    day = root / "raw" / "telemetry" / "date=2025-01-02"
    (day / "events.jsonl").write_text('{"a":1}\n')
    (day / "events.jsonl.part").write_text("{")

    def ticks(sensor: str, cursor: str | None, count: int) -> tuple[list[dg.RunRequest], str | None]:
        requests = []
        for _ in range(count):
            result = tick(sensor, root, warehouse_url, instance, cursor)
            requests.append(result.run_requests)
            cursor = result.cursor
        return requests, cursor

    (waiting, first, again), cursor = ticks("telemetry_files_sensor", None, 3)
    assert (waiting, again) == ([], [])
    assert [(r.partition_key, r.run_key.split(":")[:2]) for r in first] == [
        ("2025-01-02", ["telemetry", "2025-01-02"])
    ]
    assert list(FileCursor.from_json(cursor).requested) == ["raw/telemetry/date=2025-01-02/events.jsonl"]
    (day / "events.jsonl").write_text('{"b":2}\n')  # same size, new content
    (waiting, rewritten), cursor = ticks("telemetry_files_sensor", cursor, 2)
    assert waiting == []
    assert [r.partition_key for r in rewritten] == ["2025-01-02"]
    assert rewritten[0].run_key != first[0].run_key

    (root / "raw" / "tickets" / "export.csv").write_text(
        "ticket_id,created_at\n1,2025-01-02T10:00:00Z\n2,2025-01-04T09:00:00Z\n"
    )
    (waiting, [tickets]), _ = ticks("ticket_exports_sensor", None, 2)
    assert waiting == []
    assert (tickets.tags["kpi_pipeline/affected_from"], tickets.tags["kpi_pipeline/affected_to"]) == (
        "2025-01-02",
        "2025-01-04",
    )


# --- source mappings -------------------------------------------------------------------------------


def test_a_mapped_export_is_found_by_glob_in_the_data_root_and_by_url_elsewhere(tmp_path: Path) -> None:
    """The real ServiceNow incident log (a zipped CSV) through its preset, in s3: by a glob relative
    to the data root, and by a glob URL into another bucket; both stage exactly what the same file
    stages from a local folder."""
    export = Path(__file__).parents[2] / "shared" / "realdata" / "uci_incident_event_log_servicenow.zip"
    local = tmp_path / "data"
    (local / "exports" / "2016").mkdir(parents=True)
    (local / "exports" / "2016" / export.name).write_bytes(export.read_bytes())
    root = new_bucket("data")
    upload(local, root)
    elsewhere = new_bucket("servicenow")
    upload(local / "exports", elsewhere)

    def mapping(path: str) -> TicketMapping:
        sources = parse_config({"sources": {"tickets": {"preset": "servicenow_incident_log", "path": path}}})
        return sources.sources.tickets

    expected = stage_tickets(local, mapping("exports/**/*.zip"))
    by_glob = stage_tickets(root, mapping("exports/**/*.zip"))
    by_url = stage_tickets(root, mapping(f"{elsewhere}/*/*.zip"))
    assert len(expected.records) > 10_000
    pd.testing.assert_frame_equal(by_glob.records, expected.records)
    pd.testing.assert_frame_equal(by_glob.quarantine, expected.quarantine)
    # Files outside the data root are named by their URL, as local files outside it by their path.
    url = f"{elsewhere}/2016/{export.name}"
    assert set(by_url.records["source_file"]) == set(by_url.quarantine["file"]) == {url}
    pd.testing.assert_frame_equal(
        by_url.records.drop(columns="source_file"), expected.records.drop(columns="source_file")
    )


# --- the CLI ---------------------------------------------------------------------------------------


def test_the_cli_generates_and_imports_into_an_object_store(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``generate --out s3://…`` writes the bytes a local generation writes; ``import`` splits a
    local export into the bucket's day folders, as it does into a local data root."""
    root = new_bucket("data")
    local = tmp_path / "data"
    sample = ["--days", "3", "--users", "30", "--seed", "5", "--start", "2025-02-01"]
    assert main(["generate", "--out", str(root), *sample]) == 0
    assert main(["generate", "--out", str(local), *sample]) == 0
    written = {f.relative_to(local).as_posix(): f.read_bytes() for f in local.rglob("*") if f.is_file()}
    assert {f.path.relative_to(root).as_posix(): f.path.read_bytes() for f in list_tree(root)} == written

    monkeypatch.setenv("KPI_DATA_DIR", str(root))
    monkeypatch.setenv("KPI_WAREHOUSE_URL", warehouse_url)
    assert main(["check-source", "telemetry", "--date", "2025-02-01", "--rows", "1"]) == 0
    assert "2025-02-01" in capsys.readouterr().out

    export = tmp_path / "export.jsonl"
    days = sorted(local.glob("raw/telemetry/date=*/*.jsonl"))
    export.write_bytes(b"".join(p.read_bytes() for p in days))
    imports = {}
    for data in (root, local):
        monkeypatch.setenv("KPI_DATA_DIR", str(data))
        monkeypatch.setenv("KPI_WAREHOUSE_URL", warehouse_url)
        assert main(["import", "--source", "telemetry", str(export), "--name", "bulk"]) in (0, 1)
        imports[data] = {
            f.path.relative_to(data).as_posix(): f.path.read_bytes()
            for f in list_tree(data / "raw" / "telemetry")
            if f.path.name.startswith("bulk")
        }
    assert len(imports[local]) >= 2  # the export's events spill past midnight
    assert imports[root] == imports[local]
    assert f"into {len(imports[local])} day folder(s)" in capsys.readouterr().out


def test_a_mapping_may_read_another_kind_of_storage_than_the_data_root(tmp_path: Path) -> None:
    """A local data root whose mapping reads a bucket, and a bucket data root whose mapping reads an
    absolute local path: the files are found, staged, named by their URL or path, and watched."""
    export = Path(__file__).parents[2] / "shared" / "realdata" / "uci_incident_event_log_servicenow.zip"
    local_exports = tmp_path / "exports"
    local_exports.mkdir()
    (local_exports / export.name).write_bytes(export.read_bytes())
    bucket = new_bucket("exports")
    upload(local_exports, bucket)

    def mapping(path: str) -> TicketMapping:
        sources = parse_config({"sources": {"tickets": {"preset": "servicenow_incident_log", "path": path}}})
        return sources.sources.tickets

    local_root, bucket_root = tmp_path / "data", new_bucket("data")
    for root, path, name in (
        (local_root, f"{bucket}/*.zip", f"{bucket}/{export.name}"),
        (bucket_root, f"{local_exports}/*.zip", f"{local_exports}/{export.name}"),
    ):
        staged = stage_tickets(root, mapping(path))
        assert len(staged.records) > 10_000
        assert set(staged.records["source_file"]) == {name}
        assert list(states(export_files(root, "tickets", mapping(path)), root)) == [name]


def test_a_missing_bucket_is_one_line_naming_it(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "s3://kpi-no-such-bucket/kpi"
    assert main(["generate", "--out", missing, "--days", "1", "--users", "5", "--start", "2025-01-01"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --out {missing}: The specified bucket does not exist"
    ]
    monkeypatch.setenv("KPI_DATA_DIR", missing)
    monkeypatch.setenv("KPI_WAREHOUSE_URL", warehouse_url)
    assert main(["materialize", "--start", "2025-01-01", "--end", "2025-01-01"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: The specified bucket does not exist (KPI_DATA_DIR {missing})"
    ]
