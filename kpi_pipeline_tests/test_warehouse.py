"""Tests for the SQL warehouse: replaces, atomicity, typed round trips, migrations, concurrency, grants.

Every test runs on SQLite (a file under tmp_path) and, when ``KPI_TEST_POSTGRES_URL`` is set, on
PostgreSQL inside a fresh schema that is dropped afterwards; the role and grant tests run on PostgreSQL
only, with uniquely named roles that are dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from filelock import FileLock, Timeout

import kpi_pipeline.warehouse as warehouse_module
from kpi_pipeline.tables import table
from kpi_pipeline.warehouse import Replace, Warehouse, WarehouseError, sql_table
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON, postgres_schema_url

D1, D2, D3 = dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 3)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new PostgreSQL schema, for the tests of PostgreSQL roles and grants."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(POSTGRES_SKIP_REASON)
    with postgres_schema_url() as scoped:
        yield scoped


@contextmanager
def admin(url: str) -> Iterator[sa.Connection]:
    """A transaction of the test's own superuser connection (no pool, so no SET ROLE leaks)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def roles() -> Iterator[Callable[[str], str]]:
    """Make LOGIN roles (unique names, USAGE on the test schema); cluster-wide, so dropped afterwards."""
    created: list[str] = []

    def make(url: str) -> str:
        role = f"kpi_test_role_{uuid.uuid4().hex[:12]}"
        with admin(url) as conn:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
            conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
            conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        created.append(role)
        return role

    yield make
    for role in created:
        with admin(os.environ[POSTGRES_ENV]) as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


def select_as(url: str, role: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one query as ``role`` (SET ROLE), as a BI reader would see it."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'SET ROLE "{role}"')
            return [tuple(row) for row in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def completion_frame(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    """kpi_task_completion_daily rows from (date, persona, attempts, completions)."""
    return fill_completion(pd.DataFrame(rows, columns=["date", "persona", "attempts", "completions"]))


def fill_completion(df: pd.DataFrame) -> pd.DataFrame:
    """Complete date/persona/attempts/completions to a kpi_task_completion_daily frame; other counts 0."""
    df = df.assign(
        workflow="access_request", channel="web", completion_rate=df["completions"] / df["attempts"]
    )
    for name, kind, _ in table("kpi_task_completion_daily").columns:
        if name not in df.columns:
            df[name] = 0 if kind == "int" else np.nan
    return df


def completion_values(frame: pd.DataFrame) -> list[list[Any]]:
    """(date, persona, attempts, completions, completion_rate) of the rows, sorted."""
    cols = ["date", "persona", "attempts", "completions", "completion_rate"]
    return frame.sort_values(["date", "persona"])[cols].astype(object).values.tolist()


def quarantine_frame(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    """quarantine rows from (source, partition, line, reason)."""
    df = pd.DataFrame(rows, columns=["source", "partition", "line", "reason"])
    df["file"] = "raw/" + df["source"] + ".csv"
    df["raw"] = "x"
    return df


def quarantine_values(frame: pd.DataFrame) -> list[list[Any]]:
    """(source, partition, line, reason) of the rows, sorted."""
    cols = ["source", "partition", "line", "reason"]
    return frame.sort_values(cols)[cols].astype(object).values.tolist()


def test_date_range_replace_twice_keeps_one_copy_and_other_dates(url: str) -> None:
    wh = Warehouse(url)
    first = completion_frame(
        [("2025-01-01", "admin", 4, 2), ("2025-01-02", "admin", 5, 5), ("2025-01-03", "admin", 2, 1)]
    )
    assert wh.replace("kpi_task_completion_daily", first, date_range=(D1, D3)) == 3
    second = completion_frame([("2025-01-02", "admin", 8, 6), ("2025-01-02", "developer", 4, 1)])
    for _ in range(2):
        assert wh.replace("kpi_task_completion_daily", second, date_range=(D2, D2)) == 2
    # 2025-01-02 now holds only the two new rows (6/8 = 0.75, 1/4 = 0.25); the 1st and 3rd are untouched.
    assert completion_values(wh.read("kpi_task_completion_daily")) == [
        ["2025-01-01", "admin", 4, 2, 0.5],
        ["2025-01-02", "admin", 8, 6, 0.75],
        ["2025-01-02", "developer", 4, 1, 0.25],
        ["2025-01-03", "admin", 2, 1, 0.5],
    ]
    assert wh.count("kpi_task_completion_daily") == 4
    assert completion_values(wh.read("kpi_task_completion_daily", date_range=(D2, D3))) == [
        ["2025-01-02", "admin", 8, 6, 0.75],
        ["2025-01-02", "developer", 4, 1, 0.25],
        ["2025-01-03", "admin", 2, 1, 0.5],
    ]


def test_where_replace_of_quarantine_partition(url: str) -> None:
    wh = Warehouse(url)
    wh.replace(
        "quarantine",
        quarantine_frame(
            [
                ("telemetry", "2025-01-01", 3, "bad_json"),
                ("telemetry", "2025-01-02", 5, "bad_json"),
                ("telemetry", "2025-01-02", 9, "missing_user"),
                ("tickets", "", 2, "bad_timestamp"),
            ]
        ),
    )
    key = {"source": "telemetry", "partition": "2025-01-02"}
    new = quarantine_frame([("telemetry", "2025-01-02", 7, "unknown_event")])
    for _ in range(2):
        assert wh.replace("quarantine", new, where=key) == 1
    assert wh.count("quarantine", where=key) == 1
    assert quarantine_values(wh.read("quarantine")) == [
        ["telemetry", "2025-01-01", 3, "bad_json"],
        ["telemetry", "2025-01-02", 7, "unknown_event"],
        ["tickets", "", 2, "bad_timestamp"],
    ]
    # A clean re-run of the ticket exports (partition '') writes no rows and clears only that partition.
    assert wh.replace("quarantine", quarantine_frame([]), where={"source": "tickets", "partition": ""}) == 0
    assert quarantine_values(wh.read("quarantine")) == [
        ["telemetry", "2025-01-01", 3, "bad_json"],
        ["telemetry", "2025-01-02", 7, "unknown_event"],
    ]
    assert quarantine_values(wh.read("quarantine", where={"source": "tickets"})) == []


def test_unpartitioned_replace_replaces_all_rows(url: str) -> None:
    wh = Warehouse(url)
    cohorts = pd.DataFrame(
        {
            "cohort_week": ["2024-12-30", "2024-12-30", "2025-01-06"],
            "week_number": [0, 1, 0],
            "cohort_users": [10, 10, 4],
            "retained_users": [10, 6, 4],
            "retention_rate": [1.0, 0.6, 1.0],
        }
    )
    assert wh.replace("kpi_retention_weekly", cohorts) == 3
    assert wh.replace("kpi_retention_weekly", cohorts.iloc[[1]]) == 1
    assert wh.read("kpi_retention_weekly").astype(object).values.tolist() == [["2024-12-30", 1, 10, 6, 0.6]]
    with pytest.raises(WarehouseError, match="table kpi_retention_weekly has no partition column"):
        wh.replace("kpi_retention_weekly", cohorts, date_range=(D1, D1))
    assert wh.count("kpi_retention_weekly") == 1


def test_failure_mid_write_keeps_previous_rows(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = Warehouse(url)
    before = completion_frame(
        [("2025-01-01", "admin", 3, 3), ("2025-01-02", "admin", 4, 1), ("2025-01-02", "developer", 2, 2)]
    )
    wh.replace("kpi_task_completion_daily", before, date_range=(D1, D2))
    monkeypatch.setattr(warehouse_module, "_INSERT_CHUNK", 1)
    statements: list[str] = []

    def fail_second_insert(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        """Let the DELETE and the first one-row INSERT chunk run, then fail the second chunk."""
        verb = statement.lstrip().split()[0].upper()
        if verb in ("DELETE", "INSERT"):
            statements.append(verb)
        if statements.count("INSERT") == 2:
            raise RuntimeError("injected failure in the second insert chunk")

    sa.event.listen(wh.engine, "before_cursor_execute", fail_second_insert)
    try:
        after = completion_frame(
            [("2025-01-02", "admin", 9, 9), ("2025-01-02", "guest", 1, 0), ("2025-01-02", "owner", 1, 1)]
        )
        with pytest.raises(RuntimeError, match="injected failure in the second insert chunk"):
            wh.replace("kpi_task_completion_daily", after, date_range=(D2, D2))
    finally:
        sa.event.remove(wh.engine, "before_cursor_execute", fail_second_insert)
    # The delete and one insert did run; the rollback restored both old rows of 2025-01-02.
    assert statements == ["DELETE", "INSERT", "INSERT"]
    assert completion_values(wh.read("kpi_task_completion_daily")) == [
        ["2025-01-01", "admin", 3, 3, 1.0],
        ["2025-01-02", "admin", 4, 1, 0.25],
        ["2025-01-02", "developer", 2, 2, 1.0],
    ]


def test_typed_round_trip(url: str) -> None:
    wh = Warehouse(url)
    tickets = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2"],
            "created_at": pd.Series(
                [pd.Timestamp("2025-03-01 12:00:00+02:00"), pd.NaT], dtype="datetime64[us, UTC+02:00]"
            ),
            "updated_at": ["2025-03-01T12:30:00.123456+02:00", "2025-03-02T02:15:00.000000+02:00"],
            "status": pd.array(["open", pd.NA], dtype="string"),
            "topic": ["billing", "access"],
            "channel": ["email", "chat"],
            "priority": ["high", pd.NA],
            "requester_id": ["u1", "u2"],
            "account_id": ["a1", "a1"],
            "first_reply_at": pd.Series([pd.NaT, pd.NaT], dtype="datetime64[us, UTC]"),
            "solved_at": [pd.NaT, pd.Timestamp("2025-03-02 23:59:59.999999", tz="UTC")],
            "agent_work_minutes": [12.5, np.nan],
            "reopens": pd.array([pd.NA, 2], dtype="Int64"),
            "source_file": ["tickets_1.csv", "tickets_2.csv"],
        }
    )
    assert wh.replace("stg_support_tickets", tickets) == 2
    got = wh.read("stg_support_tickets").sort_values("ticket_id").reset_index(drop=True)
    utc = "datetime64[us, UTC]"
    expected = pd.DataFrame(
        {
            "ticket_id": pd.array(["T1", "T2"], dtype="string"),
            # +02:00 is UTC + 2 h: 12:00 → 10:00, 12:30:00.123456 → 10:30:00.123456, 02:15 → 00:15.
            "created_at": pd.Series([pd.Timestamp("2025-03-01 10:00:00", tz="UTC"), pd.NaT], dtype=utc),
            "updated_at": pd.Series(
                [
                    pd.Timestamp("2025-03-01 10:30:00.123456", tz="UTC"),
                    pd.Timestamp("2025-03-02 00:15:00", tz="UTC"),
                ],
                dtype=utc,
            ),
            "status": pd.array(["open", pd.NA], dtype="string"),
            "topic": pd.array(["billing", "access"], dtype="string"),
            "channel": pd.array(["email", "chat"], dtype="string"),
            "priority": pd.array(["high", pd.NA], dtype="string"),
            "requester_id": pd.array(["u1", "u2"], dtype="string"),
            "account_id": pd.array(["a1", "a1"], dtype="string"),
            "first_reply_at": pd.Series([pd.NaT, pd.NaT], dtype=utc),
            "solved_at": pd.Series([pd.NaT, pd.Timestamp("2025-03-02 23:59:59.999999", tz="UTC")], dtype=utc),
            "agent_work_minutes": [12.5, np.nan],
            "reopens": pd.array([pd.NA, 2], dtype="Int64"),
            "source_file": pd.array(["tickets_1.csv", "tickets_2.csv"], dtype="string"),
        }
    )
    pd.testing.assert_frame_equal(got, expected)

    target = sql_table(table("stg_support_tickets"))
    with wh.engine.connect() as conn:

        def ids(condition: Any) -> list[str]:
            rows = conn.execute(sa.select(target.c.ticket_id).where(condition).order_by(target.c.ticket_id))
            return [r[0] for r in rows]

        # NaN, NA and NaT are stored as SQL NULL, not as 'NaN' or text.
        assert ids(target.c.agent_work_minutes.is_(None)) == ["T2"]
        assert ids(target.c.reopens.is_(None)) == ["T1"]
        assert ids(target.c.status.is_(None)) == ["T2"]
        assert ids(target.c.created_at.is_(None)) == ["T2"]
        assert ids(target.c.first_reply_at.is_(None)) == ["T1", "T2"]
        # The stored instant is the UTC one: 10:00 UTC matches, the +02:00 wall time 12:00 UTC does not.
        ten_utc = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)
        assert ids(target.c.created_at == ten_utc) == ["T1"]
        assert ids(target.c.created_at == ten_utc + dt.timedelta(hours=2)) == []


def test_read_absent_table_returns_empty_typed_frame(url: str) -> None:
    wh = Warehouse(url)
    spec = table("kpi_incidents")
    got = wh.read("kpi_incidents")
    assert len(got) == 0
    assert list(got.columns) == list(spec.column_names)
    assert {c: str(t) for c, t in got.dtypes.items()} == spec.dtypes()
    assert got.dtypes["started_at"] == "datetime64[us, UTC]"
    assert got.dtypes["attempts_during"] == "Int64"
    assert wh.count("kpi_incidents") == 0
    # Reading does not create the table.
    assert not sa.inspect(wh.engine).has_table("kpi_incidents")


def test_lookup_finds_keys_started_before_a_day_through_an_index(url: str) -> None:
    wh = Warehouse(url)
    starts = pd.DataFrame(
        {
            "date": ["2025-03-01", "2025-03-01", "2025-03-03", "2025-03-04"],
            "task_id": ["a", "b", "c", "d"],
            "started_at": pd.to_datetime(
                ["2025-03-01T08:00Z", "2025-03-01T09:00Z", "2025-03-03T08:00Z", "2025-03-04T08:00Z"], utc=True
            ),
        }
    )
    assert wh.lookup("task_starts", "task_id", ["a"]) == []  # absent table: nothing started yet
    wh.replace("task_starts", starts)
    assert wh.lookup("task_starts", "task_id", ["a", "c", "d", "zz"], before=("date", "2025-03-04")) == [
        "a",
        "c",
    ]
    assert wh.lookup("task_starts", "task_id", [], before=("date", "2025-03-04")) == []
    many = [f"k{n}" for n in range(25_000)] + ["b"]  # more keys than one IN (...) list takes
    assert wh.lookup("task_starts", "task_id", many) == ["b"]
    indexes = sa.inspect(wh.engine).get_indexes("task_starts")
    assert [ix["column_names"] for ix in indexes] == [["task_id"]]


def engagement_frame() -> pd.DataFrame:
    """One kpi_engagement_daily row: 3 DAU of 6 MAU."""
    return pd.DataFrame(
        {
            "date": ["2025-01-01"],
            "dau": [3],
            "wau": [5],
            "mau": [6],
            "stickiness": [0.5],
            "active_accounts": [2],
            "new_users": [1],
        }
    )


def test_table_lacking_columns_is_migrated_in_place_keeping_rows_and_grants(
    url: str, roles: Callable[[str], str]
) -> None:
    wh = Warehouse(url)
    full = sql_table(table("kpi_engagement_daily"))
    # The table as an older release made it: without active_accounts and new_users, plus a column of its own.
    legacy = sa.Table(
        full.name,
        sa.MetaData(),
        *[sa.Column(c.name, c.type) for c in full.columns if c.name not in ("active_accounts", "new_users")],
        sa.Column("legacy_note", sa.Text),
    )
    with wh.engine.begin() as conn:
        legacy.create(conn)
        conn.execute(
            legacy.insert(),
            [{"date": "2024-12-31", "dau": 7, "wau": 9, "mau": 14, "stickiness": 0.5, "legacy_note": "v1"}],
        )
    reader = None
    if wh.engine.dialect.name == "postgresql":
        reader = roles(url)
        with admin(url) as conn:
            conn.exec_driver_sql(f'GRANT SELECT ON kpi_engagement_daily TO "{reader}"')

    wh.ensure("kpi_engagement_daily")
    wh.ensure("kpi_engagement_daily")  # idempotent: nothing left to add
    assert wh.replace("kpi_engagement_daily", engagement_frame(), date_range=(D1, D1)) == 1

    columns = [c["name"] for c in sa.inspect(wh.engine).get_columns("kpi_engagement_daily")]
    # Added at the end, in registry order; the unknown legacy_note column is left in place.
    assert columns == [
        "date",
        "dau",
        "wau",
        "mau",
        "stickiness",
        "legacy_note",
        "active_accounts",
        "new_users",
    ]
    got = wh.read("kpi_engagement_daily").sort_values("date").astype(object)
    assert got.where(got.notna(), None).values.tolist() == [
        ["2024-12-31", 7, 9, 14, 0.5, None, None],
        ["2025-01-01", 3, 5, 6, 0.5, 2, 1],
    ]
    with wh.engine.connect() as conn:
        notes = conn.execute(sa.select(legacy.c.date, legacy.c.legacy_note).order_by(legacy.c.date)).all()
    assert [tuple(row) for row in notes] == [("2024-12-31", "v1"), ("2025-01-01", None)]
    if reader is not None:
        # The grant given before the migration still holds: the table was altered, not re-created.
        assert select_as(url, reader, "SELECT date, new_users FROM kpi_engagement_daily ORDER BY date") == [
            ("2024-12-31", None),
            ("2025-01-01", 1),
        ]


def test_replace_on_unknown_column_raises(url: str) -> None:
    wh = Warehouse(url)
    with pytest.raises(WarehouseError, match="table quarantine has no column day to select rows on"):
        wh.replace("quarantine", quarantine_frame([]), where={"day": "2025-01-01"})
    assert not sa.inspect(wh.engine).has_table("quarantine")


def test_rows_lacking_a_column_raise(url: str) -> None:
    wh = Warehouse(url)
    wh.replace("kpi_engagement_daily", engagement_frame(), date_range=(D1, D1))
    incomplete = engagement_frame().drop(columns=["wau", "new_users"])
    with pytest.raises(
        WarehouseError, match=r"rows for table kpi_engagement_daily lack column\(s\) wau, new_users"
    ):
        wh.replace("kpi_engagement_daily", incomplete, date_range=(D1, D1))
    assert wh.read("kpi_engagement_daily").astype(object).values.tolist() == [
        ["2025-01-01", 3, 5, 6, 0.5, 2, 1]
    ]


ROWS_PER_PARTITION = 300
ROUNDS = 4


def partition_rows(day: str) -> pd.DataFrame:
    """ROWS_PER_PARTITION completion rows of one date: personas p0…p299, attempts = index + 1."""
    index = pd.Series(np.arange(ROWS_PER_PARTITION))
    return fill_completion(
        pd.DataFrame(
            {"date": day, "persona": "p" + index.astype(str), "attempts": index + 1, "completions": index}
        )
    )


def replace_partition_repeatedly(url: str, day: str, barrier: Any) -> None:
    """Replace one date partition ROUNDS times in 20-row insert chunks, after all writers are ready."""
    warehouse_module._INSERT_CHUNK = 20
    wh = Warehouse(url)
    rows = partition_rows(day)
    barrier.wait(timeout=30)
    date = dt.date.fromisoformat(day)
    for _ in range(ROUNDS):
        assert wh.replace("kpi_task_completion_daily", rows, date_range=(date, date)) == ROWS_PER_PARTITION


def assert_partitions_complete(url: str, days: list[str]) -> None:
    """Each date holds exactly its ROWS_PER_PARTITION rows once: attempts sum to 1 + … + 300 = 45150."""
    got = Warehouse(url).read("kpi_task_completion_daily")
    assert len(got) == ROWS_PER_PARTITION * len(days)
    per_day = got.groupby("date").agg(rows=("persona", "nunique"), attempts=("attempts", "sum"))
    assert per_day.index.tolist() == days
    assert per_day["rows"].tolist() == [ROWS_PER_PARTITION] * len(days)
    assert per_day["attempts"].tolist() == [45150] * len(days)


def test_concurrent_threads_replace_different_partitions(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warehouse_module, "_INSERT_CHUNK", 20)
    days = ["2025-01-01", "2025-01-02"]
    barrier = threading.Barrier(len(days))
    errors: list[Exception] = []

    def run(day: str) -> None:
        try:
            replace_partition_repeatedly(url, day, barrier)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(day,)) for day in days]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert_partitions_complete(url, days)


def test_concurrent_processes_replace_different_partitions(url: str) -> None:
    context = multiprocessing.get_context("spawn")
    days = ["2025-01-01", "2025-01-02"]
    barrier = context.Barrier(len(days))
    processes = [
        context.Process(target=replace_partition_repeatedly, args=(url, day, barrier)) for day in days
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0]
    assert_partitions_complete(url, days)


def statement_log(engine: sa.Engine, fail_at: str | None = None) -> tuple[list[str], Callable[[], None]]:
    """Record "DELETE <table>", "INSERT <table>" and "COMMIT" as they run; raise at the ``fail_at`` one.

    Returns the log and a function that stops recording.
    """
    log: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb in ("DELETE", "INSERT"):
            log.append(f"{verb} {words[2].strip(chr(34))}")
            if log[-1] == fail_at:
                raise RuntimeError(f"injected failure at {fail_at}")

    def commit(_conn: Any) -> None:
        log.append("COMMIT")

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "commit", commit)

    def stop() -> None:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "commit", commit)

    return log, stop


def seed_two_tables(wh: Warehouse) -> None:
    """2025-01-01 and 2025-01-02 completion rows, and two quarantine partitions."""
    wh.replace(
        "kpi_task_completion_daily",
        completion_frame([("2025-01-01", "admin", 4, 2), ("2025-01-02", "admin", 5, 5)]),
        date_range=(D1, D2),
    )
    wh.replace(
        "quarantine",
        quarantine_frame(
            [("telemetry", "2025-01-01", 3, "bad_json"), ("telemetry", "2025-01-02", 4, "bad_json")]
        ),
    )


def assert_two_tables_seeded(wh: Warehouse) -> None:
    assert completion_values(wh.read("kpi_task_completion_daily")) == [
        ["2025-01-01", "admin", 4, 2, 0.5],
        ["2025-01-02", "admin", 5, 5, 1.0],
    ]
    assert quarantine_values(wh.read("quarantine")) == [
        ["telemetry", "2025-01-01", 3, "bad_json"],
        ["telemetry", "2025-01-02", 4, "bad_json"],
    ]


def two_table_writes() -> list[Replace]:
    """New 2025-01-02 rows for both tables: completion 8/6 and 4/1, quarantine line 7."""
    return [
        Replace(
            "kpi_task_completion_daily",
            completion_frame([("2025-01-02", "admin", 8, 6), ("2025-01-02", "developer", 4, 1)]),
            date_range=(D2, D2),
        ),
        Replace(
            "quarantine",
            quarantine_frame([("telemetry", "2025-01-02", 7, "unknown_event")]),
            where={"source": "telemetry", "partition": "2025-01-02"},
        ),
    ]


def test_replace_all_writes_both_tables_then_runs_before_commit_inside_the_transaction(url: str) -> None:
    wh = Warehouse(url)
    seed_two_tables(wh)
    log, stop = statement_log(wh.engine)
    try:
        assert wh.replace_all(two_table_writes(), before_commit=lambda: log.append("before_commit")) == [2, 1]
    finally:
        stop()
    # One transaction: both writes, then before_commit, then the single commit.
    assert log == [
        "DELETE kpi_task_completion_daily",
        "INSERT kpi_task_completion_daily",
        "DELETE quarantine",
        "INSERT quarantine",
        "before_commit",
        "COMMIT",
    ]
    assert completion_values(wh.read("kpi_task_completion_daily")) == [
        ["2025-01-01", "admin", 4, 2, 0.5],
        ["2025-01-02", "admin", 8, 6, 0.75],
        ["2025-01-02", "developer", 4, 1, 0.25],
    ]
    assert quarantine_values(wh.read("quarantine")) == [
        ["telemetry", "2025-01-01", 3, "bad_json"],
        ["telemetry", "2025-01-02", 7, "unknown_event"],
    ]


def test_replace_all_failure_in_the_second_write_keeps_both_tables(url: str) -> None:
    wh = Warehouse(url)
    seed_two_tables(wh)
    log, stop = statement_log(wh.engine, fail_at="INSERT quarantine")
    try:
        with pytest.raises(RuntimeError, match="injected failure at INSERT quarantine"):
            wh.replace_all(two_table_writes())
    finally:
        stop()
    # The first table was fully rewritten and the second deleted before the failure; all rolled back.
    assert log == [
        "DELETE kpi_task_completion_daily",
        "INSERT kpi_task_completion_daily",
        "DELETE quarantine",
        "INSERT quarantine",
    ]
    assert_two_tables_seeded(wh)


def test_replace_all_failure_in_before_commit_keeps_both_tables(url: str) -> None:
    wh = Warehouse(url)
    wh.replace(
        "kpi_task_completion_daily",
        completion_frame([("2025-01-01", "admin", 4, 2), ("2025-01-02", "admin", 5, 5)]),
        date_range=(D1, D2),
    )

    def rename_fails() -> None:
        raise OSError("rename of the staged file failed")

    with pytest.raises(OSError, match="rename of the staged file failed"):
        wh.replace_all(two_table_writes(), before_commit=rename_fails)
    assert completion_values(wh.read("kpi_task_completion_daily")) == [
        ["2025-01-01", "admin", 4, 2, 0.5],
        ["2025-01-02", "admin", 5, 5, 1.0],
    ]
    # quarantine did not exist before: its creation rolled back with the writes.
    assert not sa.inspect(wh.engine).has_table("quarantine")


RACERS = 3
RACE_ROWS = 400
RACE_ROUNDS = 2


def racer_rows(writer: int) -> pd.DataFrame:
    """Writer k's 2025-01-01 partition: RACE_ROWS rows on channel 'writer<k>', attempts = 1000·k + i + 1."""
    index = pd.Series(np.arange(RACE_ROWS))
    return fill_completion(
        pd.DataFrame(
            {
                "date": "2025-01-01",
                "persona": "p" + index.astype(str),
                "attempts": 1000 * writer + index + 1,
                "completions": index,
            }
        )
    ).assign(channel=f"writer{writer}")


def racer_quarantine(writer: int) -> pd.DataFrame:
    """Writer k's quarantine partition telemetry/2025-01-01: lines 1…5, reason 'writer<k>'."""
    return quarantine_frame([("telemetry", "2025-01-01", line, f"writer{writer}") for line in range(1, 6)])


def widen_race_window(engine: sa.Engine) -> None:
    """Sleep after every lock and every DELETE, so that overlapping transactions really interleave."""

    def pause(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE") or "pg_advisory_xact_lock" in statement:
            time.sleep(0.05)

    sa.event.listen(engine, "after_cursor_execute", pause)


def race_one_partition(url: str, writer: int, barrier: Any) -> None:
    """Replace 2025-01-01 of kpi_task_completion_daily RACE_ROUNDS times, starting with the other writers."""
    warehouse_module._INSERT_CHUNK = 50
    wh = Warehouse(url)
    widen_race_window(wh.engine)
    rows = racer_rows(writer)
    barrier.wait(timeout=60)
    for _ in range(RACE_ROUNDS):
        assert wh.replace("kpi_task_completion_daily", rows, date_range=(D1, D1)) == RACE_ROWS


def race_two_tables(url: str, writer: int, barrier: Any) -> None:
    """Replace both tables in one replace_all, even writers listing them in the opposite order to odd ones."""
    warehouse_module._INSERT_CHUNK = 50
    wh = Warehouse(url)
    widen_race_window(wh.engine)
    writes = [
        Replace("kpi_task_completion_daily", racer_rows(writer), date_range=(D1, D1)),
        Replace(
            "quarantine", racer_quarantine(writer), where={"source": "telemetry", "partition": "2025-01-01"}
        ),
    ]
    if writer % 2:
        writes.reverse()
    barrier.wait(timeout=60)
    for _ in range(RACE_ROUNDS):
        wh.replace_all(writes)


def run_racers(url: str, target: Callable[[str, int, Any], None], racers: int) -> None:
    """Start ``racers`` spawned processes on ``target`` behind one barrier; all must exit cleanly."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(racers)
    processes = [context.Process(target=target, args=(url, k, barrier)) for k in range(racers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * racers


def single_writer_partition(wh: Warehouse) -> int:
    """The writer whose rows 2025-01-01 holds, asserting they are exactly its RACE_ROWS rows, once."""
    got = wh.read("kpi_task_completion_daily", date_range=(D1, D1))
    assert len(got) == RACE_ROWS
    channels = got["channel"].unique().tolist()
    assert len(channels) == 1 and channels[0] in [f"writer{k}" for k in range(RACERS)]
    writer = int(channels[0].removeprefix("writer"))
    assert completion_values(got) == completion_values(racer_rows(writer))
    return writer


def test_concurrent_processes_replacing_one_partition_leave_one_copy(url: str) -> None:
    wh = Warehouse(url)
    wh.replace(
        "kpi_task_completion_daily", completion_frame([("2025-01-02", "admin", 5, 5)]), date_range=(D2, D2)
    )
    wh.replace("kpi_task_completion_daily", racer_rows(0), date_range=(D1, D1))
    run_racers(url, race_one_partition, RACERS)
    # Without serialising the writers, PostgreSQL kept every writer's copy (3 × 400 rows).
    single_writer_partition(wh)
    assert wh.count("kpi_task_completion_daily") == RACE_ROWS + 1
    assert completion_values(wh.read("kpi_task_completion_daily", date_range=(D2, D2))) == [
        ["2025-01-02", "admin", 5, 5, 1.0]
    ]


def test_concurrent_replace_all_in_opposite_orders_neither_deadlocks_nor_mixes_writers(url: str) -> None:
    wh = Warehouse(url)
    run_racers(url, race_two_tables, 2)
    # Both tables hold the rows of one and the same writer: the last transaction wrote both.
    writer = single_writer_partition(wh)
    assert quarantine_values(wh.read("quarantine")) == quarantine_values(racer_quarantine(writer))


def grantees(url: str, name: str) -> list[str]:
    """Roles in the ACL of table ``name`` of the test schema ('PUBLIC' for grantee 0)."""
    query = sa.text(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS g "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
        "WHERE n.nspname = current_schema() AND c.relname = :name ORDER BY g"
    )
    with admin(url) as conn:
        return list(conn.execute(query, {"name": name}).scalars())


def test_private_tables_are_created_without_the_default_reader_grants(
    pg_url: str, roles: Callable[[str], str]
) -> None:
    reader = roles(pg_url)
    with admin(pg_url) as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        # What docs/warehouse.md tells the DBA to run, plus a careless grant to PUBLIC.
        conn.exec_driver_sql(
            f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO "{reader}", PUBLIC'
        )
    wh = Warehouse(pg_url)
    wh.replace("kpi_engagement_daily", engagement_frame(), date_range=(D1, D1))
    wh.replace("quarantine", quarantine_frame([("telemetry", "2025-01-01", 3, "bad_json")]))

    assert select_as(pg_url, reader, "SELECT date, dau FROM kpi_engagement_daily") == [("2025-01-01", 3)]
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table quarantine"):
        select_as(pg_url, reader, "SELECT * FROM quarantine")
    owner = Warehouse(pg_url).engine.url.username
    assert grantees(pg_url, "quarantine") == [owner]
    assert grantees(pg_url, "kpi_engagement_daily") == sorted(["PUBLIC", owner, reader])

    # Re-running keeps the KPI grant: tables are replaced row by row, never dropped and re-created.
    wh.replace("kpi_engagement_daily", engagement_frame().assign(dau=4), date_range=(D1, D1))
    assert select_as(pg_url, reader, "SELECT date, dau FROM kpi_engagement_daily") == [("2025-01-01", 4)]
    # A grant a DBA gives deliberately on a private table, after it exists, is kept too.
    with admin(pg_url) as conn:
        conn.exec_driver_sql(f'GRANT SELECT ON quarantine TO "{reader}"')
    wh.replace("quarantine", quarantine_frame([("telemetry", "2025-01-01", 5, "bad_json")]))
    assert select_as(pg_url, reader, "SELECT line, reason FROM quarantine") == [(5, "bad_json")]


def test_select_only_role_fails_with_one_line_naming_the_table(
    pg_url: str, roles: Callable[[str], str]
) -> None:
    Warehouse(pg_url).replace("kpi_engagement_daily", engagement_frame(), date_range=(D1, D1))
    reader = roles(pg_url)
    with admin(pg_url) as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        conn.exec_driver_sql(f'GRANT SELECT ON kpi_engagement_daily TO "{reader}"')
    reader_url = sa.make_url(pg_url).set(username=reader).render_as_string(hide_password=False)
    as_reader = Warehouse(reader_url)
    try:
        assert as_reader.read("kpi_engagement_daily")["dau"].tolist() == [3]
        with pytest.raises(WarehouseError) as denied:
            as_reader.replace("kpi_engagement_daily", engagement_frame().assign(dau=9), date_range=(D1, D1))
        assert (
            str(denied.value)
            == "table kpi_engagement_daily: permission denied for table kpi_engagement_daily"
        )
        with pytest.raises(WarehouseError) as denied:
            as_reader.replace("quarantine", quarantine_frame([("telemetry", "2025-01-01", 3, "bad_json")]))
        assert str(denied.value) == f"table quarantine: permission denied for schema {schema}"
        with pytest.raises(WarehouseError) as denied:
            as_reader.ensure("quarantine")
        assert str(denied.value) == f"table quarantine: permission denied for schema {schema}"
    finally:
        as_reader.engine.dispose()
    assert Warehouse(pg_url).read("kpi_engagement_daily")["dau"].tolist() == [3]


def test_sqlite_readers_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Under WAL a reader sees the last committed rows at once while a writer holds its lock."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    wh = Warehouse(url)
    wh.replace("kpi_engagement_daily", engagement_frame())
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(30)

    writer = threading.Thread(
        target=lambda: wh.replace_all(
            [Replace("kpi_engagement_daily", engagement_frame())], before_commit=hold
        )
    )
    writer.start()
    try:
        assert entered.wait(30)
        started = time.monotonic()
        assert wh.count("kpi_engagement_daily") == 1
        assert wh.read("kpi_engagement_daily")["dau"].tolist() == [3]
        assert time.monotonic() - started < 5  # a read queued behind the writer would wait 60 s
    finally:
        release.set()
        writer.join(30)


def test_a_named_lock_excludes_other_holders_until_released(url: str) -> None:
    """:meth:`Warehouse.lock` (the partition store's lock over an object store): while one holder
    has it, another process's attempt fails at once; afterwards it succeeds. PostgreSQL: an
    advisory lock of the named-lock key space; SQLite: a lock file beside the database file."""
    warehouse = Warehouse(url)
    name = "kpi_pipeline.partition:s3://bucket/kpi/staging/telemetry_events/date=2025-01-01"

    def free() -> bool:
        if warehouse.engine.dialect.name == "postgresql":
            with admin(url) as conn:
                taken = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(19280, hashtext(:name))"), {"name": name}
                ).scalar()
                if taken:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(19280, hashtext(:name))"), {"name": name})
                return bool(taken)
        [lock_file] = Path(warehouse.engine.url.database).parent.glob(".warehouse.db.locks/*.lock")
        try:
            FileLock(lock_file).acquire(timeout=0).lock.release()
        except Timeout:
            return False
        return True

    with warehouse.lock(name):
        assert not free()
    assert free()
