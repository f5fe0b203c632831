"""A staged telemetry day and its quarantine change together, whatever instant a writer is killed at.

Each test stages version 1 of a day, then lets a separate process stage version 2 and kill itself
(SIGKILL) at one write boundary; afterwards every reader sees one whole version: staged rows +
quarantined rows = the raw rows of that version. Runs on SQLite and, with KPI_TEST_POSTGRES_URL,
on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpi_pipeline.ingest.telemetry import stage_telemetry_partition
from kpi_pipeline.partition_store import (
    ABANDONED_SECONDS,
    FAULT_ENV,
    PENDING_DIR,
    PartitionStore,
    StagedBatch,
    file_token,
    host_mark,
)
from kpi_pipeline.storage import StoragePath, location, read_parquet
from kpi_pipeline.warehouse import Warehouse

DAY = dt.date(2025, 3, 2)
ASSET = ["telemetry_events"]


def event(n: int) -> str:
    return (
        f'{{"event_id":"e{n}","occurred_at":"2025-03-02T10:{n:02d}:00Z","user_id":"u{n % 3}",'
        f'"account_id":"a1","event_type":"feature_used","feature":"f"}}'
    )


def write_version(root: StoragePath, good: int, bad: int) -> None:
    """A day file of ``good`` valid lines followed by ``bad`` broken ones (a folder or an object store)."""
    folder = root / "raw" / "telemetry" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [event(n) for n in range(good)] + ["{broken"] * bad
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def stage_and_store(root: str, url: str) -> None:
    """Stage the day and store it with its quarantine (what the telemetry_events asset does)."""
    data = location(root)
    staged = stage_telemetry_partition(data, DAY, ())
    batch = StagedBatch(
        staged.events, staged.quarantine, {"source": "telemetry", "partition": DAY.isoformat()}
    )
    PartitionStore(data / "staging", url).write(ASSET, DAY.isoformat(), staged.events, batch)


def stage_killed_at(boundary: str, root: str, url: str) -> None:
    """:func:`stage_and_store` in another process that kills itself (SIGKILL) at ``boundary``."""
    code = f"from {__name__} import stage_and_store; stage_and_store({root!r}, {url!r})"
    env = {**os.environ, FAULT_ENV: boundary}
    killed = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1], check=False)
    assert killed.returncode == -signal.SIGKILL


def stored(root: StoragePath, url: str) -> tuple[int, int]:
    """(staged rows, quarantined rows) of the day as a reader sees them."""
    path = PartitionStore(root / "staging", url).ready(ASSET, DAY.isoformat())
    quarantined = Warehouse(url).count(
        "quarantine", where={"source": "telemetry", "partition": DAY.isoformat()}
    )
    return len(read_parquet(path)), quarantined


# Where a writer of version 2 (5 good, 7 bad lines) is killed, and the version readers then see.
KILLS = [
    ("after_pending_write", (8, 2)),  # nothing committed: version 1 stands
    ("after_commit", (5, 7)),  # committed in the warehouse, file not yet renamed: rolled forward
    ("after_rename", (5, 7)),
]


def kill_a_second_version(
    root: StoragePath, url: str, boundary: str, expected: tuple[int, int]
) -> StoragePath:
    """Store version 1 (8 good, 2 bad lines), kill a writer of version 2 at ``boundary``; check
    that readers see ``expected``, that no leftover stays and that the stored file is the one the
    warehouse committed. Returns the day's folder."""
    write_version(root, good=8, bad=2)
    stage_and_store(str(root), url)
    assert stored(root, url) == (8, 2)

    write_version(root, good=5, bad=7)
    stage_killed_at(boundary, str(root), url)

    assert stored(root, url) == expected
    folder = root / "staging" / "telemetry_events" / f"date={DAY.isoformat()}"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".data")] == []
    commits = Warehouse(url).read("staging_commits")
    assert commits["token"].tolist() == [file_token(folder / "data.parquet")]
    return folder


@pytest.mark.parametrize(("boundary", "expected"), KILLS)
def test_kill_at_each_write_boundary_leaves_one_whole_version(
    tmp_path: Path, url: str, boundary: str, expected: tuple[int, int]
) -> None:
    folder = kill_a_second_version(tmp_path, url, boundary, expected)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "data.parquet"]


def test_next_write_cleans_files_left_by_killed_writers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    write_version(tmp_path, good=3, bad=1)
    folder = tmp_path / "staging" / "telemetry_events" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    (folder / ".data.parquet.4242.tmp").write_bytes(b"half a file")
    (folder / ".data.parquet.4242.deadbeef.pending").write_bytes(b"never committed")
    stage_and_store(str(tmp_path), url)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "data.parquet"]
    assert stored(tmp_path, url) == (3, 1)


def test_without_a_warehouse_a_pending_file_is_left_for_one_that_can_decide(tmp_path: Path) -> None:
    folder = tmp_path / "staging" / "telemetry_events" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    pending = folder / ".data.parquet.4242.cafe.pending"
    pending.write_bytes(b"committed or not: only the warehouse knows")
    (folder / ".data.parquet.4242.dead.tmp").write_bytes(b"orphan")
    PartitionStore(tmp_path / "staging").ready(ASSET, DAY.isoformat())
    assert sorted(p.name for p in folder.iterdir()) == [".data.parquet.4242.cafe.pending", ".lock"]


def test_staged_files_of_dead_writers_go_and_other_hosts_wait_until_abandoned(tmp_path: Path) -> None:
    """Process ids are checked on the writer's own host only: a file staged by another host or
    container (a run's pod, a Docker run) is left alone until it is ABANDONED_SECONDS old."""
    pending = tmp_path / "staging" / PENDING_DIR
    pending.mkdir(parents=True)
    exited = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead_pid = int(subprocess.run(exited, capture_output=True, text=True).stdout)
    here = host_mark()
    files = {
        "mine_dead": pending / f"{here}.{dead_pid}.aa.parquet",
        "mine_alive": pending / f"{here}.{os.getppid()}.bb.parquet",
        "old_format_dead": pending / f"{dead_pid}.cc.parquet",
        "other_fresh": pending / f"h00000000.{dead_pid}.dd.parquet",
        "other_abandoned": pending / f"h00000000.{dead_pid}.ee.parquet",
    }
    for path in files.values():
        path.write_bytes(b"staged")
    old = time.time() - ABANDONED_SECONDS - 60
    os.utime(files["other_abandoned"], (old, old))
    staged, _ = PartitionStore(tmp_path / "staging").reserve()
    assert staged.parent == pending and staged.name.startswith(f"{here}.{os.getpid()}.")
    left = {name for name, path in files.items() if path.exists()}
    assert left == {"mine_alive", "other_fresh"}
