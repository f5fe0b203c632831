"""Parquet partitions of the Parquet-stored assets, committed with the warehouse rows they go with.

A staged telemetry day lives in two stores: its events (a Parquet file) and its
quarantine rows (the warehouse). Both change at one commit point, the warehouse
transaction that replaces the quarantine rows and records the new file's token
in ``staging_commits``:

1. the new file is written under ``_pending/`` (:meth:`PartitionStore.stage`; a ranged run stages
   every day of its range before committing any), then, under the partition's lock, moved
   beside ``data.parquet`` (``.pending``; ``.tmp`` for files without warehouse rows);
2. one transaction replaces the quarantine rows and records the token;
3. the pending file is renamed over ``data.parquet``.

Staged files a killed process leaves under ``_pending/`` are deleted by the next stage (a file of
another host or container once it is 6 hours old: its process ids cannot be checked from here).

Killed before (2), the old version stands and the next reader or writer deletes
the pending file; killed after (2), the next reader or writer finds a pending
file whose token the warehouse committed and renames it into place. Every
reader goes through :meth:`PartitionStore.ready` (or :meth:`recover_all`), so a
kill at any instant never shows a reader half a version. Files written without
warehouse rows (attempts, the activity rollup) use the same lock and rename.

In an object store (``s3://`` …) the protocol is the same with two substitutions: a "rename" is a
server-side copy and then a delete (each object write is atomic, so a reader sees the old file or
the new one; a kill between the copy and the delete leaves a committed pending file, which the
next reader moves again), and the partition's lock is the warehouse's named lock
(:meth:`Warehouse.lock`), as object stores have no lock files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import tempfile
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from filelock import FileLock

from kpi_pipeline.storage import (
    StoragePath,
    ensure_folder,
    is_remote,
    move,
    parquet_metadata,
    remove_tree,
    write_parquet,
)
from kpi_pipeline.warehouse import Replace, Warehouse

FAULT_ENV = "KPI_FAULT_AT"  # tests only: the write boundary at which the process kills itself
TOKEN_KEY = b"kpi_pipeline.token"
COMMITS_TABLE = "staging_commits"
FILE_NAME = "data.parquet"
REJECTED_DIR = "_rejected"
PENDING_DIR = "_pending"  # staged files of running writers, before their commit
ABANDONED_SECONDS = 6 * 3600  # a staged file of another host untouched this long: its writer is gone


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def host_mark() -> str:
    """This host (or container) in a staged file's name: process ids are only comparable within
    one host, and containers of one Docker host or pods of one node share a data root."""
    return f"h{zlib.crc32(socket.gethostname().encode()):08x}"


def _writer(name: str) -> tuple[str, int]:
    """(host mark, process id) of a staged file's name; a name without a host mark (written by an
    older release) counts as this host's."""
    first, second, *_ = name.split(".")
    return (first, int(second)) if first.startswith("h") else (host_mark(), int(first))


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``KPI_FAULT_AT`` names this write boundary (tests)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StagedBatch:
    """A staging step's output: the rows to store and the quarantine rows that belong to them.

    ``quarantine_where`` selects the quarantine rows this batch replaces (its source and partition).
    """

    frame: pd.DataFrame
    quarantine: pd.DataFrame
    quarantine_where: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingPartition:
    """A partition written aside by :meth:`PartitionStore.stage`, waiting for its commit."""

    asset_path: tuple[str, ...]
    partition: str | None
    path: StoragePath
    token: str
    rows: int
    quarantine: pd.DataFrame | None = None  # committed with the file (staged telemetry)
    quarantine_where: Mapping[str, str] = field(default_factory=dict)


def partition_path(base_dir: StoragePath, asset_path: Sequence[str], partition: str | None) -> StoragePath:
    """Where an asset's partition (or unpartitioned value) is stored."""
    folder = base_dir.joinpath(*asset_path)
    return folder / f"date={partition}" / FILE_NAME if partition else folder / FILE_NAME


def stored_partitions(base_dir: StoragePath, asset_path: Sequence[str]) -> list[str]:
    """The partitions of an asset that have a stored file, sorted."""
    folder = base_dir.joinpath(*asset_path)
    return sorted(p.parent.name.removeprefix("date=") for p in folder.glob(f"date=*/{FILE_NAME}"))


def file_token(path: StoragePath) -> str | None:
    """The commit token recorded in a stored file's Parquet metadata (None for older files)."""
    metadata = parquet_metadata(path).metadata or {}
    token = metadata.get(TOKEN_KEY)
    return token.decode() if token else None


class PartitionStore:
    """Locked, atomic writes and crash recovery of Parquet partitions under ``base_dir``."""

    def __init__(self, base_dir: StoragePath, warehouse_url: str | None = None) -> None:
        self.base_dir = base_dir
        self.warehouse_url = warehouse_url

    def path(self, asset_path: Sequence[str], partition: str | None) -> StoragePath:
        return partition_path(self.base_dir, asset_path, partition)

    def _lock(self, path: StoragePath) -> AbstractContextManager[object]:
        """The partition's lock: a lock file beside it on a local disk; in an object store, which
        has no locks, the warehouse's named lock (every writer of the data root shares its
        warehouse), or without one a lock file of this machine (one-machine tests)."""
        ensure_folder(path.parent)
        if not is_remote(path):
            return FileLock(path.with_name(".lock"))
        name = f"kpi_pipeline.partition:{path.parent}"
        if self.warehouse_url:
            return Warehouse(self.warehouse_url).lock(name)
        folder = os.path.join(tempfile.gettempdir(), "kpi_pipeline_locks")
        os.makedirs(folder, exist_ok=True)
        return FileLock(os.path.join(folder, f"{zlib.crc32(name.encode()):08x}.lock"))

    def _committed_token(self, asset: str, partition: str) -> str | None:
        if not self.warehouse_url:
            return None
        rows = Warehouse(self.warehouse_url).read(
            COMMITS_TABLE, where={"asset": asset, "partition": partition}
        )
        return None if rows.empty else str(rows["token"].iloc[0])

    def _recover(self, asset_path: Sequence[str], partition: str | None, path: StoragePath) -> None:
        """Roll a committed pending file forward, delete any other leftover (lock held).

        ``.tmp`` files (writes without warehouse rows, or of older releases) are always orphans
        under the lock. A ``.pending`` file is decided by the warehouse's commit record; without a
        warehouse to ask it is left alone rather than guessed about.
        """
        pending = sorted(path.parent.glob(f".{FILE_NAME}.*.pending"))
        if pending and self.warehouse_url:
            committed = self._committed_token("/".join(asset_path), partition or "")
            for leftover in pending:
                if committed is not None and leftover.name.endswith(f".{committed}.pending"):
                    move(leftover, path)
                else:
                    leftover.unlink(missing_ok=True)
        for orphan in path.parent.glob(f".{FILE_NAME}.*.tmp"):
            orphan.unlink(missing_ok=True)

    def ready(self, asset_path: Sequence[str], partition: str | None) -> StoragePath:
        """The stored file's path, after finishing or discarding a write a killed process left."""
        path = self.path(asset_path, partition)
        if any(path.parent.glob(f".{FILE_NAME}.*")):
            with self._lock(path):
                self._recover(asset_path, partition, path)
        return path

    def recover_all(self, asset_path: Sequence[str]) -> None:
        """Recover every partition of an asset that a killed write left behind."""
        folder = self.base_dir.joinpath(*asset_path)
        for leftover in sorted(folder.glob(f"date=*/.{FILE_NAME}.*")):
            self.ready(asset_path, leftover.parent.name.removeprefix("date="))

    def write(
        self, asset_path: Sequence[str], partition: str | None, frame: pd.DataFrame, batch: StagedBatch | None
    ) -> StoragePath:
        """Store ``frame`` as the partition; with a ``batch``, commit its quarantine rows with it."""
        return self.commit(self.stage(asset_path, partition, frame, batch))

    def stage(
        self, asset_path: Sequence[str], partition: str | None, frame: pd.DataFrame, batch: StagedBatch | None
    ) -> PendingPartition:
        """Write ``frame`` aside, where no reader looks, until :meth:`commit` (a ranged run stages each
        day as it goes, so its memory holds one day, and commits them all once every day passed)."""
        staged, token = self.reserve()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        metadata = {**(table.schema.metadata or {}), TOKEN_KEY: token.encode()}
        write_parquet(table.replace_schema_metadata(metadata), staged)
        return self.written(asset_path, partition, staged, token, len(frame), batch)

    def reserve(self) -> tuple[StoragePath, str]:
        """A path under ``_pending/`` and the commit token, for a writer that writes the file itself
        (DuckDB staging a big day); the file's footer must carry the token under ``TOKEN_KEY``."""
        folder = self.base_dir / PENDING_DIR
        ensure_folder(folder)
        self._clean_pending(folder)
        token = uuid.uuid4().hex
        return folder / f"{host_mark()}.{os.getpid()}.{token}.parquet", token

    @staticmethod
    def written(
        asset_path: Sequence[str],
        partition: str | None,
        path: StoragePath,
        token: str,
        rows: int,
        batch: StagedBatch | None,
    ) -> PendingPartition:
        """The pending partition of a file written at a path from :meth:`reserve` (``rows`` rows), with
        the quarantine rows of ``batch`` to commit with it."""
        quarantine = batch.quarantine if batch is not None else None
        where = dict(batch.quarantine_where) if batch is not None else {}
        return PendingPartition(tuple(asset_path), partition, path, token, rows, quarantine, where)

    @staticmethod
    def _clean_pending(folder: StoragePath) -> None:
        """Delete staged files whose writing process is gone (killed before it committed them): on
        this host, a process id that no longer runs; from another host or container, whose process
        ids mean nothing here, a file untouched for ``ABANDONED_SECONDS``."""
        here, now = host_mark(), time.time()
        for leftover in folder.glob("*.parquet"):
            host, pid = _writer(leftover.name)
            if host == here:
                gone = pid != os.getpid() and not _alive(pid)
            else:
                gone = now - leftover.stat().st_mtime > ABANDONED_SECONDS
            if gone:
                leftover.unlink(missing_ok=True)

    def commit(self, pending: PendingPartition) -> StoragePath:
        """Make a staged file the partition: moved into the partition's folder, then its quarantine
        rows and token in one transaction, then the rename (see the module docstring for what a
        kill at each point leaves)."""
        asset_path, partition = pending.asset_path, pending.partition
        path = self.path(asset_path, partition)
        asset = "/".join(asset_path)
        with self._lock(path):
            self._recover(asset_path, partition, path)
            suffix = "pending" if pending.quarantine is not None else "tmp"
            aside = path.with_name(f".{FILE_NAME}.{os.getpid()}.{pending.token}.{suffix}")
            move(pending.path, aside, after_copy=lambda: fault_point("after_pending_copy"))
            fault_point("after_pending_write")
            if pending.quarantine is not None:
                if not self.warehouse_url:
                    raise ValueError(f"{asset}: a staged batch needs the warehouse to commit its quarantine")
                commit = pd.DataFrame(
                    {
                        "asset": [asset],
                        "partition": [partition or ""],
                        "token": [pending.token],
                        "rows": [pending.rows],
                        "quarantined_rows": [len(pending.quarantine)],
                        "committed_at": [pd.Timestamp.now(tz="UTC")],
                    }
                )
                Warehouse(self.warehouse_url).replace_all(
                    [
                        Replace("quarantine", pending.quarantine, where=dict(pending.quarantine_where)),
                        Replace(COMMITS_TABLE, commit, where={"asset": asset, "partition": partition or ""}),
                    ]
                )
                fault_point("after_commit")
            move(aside, path, after_copy=lambda: fault_point("after_rename_copy"))
            fault_point("after_rename")
            self.clear_rejected(asset_path, partition)
        return path

    def discard(self, pending: PendingPartition) -> None:
        """Drop a staged file that will not be committed (another day of its run was rejected)."""
        pending.path.unlink(missing_ok=True)

    def clear_rejected(self, asset_path: Sequence[str], partition: str | None) -> None:
        """Forget a rejected version once a good one is stored."""
        remove_tree(self.rejected_dir(asset_path, partition))

    def rejected_dir(self, asset_path: Sequence[str], partition: str | None) -> StoragePath:
        """Where a version that failed a blocking check is kept for inspection."""
        folder = self.base_dir.joinpath(REJECTED_DIR, *asset_path)
        return folder / f"date={partition}" if partition else folder

    def write_rejected(
        self,
        asset_path: Sequence[str],
        partition: str | None,
        batch: StagedBatch,
        report: Mapping[str, object],
    ) -> StoragePath:
        """Keep a rejected version's quarantine rows and report aside; the stored version is untouched.

        On a local disk the two files are written to a fresh folder renamed over the old one, so
        they always belong to one rejection; an object store has no folder rename: the old files
        are deleted, then the new ones written."""
        folder = self.rejected_dir(asset_path, partition)
        local = not is_remote(folder)
        fresh = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp") if local else folder
        if not local:
            remove_tree(folder)
        ensure_folder(fresh)
        write_parquet(
            pa.Table.from_pandas(batch.quarantine, preserve_index=False), fresh / "quarantine.parquet"
        )
        stamped = {"rejected_at": dt.datetime.now(dt.UTC).isoformat(), **report}
        (fresh / "report.json").write_text(
            json.dumps(stamped, indent=2, default=str) + "\n", encoding="utf-8"
        )
        if local:
            remove_tree(folder)  # the two files of one rejection stay together
            move(fresh, folder)
        return folder
