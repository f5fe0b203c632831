"""Each preset on the real public exports in ``../shared/realdata`` (read in place), checked
against figures computed here straight from the raw files with the csv and json modules."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import gzip
import io
import json
import statistics
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kpi_pipeline.cli import main
from kpi_pipeline.config import KpiConfig, Reliability, parse_config
from kpi_pipeline.contract import OUTSIDE_PARTITION, TELEMETRY_FIELDS
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.rows import StagedExports, combine
from kpi_pipeline.ingest.telemetry import (
    StagedTelemetry,
    row_outcomes,
    stage_telemetry_partition,
    staged_events,
)
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.kpis.activity import account_weeks, daily_activity, user_days, user_weeks
from kpi_pipeline.kpis.lifecycle import lifecycle_weekly
from kpi_pipeline.kpis.retention import cohort_retention, retention_weekly
from kpi_pipeline.kpis.support import support_daily, ticket_times
from kpi_pipeline.kpis.uptime import uptime_as_of, uptime_monthly
from kpi_pipeline.sources.files import read_mapped_file

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SERVICENOW = REALDATA / "uci_incident_event_log_servicenow.zip"
STATUSPAGE = REALDATA / "github_status" / "incidents.jsonl.gz"
CDNOW = REALDATA / "cdnow" / "CDNOW_master.txt.gz"

pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(),
    reason=f"the real sample exports are not here ({REALDATA}: ../shared/realdata beside the repository)",
)

# The ServiceNow states and priorities as the preset maps them, written out again here.
STATES = {
    "New": "new",
    "Active": "open",
    "Awaiting User Info": "pending",
    "Awaiting Problem": "pending",
    "Awaiting Vendor": "pending",
    "Awaiting Evidence": "pending",
    "Resolved": "solved",
    "Closed": "closed",
}
SEVERITIES = {"1 - Critical": "SEV1", "2 - High": "SEV2", "3 - Moderate": "SEV3", "4 - Low": "SEV4"}
PRIORITIES = {"1 - Critical": "urgent", "2 - High": "high", "3 - Moderate": "normal", "4 - Low": "low"}
CHANNELS = {"Phone": "phone", "Email": "email"}  # the log's only two contact types


def utc(text: str, fmt: str = "%d/%m/%Y %H:%M") -> pd.Timestamp | None:
    """A ServiceNow time (day first; '?' = none) as a UTC timestamp."""
    return None if text == "?" else pd.Timestamp(dt.datetime.strptime(text, fmt), tz="UTC")


@pytest.fixture(scope="module")
def servicenow_rows() -> list[dict[str, str]]:
    with zipfile.ZipFile(SERVICENOW) as archive, archive.open("incident_event_log.csv") as handle:
        return list(csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")))


def latest_valid(rows: list[dict[str, str]], valid: Any) -> dict[str, dict[str, str]]:
    """Per incident number, the valid row with the highest sys_mod_count (a tie: the later row)."""
    latest: dict[str, dict[str, str]] = {}
    for row in rows:
        if not valid(row):
            continue
        best = latest.get(row["number"])
        if best is None or int(row["sys_mod_count"]) >= int(best["sys_mod_count"]):
            latest[row["number"]] = row
    return latest


def mapping_for(source: str, preset: str, path: Path) -> Any:
    return getattr(parse_config({"sources": {source: {"preset": preset, "path": str(path)}}}).sources, source)


def ticket_reason(row: dict[str, str]) -> str | None:
    """Why the tickets preset quarantines a row of the log (None: it does not)."""
    if row["category"] == "?":
        return "missing_field:topic"
    return None if row["incident_state"] in STATES else "bad_value:status"


@pytest.fixture(scope="module")
def servicenow_tickets(tmp_path_factory: pytest.TempPathFactory) -> StagedExports:
    """The log staged as tickets with the servicenow_incident_log preset (once: it takes seconds)."""
    root = tmp_path_factory.mktemp("servicenow")
    return stage_tickets(root, mapping_for("tickets", "servicenow_incident_log", SERVICENOW))


def test_servicenow_log_as_tickets(
    servicenow_tickets: StagedExports, servicenow_rows: list[dict[str, str]]
) -> None:
    staged = servicenow_tickets
    latest = latest_valid(servicenow_rows, lambda row: ticket_reason(row) is None)
    assert len(servicenow_rows) == 119_998
    assert len({row["number"] for row in servicenow_rows}) == 20_769
    assert len(latest) == 20_762  # 7 incidents have no version with a category

    records = staged.records.set_index("ticket_id").sort_index()
    assert list(records.index) == sorted(latest)  # one ticket per incident number
    expected = pd.DataFrame(
        {
            "status": [STATES[latest[n]["incident_state"]] for n in records.index],
            "topic": [latest[n]["category"] for n in records.index],
            "created_at": [utc(latest[n]["opened_at"]) for n in records.index],
            "updated_at": [utc(latest[n]["sys_updated_at"]) for n in records.index],
            "solved_at": [utc(latest[n]["resolved_at"]) for n in records.index],
            "requester_id": [
                None if latest[n]["caller_id"] == "?" else latest[n]["caller_id"] for n in records.index
            ],
            "reopens": [int(latest[n]["reopen_count"]) for n in records.index],
        },
        index=records.index,
    )
    for column in expected.columns:
        assert records[column].astype(object).where(records[column].notna(), None).tolist() == (
            expected[column].astype(object).where(expected[column].notna(), None).tolist()
        ), column

    # day first: INC0000045 was closed on 5 March 2016 (not 3 May), its latest update (mod 4)
    first = records.loc["INC0000045"]
    assert (first["status"], first["updated_at"]) == ("closed", pd.Timestamp("2016-03-05 12:00", tz="UTC"))

    counted = collections.Counter(r for r in map(ticket_reason, servicenow_rows) if r is not None)
    assert staged.report.reasons == dict(counted) == {"missing_field:topic": 64, "bad_value:status": 2}
    assert staged.report.superseded_versions == 119_998 - 20_762 - 66
    assert staged.report.reconciled
    assert set(staged.quarantine["file"]) == {SERVICENOW.as_posix()}  # outside the data root: absolute
    minus_100 = staged.quarantine[staged.quarantine["reason"] == "bad_value:status"]
    lines = minus_100["line"].tolist()
    # line n of the file is row n - 1 of the csv reader (the header is line 1); the raw text is that line
    assert [servicenow_rows[n - 2]["incident_state"] for n in lines] == ["-100", "-100"]
    assert all(
        raw.startswith(servicenow_rows[n - 2]["number"] + ",-100,")
        for n, raw in zip(lines, minus_100["raw"], strict=True)
    )


# Quoted verbatim by docs/sources.md (presets on the real sample exports, servicenow_incident_log).
SERVICENOW_RESOLUTION = """\
| priority | tickets | solved | solved share | median resolution |
|---|---|---|---|---|
| urgent | 220 | 220 | 100.0 % | 78.2 h (4,690 min) |
| high | 336 | 336 | 100.0 % | 48.8 h (2,925.5 min) |
| normal | 19,550 | 18,222 | 93.2 % | 24.3 h (1,458 min) |
| low | 656 | 566 | 86.3 % | 22.9 h (1,371 min) |
| all | 20,762 | 19,344 | 93.2 % | 24.6 h (1,477 min) |
"""


def resolution_table(figures: dict[str, tuple[int, int, float]]) -> str:
    """Markdown rows of (tickets, solved, median resolution minutes) per priority, as docs/sources.md
    prints them."""
    lines = ["| priority | tickets | solved | solved share | median resolution |", "|---|---|---|---|---|"]
    for name, (tickets, solved, minutes) in figures.items():
        lines.append(
            f"| {name} | {tickets:,} | {solved:,} | {solved / tickets:.1%} | "
            f"{minutes / 60:.1f} h ({minutes:,g} min) |".replace("%", " %")
        )
    return "\n".join(lines) + "\n"


def test_servicenow_median_resolution_by_priority(
    servicenow_tickets: StagedExports, servicenow_rows: list[dict[str, str]]
) -> None:
    """kpis-v2.md kpi_support_daily's median_resolution_minutes, taken over the whole log by
    priority: the pipeline's per-ticket times (ticket_times, the rows support_daily aggregates per
    day) grouped by priority, against the raw file read with the csv module (the latest valid
    version of each incident, day-first times, calendar minutes opened_at → resolved_at)."""
    config = KpiConfig()
    assert config.support.business_hours is None  # the default: calendar minutes
    tickets = servicenow_tickets.records
    times = ticket_times(tickets, config)
    assert len(times) == len(tickets) == 20_762

    def figures(frame: pd.DataFrame) -> tuple[int, int, float]:
        return len(frame), int(frame["solved"].sum()), float(frame["resolution_minutes"].median())

    mine = {p: figures(times[times["priority"] == p]) for p in ("urgent", "high", "normal", "low")}
    mine["all"] = figures(times)
    assert times["resolution_minutes"].notna().tolist() == times["solved"].tolist()

    def stamp(text: str) -> dt.datetime:
        return dt.datetime.strptime(text, "%d/%m/%Y %H:%M")  # day first

    latest = latest_valid(servicenow_rows, lambda row: ticket_reason(row) is None)
    minutes: dict[str, list[float]] = collections.defaultdict(list)
    count: collections.Counter[str] = collections.Counter()
    for row in latest.values():
        priority = PRIORITIES[row["priority"]]
        count[priority] += 1
        if row["resolved_at"] != "?":
            elapsed = (stamp(row["resolved_at"]) - stamp(row["opened_at"])).total_seconds() / 60
            assert elapsed >= 0  # no solve before its opening: nothing is clipped to 0
            minutes[priority].append(elapsed)
    expected = {p: (count[p], len(minutes[p]), statistics.median(minutes[p])) for p in mine if p != "all"}
    every = [m for values in minutes.values() for m in values]
    expected["all"] = (len(latest), len(every), statistics.median(every))
    assert mine == expected
    assert resolution_table(mine) == SERVICENOW_RESOLUTION

    # support_daily's rows (date, channel, priority) hold the same tickets: each row's counts and
    # median against the raw file grouped the same way (UTC opened date, contact type, priority)
    daily = support_daily(tickets, config)
    per_priority = daily.groupby("priority")[["tickets", "solved"]].sum()
    assert {p: tuple(map(int, per_priority.loc[p])) for p in per_priority.index} == {
        p: (n, s) for p, (n, s, _) in expected.items() if p != "all"
    }
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = collections.defaultdict(list)
    for row in latest.values():
        key = (
            stamp(row["opened_at"]).date().isoformat(),
            CHANNELS[row["contact_type"]],
            PRIORITIES[row["priority"]],
        )
        groups[key].append(row)
    raw_daily = {}
    for key, rows in groups.items():
        done = [
            (stamp(r["resolved_at"]) - stamp(r["opened_at"])).total_seconds() / 60
            for r in rows
            if r["resolved_at"] != "?"
        ]
        raw_daily[key] = (len(rows), len(done), statistics.median(done) if done else None)
    assert {
        (str(r.date), r.channel, r.priority): (
            r.tickets,
            r.solved,
            None if pd.isna(r.median_resolution_minutes) else r.median_resolution_minutes,
        )
        for r in daily.itertuples()
    } == raw_daily
    assert len(daily) == len(raw_daily)


def test_servicenow_log_as_incidents(tmp_path: Path, servicenow_rows: list[dict[str, str]]) -> None:
    staged = stage_incidents(tmp_path, mapping_for("incidents", "servicenow_incident_log", SERVICENOW))
    latest = latest_valid(servicenow_rows, lambda row: row["category"] != "?")
    records = staged.records.set_index("incident_id").sort_index()
    assert list(records.index) == sorted(latest)
    assert records["severity"].tolist() == [SEVERITIES[latest[n]["priority"]] for n in records.index]
    assert records["service"].tolist() == [latest[n]["category"] for n in records.index]
    assert records["started_at"].tolist() == [utc(latest[n]["opened_at"]) for n in records.index]
    assert records["detected_at"].tolist() == records["started_at"].tolist()  # not in the log: started_at
    severity_counts = collections.Counter(SEVERITIES[row["priority"]] for row in latest.values())
    assert records["severity"].value_counts().to_dict() == dict(severity_counts)
    assert staged.report.reasons == {"missing_field:service": 64}
    assert staged.report.reconciled


def test_status_page_history(tmp_path: Path) -> None:
    staged = stage_incidents(tmp_path, mapping_for("incidents", "statuspage_incidents", STATUSPAGE))
    with gzip.open(STATUSPAGE, "rt", encoding="utf-8") as handle:
        history = [json.loads(line) for line in handle if line.strip()]
    kept = {item["id"]: item for item in history if item["impact"] != "maintenance"}
    impact_to_severity = {"critical": "SEV1", "major": "SEV2", "minor": "SEV3", "none": "SEV4"}
    assert (len(history), len(kept)) == (819, 801)

    records = staged.records.set_index("incident_id").sort_index()
    assert list(records.index) == sorted(kept)  # one incident per id, maintenance left out
    assert records["severity"].tolist() == [impact_to_severity[kept[i]["impact"]] for i in records.index]
    assert records["severity"].value_counts().to_dict() == {"SEV3": 604, "SEV2": 138, "SEV4": 31, "SEV1": 28}
    assert records["started_at"].tolist() == [pd.Timestamp(kept[i]["started_at"]) for i in records.index]
    assert records["resolved_at"].tolist() == [pd.Timestamp(kept[i]["resolved_at"]) for i in records.index]
    components = {i: kept[i].get("components") or [] for i in records.index}
    assert records["service"].tolist() == [";".join(components[i]) or "unspecified" for i in records.index]
    assert records["affected_workflows"].tolist() == [
        ";".join(sorted(set(components[i]))) for i in records.index
    ]
    assert staged.report.filtered_rows == 18
    assert (staged.report.raw_rows, staged.report.quarantined_rows) == (801, 0)
    assert staged.report.reconciled


@pytest.fixture(scope="module")
def cdnow_import(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the CDNOW log imported through the CLI with the purchases preset."""
    root = tmp_path_factory.mktemp("cdnow")
    config = root / "config" / "kpi.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("sources:\n  telemetry:\n    preset: purchases\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPI_DATA_DIR", str(root))
        patch.delenv("KPI_CONFIG", raising=False)
        assert main(["import", "--source", "telemetry", str(CDNOW)]) == 0
    return root


@pytest.fixture(scope="module")
def cdnow_purchases() -> list[tuple[str, dt.date]]:
    """(customer, purchase date) of every row of the raw log."""
    with gzip.open(CDNOW, "rt", encoding="utf-8") as handle:
        rows = [line.split() for line in handle if line.strip()]
    assert rows[0] == ["customer_id", "date", "number_of_cds", "dollar_value"]
    return [(row[0], dt.datetime.strptime(row[1], "%Y%m%d").date()) for row in rows[1:]]


def test_cdnow_import_splits_the_log_into_daily_folders(
    cdnow_import: Path, cdnow_purchases: list[tuple[str, dt.date]]
) -> None:
    per_day = collections.Counter(day for _, day in cdnow_purchases)
    folders = sorted((cdnow_import / "raw" / "telemetry").glob("date=*"))
    assert len(cdnow_purchases) == 69_659 and len(folders) == len(per_day) == 546
    for folder in folders:
        day = dt.date.fromisoformat(folder.name.removeprefix("date="))
        assert [f.name for f in folder.iterdir()] == ["CDNOW_master.txt"]
        text = (folder / "CDNOW_master.txt").read_text(encoding="utf-8").splitlines()
        assert text[0].split() == ["customer_id", "date", "number_of_cds", "dollar_value"]
        assert len(text) - 1 == per_day[day], folder.name


# Days staged through the real path besides the first quarter of 1997: one late in 1997, the last.
LATER_DAYS = (dt.date(1997, 12, 1), dt.date(1998, 6, 30))


@pytest.fixture(scope="module")
def cdnow_staged_days(
    cdnow_import: Path, cdnow_purchases: list[tuple[str, dt.date]]
) -> dict[dt.date, StagedTelemetry]:
    """The imported day folders of the first quarter of 1997 and of LATER_DAYS, each staged by
    stage_telemetry_partition with the purchases preset (the real path, ~70 ms a day)."""
    mapping = parse_config({"sources": {"telemetry": "purchases"}}).sources.telemetry
    days = sorted({day for _, day in cdnow_purchases if day < dt.date(1997, 4, 1)} | set(LATER_DAYS))
    return {day: stage_telemetry_partition(cdnow_import, day, (), mapping) for day in days}


def test_cdnow_purchases_give_weekly_cohorts_of_the_right_size(
    cdnow_staged_days: dict[dt.date, StagedTelemetry], cdnow_purchases: list[tuple[str, dt.date]]
) -> None:
    """Every CDNOW customer made a first purchase in the first quarter of 1997 (the data set's
    design), so staging those 90 days gives every cohort (46 % of the rows, at a sixth of the cost
    of all 546 days); the later days hold rows of the same shape, each counted into its day folder
    by the import test."""
    quarter = [(c, d) for c, d in cdnow_purchases if d < dt.date(1997, 4, 1)]
    days = sorted({day for _, day in quarter})
    staged = [cdnow_staged_days[day] for day in days]
    assert all(s.report.quarantined_rows == 0 and s.report.reconciled for s in staged)
    events = pd.concat([s.events for s in staged], ignore_index=True)
    assert len(days) == 90 and len(events) == len(quarter) == 31_798
    assert set(events["event_type"]) == {"feature_used"} and set(events["feature"]) == {"purchase"}
    assert events["event_id"].is_unique

    retention = retention_weekly(daily_activity(events), days[-1])
    sizes = retention[retention["week_number"] == 0].set_index("cohort_week")["cohort_users"].to_dict()

    first_purchase: dict[str, dt.date] = {}
    for customer, day in cdnow_purchases:
        first_purchase[customer] = min(day, first_purchase.get(customer, day))
    monday = {c: (d - dt.timedelta(days=d.weekday())).isoformat() for c, d in first_purchase.items()}
    assert sizes == dict(collections.Counter(monday.values()))
    assert sum(sizes.values()) == 23_570

    # the first cohort (week of Monday 1996-12-30) coming back in week 1 (1997-01-06 … 01-12)
    cohort = {c for c, m in monday.items() if m == "1996-12-30"}
    back = {c for c, d in cdnow_purchases if c in cohort and dt.date(1997, 1, 6) <= d <= dt.date(1997, 1, 12)}
    week_one = retention[(retention["cohort_week"] == "1996-12-30") & (retention["week_number"] == 1)]
    assert week_one["retained_users"].tolist() == [len(back)]


# Quoted verbatim by docs/sources.md (presets on the real sample exports, purchases): kpi_cohort_retention's
# account-unit "on or after" week-4 rows of the first three cohorts, and two weeks of
# kpi_lifecycle_weekly, on the whole CDNOW log.
CDNOW_ACCOUNT_WEEK_4 = """\
| cohort week | accounts | active in week 4 or later | retention |
|---|---|---|---|
| 1996-12-30 | 1,102 | 485 | 44.0 % |
| 1997-01-06 | 1,662 | 748 | 45.0 % |
| 1997-01-13 | 1,734 | 775 | 44.7 % |
"""
CDNOW_LIFECYCLE = """\
| week | new | returning | resurrecting | dormant | quick ratio |
|---|---|---|---|---|---|
| 1997-03-03 | 2,201 | 217 | 537 | 2,684 | 1.02 |
| 1998-03-02 | 0 | 78 | 523 | 510 | 1.03 |
"""
CDNOW_FIRST_DATE, CDNOW_LAST_DATE = dt.date(1997, 1, 1), dt.date(1998, 6, 30)


@pytest.fixture(scope="module")
def cdnow_events() -> pd.DataFrame:
    """telemetry_events of the whole CDNOW log, the file read and mapped once by the purchases
    preset (read_mapped_file, what staging runs on each day file) and held to the contract's
    rules by row_outcomes, then typed by staged_events, as staging does; ~1 s instead of ~40 s
    for staging the 546 day folders one by one (~45 ms of fixed cost a day, mostly validation).

    The one rule that needs a day folder is outside_partition, which each row passes by
    construction (the import puts a row in the folder of its own UTC date). So the rules run
    twice: as for the folder of 1997-01-01 (every row fails only outside_partition, except the
    212 rows of that day, which pass), then on the same rows moved to that day (every row passes
    every rule, so none is hidden behind outside_partition in the first run).
    test_cdnow_read_once_is_staging compares the result with the real path on 92 days."""
    mapping = parse_config({"sources": {"telemetry": "purchases"}}).sources.telemetry
    raw = read_mapped_file(CDNOW, mapping, CDNOW.name)
    rows = combine([raw], TELEMETRY_FIELDS, CDNOW.parent)
    outcomes = row_outcomes(rows, CDNOW_FIRST_DATE, ())
    on_first_day = (outcomes.occurred_at.dt.date == CDNOW_FIRST_DATE).to_numpy(bool)
    assert outcomes.reason.isna().to_numpy(bool).tolist() == on_first_day.tolist()
    assert set(outcomes.reason.dropna()) == {OUTSIDE_PARTITION} and on_first_day.sum() == 212
    moved = rows.assign(occurred_at="1997-01-01T00:00:00.000000Z")
    assert row_outcomes(moved, CDNOW_FIRST_DATE, ()).reason.isna().all()
    return staged_events(rows, outcomes, np.ones(len(rows), dtype=bool))


def last_seven(by_day: dict[str, pd.DataFrame], day: dt.date) -> pd.DataFrame:
    """The rows of the 7 days ending on ``day`` (the assets' ``day_window(-6, 0)``)."""
    keys = [(day - dt.timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    return pd.concat([by_day[k] for k in keys if k in by_day], ignore_index=True)


@dataclass
class CdnowWeekly:
    """The CDNOW log through the engagement assets' functions: the daily_activity rollup, user_days,
    and the user_weeks and account_weeks records built day by day."""

    activity: pd.DataFrame
    user_days: pd.DataFrame
    user_weeks: pd.DataFrame
    account_weeks: pd.DataFrame


@pytest.fixture(scope="module")
def cdnow_weekly(cdnow_events: pd.DataFrame) -> CdnowWeekly:
    """daily_activity and user_days group by date (so one call over the log is the days' calls
    concatenated; checked on three days in test_cdnow_read_once_is_staging); user_weeks and
    account_weeks of each of the 546 days read that day's 7-day window, as their assets do."""
    activity = daily_activity(cdnow_events)
    days = user_days(activity)
    activity_by_day = dict(tuple(activity.groupby(activity["date"].astype(str), sort=True)))
    users_by_day = dict(tuple(days.groupby(days["date"].astype(str), sort=True)))
    dates = [dt.date.fromisoformat(d) for d in activity_by_day]
    assert (dates[0], dates[-1], len(dates)) == (CDNOW_FIRST_DATE, CDNOW_LAST_DATE, 546)  # every day
    weeks = pd.concat([user_weeks(last_seven(users_by_day, d), d) for d in dates], ignore_index=True)
    accounts = pd.concat([account_weeks(last_seven(activity_by_day, d), d) for d in dates], ignore_index=True)
    return CdnowWeekly(activity, days, weeks, accounts)


def test_cdnow_read_once_is_staging(
    cdnow_events: pd.DataFrame, cdnow_weekly: CdnowWeekly, cdnow_staged_days: dict[dt.date, StagedTelemetry]
) -> None:
    """The log read once gives the events staging its day folders gives on the 92 staged days (but
    the event_id, which names the file and line read), and daily_activity and user_days of a day's
    staged events are the whole log's rows of that day (three days)."""
    assert len(cdnow_events) == 69_659 and cdnow_events["event_id"].is_unique
    staged = cdnow_staged_days.values()
    assert all(s.report.quarantined_rows == 0 and s.events is not None for s in staged)
    real = pd.concat([s.events for s in staged], ignore_index=True)  # day by day, in line order
    # the log is sorted by customer, then date: by date (stable) it is the folders' order
    days = cdnow_events["occurred_at"].dt.date.isin(list(cdnow_staged_days)).to_numpy(bool)
    mine = cdnow_events[days].sort_values("occurred_at", kind="stable", ignore_index=True)
    assert len(mine) == len(real) == 31_798 + 110 + 58
    pd.testing.assert_frame_equal(mine.drop(columns="event_id"), real.drop(columns="event_id"))

    def of_day(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
        return frame[(frame["date"].astype(str) == day.isoformat()).to_numpy(bool)].reset_index(drop=True)

    for day in (CDNOW_FIRST_DATE, *LATER_DAYS):
        rollup = daily_activity(cdnow_staged_days[day].events)
        pd.testing.assert_frame_equal(rollup, of_day(cdnow_weekly.activity, day))
        pd.testing.assert_frame_equal(user_days(rollup), of_day(cdnow_weekly.user_days, day))


def purchase_weeks(purchases: list[tuple[str, dt.date]]) -> dict[str, set[dt.date]]:
    """Each customer's purchase weeks (the Monday of each purchase date)."""
    weeks: dict[str, set[dt.date]] = collections.defaultdict(set)
    for customer, day in purchases:
        weeks[customer].add(day - dt.timedelta(days=day.weekday()))
    return weeks


def test_cdnow_account_retention_on_or_after_week_4(
    cdnow_weekly: CdnowWeekly, cdnow_purchases: list[tuple[str, dt.date]]
) -> None:
    """kpis-v2.md kpi_cohort_retention, unit account, mode on_or_after, week 4, of the first three
    cohorts, against a count from the raw file: an account (the preset's account_id is the
    customer) belongs to the week of its first purchase and is retained when it bought in any
    week from cohort + 4 on (all purchases are up to the last date)."""
    cohorts = cohort_retention(cdnow_weekly.user_weeks, cdnow_weekly.account_weeks, CDNOW_LAST_DATE)
    week4 = cohorts[
        (cohorts["unit"] == "account") & (cohorts["mode"] == "on_or_after") & (cohorts["week_number"] == 4)
    ].head(3)
    mine = [(r.cohort_week, r.cohort_size, r.retained, r.retention_rate) for r in week4.itertuples()]

    weeks = purchase_weeks(cdnow_purchases)
    cohort_of = {customer: min(w) for customer, w in weeks.items()}
    expected = []
    for monday in sorted(set(cohort_of.values()))[:3]:
        members = [c for c, first in cohort_of.items() if first == monday]
        later = monday + dt.timedelta(weeks=4)
        retained = sum(1 for c in members if any(w >= later for w in weeks[c]))
        expected.append((monday.isoformat(), len(members), retained, retained / len(members)))
    assert mine == expected

    lines = ["| cohort week | accounts | active in week 4 or later | retention |", "|---|---|---|---|"]
    lines += [f"| {w} | {n:,} | {k:,} | {rate:.1%} |".replace("%", " %") for w, n, k, rate in mine]
    assert "\n".join(lines) + "\n" == CDNOW_ACCOUNT_WEEK_4

    # the (user, on) rows are kpi_retention_weekly, as the asset computes it from user_weeks
    user_on = cohorts[(cohorts["unit"] == "user") & (cohorts["mode"] == "on")].reset_index(drop=True)
    weekly = retention_weekly(cdnow_weekly.user_weeks, CDNOW_LAST_DATE)
    assert len(weekly) == len(user_on) > 0
    assert user_on["cohort_week"].tolist() == weekly["cohort_week"].tolist()
    assert user_on["week_number"].tolist() == weekly["week_number"].tolist()
    assert user_on["cohort_size"].tolist() == weekly["cohort_users"].tolist()
    assert user_on["retained"].tolist() == weekly["retained_users"].tolist()
    assert user_on["retention_rate"].tolist() == weekly["retention_rate"].tolist()


def test_cdnow_lifecycle_weeks(cdnow_weekly: CdnowWeekly, cdnow_purchases: list[tuple[str, dt.date]]) -> None:
    """kpis-v2.md kpi_lifecycle_weekly on the whole log, one week of 1997 and one of 1998 against
    sets of customers from the raw file: new (first purchase week), returning (bought the week
    before too), resurrecting (not the week before), dormant (the week before, not this one)."""
    table = lifecycle_weekly(cdnow_weekly.user_weeks, CDNOW_FIRST_DATE, CDNOW_LAST_DATE)
    assert (table["week"].min(), table["week"].max()) == ("1996-12-30", "1998-06-29")
    assert len(table) == 4 * 79  # every week from the first date's to the last's, four statuses

    weeks = purchase_weeks(cdnow_purchases)
    cohort_of = {customer: min(w) for customer, w in weeks.items()}
    lines = ["| week | new | returning | resurrecting | dormant | quick ratio |", "|---|---|---|---|---|---|"]
    for monday in (dt.date(1997, 3, 3), dt.date(1998, 3, 2)):
        before = monday - dt.timedelta(weeks=1)
        active = {c for c, w in weeks.items() if monday in w}
        earlier = {c for c, w in weeks.items() if before in w}
        new = {c for c in active if cohort_of[c] == monday}
        expected = {
            "new": len(new),
            "returning": len((active - new) & earlier),
            "resurrecting": len(active - new - earlier),
            "dormant": len(earlier - active),
        }
        rows = table[table["week"] == monday.isoformat()]
        assert dict(zip(rows["status"], rows["users"], strict=True)) == expected
        quick = (expected["new"] + expected["resurrecting"]) / expected["dormant"]
        assert rows["quick_ratio"].tolist() == pytest.approx([quick] * 4, rel=1e-12)
        counts = " | ".join(f"{expected[s]:,}" for s in ("new", "returning", "resurrecting", "dormant"))
        lines.append(f"| {monday} | {counts} | {quick:.2f} |")
    assert "\n".join(lines) + "\n" == CDNOW_LIFECYCLE


def test_codespaces_uptime_in_2023_in_the_docs_is_the_raw_files_own(tmp_path: Path) -> None:
    """docs/sources.md's monthly uptime of the busiest status-page service of 2023, recomputed from the
    raw file with plain Python (kpis-v2.md, kpi_uptime_monthly: the largest weight at each instant,
    open incidents until the as-of time), and through the pipeline: all three agree."""
    weight = {"critical": 1.0, "major": 1.0, "minor": 0.3, "none": 0.0}

    def stamp(text: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    incidents = []
    with gzip.open(STATUSPAGE, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row.get("impact") == "maintenance":
                continue
            names = [c["name"] if isinstance(c, dict) else c for c in row.get("components") or []]
            incidents.append((";".join(names) or "unspecified", row))
    as_of = max(
        t
        for _, row in incidents
        for t in (stamp(row.get(k)) for k in ("started_at", "resolved_at", "updated_at"))
        if t
    )
    starts_2023 = collections.Counter(s for s, row in incidents if row["started_at"].startswith("2023"))
    service, started = starts_2023.most_common(1)[0]
    assert (service, started) == ("Codespaces", 27)
    spans = [
        (stamp(row["started_at"]), min(stamp(row["resolved_at"]) or as_of, as_of), weight[row["impact"]])
        for s, row in incidents
        if s == service
    ]
    expected = []
    for month in range(1, 13):
        first = dt.datetime(2023, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(2023 + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        cuts = sorted({first, end, *(t for a, b, _ in spans for t in (a, b) if first < t < end)})
        outage = 0.0
        for a, b in zip(cuts, cuts[1:], strict=False):
            top = max((w for s, e, w in spans if s <= a and e >= b and e > s), default=0.0)
            outage += top * (b - a).total_seconds() / 60
        minutes = (end - first).total_seconds() / 60
        active = sum(1 for s, e, _ in spans if e > s and s < end and e > first)
        expected.append(
            (f"2023-{month:02d}", active, outage, 1 - outage / minutes, outage / (0.001 * minutes))
        )

    doc = (Path(__file__).parents[1] / "docs" / "sources.md").read_text(encoding="utf-8")
    block = doc.split("<!-- codespaces-uptime-2023:start -->")[1].split(
        "<!-- codespaces-uptime-2023:end -->"
    )[0]
    shown = [line.strip("| ").split(" | ") for line in block.strip().splitlines()[2:]]
    assert shown == [
        [month, str(active), f"{outage:.1f}", f"{uptime * 100:.3f} %", f"{used * 100:.0f} %"]
        for month, active, outage, uptime, used in expected
    ]

    mapping = parse_config(
        {"sources": {"incidents": {"preset": "statuspage_incidents", "path": str(STATUSPAGE)}}}
    ).sources.incidents
    staged = stage_incidents(tmp_path, mapping).records
    assert uptime_as_of(staged, None) == pd.Timestamp(as_of.replace(tzinfo=None))
    table = uptime_monthly(staged, uptime_as_of(staged, None), Reliability())
    mine = table[(table["service"] == service) & table["month"].str.startswith("2023")]
    for row, (month, active, outage, uptime, used) in zip(mine.itertuples(), expected, strict=True):
        assert (row.month[:7], row.incidents) == (month, active)
        assert row.outage_minutes == pytest.approx(outage, abs=1e-9)
        assert row.uptime == pytest.approx(uptime, abs=1e-12)
        assert row.budget_used == pytest.approx(used, abs=1e-9)


# docs/sources.md quotes these tables between <!-- name:start --> and <!-- name:end --> markers.
DOC_TABLES = {
    "servicenow-resolution-by-priority": SERVICENOW_RESOLUTION,
    "cdnow-account-week-4-retention": CDNOW_ACCOUNT_WEEK_4,
    "cdnow-lifecycle-weeks": CDNOW_LIFECYCLE,
}


@pytest.mark.parametrize("name", DOC_TABLES)
def test_docs_quote_the_tested_tables(name: str) -> None:
    """Each table a test above recomputes is the one docs/sources.md shows."""
    doc = (Path(__file__).parents[1] / "docs" / "sources.md").read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert start in doc and end in doc, f"docs/sources.md must quote {name} between {start} and {end}"
    assert doc.split(start)[1].split(end)[0].strip("\n") + "\n" == DOC_TABLES[name]
