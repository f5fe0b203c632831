"""Range runs recompute every KPI partition that reads a day they re-stage (issue 9, item 14)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from kpi_pipeline.cli import main
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import not_recomputed, plan, reads_ahead
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.tables import TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import START, cli_on, settings_for

CHAIN = (
    "task_attempts",
    "attempt_events",
    "kpi_funnel_daily",
    "kpi_task_completion_daily",
    "kpi_errors_daily",
    "kpi_roi_daily",
    "kpi_step_latency_daily",
    "kpi_survey_daily",
)
RETRIES = "kpi_retry_daily"  # reads the attempts of the next day: it runs after every other day's
WINDOWS = ("user_weeks", "account_weeks", "kpi_engagement_daily", "kpi_feature_adoption_daily")


def day(n: int) -> dt.date:
    return dt.date(2025, 1, n)


def days(first: int, last: int) -> list[dt.date]:
    return [day(n) for n in range(first, last + 1)]


def extras(defs: dg.Definitions, staged: list[dt.date], select: list[str] | None = None) -> dict[str, tuple]:
    """Day → the assets a plan re-staging 01-10 … 01-12 recomputes on it outside the range."""
    out: dict[str, tuple] = {}
    for step in plan(defs, days(10, 12), select, staged=staged):
        if step.extra:
            out[step.partition] = out.get(step.partition, ()) + step.assets
    return dict(sorted(out.items()))


def test_a_range_recomputes_the_staged_days_whose_attempts_read_it_as_the_window_says(tmp_path: Path) -> None:
    """The attempts of D read telemetry D-1 … D+n (n = ceil(windows.completion / 24)): the extra
    days through attempts follow the completion window, through the partition mappings alone."""
    staged = days(1, 31)
    narrow_defs = build_definitions(settings_for(tmp_path / "24h"))
    narrow = extras(narrow_defs, staged)
    # 24 h: 01-09's attempts read 01-10; 01-13's read 01-12.
    assert [d for d, assets in narrow.items() if "task_attempts" in assets] == ["2025-01-09", "2025-01-13"]
    (tmp_path / "48h" / "config").mkdir(parents=True)
    (tmp_path / "48h" / "config" / "kpi.yaml").write_text("windows:\n  completion: 48\n")
    wide_defs = build_definitions(settings_for(tmp_path / "48h"))
    wide = extras(wide_defs, staged)
    # A failed day holds back the KPIs of the days whose attempts read ahead into it.
    assert (reads_ahead(narrow_defs), reads_ahead(wide_defs)) == (1, 2)
    # 48 h: 01-08's attempts read 01-08 … 01-10, so they read 01-10 too.
    assert [d for d, assets in wide.items() if "task_attempts" in assets] == [
        "2025-01-08",
        "2025-01-09",
        "2025-01-13",
    ]
    # The 28-day windows of 01-13 … 01-31 hold the range; user_weeks only the week after each day.
    assert [d for d, assets in narrow.items() if "kpi_feature_adoption_daily" in assets] == [
        d.isoformat() for d in days(13, 31)
    ]
    assert [d for d, assets in narrow.items() if "user_weeks" in assets] == [
        d.isoformat() for d in days(13, 18)
    ]

    # Only staged days are recomputed: 01-20's windows hold the range, 02-09's do not.
    sparse = extras(build_definitions(settings_for(tmp_path / "24h")), [day(9), day(20), dt.date(2025, 2, 9)])
    assert {d: set(assets) for d, assets in sparse.items()} == {
        "2025-01-09": {*CHAIN, RETRIES},
        "2025-01-20": {"kpi_engagement_daily", "kpi_feature_adoption_daily"},
    }
    # The retries of a day are the next day's attempts: 01-08's read 01-09's, which read 01-10.
    assert [d for d, assets in narrow.items() if RETRIES in assets] == [
        "2025-01-08",
        "2025-01-09",
        "2025-01-13",
    ]


def test_plan_recomputes_the_readers_of_a_range_in_date_order(tmp_path: Path) -> None:
    defs = build_definitions(settings_for(tmp_path))
    staged = [*days(1, 15), dt.date(2025, 2, 10)]
    steps = plan(defs, days(10, 12), staged=staged)
    daily = [
        s for s in steps if s.partition is not None and s.assets not in (("telemetry_events",), (RETRIES,))
    ]
    full = daily[1].assets
    assert RETRIES not in full
    assert set(CHAIN) | set(WINDOWS) < set(full)
    assert [(s.partition, s.assets, s.extra) for s in daily] == [
        ("2025-01-09", tuple(a for a in full if a in CHAIN), "extra day: reads the range's telemetry_events"),
        ("2025-01-10", full, ""),
        ("2025-01-11", full, ""),
        ("2025-01-12", full, ""),
        (
            "2025-01-13",
            tuple(a for a in full if a in CHAIN or a in WINDOWS),
            "extra day: reads the range's daily_activity, task_starts, telemetry_events, user_days",
        ),
        (  # its surveys pair with the 13th's attempts, which read the range
            "2025-01-14",
            tuple(a for a in full if a in WINDOWS or a == "kpi_survey_daily"),
            "extra day: reads the range's daily_activity, task_attempts, user_days",
        ),
        (
            "2025-01-15",
            tuple(a for a in full if a in WINDOWS),
            "extra day: reads the range's daily_activity, user_days",
        ),
    ]
    # Then the retries, once every day's attempts exist, and the tables over all days.
    retries = [(s.partition, s.extra) for s in steps if s.assets == (RETRIES,)]
    reads = "extra day: reads the range's task_attempts"
    assert retries == [
        ("2025-01-08", reads),
        ("2025-01-09", reads),
        *((d.isoformat(), "") for d in days(10, 12)),
        ("2025-01-13", reads),
    ]
    assert steps.index(next(s for s in steps if s.assets == (RETRIES,))) > steps.index(daily[-1])
    assert steps[-1].partition is None and "kpi_release_quality" in steps[-1].assets
    assert [s.partition for s in steps[:3]] == ["2025-01-10", "2025-01-11", "2025-01-12"]
    assert steps[-1].partition is None and "kpi_scorecard" in steps[-1].assets
    # 02-10 is past every window of the range: only all-history lookups still read the range there.
    assert not_recomputed(days(10, 12), staged, steps) == [
        "not recomputed: kpi_engagement_daily of 1 later staged day(s) 2025-02-10: their new_users count "
        "users first seen in all history, which this range re-stages; run materialize over them to refresh "
        "them",
        "not recomputed: task_attempts of 3 later staged day(s) 2025-01-14 … 2025-02-10: their attempts look "
        "up in task_starts which task_ids started on earlier days, which this range re-stages; run "
        "materialize over them to refresh them",
    ]

    # A selection without telemetry re-stages nothing, so no reader day is added.
    only_kpis = plan(defs, days(10, 12), ["kpi_roi_daily"], staged=staged)
    assert [s.partition for s in only_kpis] == ["2025-01-10", "2025-01-11", "2025-01-12"]
    assert not_recomputed(days(10, 12), staged, only_kpis) == []


def kpi_tables(root: Path, n_days: int) -> dict[str, pd.DataFrame]:
    """Every KPI table of the warehouse and every day's attempts, sorted on all columns."""
    settings = settings_for(root)
    warehouse = Warehouse(settings.warehouse_url)
    frames = {name: warehouse.read(name) for name in TABLES if name.startswith("kpi_")}
    kpi_data = build_definitions(settings).resources["kpi_data"]
    for d in days(1, n_days):
        frames[f"task_attempts {d}"] = kpi_data.staged_frame(dg.AssetKey("task_attempts"), d.isoformat())
    return {
        name: frame.sort_values(list(frame.columns), ignore_index=True, kind="stable")
        for name, frame in frames.items()
    }


def materialize(root: Path, first: dt.date, last: dt.date, monkeypatch: pytest.MonkeyPatch) -> None:
    cli_on(root, monkeypatch)
    assert main(["materialize", "--start", first.isoformat(), "--end", last.isoformat()]) == 0


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days (Wed 01-01 … Fri 01-03, one week) materialized by one CLI call; not to be written
    to: a test copies it."""
    root = tmp_path_factory.mktemp("whole") / "data"
    generate_dataset(root, days=3, users=40, seed=5, start=START)
    with pytest.MonkeyPatch.context() as monkeypatch:
        materialize(root, day(1), day(3), monkeypatch)
    return root


def raw_copy(root: Path, to: Path) -> Path:
    """The raw files and kpi.yaml of ``root``, nothing staged or stored."""
    for folder in ("raw", "config"):
        shutil.copytree(root / folder, to / folder)
    return to


def test_ranges_in_any_order_equal_one_run_over_all_days(
    whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ranges = raw_copy(whole, tmp_path / "ranges")

    # The middle day first, then the day before it (01-02 reads it: attempts and windows), then
    # the day after it (01-02's attempts read it). Without DAGSTER_HOME each call has a fresh
    # instance: the staged days come from the staging folder.
    materialize(ranges, day(2), day(2), monkeypatch)
    materialize(ranges, day(1), day(1), monkeypatch)
    materialize(ranges, day(3), day(3), monkeypatch)
    out = capsys.readouterr().out
    also = "also recomputing the KPIs of {} staged day(s) outside the range that read its days: {}"
    # 01-01 then reaches 01-02; 01-03 reaches 01-02's attempts, and 01-01's retries read those.
    assert out.splitlines().count(also.format(1, "2025-01-02")) == 1
    assert out.splitlines().count(also.format(2, "2025-01-01, 2025-01-02")) == 1
    assert (
        "2025-01-02 12 assets (extra day: reads the range's daily_activity, task_starts, telemetry_events, "
        "user_days): ok"
    ) in out
    assert "2025-01-02 8 assets (extra day: reads the range's telemetry_events): ok" in out
    assert "2025-01-01 … 2025-01-02 kpi_retry_daily (extra day: reads the range's task_attempts): ok" in out

    expected, got = kpi_tables(whole, 3), kpi_tables(ranges, 3)
    assert sorted(got) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=name)
    assert len(expected["kpi_task_completion_daily"]) > 0 and len(expected["task_attempts 2025-01-02"]) > 0


def test_restaging_a_day_that_loses_a_user_moves_their_week_to_their_next_day(
    whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user_weeks of the later days of a week read the re-staged day: when a fix removes a user from
    the day that opened their week, the CLI recomputes those days, and the cohort tables equal a
    fresh run over the fixed files."""
    fixed, fresh = tmp_path / "fixed", tmp_path / "fresh"
    shutil.copytree(whole, fixed)  # materialized: Wed 01-01 … Fri 01-03, one week
    weeks = Warehouse(settings_for(fixed).warehouse_url).read("user_weeks")
    opened = weeks[weeks["date"].astype(str) == "2025-01-01"]["user_id"]
    later = Warehouse(settings_for(fixed).warehouse_url).read("user_days")
    later = later[later["date"].astype(str) > "2025-01-01"]
    user = sorted(set(opened) & set(later["user_id"]))[0]  # opened the week on 01-01, back later in it
    next_day = later[later["user_id"] == user]["date"].astype(str).min()

    raw = fixed / "raw" / "telemetry" / "date=2025-01-01" / "events.jsonl"
    lines = raw.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if f'"{user}"' not in line]
    assert len(kept) < len(lines)
    raw.write_text("".join(kept), encoding="utf-8")
    raw_copy(fixed, fresh)
    materialize(fixed, day(1), day(1), monkeypatch)
    materialize(fresh, day(1), day(3), monkeypatch)

    got = Warehouse(settings_for(fixed).warehouse_url).read("user_weeks")
    assert got[got["user_id"] == user]["date"].astype(str).tolist() == [next_day]
    expected = Warehouse(settings_for(fresh).warehouse_url).read("user_weeks")
    pd.testing.assert_frame_equal(
        got.sort_values(["date", "user_id"], ignore_index=True),
        expected.sort_values(["date", "user_id"], ignore_index=True),
    )
    for name in ("kpi_retention_weekly", "kpi_time_to_value_weekly"):
        pd.testing.assert_frame_equal(
            kpi_tables(fixed, 3)[name], kpi_tables(fresh, 3)[name], check_exact=True, obj=name
        )
