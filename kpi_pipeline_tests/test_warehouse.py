"""Tests for the SQL warehouse: partition replaces, atomicity, typed round trips, schema checks, concurrency.

Every test runs on SQLite (a file under tmp_path) and, when ``KPI_TEST_POSTGRES_URL`` is set, on
PostgreSQL inside a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import kpi_pipeline.warehouse as warehouse_module
from kpi_pipeline.tables import table
from kpi_pipeline.warehouse import Warehouse, WarehouseError, sql_table

POSTGRES_ENV = "KPI_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = "KPI_TEST_POSTGRES_URL is not set; export it to run the PostgreSQL warehouse tests"

D1, D2, D3 = dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 3)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=POSTGRES_SKIP_REASON),
        ),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A warehouse URL of an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    base = sa.make_url(os.environ[POSTGRES_ENV])
    schema = f"kpi_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    try:
        yield scoped
    finally:
        warehouse_module.engine_for(scoped).dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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


def test_existing_table_lacking_a_contract_column_raises(url: str) -> None:
    wh = Warehouse(url)
    spec = table("kpi_engagement_daily")
    legacy = sa.Table(
        spec.name, sa.MetaData(), *[sa.Column(c, sa.Text) for c in spec.column_names if c != "new_users"]
    )
    with wh.engine.begin() as conn:
        legacy.create(conn)
        conn.execute(legacy.insert(), [{"date": "2024-12-31", "dau": "7"}])
    message = r"table kpi_engagement_daily exists but lacks column\(s\) new_users of the current contract"
    with pytest.raises(WarehouseError, match=message):
        wh.ensure("kpi_engagement_daily")
    with pytest.raises(WarehouseError, match=message):
        wh.replace("kpi_engagement_daily", engagement_frame(), date_range=(D1, D1))
    with wh.engine.connect() as conn:
        assert conn.execute(sa.select(legacy.c.date, legacy.c.dau)).all() == [("2024-12-31", "7")]


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
