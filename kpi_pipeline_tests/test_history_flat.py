"""History-flat daily runs (issue 10, item 4): first-ever questions are answered from the small
``user_days`` / ``task_starts`` records, and no daily asset reads more than its 28-day window."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd

from kpi_pipeline.config import load_config
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.checks import merge_checks
from kpi_pipeline.defs.resources import KpiData, ParquetIOManager, StagedDays
from kpi_pipeline.ingest.telemetry import stage_telemetry_partition
from kpi_pipeline.kpis.activity import EVENT_COLUMNS as ACTIVITY_EVENT_COLUMNS
from kpi_pipeline.kpis.activity import account_weeks, daily_activity, user_days, user_weeks
from kpi_pipeline.kpis.attempts import EVENT_COLUMNS as ATTEMPT_EVENT_COLUMNS
from kpi_pipeline.kpis.attempts import build_attempts, task_starts
from kpi_pipeline.kpis.deflection import EVENT_COLUMNS as DEFLECTION_EVENT_COLUMNS
from kpi_pipeline.kpis.deflection import ticket_deflection_daily
from kpi_pipeline.kpis.engagement import engagement_daily, first_seen_on
from kpi_pipeline.kpis.lifecycle import lifecycle_weekly
from kpi_pipeline.kpis.reliability import attempt_days
from kpi_pipeline.kpis.retention import cohort_retention, first_seen, retention_weekly, time_to_value_weekly
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.tables import TELEMETRY_EVENTS
from kpi_pipeline.windows import TRAILING_DAYS
from kpi_pipeline_tests.support import settings_for

D = dt.date(2025, 3, 12)
TELEMETRY = dg.AssetKey("telemetry_events")


def events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """Production telemetry from (occurred_at, user, account, event_type) tuples."""
    frame = pd.DataFrame(rows, columns=["occurred_at", "user_id", "account_id", "event_type"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame["feature"] = pd.Series(["f" if t == "feature_used" else None for t in frame["event_type"]])
    frame["environment"] = "production"
    return frame


def test_user_days_keeps_each_users_earliest_event_of_the_day_across_accounts() -> None:
    activity = daily_activity(
        events(
            [
                ("2025-03-12T09:00:00Z", "u1", "a1", "feature_used"),
                ("2025-03-12T07:30:00Z", "u1", "a2", "task_started"),  # second account, earlier
                ("2025-03-12T23:59:59Z", "u2", "a1", "task_started"),
                ("2025-03-13T00:00:00Z", "u2", "a1", "task_started"),  # next UTC day
            ]
        )
    )
    out = user_days(activity)
    assert out["date"].tolist() == ["2025-03-12", "2025-03-12", "2025-03-13"]
    assert out["user_id"].tolist() == ["u1", "u2", "u2"]
    assert out["first_at"].tolist() == [
        pd.Timestamp("2025-03-12T07:30:00Z"),
        pd.Timestamp("2025-03-12T23:59:59Z"),
        pd.Timestamp("2025-03-13T00:00:00Z"),
    ]


def test_new_users_from_the_record_equal_new_users_from_all_history() -> None:
    history = daily_activity(
        events(
            [
                ("2025-01-02T10:00:00Z", "u1", "a1", "task_started"),  # long before the 28-day window
                ("2025-03-10T10:00:00Z", "u2", "a1", "task_started"),
                ("2025-03-12T10:00:00Z", "u1", "a1", "task_started"),  # back after 2 months: not new
                ("2025-03-12T11:00:00Z", "u2", "a1", "task_started"),  # seen 2 days ago: not new
                ("2025-03-12T12:00:00Z", "u3", "a2", "feature_used"),  # new
                ("2025-03-12T13:00:00Z", "u4", "a2", "task_started"),  # new
            ]
        )
    )
    record = user_days(history)
    seen = set(record.loc[record["date"] < D.isoformat(), "user_id"])
    assert seen == {"u1", "u2"}
    window = history[history["date"] >= (D - dt.timedelta(days=TRAILING_DAYS - 1)).isoformat()]
    rows = first_seen_on(window, D, seen)
    assert sorted(rows["user_id"]) == ["u3", "u4"] and set(rows["first_date"]) == {D.isoformat()}
    from_record = engagement_daily(window, rows, D)
    from_history = engagement_daily(history, first_seen(history), D)
    pd.testing.assert_frame_equal(from_record, from_history)
    assert from_record["new_users"].tolist() == [2]


def test_retention_from_user_days_equals_retention_from_the_rollup() -> None:
    history = daily_activity(
        events(
            [
                ("2025-03-03T10:00:00Z", "u1", "a1", "task_started"),
                ("2025-03-03T12:00:00Z", "u1", "a2", "feature_used"),
                ("2025-03-05T10:00:00Z", "u2", "a1", "task_started"),
                ("2025-03-11T10:00:00Z", "u1", "a1", "feature_used"),
                ("2025-03-18T10:00:00Z", "u3", "a1", "task_started"),
            ]
        )
    )
    last = dt.date(2025, 3, 18)
    expected = retention_weekly(history, last)
    pd.testing.assert_frame_equal(retention_weekly(user_days(history), last), expected)
    week0 = expected[(expected["cohort_week"] == "2025-03-03")]
    assert week0["retained_users"].tolist() == [2, 1, 0]  # u1, u2; u1 in week 1; nobody in week 2


def test_no_daily_asset_reads_more_than_its_window(tmp_path) -> None:
    """A daily run's cost must not grow with history: every daily input spans at most 28 days
    (first-ever questions go through the user_days and task_starts records)."""
    defs = build_definitions(settings_for(tmp_path))
    graph = defs.resolve_asset_graph()
    spans = {}
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        if node.partitions_def is None:
            continue
        assets_def = defs.resolve_assets_def(key)
        for parent in node.parent_keys:
            if graph.get(parent).partitions_def is None or parent == key:
                continue
            mapping = assets_def.get_partition_mapping(parent)
            start = getattr(mapping, "start_offset", 0)
            spans[(key.to_user_string(), parent.to_user_string())] = start
    assert spans[("kpi_engagement_daily", "daily_activity")] == -(TRAILING_DAYS - 1)
    assert spans[("task_attempts", "telemetry_events")] == -1
    assert min(spans.values()) >= -(TRAILING_DAYS - 1), spans


def test_checks_of_a_ranged_run_pass_only_when_every_day_passes() -> None:
    ok = dg.AssetCheckResult(check_name="c", passed=True, description="day 1 fine")
    warn = dg.AssetCheckResult(
        check_name="c", passed=False, severity=dg.AssetCheckSeverity.WARN, description="day 2 drifted"
    )
    error = dg.AssetCheckResult(
        check_name="c", passed=False, severity=dg.AssetCheckSeverity.ERROR, description="day 3 broken"
    )
    assert merge_checks([[ok]]) == [ok]  # one day: its result as it is
    [merged] = merge_checks([[ok], [warn], [error]])
    assert (merged.passed, merged.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert merged.description == "day 2 drifted; day 3 broken"
    [passed] = merge_checks([[ok], [ok]])
    assert passed.passed and passed.description == "all 2 days passed"


def test_incidents_read_only_the_attempt_days_of_their_baselines_and_windows() -> None:
    incidents = pd.DataFrame(
        {
            "incident_id": ["i1", "i2"],
            # i1: baseline from 168 h before 2025-03-10 10:00 (2025-03-03 10:00) to its resolution
            "started_at": pd.to_datetime(["2025-03-10T10:00:00Z", "2025-03-20T23:00:00Z"], utc=True),
            "resolved_at": pd.to_datetime(["2025-03-11T02:00:00Z", None], utc=True),
        }
    )
    until = pd.Timestamp("2025-03-21T05:00:00Z")  # i2 is open: its window ends at the latest event
    days = attempt_days(incidents, until)
    expected = [dt.date(2025, 3, d) for d in range(3, 12)] + [dt.date(2025, 3, d) for d in range(13, 22)]
    assert days == expected
    assert attempt_days(incidents.iloc[:0], until) == []


def test_kpi_inputs_read_only_the_telemetry_columns_they_use(tmp_path) -> None:
    """The staged day is read with only the columns each consumer uses (``AssetIn`` metadata,
    honoured by the IO manager), and each consumer's result is the same from those columns."""
    generate_dataset(tmp_path, days=3, seed=5, start=D, users=40)
    config = load_config(tmp_path / "config" / "kpi.yaml")
    full = pd.concat(
        [
            stage_telemetry_partition(tmp_path, D + dt.timedelta(days=i), config.event_aliases).events
            for i in range(3)
        ],
        ignore_index=True,
    )
    tickets = pd.DataFrame(
        {
            "requester_id": pd.Series(["u0001"], dtype="string"),
            "topic": "billing",
            "created_at": full["occurred_at"][:1],
        }
    )
    consumers = {
        "task_starts": (ATTEMPT_EVENT_COLUMNS, lambda e: task_starts(e, D + dt.timedelta(days=1))),
        "task_attempts": (
            ATTEMPT_EVENT_COLUMNS,
            lambda e: build_attempts(e, tickets, config, D + dt.timedelta(days=1)),
        ),
        "daily_activity": (ACTIVITY_EVENT_COLUMNS, daily_activity),
        "kpi_ticket_deflection_daily": (
            DEFLECTION_EVENT_COLUMNS,
            lambda e: ticket_deflection_daily(e, tickets, config, D + dt.timedelta(days=1)),
        ),
    }
    defs = build_definitions(settings_for(tmp_path))
    for name, (columns, compute) in consumers.items():
        node = defs.resolve_assets_def(name).node_def
        metadata = next(i.metadata for i in node.input_defs if i.name == "telemetry_events")
        assert metadata["columns"] == list(columns), name
        assert set(columns) < set(TELEMETRY_EVENTS.column_names), name
        result = compute(full[list(columns)])
        assert len(result) > 0, name
        pd.testing.assert_frame_equal(result, compute(full), obj=name)

    # The IO manager hands the input's columns to StagedDays, which reads only those.
    manager = ParquetIOManager(base_dir=str(tmp_path / "store"))
    manager.store.write(["telemetry_events"], D.isoformat(), full, None)
    context = dg.build_input_context(
        asset_key="telemetry_events",
        partition_key=D.isoformat(),
        asset_partitions_def=dg.DailyPartitionsDefinition(start_date=D.isoformat()),
        definition_metadata={"columns": list(ACTIVITY_EVENT_COLUMNS)},
        dagster_type=dg.PythonObjectDagsterType(StagedDays),
    )
    days = manager.load_input(context)
    assert isinstance(days, StagedDays)
    assert list(days.day(D).columns) == list(ACTIVITY_EVENT_COLUMNS)


def _user_days(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """user_days rows from (date, user_id, first_at) tuples."""
    frame = pd.DataFrame(rows, columns=["date", "user_id", "first_at"])
    frame["first_at"] = pd.to_datetime(frame["first_at"], utc=True)
    return frame


def test_user_weeks_keeps_the_first_active_day_of_each_users_week() -> None:
    days = _user_days(
        [
            ("2025-03-09", "u3", "2025-03-09T22:00:00Z"),  # Sunday: the week before
            ("2025-03-10", "u1", "2025-03-10T08:00:00Z"),  # Monday 2025-03-10 opens the week
            ("2025-03-12", "u1", "2025-03-12T09:00:00Z"),  # u1 already active on Monday
            ("2025-03-12", "u3", "2025-03-12T07:00:00Z"),  # u3 last seen in the week before
            ("2025-03-12", "u2", "2025-03-12T10:00:00Z"),
            ("2025-03-13", "u2", "2025-03-13T10:00:00Z"),
            ("2025-03-17", "u2", "2025-03-17T00:00:00Z"),  # Monday of the next week
        ]
    )
    wednesday = user_weeks(days, dt.date(2025, 3, 12))
    assert wednesday["date"].tolist() == ["2025-03-12", "2025-03-12"]
    assert wednesday["user_id"].tolist() == ["u2", "u3"]
    assert wednesday["first_at"].tolist() == [
        pd.Timestamp("2025-03-12T10:00:00Z"),
        pd.Timestamp("2025-03-12T07:00:00Z"),
    ]
    assert user_weeks(days, dt.date(2025, 3, 10))["user_id"].tolist() == ["u1"]
    assert user_weeks(days, dt.date(2025, 3, 13)).empty  # u2 opened the week on Wednesday
    assert user_weeks(days, dt.date(2025, 3, 17))["user_id"].tolist() == ["u2"]  # a new week
    assert user_weeks(days, dt.date(2025, 3, 9))["user_id"].tolist() == ["u3"]


def test_cohort_tables_from_user_weeks_equal_them_from_user_days() -> None:
    """Retention and time to value read user_weeks (a row per user and week); they must equal the
    tables computed from every active day, over several weeks, accounts and a partial last week."""
    rows = []
    for day in range(40):
        date = dt.date(2025, 2, 24) + dt.timedelta(days=day)
        for user in range(12):
            if (user * 7 + day * 3) % (user % 4 + 2) == 0:
                hour = (user + day) % 24
                rows.append((f"{date}T{hour:02d}:15:00Z", f"u{user}", f"a{user % 3}", "task_started"))
                rows.append((f"{date}T{hour:02d}:40:00Z", f"u{user}", f"a{user % 2}", "feature_used"))
    record = user_days(daily_activity(events(rows)))
    dates = sorted(set(record["date"].astype(str)))
    weeks = pd.concat([user_weeks(record, dt.date.fromisoformat(d)) for d in dates], ignore_index=True)
    assert len(weeks) < len(record)
    assert not weeks.duplicated(["user_id", "date"]).any()
    last = dt.date(2025, 4, 1)
    pd.testing.assert_frame_equal(retention_weekly(weeks, last), retention_weekly(record, last))
    attempts = pd.DataFrame(
        {
            "user_id": record["user_id"],
            "started_at": record["first_at"] + pd.Timedelta(minutes=5),
            "completed": (record.index % 3 == 0),
            "completed_at": record["first_at"] + pd.Timedelta(hours=2),
        }
    )
    config = load_config(None)
    pd.testing.assert_frame_equal(
        time_to_value_weekly(weeks, attempts, config), time_to_value_weekly(record, attempts, config)
    )


def test_growth_tables_from_the_weekly_records_equal_them_from_every_active_day() -> None:
    """kpi_lifecycle_weekly and kpi_cohort_retention read user_weeks and account_weeks (a row per
    unit and active week, each built from its own week's days only); they must equal the tables
    computed from every active (user, day) and (account, day), with shared accounts and users in
    several accounts, over weeks that end mid-week."""
    rows = []
    for day in range(45):
        date = dt.date(2025, 2, 26) + dt.timedelta(days=day)
        for user in range(14):
            if (user * 5 + day * 2) % (user % 5 + 2) == 0 and (day // 7 + user) % 4:
                rows.append(
                    (f"{date}T{(user + day) % 24:02d}:10:00Z", f"u{user}", f"a{user % 4}", "task_started")
                )
                rows.append(
                    (f"{date}T{(user + day) % 24:02d}:50:00Z", f"u{user}", f"a{user % 3}", "feature_used")
                )
    activity = daily_activity(events(rows))
    record = user_days(activity)
    dates = [dt.date.fromisoformat(d) for d in sorted(set(record["date"].astype(str)))]
    weeks = pd.concat([user_weeks(record, d) for d in dates], ignore_index=True)
    accounts = pd.concat([account_weeks(activity, d) for d in dates], ignore_index=True)
    every_day = activity[["date", "account_id"]].drop_duplicates()
    assert len(accounts) < len(every_day) and len(weeks) < len(record)
    first, last = dt.date(2025, 2, 26), dt.date(2025, 4, 9)
    pd.testing.assert_frame_equal(
        cohort_retention(weeks, accounts, last), cohort_retention(record, every_day, last)
    )
    pd.testing.assert_frame_equal(lifecycle_weekly(weeks, first, last), lifecycle_weekly(record, first, last))
    statuses = lifecycle_weekly(weeks, first, last).groupby("status")["users"].sum()
    assert (statuses > 0).all()  # every status occurs, so the comparison covers each


def test_requesters_are_looked_up_among_staged_users_not_read_whole(tmp_path) -> None:
    """The requesters check asks which ticket requesters telemetry knows, across every staged day
    (u2 only on the second), and gets back only those: never every staged user id."""
    folder = tmp_path / "staging" / "telemetry_events"
    for day, users in (("2025-03-11", ["u1", "u1", None]), ("2025-03-12", ["u2", "u9"])):
        (folder / f"date={day}").mkdir(parents=True)
        pd.DataFrame({"user_id": pd.Series(users, dtype="string")}).to_parquet(
            folder / f"date={day}" / "data.parquet"
        )
    data = KpiData(data_dir=str(tmp_path), staging_dir=str(tmp_path / "staging"))
    requesters = pd.Series(["u1", "u2", "u3", None, "u1"], dtype="string")
    assert data.staged_among(TELEMETRY, "user_id", requesters) == {"u1", "u2"}
    assert data.staged_among(TELEMETRY, "user_id", pd.Series([None], dtype="string")) == set()
    assert (
        KpiData(data_dir=str(tmp_path), staging_dir=str(tmp_path / "empty")).staged_among(
            TELEMETRY, "user_id", requesters
        )
        == set()
    )
