"""The SQL warehouse: typed tables from :mod:`kpi_pipeline.tables`, atomic replaces.

Any SQLAlchemy URL works. Every write deletes the rows it replaces and
inserts the new ones inside one transaction, so a re-run never duplicates a
partition and a failure mid-write leaves the previous rows in place. SQLite
runs in WAL mode with a busy timeout and takes the write lock at BEGIN, so
parallel runs queue instead of failing.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
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
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the table."""


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
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
    return sa.Table(spec.name, metadata or sa.MetaData(), *columns)


class Warehouse:
    """Typed reads and atomic replaces over one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self._is_sqlite = self.engine.dialect.name == "sqlite"

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def ensure(self, name: str) -> sa.Table:
        """Create the table when absent; fail clearly when an existing one lacks columns."""
        spec = table(name)
        target = sql_table(spec)
        with self._transaction() as conn:
            if conn.dialect.name == "postgresql":
                # Serialise concurrent first creates: two CREATE TABLEs of one name race on pg_type.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
            inspector = sa.inspect(conn)
            if not inspector.has_table(name):
                target.create(conn, checkfirst=True)
            else:
                existing = {c["name"] for c in inspector.get_columns(name)}
                missing = [c for c in spec.column_names if c not in existing]
                if missing:
                    raise WarehouseError(
                        f"table {name} exists but lacks column(s) {', '.join(missing)} of the current "
                        f"contract; drop it (DROP TABLE {name}) and re-materialize to rebuild it"
                    )
        return target

    def _records(self, spec: TableSpec, frame: pd.DataFrame) -> list[dict[str, Any]]:
        try:
            data = conform(frame, spec)
        except KeyError as exc:
            raise WarehouseError(exc.args[0]) from None
        out = data.astype(object).where(data.notna(), None)
        if self._is_sqlite:
            for name, kind, _ in spec.columns:
                if kind == "timestamp":
                    out[name] = data[name].dt.tz_convert("UTC").dt.tz_localize(None).astype(object)
                    out[name] = out[name].where(data[name].notna(), None)
        return out.to_dict("records")

    def replace(
        self,
        name: str,
        frame: pd.DataFrame,
        where: Mapping[str, Any] | None = None,
        date_range: tuple[dt.date, dt.date] | None = None,
    ) -> int:
        """Replace rows of ``name`` in one transaction and return the rows written.

        ``where`` (column → value) and ``date_range`` (inclusive, on the table's
        partition column) select the rows replaced; neither replaces the whole table.
        """
        spec = table(name)
        target = self.ensure(name)
        records = self._records(spec, frame)
        condition = sa.true()
        for column, value in (where or {}).items():
            condition = sa.and_(condition, target.c[column] == value)
        if date_range is not None:
            if spec.partition_column is None:
                raise WarehouseError(f"table {name} has no partition column to replace a date range on")
            column = target.c[spec.partition_column]
            condition = sa.and_(
                condition, column >= date_range[0].isoformat(), column <= date_range[1].isoformat()
            )
        with self._transaction() as conn:
            conn.execute(target.delete().where(condition))
            for start in range(0, len(records), _INSERT_CHUNK):
                conn.execute(target.insert(), records[start : start + _INSERT_CHUNK])
        return len(records)

    def read(
        self,
        name: str,
        where: Mapping[str, Any] | None = None,
        date_range: tuple[dt.date, dt.date] | None = None,
    ) -> pd.DataFrame:
        """Rows of ``name`` with the spec's pandas dtypes (an empty typed frame when absent)."""
        spec = table(name)
        if not sa.inspect(self.engine).has_table(name):
            return empty_frame(spec)
        target = sql_table(spec)
        query = sa.select(*[target.c[c] for c in spec.column_names])
        for column, value in (where or {}).items():
            query = query.where(target.c[column] == value)
        if date_range is not None and spec.partition_column is not None:
            column = target.c[spec.partition_column]
            query = query.where(column >= date_range[0].isoformat(), column <= date_range[1].isoformat())
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=list(spec.column_names))
        return conform(frame, spec)

    def count(self, name: str, where: Mapping[str, Any] | None = None) -> int:
        """Number of rows of ``name`` matching ``where`` (0 when the table is absent)."""
        if not sa.inspect(self.engine).has_table(name):
            return 0
        target = sql_table(table(name))
        query = sa.select(sa.func.count()).select_from(target)
        for column, value in (where or {}).items():
            query = query.where(target.c[column] == value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
