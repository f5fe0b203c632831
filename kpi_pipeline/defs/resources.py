"""Resources and IO managers: the data root, the warehouse, Parquet staging files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn

import dagster as dg
import duckdb
import pandas as pd

from kpi_pipeline.defs.metadata import root_path
from kpi_pipeline.defs.partitions import window_dates
from kpi_pipeline.ingest.engine import shared_connection
from kpi_pipeline.partition_store import (
    PartitionStore,
    PendingPartition,
    StagedBatch,
    partition_path,
    stored_partitions,
)
from kpi_pipeline.storage import StoragePath, duckdb_path, location, parquet_metadata, read_parquet
from kpi_pipeline.tables import PARQUET_TABLES, TableSpec, empty_frame, table
from kpi_pipeline.warehouse import Replace, Warehouse, WarehouseError

IO_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
"""Every asset's retry policy: a step that fails with a transient error (a dropped connection, a
locked database, a slow object store) runs again after about 1, 2 and 4 s; the run's atomic
partition writes make that safe. Failures another try cannot fix fail at once, as
``dg.Failure(allow_retries=False)``: missing data, a rejected version, an unreadable file, and a
warehouse error that is not a connection or locking problem (:func:`permanent_warehouse_errors`).
An unexpected error (a bug) is retried too: nothing tells it from a transient driver error."""

WAREHOUSE_POOL = "warehouse"
"""The concurrency pool of the assets stored in the warehouse (the KPI tables, the task_starts /
user_days / user_weeks state and the staged ticket and incident exports), whose steps are mostly
warehouse reads and writes. Unlimited unless the instance limits it (``deploy/dagster.yaml``): a
small SQLite or PostgreSQL warehouse then takes a few of them at once however many runs the queue
starts. A Dagster pool holds its slot for the whole step, so the telemetry staging step, which
spends its time parsing files in DuckDB and writes only its quarantine rows and commit, stays out
of it: it scales with the runs."""


@contextmanager
def permanent_warehouse_errors(context: dg.OutputContext) -> Iterator[None]:
    """Warehouse errors that will recur (a permission, a constraint) fail the step at once, with the
    asset, its partitions and the warehouse's one-line message; connection and locking errors go on
    to the retry policy."""
    try:
        yield
    except WarehouseError as exc:
        if exc.transient:
            raise
        where = context.asset_key.to_user_string()
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            where += f" {keys[0]}" if len(keys) == 1 else f" {keys[0]} … {keys[-1]}"
        raise dg.Failure(description=f"{where}: {exc}", allow_retries=False) from exc


def scan_parquet(paths: Sequence[StoragePath], columns: Sequence[str] | None) -> duckdb.DuckDBPyRelation:
    """Stored Parquet files as one DuckDB relation (only ``columns`` when given): read by column and
    out of core, never a frame."""
    con = shared_connection()
    files = con.read_parquet([duckdb_path(con, p) for p in paths], union_by_name=True)
    return files if columns is None else files.project(", ".join(f'"{c}"' for c in columns))


class KpiData(dg.ConfigurableResource):
    """The data root (raw exports, staging files); the kpi.yaml in force is built into the definitions."""

    data_dir: str  # a local folder or an object-store URL (s3://, gs://, az://)
    staging_dir: str = ""  # default: <data_dir>/staging
    warehouse_url: str = ""  # where staged partitions' commits are recorded (crash recovery)

    @property
    def root(self) -> StoragePath:
        return location(self.data_dir)

    @property
    def staging(self) -> StoragePath:
        return location(self.staging_dir) if self.staging_dir else self.root / "staging"

    @property
    def store(self) -> PartitionStore:
        return PartitionStore(self.staging, self.warehouse_url or None)

    def staged_max(self, asset_key: dg.AssetKey, column: str) -> pd.Timestamp | None:
        """Latest value of a staged Parquet asset's column (e.g. the newest telemetry event)."""
        self.store.recover_all(asset_key.path)
        return parquet_column_max(self.staging, asset_key, column)

    def staged_keys(self, asset_key: dg.AssetKey) -> set[str]:
        """The stored partitions of a Parquet asset, from one listing (after recovering what killed
        writes left): an object store answers in a request or two, not a few per day."""
        self.store.recover_all(asset_key.path)
        return set(stored_partitions(self.staging, asset_key.path))

    def staged_frame(self, asset_key: dg.AssetKey, partition_key: str) -> pd.DataFrame:
        """One stored partition of a Parquet asset."""
        return read_parquet(self.store.ready(asset_key.path, partition_key))

    def staged_rows(self, asset_key: dg.AssetKey, partition_keys: Sequence[str]) -> list[int]:
        """Row counts of the stored partitions among ``partition_keys`` (from Parquet footers)."""
        return [n for n in self.staged_row_counts(asset_key, partition_keys) if n is not None]

    def staged_row_counts(self, asset_key: dg.AssetKey, partition_keys: Sequence[str]) -> list[int | None]:
        """Row count of each of ``partition_keys``, None where it is not stored (Parquet footers)."""
        paths = [self.store.ready(asset_key.path, key) for key in partition_keys]
        return [parquet_metadata(path).num_rows if path.exists() else None for path in paths]

    def staged_among(self, asset_key: dg.AssetKey, column: str, values: pd.Series) -> set[str]:
        """Which of ``values`` occur in ``column`` of any stored partition. DuckDB scans that one
        column out of core and keeps only the matches, so the answer stays the size of ``values``
        however long the history."""
        self.store.recover_all(asset_key.path)
        folder = self.staging.joinpath(*asset_key.path)
        paths = sorted(folder.glob("date=*/data.parquet"))
        wanted = pd.DataFrame({"value": values.dropna().astype(str).unique()})
        if not paths or wanted.empty:
            return set()
        stored = scan_parquet(paths, [column]).project(f'"{column}" AS value')
        found = stored.join(shared_connection().from_df(wanted), "value", how="semi").distinct()
        return set(found.to_arrow_table().column("value").to_pylist())


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse at a SQLAlchemy URL (``KPI_WAREHOUSE_URL``)."""

    url: str

    def get(self) -> Warehouse:
        return Warehouse(self.url)

    def started_before(self, task_ids: pd.Series, day: dt.date) -> set[str]:
        """Which of ``task_ids`` the ``task_starts`` record shows started on a day before ``day``."""
        found = self.get().lookup("task_starts", "task_id", task_ids, before=("date", day.isoformat()))
        return set(found)

    def start_days(self, task_ids: pd.Series, day: dt.date) -> list[str]:
        """The days before ``day`` on which any of ``task_ids`` started (the ``task_starts`` record)."""
        found = self.get().lookup_rows("task_starts", "task_id", task_ids, before=("date", day.isoformat()))
        return sorted(found["date"].unique())

    def seen_before(self, user_ids: pd.Series, day: dt.date) -> set[str]:
        """Which of ``user_ids`` the ``user_days`` record shows active on a day before ``day``."""
        return set(self.get().lookup("user_days", "user_id", user_ids, before=("date", day.isoformat())))


def parquet_path(base_dir: StoragePath, asset_key: dg.AssetKey, partition_key: str | None) -> StoragePath:
    """Where a Parquet asset's partition (or unpartitioned value) is stored."""
    return partition_path(base_dir, asset_key.path, partition_key)


def parquet_column_max(base_dir: StoragePath, asset_key: dg.AssetKey, column: str) -> pd.Timestamp | None:
    """The largest value of ``column`` over every stored partition, from Parquet statistics only."""
    values = []
    for path in base_dir.joinpath(*asset_key.path).glob("date=*/data.parquet"):
        meta = parquet_metadata(path)
        index = meta.schema.to_arrow_schema().get_field_index(column)
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics
            if stats is not None and stats.has_min_max:
                values.append(pd.Timestamp(stats.max))
    return max(values) if values else None


@dataclass(frozen=True)
class StagedDays:
    """The stored daily partitions of a Parquet asset that a run reads, loaded a window at a time.

    A ranged run computes its days one after the other; reading each day's window only when it
    is computed keeps the run's memory at one window, however many days the range has.
    """

    store: PartitionStore
    spec: TableSpec
    asset_path: tuple[str, ...]
    keys: tuple[str, ...]
    # The columns :meth:`frame` reads (all when None): the input's ``AssetIn(metadata={"columns": …})``.
    columns: tuple[str, ...] | None = None
    # Partitions of the current window, kept while the next days' windows still contain them: a run
    # walks its days in order, so a 28-day window reads one new partition a day, not 28.
    _window: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False, compare=False)

    def relation(self, first: dt.date, last: dt.date) -> duckdb.DuckDBPyRelation:
        """The stored partitions from ``first`` to ``last`` as one DuckDB relation over their Parquet
        files (only :attr:`columns`): what a KPI that runs SQL reads, so a big day is scanned by
        column and out of core instead of becoming a frame."""
        keys = [k for k in self.keys if first.isoformat() <= k <= last.isoformat()]
        paths = self._stored(keys)
        if not paths:
            self._missing(keys, first, last)
        return scan_parquet(paths, self.columns)

    def _missing(self, keys: Sequence[str], first: dt.date, last: dt.date) -> NoReturn:
        name = "/".join(self.asset_path)
        raise dg.Failure(
            f"{name} has no stored data for partition(s) {', '.join(keys) or f'{first} … {last}'}; "
            "materialize it first",
            allow_retries=False,
        )

    def frame(self, first: dt.date, last: dt.date) -> pd.DataFrame:
        """The stored partitions from ``first`` to ``last`` (both included), concatenated in date order;
        a run's own days must be stored (a window's edges may not be)."""
        keys = [k for k in self.keys if first.isoformat() <= k <= last.isoformat()]
        for old in [k for k in self._window if k not in keys]:
            del self._window[old]
        for key in keys:
            if key not in self._window:
                path = self.store.ready(self.asset_path, key)
                columns = None if self.columns is None else list(self.columns)
                self._window[key] = read_parquet(path, columns) if path.exists() else None
        frames = [frame for key in keys if (frame := self._window[key]) is not None]
        if not frames:
            self._missing(keys, first, last)
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()

    def days(self, days: Sequence[dt.date]) -> pd.DataFrame:
        """The stored partitions among ``days``; empty, with the table's columns, when none is stored."""
        wanted = {d.isoformat() for d in days}
        existing = self._stored([k for k in self.keys if k in wanted])
        if not existing:
            return empty_frame(self.spec)
        return pd.concat([read_parquet(path) for path in existing], ignore_index=True)

    def every_day(self, columns: Sequence[str]) -> duckdb.DuckDBPyRelation | pd.DataFrame:
        """``columns`` of every stored partition as one DuckDB relation over their Parquet files (a
        KPI over all history scans them out of core); an empty frame when none is stored."""
        paths = self._stored(list(self.keys))
        if not paths:
            return empty_frame(self.spec)[list(columns)]
        files = scan_parquet(paths, None)
        absent = [c for c in columns if c not in files.columns]
        if absent:
            name = "/".join(self.asset_path)
            raise dg.Failure(
                f"{name}: no stored partition has column(s) {', '.join(absent)}: they were written by an "
                f"earlier version; re-materialize {name} over every day (kpi-pipeline materialize --start "
                "<first day> --end <last day>)",
                allow_retries=False,
            )
        return files.project(", ".join(f'"{c}"' for c in columns))

    def _stored(self, keys: Sequence[str]) -> list[StoragePath]:
        paths = [self.store.ready(self.asset_path, k) for k in keys]
        return [path for path in paths if path.exists()]

    def day(self, day: dt.date) -> pd.DataFrame:
        return self.frame(day, day)


@dataclass(frozen=True)
class PendingDays:
    """A ranged Parquet asset's output: each day staged aside (:meth:`PartitionStore.stage`), for the
    IO manager to commit once the asset has computed and checked every day."""

    partitions: tuple[PendingPartition, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as Parquet under ``<data_dir>/staging/<asset>/date=<partition>/data.parquet``
    (``base_dir`` instead of ``<data_dir>/staging`` when given).

    Writes go through :class:`PartitionStore`: locked, written aside and renamed into
    place, so a failed or killed run never leaves a half-written partition. A
    :class:`StagedBatch` (staged telemetry) commits its quarantine rows to the
    warehouse with the file. Loading several partitions (a partition mapping)
    concatenates those that exist.
    """

    data_dir: str = ""
    base_dir: str = ""
    warehouse_url: str = ""

    @property
    def staging(self) -> StoragePath:
        return location(self.base_dir) if self.base_dir else location(self.data_dir) / "staging"

    @property
    def store(self) -> PartitionStore:
        return PartitionStore(self.staging, self.warehouse_url or None)

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> StoragePath:
        return self.store.path(asset_key.path, partition_key)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | StagedBatch | PendingDays) -> None:
        if isinstance(obj, PendingDays):
            self._commit_days(context, obj)
            return
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if len(keys) != 1:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: write one partition per run, got {len(keys)}",
                allow_retries=False,
            )
        batch = obj if isinstance(obj, StagedBatch) else None
        frame = batch.frame if batch is not None else obj
        with permanent_warehouse_errors(context):
            path = self.store.write(context.asset_key.path, keys[0], frame, batch)
        context.add_output_metadata(
            {"dagster/row_count": len(frame), "path": root_path(path, self.staging.parent)}
        )

    def _commit_days(self, context: dg.OutputContext, days: PendingDays) -> None:
        """Commit every staged day of the run's range; each is replaced atomically with its quarantine."""
        expected = set(context.asset_partition_keys)
        got = {p.partition for p in days.partitions}
        if got != expected:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: staged partitions {sorted(map(str, got))} "
                f"are not the run's {sorted(expected)}",
                allow_retries=False,
            )
        with permanent_warehouse_errors(context):
            paths = [self.store.commit(pending) for pending in days.partitions]
        where = paths[0] if len(paths) == 1 else paths[0].parent.parent  # a range: the asset's folder
        context.add_output_metadata(
            {"dagster/row_count": days.rows, "path": root_path(where, self.staging.parent)}
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | StagedDays:
        key = context.asset_key
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if context.dagster_type.typing_type is StagedDays:
            name = key.to_user_string()
            columns = (context.definition_metadata or {}).get("columns")
            return StagedDays(
                self.store,
                PARQUET_TABLES[name],
                tuple(key.path),
                tuple(map(str, keys)),
                None if columns is None else tuple(columns),
            )
        paths = [self.store.ready(key.path, k) for k in keys]
        existing = [p for p in paths if p.exists()]
        name = key.to_user_string()
        if existing:
            return pd.concat([read_parquet(p) for p in existing], ignore_index=True)
        if context.has_partition_key or name not in PARQUET_TABLES:
            partitions = ", ".join(map(str, keys))
            raise dg.Failure(
                f"{name} has no stored data for partition(s) {partitions}; materialize it first",
                allow_retries=False,
            )
        # An unpartitioned table over a source with no data yet (e.g. incidents without telemetry).
        context.log.info(f"{name} has no stored partitions yet; reading it as empty")
        return empty_frame(PARQUET_TABLES[name])


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames in the warehouse table named by the asset's ``table`` metadata.

    A daily partition replaces exactly its dates; an unpartitioned asset
    replaces the whole table; both in one transaction.
    """

    url: str

    @staticmethod
    def _table(metadata: dict, asset_key: dg.AssetKey) -> str:
        name = metadata.get("table")
        return str(name) if name else asset_key.path[-1]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | StagedBatch) -> None:
        """Replace the partition's rows (or the table); a :class:`StagedBatch`'s quarantine rows are
        replaced in the same transaction."""
        name = self._table(context.definition_metadata, context.asset_key)
        frame = obj.frame if isinstance(obj, StagedBatch) else obj
        dates = window_dates(context.asset_partitions_time_window) if context.has_asset_partitions else None
        writes = [Replace(name, frame, date_range=dates)]
        if isinstance(obj, StagedBatch):
            writes.append(Replace("quarantine", obj.quarantine, where=dict(obj.quarantine_where)))
        with permanent_warehouse_errors(context):
            rows = Warehouse(self.url).replace_all(writes)[0]
        context.add_output_metadata({"dagster/row_count": rows, "dagster/table_name": name})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        metadata = upstream.definition_metadata if upstream is not None else {}
        name = self._table(metadata or {}, context.asset_key)
        warehouse = Warehouse(self.url)
        if context.has_asset_partitions and table(name).partition_column:
            return warehouse.read(name, date_range=window_dates(context.asset_partitions_time_window))
        return warehouse.read(name)
