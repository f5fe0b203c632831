"""The SQL warehouse: typed tables from :mod:`kpi_pipeline.tables`, atomic replaces.

Any SQLAlchemy URL works. Every write deletes the rows it replaces and
inserts the new ones inside one transaction, so a re-run never duplicates a
partition and a failure mid-write leaves the previous rows in place; several
tables can be replaced in one transaction (:meth:`Warehouse.replace_all`).
Writers of one table are serialised: SQLite runs in WAL mode with a busy
timeout and takes the write lock at BEGIN, PostgreSQL takes a per-table
transaction advisory lock, so parallel runs queue instead of failing or
doubling rows. Tables are created from the registry and migrated in place
when the registry gains columns; they are never dropped. See docs/warehouse.md.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from filelock import FileLock
from sqlalchemy.engine import Connection, Engine

from kpi_pipeline.tables import TableSpec, conform, empty_frame, table

_SQL_TYPES: dict[str, Any] = {
    "string": sa.Text,
    "date": lambda: sa.String(10),
    "timestamp": lambda: sa.DateTime(timezone=True),
    "int": sa.BigInteger,
    "float": sa.Float,
    "bool": sa.Boolean,
}
_INSERT_CHUNK = 5_000
_WRITING = "kpi_pipeline.writing"  # Connection.info flag: this transaction writes
_LOOKUP_CHUNK = 10_000  # keys per IN (...) list: well under SQLite's bound-parameter limit
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()

# One lock per table and schema, shared by creation, migration and every replace of the table.
_PG_TABLE_LOCK = sa.text(
    "SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '') || '.' || :name))"
)
# Named locks (:meth:`Warehouse.lock`): two 32-bit keys, a key space of their own beside the tables'.
_LOCK_SPACE = 0x4B50  # "KP"
_PG_NAMED_LOCK = sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))")
LOCK_WAIT = "15min"  # the longest a writer waits for a named lock (a commit holds it for seconds)
# Grantees other than the owner in the ACL of one table of the current schema (0 = PUBLIC).
_PG_FOREIGN_GRANTEES = sa.text(
    "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END AS grantee "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
    "WHERE n.nspname = current_schema() AND c.relname = :name AND a.grantee <> c.relowner "
    "ORDER BY grantee"
)


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the table. ``transient``: the database
    reported a connection or locking problem (SQLAlchemy's OperationalError or InterfaceError)
    that another try may not meet; anything else (a permission, a constraint) will recur."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, eq=False)
class Replace:
    """One write of :meth:`Warehouse.replace_all`: the rows of ``name`` selected by ``where``/``date_range``.

    ``where`` (column → value) and ``date_range`` (inclusive, on the table's partition
    column) select the rows replaced by ``frame``; neither replaces the whole table.
    """

    name: str
    frame: pd.DataFrame
    where: Mapping[str, Any] | None = None
    date_range: tuple[dt.date, dt.date] | None = None


@dataclass(frozen=True)
class _Plan:
    """A validated write: its table, the condition of the rows it deletes, the records it inserts."""

    spec: TableSpec
    target: sa.Table
    condition: sa.ColumnElement[bool]
    records: list[dict[str, Any]]


def _enable_wal(cursor: Any, timeout_seconds: float = 60.0) -> None:
    """Switch the file to WAL, retrying while another connection holds the lock.

    Two processes opening a fresh file at once can both try the switch; SQLite then
    answers "database is locked" at once instead of waiting for the busy timeout.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_pragmas(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below control transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock at BEGIN (they queue instead of failing mid-transaction);
        # readers begin deferred, so under WAL they never wait for a writer.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get(_WRITING) else "BEGIN")


def engine_for(url: str) -> Engine:
    """One engine per URL per process (SQLite files get WAL + busy timeout)."""
    with _engines_lock:
        if url not in _engines:
            sa_url = sa.make_url(url)
            if sa_url.get_backend_name() == "sqlite":
                if sa_url.database and sa_url.database != ":memory:":
                    Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(sa_url, connect_args={"timeout": 60})
                _sqlite_pragmas(engine)
            else:
                engine = sa.create_engine(sa_url, pool_pre_ping=True)
            _engines[url] = engine
        return _engines[url]


def sql_table(spec: TableSpec, metadata: sa.MetaData | None = None) -> sa.Table:
    """The SQLAlchemy Core table of a spec."""
    columns = [sa.Column(name, _SQL_TYPES[kind](), nullable=True) for name, kind, _ in spec.columns]
    indexes = [sa.Index(f"ix_{spec.name}_{column}", column) for column in spec.index]
    return sa.Table(spec.name, metadata or sa.MetaData(), *columns, *indexes)


def database_reason(exc: sa.exc.DBAPIError) -> str:
    """The database's own one-line reason for an error (its first line, without SQL or traceback)."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


@contextmanager
def _naming(table_name: str | Callable[[], str]) -> Iterator[None]:
    """Re-raise database errors as one-line ``WarehouseError`` naming the table (or the current one)."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        name = table_name() if callable(table_name) else table_name
        transient = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
        raise WarehouseError(f"table {name}: {database_reason(exc)}", transient) from exc


def _lock_tables(conn: Connection, names: Sequence[str]) -> None:
    """Serialise writers of each table until the transaction ends, in sorted order (no deadlocks).

    SQLite needs nothing: ``BEGIN IMMEDIATE`` already holds the database's write lock.
    """
    if conn.dialect.name == "postgresql":
        for name in sorted(set(names)):
            conn.execute(_PG_TABLE_LOCK, {"name": name})


def _revoke_foreign_grants(conn: Connection, target: sa.Table) -> None:
    """Revoke what default privileges or PUBLIC gave anyone but the owner on a just-created table."""
    if conn.dialect.name != "postgresql":
        return
    preparer = conn.dialect.identifier_preparer
    quoted_table = preparer.format_table(target)
    for (grantee,) in conn.execute(_PG_FOREIGN_GRANTEES, {"name": target.name}).all():
        role = preparer.quote(grantee) if grantee else "PUBLIC"
        conn.exec_driver_sql(f"REVOKE ALL ON TABLE {quoted_table} FROM {role}")


def _ensure(conn: Connection, spec: TableSpec) -> sa.Table:
    """Create the table when absent (private ones readable by their owner only), else add missing columns.

    Missing columns are added with ``ALTER TABLE … ADD COLUMN`` (NULL for existing rows), so
    rows, grants and ownership are kept; columns the registry does not know are left alone.
    """
    target = sql_table(spec)
    inspector = sa.inspect(conn)
    if not inspector.has_table(spec.name):
        target.create(conn)
        if spec.private:
            _revoke_foreign_grants(conn, target)
        return target
    existing = {c["name"] for c in inspector.get_columns(spec.name)}
    preparer = conn.dialect.identifier_preparer
    for column in target.columns:
        if column.name not in existing:
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(target)} ADD COLUMN {preparer.format_column(column)} "
                f"{column.type.compile(dialect=conn.dialect)}"
            )
    return target


class Warehouse:
    """Typed reads and atomic replaces over one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self._is_sqlite = self.engine.dialect.name == "sqlite"

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the exclusive lock ``name`` for the block, across every process and machine that
        shares this warehouse: the partition store's lock when the data root is in an object store,
        where no lock file can be taken.

        PostgreSQL: a transaction advisory lock (in the two-key space, apart from the table locks)
        in a transaction of its own connection, open for the block: it stays on one server
        connection behind PgBouncer's transaction pooling, and ends with the transaction, or when a
        killed holder's connection drops. A wait longer than :data:`LOCK_WAIT` fails as a transient
        error (the step's retry policy runs it again). SQLite: a lock file beside the database file,
        which only this machine can open anyway.
        """
        if self._is_sqlite:
            database = self.engine.url.database
            if not database or database == ":memory:":
                raise WarehouseError(
                    f"lock {name}: an in-memory SQLite database locks nothing across processes"
                )
            folder = Path(database).with_name(f".{Path(database).name}.locks")
            folder.mkdir(parents=True, exist_ok=True)
            with FileLock(folder / f"{zlib.crc32(name.encode()):08x}.lock"):
                yield
            return
        if self.engine.dialect.name != "postgresql":
            raise WarehouseError(
                f"lock {name}: a {self.engine.dialect.name} warehouse cannot hold the partition store's "
                "locks; use PostgreSQL (or SQLite on one machine) with an object-store data root"
            )
        with self.engine.connect() as conn, conn.begin():
            with _naming(f"(lock {name})"):
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                conn.execute(_PG_NAMED_LOCK, {"space": _LOCK_SPACE, "name": name})
            yield

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction (on SQLite it takes the write lock at BEGIN)."""
        with self.engine.connect() as conn:
            conn.info[_WRITING] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop(_WRITING, None)

    def ensure(self, name: str) -> sa.Table:
        """Create the table when absent, or add the registry's columns it lacks, in one locked transaction."""
        spec = table(name)
        with _naming(name), self._transaction() as conn:
            _lock_tables(conn, [name])
            return _ensure(conn, spec)

    def _records(self, spec: TableSpec, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """The rows as dicts of Python values (None for a missing value), through Arrow: the
        columns convert at C speed, not value by value. SQLite gets naive UTC timestamps."""
        try:
            data = conform(frame, spec)
        except KeyError as exc:
            raise WarehouseError(exc.args[0]) from None
        if self._is_sqlite:
            stamps = [name for name, kind, _ in spec.columns if kind == "timestamp"]
            data = data.assign(**{n: data[n].dt.tz_convert("UTC").dt.tz_localize(None) for n in stamps})
        return pa.Table.from_pandas(data, preserve_index=False).to_pylist()

    def _plan(self, write: Replace) -> _Plan:
        """Check a write and build its rows and delete condition, before any transaction is opened."""
        spec = table(write.name)
        target = sql_table(spec)
        condition: sa.ColumnElement[bool] = sa.true()
        for column, value in (write.where or {}).items():
            if column not in target.c:
                raise WarehouseError(f"table {spec.name} has no column {column} to select rows on")
            condition = sa.and_(condition, target.c[column] == value)
        if write.date_range is not None:
            if spec.partition_column is None:
                raise WarehouseError(f"table {spec.name} has no partition column to replace a date range on")
            column = target.c[spec.partition_column]
            first, last = write.date_range
            condition = sa.and_(condition, column >= first.isoformat(), column <= last.isoformat())
        return _Plan(spec, target, condition, self._records(spec, write.frame))

    def replace_all(
        self, writes: Sequence[Replace], before_commit: Callable[[], object] | None = None
    ) -> list[int]:
        """Apply every write in ONE transaction and return the rows written by each, in order.

        The tables are locked in sorted order, created or migrated, then each write deletes
        its selection and inserts its rows. ``before_commit`` runs last, inside the
        transaction and under the locks; if it (or any write) raises, nothing is changed.
        """
        plans = [self._plan(write) for write in writes]
        names = sorted({plan.spec.name for plan in plans})
        current = [", ".join(names)]
        with _naming(lambda: current[0]), self._transaction() as conn:
            _lock_tables(conn, names)
            for name in names:
                current[0] = name
                _ensure(conn, table(name))
            for plan in plans:
                current[0] = plan.spec.name
                conn.execute(plan.target.delete().where(plan.condition))
                for start in range(0, len(plan.records), _INSERT_CHUNK):
                    conn.execute(plan.target.insert(), plan.records[start : start + _INSERT_CHUNK])
            current[0] = ", ".join(names)
            if before_commit is not None:
                before_commit()
        return [len(plan.records) for plan in plans]

    def replace(
        self,
        name: str,
        frame: pd.DataFrame,
        where: Mapping[str, Any] | None = None,
        date_range: tuple[dt.date, dt.date] | None = None,
    ) -> int:
        """Replace rows of ``name`` in one transaction and return the rows written (see :class:`Replace`)."""
        return self.replace_all([Replace(name, frame, where, date_range)])[0]

    def read(
        self,
        name: str,
        where: Mapping[str, Any] | None = None,
        date_range: tuple[dt.date, dt.date] | None = None,
    ) -> pd.DataFrame:
        """Rows of ``name`` with the spec's pandas dtypes (an empty typed frame when absent)."""
        spec = table(name)
        target = sql_table(spec)
        query = sa.select(*[self._readable(target.c[c], kind) for c, kind, _ in spec.columns])
        for column, value in (where or {}).items():
            query = query.where(target.c[column] == value)
        if date_range is not None and spec.partition_column is not None:
            column = target.c[spec.partition_column]
            query = query.where(column >= date_range[0].isoformat(), column <= date_range[1].isoformat())
        with _naming(name), self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(name):
                return empty_frame(spec)
            # Plain tuples: pandas probes each SQLAlchemy Row for ``_fields`` through a raising
            # attribute lookup, ten times the cost of the read itself (0.42 s for 59k rows).
            rows = list(map(tuple, conn.execute(query).fetchall()))
        return conform(pd.DataFrame.from_records(rows, columns=list(spec.column_names)), spec)

    def _readable(self, column: sa.Column[Any], kind: str) -> sa.ColumnElement[Any]:
        """``column`` as read: SQLite's timestamps as their stored text (naive UTC), which
        :func:`conform` parses a column at a time instead of SQLAlchemy a value at a time."""
        if self._is_sqlite and kind == "timestamp":
            return sa.type_coerce(column, sa.String).label(column.name)
        return column

    def count(self, name: str, where: Mapping[str, Any] | None = None) -> int:
        """Number of rows of ``name`` matching ``where`` (0 when the table is absent)."""
        target = sql_table(table(name))
        query = sa.select(sa.func.count()).select_from(target)
        for column, value in (where or {}).items():
            query = query.where(target.c[column] == value)
        with _naming(name), self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(name):
                return 0
            return int(conn.execute(query).scalar_one())

    def lookup_rows(
        self, name: str, column: str, values: Iterable[Any], before: tuple[str, Any] | None = None
    ) -> pd.DataFrame:
        """The rows of ``name`` whose ``column`` is one of ``values`` (and ``before[0] < before[1]``
        when given), typed: an indexed key lookup, as :meth:`lookup`."""
        spec = table(name)
        wanted = sorted(set(values))
        if not wanted or not sa.inspect(self.engine).has_table(name):
            return empty_frame(spec)
        target = sql_table(spec)
        frames = []
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                query = sa.select(target).where(target.c[column].in_(wanted[start : start + _LOOKUP_CHUNK]))
                if before is not None:
                    query = query.where(target.c[before[0]] < before[1])
                frames.append(pd.DataFrame(conn.execute(query).fetchall(), columns=list(spec.column_names)))
        return conform(pd.concat(frames, ignore_index=True), spec)

    def lookup(
        self, name: str, column: str, values: Iterable[Any], before: tuple[str, Any] | None = None
    ) -> list[Any]:
        """The distinct ``values`` found in ``column`` of ``name`` (rows with ``before[0] < before[1]``
        only, when given): an indexed key lookup whose cost follows the keys asked, not the table."""
        wanted = sorted(set(values))
        if not wanted or not sa.inspect(self.engine).has_table(name):
            return []
        target = sql_table(table(name))
        found: set[Any] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                query = sa.select(target.c[column]).distinct()
                query = query.where(target.c[column].in_(wanted[start : start + _LOOKUP_CHUNK]))
                if before is not None:
                    query = query.where(target.c[before[0]] < before[1])
                found.update(conn.execute(query).scalars())
        return sorted(found)
