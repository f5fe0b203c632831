"""Each preset on the real public exports in ``../shared/realdata`` (read in place), checked
against figures computed here straight from the raw files with the csv and json modules."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import gzip
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kpi_pipeline.cli import main
from kpi_pipeline.config import Reliability, parse_config
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.telemetry import stage_telemetry_partition
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.kpis.activity import daily_activity
from kpi_pipeline.kpis.retention import retention_weekly
from kpi_pipeline.kpis.uptime import uptime_as_of, uptime_monthly

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


def test_servicenow_log_as_tickets(tmp_path: Path, servicenow_rows: list[dict[str, str]]) -> None:
    staged = stage_tickets(tmp_path, mapping_for("tickets", "servicenow_incident_log", SERVICENOW))

    def reason(row: dict[str, str]) -> str | None:
        if row["category"] == "?":
            return "missing_field:topic"
        return None if row["incident_state"] in STATES else "bad_value:status"

    latest = latest_valid(servicenow_rows, lambda row: reason(row) is None)
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

    counted = collections.Counter(r for r in map(reason, servicenow_rows) if r is not None)
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


def test_cdnow_purchases_give_weekly_cohorts_of_the_right_size(
    cdnow_import: Path, cdnow_purchases: list[tuple[str, dt.date]]
) -> None:
    """Every CDNOW customer made a first purchase in the first quarter of 1997 (the data set's
    design), so staging those 90 days gives every cohort (46 % of the rows, at a sixth of the cost
    of all 546 days); the later days hold rows of the same shape, each counted into its day folder
    by the import test."""
    mapping = parse_config({"sources": {"telemetry": "purchases"}}).sources.telemetry
    quarter = [(c, d) for c, d in cdnow_purchases if d < dt.date(1997, 4, 1)]
    days = sorted({day for _, day in quarter})
    staged = [stage_telemetry_partition(cdnow_import, day, (), mapping) for day in days]
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


def test_codespaces_uptime_in_2023_in_the_readme_is_the_raw_files_own(tmp_path: Path) -> None:
    """The README's monthly uptime of the busiest status-page service of 2023, recomputed from the
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

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- codespaces-uptime-2023:start -->")[1].split(
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
