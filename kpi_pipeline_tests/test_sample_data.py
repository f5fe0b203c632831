"""Tests of the sample data generator: layout, determinism, injected defects, bug week, exports.

The files are read back with small independent parsers that apply the contract's rules, so
every defect the generator claims to have injected is found (and nothing else is).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import statistics
import zoneinfo
from collections import Counter
from pathlib import Path

import holidays
import pytest

from kpi_pipeline.config import WEEKDAYS, BusinessHours, load_config
from kpi_pipeline.contract import (
    EVENT_TYPES,
    INCIDENT_FIELDS,
    TELEMETRY_FIELDS,
    TELEMETRY_REQUIRED,
    TELEMETRY_REQUIRED_FOR,
    TICKET_FIELDS,
    TICKET_REQUIRED,
    TICKET_STATUSES,
)
from kpi_pipeline.sample_data import (
    BUG_WEEK,
    TICKET_CHANNELS,
    GenerationSummary,
    bug_week_for,
    generate_dataset,
    telemetry_day_bytes,
)

START = dt.date(2025, 1, 1)
DAYS = 14  # 2025-01-01 .. 2025-01-14: holds the SEV1 (day 10) and the first two bug-week days
USERS = 150
UTC = dt.UTC


# ----------------------------------------------------------------------------- readers


def _text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def _records(path: Path) -> list[dict[str, str] | None]:
    """Raw rows of a data file (blank lines are not rows); None for a row that cannot be parsed."""
    text = _text(path)
    if ".jsonl" in path.name:
        out: list[dict[str, str] | None] = []
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                out.append(None)
                continue
            out.append({k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()})
        return out
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    header = rows[0]
    return [dict(zip(header, r, strict=True)) if len(r) == len(header) else None for r in rows[1:]]


def _timestamp(value: str) -> dt.datetime | None:
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _telemetry_reason(rec: dict[str, str] | None, day: dt.date, seen: set[str]) -> str | None:
    """The contract's first applicable quarantine reason (no aliases), None for a valid row."""
    if rec is None:
        return "malformed_record"
    for name in TELEMETRY_REQUIRED:
        if not rec.get(name):
            return f"missing_field:{name}"
    for name, types in TELEMETRY_REQUIRED_FOR.items():
        if rec["event_type"] in types and not rec.get(name):
            return f"missing_field:{name}"
    ts = _timestamp(rec["occurred_at"])
    if ts is None:
        return "bad_timestamp"
    if ts.date() != day:
        return "outside_partition"
    if rec["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    if rec["event_type"] == "survey_response":  # kpis-v2.md, with the built-in surveys
        scales = {"csat": (1, 5), "ces": (1, 7), "nps": (0, 10)}
        for name in ("survey", "score"):
            if not rec.get(name):
                return f"missing_field:{name}"
        if rec["survey"] not in scales:
            return "bad_value:survey"
        low, high = scales[rec["survey"]]
        if not low <= float(rec["score"]) <= high:
            return "bad_value:score"
    duration = rec.get("duration_ms") or ""
    if duration:
        try:
            if float(duration) < 0:
                return "bad_value:duration_ms"
        except ValueError:
            return "bad_value:duration_ms"
    if rec["event_id"] in seen:
        return "duplicate_event_id"
    seen.add(rec["event_id"])
    return None


def _partition(root: Path, day: dt.date) -> list[Path]:
    folder = root / "raw" / "telemetry" / f"date={day.isoformat()}"
    return sorted(p for p in folder.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz", ".csv", ".csv.gz")))


def _classified(root: Path, days: int) -> list[tuple[dt.date, str | None, dict[str, str] | None]]:
    """(partition day, reason, record) of every raw telemetry row."""
    out = []
    for i in range(days):
        day = START + dt.timedelta(days=i)
        seen: set[str] = set()
        for path in _partition(root, day):
            out += [(day, _telemetry_reason(rec, day, seen), rec) for rec in _records(path)]
    return out


def _ticket_reason(rec: dict[str, str] | None) -> str | None:
    if rec is None:
        return "malformed_record"
    for name in TICKET_REQUIRED:
        if not rec[name]:
            return f"missing_field:{name}"
    stamps = {
        n: _timestamp(rec[n]) for n in ("created_at", "updated_at", "first_reply_at", "solved_at") if rec[n]
    }
    if any(v is None for v in stamps.values()):
        return "bad_timestamp"
    if rec["status"].lower() not in TICKET_STATUSES:
        return "bad_value:status"
    if rec["agent_work_minutes"] and float(rec["agent_work_minutes"]) < 0:
        return "bad_value:agent_work_minutes"
    if "solved_at" in stamps and stamps["solved_at"] < stamps["created_at"]:
        return "bad_value:solved_at"
    return None


def _severity(value: str) -> str:
    digit = value.upper().removeprefix("SEV").removeprefix("P")
    return f"SEV{digit}"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary, list[str]]:
    root = tmp_path_factory.mktemp("sample")
    lines: list[str] = []
    summary = generate_dataset(root, days=DAYS, seed=7, start=START, users=USERS, log=lines.append)
    return root, summary, lines


@pytest.fixture(scope="module")
def classified(dataset: tuple[Path, GenerationSummary, list[str]]) -> list:
    return _classified(dataset[0], DAYS)


# ----------------------------------------------------------------------------- tests


def test_layout_formats_and_summary(dataset: tuple[Path, GenerationSummary, list[str]]) -> None:
    root, summary, lines = dataset
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert set(summary.files) == on_disk
    assert len(summary.files) == len(on_disk)
    assert (summary.start, summary.end) == (dt.date(2025, 1, 1), dt.date(2025, 1, 14))
    packaged = Path(__file__).parents[1] / "kpi_pipeline" / "sample_kpi.yaml"
    assert (root / "config" / "kpi.yaml").read_bytes() == packaged.read_bytes()
    telemetry = [f for f in summary.files if f.startswith("raw/telemetry/")]
    folders = Counter(f.split("/")[2] for f in telemetry)
    assert sorted(folders) == [f"date={START + dt.timedelta(days=i)}" for i in range(DAYS)]
    suffixes = Counter(f.split("/")[-1].split(".", 1)[1] for f in telemetry if not f.endswith(".txt"))
    assert set(suffixes) == {"jsonl", "jsonl.gz", "csv", "csv.gz"}
    assert suffixes["jsonl"] > suffixes["csv"] + suffixes["csv.gz"]
    # days 4 and 7 of each week are split in two event files (the ignored note is in day 3's folder),
    # and every day has the survey tool's export beside them
    assert folders["date=2025-01-04"] == 3 and folders["date=2025-01-07"] == 3
    assert sum(f.endswith("/surveys.jsonl") for f in telemetry) == DAYS
    assert [f for f in telemetry if f.endswith(".txt")] == ["raw/telemetry/date=2025-01-03/notes.txt"]
    csv_file = next(root.glob("raw/telemetry/*/*.csv"))
    # Every contract field but a survey's (survey answers come in their own file), and the drift field.
    fields = [f for f in TELEMETRY_FIELDS if f not in ("survey", "score")]
    assert _text(csv_file).split("\n", 1)[0] == ",".join([*fields, "session_id"])
    tickets = sorted(f for f in summary.files if f.startswith("raw/tickets/"))
    # Mondays 2025-01-06 and 2025-01-13, then the end of the data (2025-01-15 00:00); every other gzipped
    assert tickets == [
        "raw/tickets/tickets_2025-01-06.csv",
        "raw/tickets/tickets_2025-01-13.csv.gz",
        "raw/tickets/tickets_2025-01-15.csv",
    ]
    incidents = sorted(f for f in summary.files if f.startswith("raw/incidents/"))
    # first export an hour into the SEV1 (2025-01-10 14:00 UTC), the second at the end
    assert incidents == [
        "raw/incidents/incidents_2025-01-10T1500.jsonl",
        "raw/incidents/incidents_2025-01-15T0000.csv",
    ]
    assert len(lines) == DAYS and lines[0].startswith("2025-01-01: ")


def test_volume_scales_with_users(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, days=2, seed=3, users=800)
    per_day = summary.telemetry_rows / 2
    assert 10_000 <= per_day <= 20_000


def test_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", days=4, seed=11, users=40)
    b = generate_dataset(tmp_path / "b", days=4, seed=11, users=40)
    c = generate_dataset(tmp_path / "c", days=4, seed=12, users=40)
    assert a == b
    assert a.files == c.files
    for name in a.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    changed = [n for n in a.files if (tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes()]
    assert any(n.startswith("raw/telemetry/") for n in changed)


def test_every_bad_row_kind_is_injected_and_counted(
    dataset: tuple[Path, GenerationSummary, list[str]], classified: list
) -> None:
    _, summary, _ = dataset
    found = Counter(reason for _, reason, _ in classified if reason)
    expected = Counter(summary.bad_rows["telemetry"])
    expected["unknown_event_type"] += summary.bug_events  # task_done without the alias
    assert found == expected
    assert summary.telemetry_rows == len(classified)
    kinds = {
        "malformed_record",
        "missing_field",
        "bad_timestamp",
        "outside_partition",
        "unknown_event_type",
        "bad_value",
        "duplicate_event_id",
    }
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        on_day = {r.split(":")[0] for d, r, _ in classified if d == day and r}
        assert on_day == kinds, day
    # about 0.3% per kind: 150 users give ~2-4k rows a day, so 5-15 of each kind a day
    assert 0.002 <= found["bad_timestamp"] / len(classified) <= 0.004
    words = {
        d
        for d, r, rec in classified
        if r == "bad_value:duration_ms" and not rec["duration_ms"].startswith("-")
    }
    assert words == {dt.date(2025, 1, 2), dt.date(2025, 1, 12)}  # day indexes 1 and 11 only


def test_blank_lines_drift_offsets_and_environments(
    dataset: tuple[Path, GenerationSummary, list[str]], classified: list
) -> None:
    root, _, _ = dataset
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        texts = [_text(p) for p in _partition(root, day)]
        assert any("\n\n" in t for t in texts), day
    valid = [rec for _, reason, rec in classified if reason is None]
    drift_days = {rec["occurred_at"][:10] for rec in valid if rec.get("session_id")}
    assert {"2025-01-03", "2025-01-07", "2025-01-11"} <= drift_days
    stamps = Counter(
        "offset"
        if rec["occurred_at"].endswith("+02:00")
        else "Z"
        if rec["occurred_at"].endswith("Z")
        else "naive"
        for rec in valid
    )
    assert stamps["offset"] > 0 and stamps["naive"] > 0 and stamps["Z"] > 0.97 * len(valid)
    env = Counter(rec.get("environment") or "" for rec in valid)
    assert set(env) == {"", "production", "staging"}
    assert 0.005 <= env["staging"] / len(valid) <= 0.05
    personas = Counter(rec.get("persona") or "" for rec in valid)
    assert set(personas) == {"", "admin", "developer", "analyst", "manager"}


def test_task_done_only_in_bug_week_for_invoice_download(
    dataset: tuple[Path, GenerationSummary, list[str]], classified: list
) -> None:
    _, summary, _ = dataset
    # 2025-01-01 is a Wednesday; its week starts 2024-12-30, so the third week is 2025-01-13..19
    assert summary.bug_week == BUG_WEEK == (dt.date(2025, 1, 13), dt.date(2025, 1, 19))
    assert bug_week_for(dt.date(2025, 1, 6)) == (dt.date(2025, 1, 20), dt.date(2025, 1, 26))
    assert summary.bug_workflow == "invoice_download"
    done = [(day, rec) for day, _, rec in classified if rec and rec.get("event_type") == "task_done"]
    assert len(done) == summary.bug_events > 0
    assert {rec["workflow"] for _, rec in done} == {"invoice_download"}
    assert {rec["release"] for _, rec in done} == {"4.2.0"}
    assert {day for day, _ in done} == {dt.date(2025, 1, 13), dt.date(2025, 1, 14)}
    completed = Counter(
        (day >= dt.date(2025, 1, 13), rec["workflow"])
        for day, reason, rec in classified
        if reason is None and rec["event_type"] == "task_completed"
    )
    assert completed[(True, "invoice_download")] == 0
    assert completed[(False, "invoice_download")] > 0 and completed[(True, "access_request")] > 0


def test_attempts_cross_midnight_and_sev1_hurts_data_export(classified: list) -> None:
    valid = [rec for _, reason, rec in classified if reason is None and rec.get("environment") != "staging"]
    starts = {
        r["task_id"]: (_timestamp(r["occurred_at"]), r["workflow"])
        for r in valid
        if r["event_type"] == "task_started"
    }
    done: dict[str, dt.datetime] = {}
    for r in valid:
        if r["event_type"] == "task_completed" and r["task_id"] in starts:
            ts = _timestamp(r["occurred_at"])
            done[r["task_id"]] = min(ts, done.get(r["task_id"], ts))
    waits = [done[t] - starts[t][0] for t in done]
    assert any(done[t].date() > starts[t][0].date() for t in done)
    assert any(w > dt.timedelta(hours=24) for w in waits)
    sev1_from = dt.datetime(2025, 1, 10, 14, tzinfo=UTC)
    sev1_until = sev1_from + dt.timedelta(hours=3)
    during = [t for t, (s, wf) in starts.items() if wf == "data_export" and sev1_from <= s < sev1_until]
    others = [t for t, (s, wf) in starts.items() if wf == "data_export" and not sev1_from <= s < sev1_until]

    def rate(tasks: list[str]) -> float:
        ok = [t for t in tasks if t in done and done[t] - starts[t][0] <= dt.timedelta(hours=24)]
        return len(ok) / len(tasks)

    assert len(during) >= 5
    assert rate(during) < 0.4 < 0.6 < rate(others)


def test_ticket_exports_hold_versions_and_bad_rows(
    dataset: tuple[Path, GenerationSummary, list[str]],
) -> None:
    root, summary, _ = dataset
    paths = sorted((root / "raw" / "tickets").iterdir())
    versions: dict[str, list[dict[str, str]]] = {}
    reasons: Counter[str] = Counter()
    rows = 0
    for path in paths:
        assert _text(path).split("\n", 1)[0] == ",".join(TICKET_FIELDS)
        for rec in _records(path):
            rows += 1
            reason = _ticket_reason(rec)
            if reason:
                reasons[reason] += 1
            else:
                versions.setdefault(rec["ticket_id"], []).append(rec)
    assert rows == summary.ticket_rows
    assert reasons == Counter(summary.bad_rows["tickets"])
    assert set(reasons) == {
        "malformed_record",
        "missing_field:topic",
        "bad_timestamp",
        "bad_value:status",
        "bad_value:agent_work_minutes",
        "bad_value:solved_at",
    }
    assert len(versions) == summary.tickets
    order = {s: i for i, s in enumerate(TICKET_STATUSES)}
    repeated = {t: v for t, v in versions.items() if len(v) > 1}
    assert len(repeated) > 10
    for history in repeated.values():
        ranks = [order[v["status"].lower()] for v in history]
        updated = [_timestamp(v["updated_at"]) for v in history]
        assert ranks == sorted(ranks) and updated == sorted(updated) and len(set(updated)) == len(updated)
    assert any(
        h[0]["status"].lower() == "new" and h[-1]["status"].lower() in ("solved", "closed")
        for h in repeated.values()
    )
    statuses = Counter(v["status"] for h in versions.values() for v in h)
    assert any(s != s.lower() for s in statuses)
    telemetry_users = {f"u{i:05d}" for i in range(1, USERS + 1)}
    requesters = [h[-1]["requester_id"] for h in versions.values()]
    known = sum(r in telemetry_users for r in requesters)
    assert 0.8 * len(requesters) < known < len(requesters)
    assert any(r.startswith("ext_") for r in requesters)


def test_incident_exports(dataset: tuple[Path, GenerationSummary, list[str]]) -> None:
    root, summary, _ = dataset
    jsonl = next((root / "raw" / "incidents").glob("*.jsonl"))
    csv_path = next((root / "raw" / "incidents").glob("*.csv"))
    first = [json.loads(line) for line in _text(jsonl).splitlines()]
    later = _records(csv_path)
    assert summary.incident_rows == len(first) + len(later)
    assert set(later[0]) == set(INCIDENT_FIELDS)
    assert all(isinstance(rec["affected_workflows"], list) for rec in first)
    good_first = {r["incident_id"]: r for r in first if r.get("resolved_at", "9") >= r["started_at"]}
    bad_later = [r for r in later if not r["service"] or _timestamp(r["started_at"]) is None]
    good_later = {r["incident_id"]: r for r in later if r not in bad_later}
    assert len(first) - len(good_first) + len(bad_later) == sum(summary.bad_rows["incidents"].values()) == 3
    assert summary.incidents == len(good_later) == 6
    severities = {r["severity"] for r in [*first, *later]}
    assert {"SEV2", "sev3", "P1", "1"} <= severities
    sev1 = [r for r in good_later.values() if _severity(r["severity"]) == "SEV1"]
    assert len(sev1) == 1
    (inc,) = sev1
    assert inc["affected_workflows"] == "data_export"
    assert _timestamp(inc["started_at"]) == dt.datetime(2025, 1, 10, 14, tzinfo=UTC)
    assert _timestamp(inc["resolved_at"]) - _timestamp(inc["started_at"]) == dt.timedelta(hours=3)
    earlier = good_first[inc["incident_id"]]
    assert "resolved_at" not in earlier and earlier["severity"] == "P1"
    assert _timestamp(inc["updated_at"]) > _timestamp(earlier["updated_at"])
    assert [r["incident_id"] for r in good_later.values() if not r["resolved_at"]] == ["INC-0005"]


def test_generator_respects_an_edited_config(tmp_path: Path) -> None:
    config = tmp_path / "config" / "kpi.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "workflows:\n"
        "  expense_report:\n"
        "    steps: [receipt_uploaded, approved]\n"
        "    topics: [expenses]\n"
        "    minutes_saved_per_completion: 9\n",
        encoding="utf-8",
    )
    before = config.read_bytes()
    summary = generate_dataset(tmp_path, days=3, seed=5, users=40)
    assert config.read_bytes() == before
    assert "config/kpi.yaml" not in summary.files
    valid = [rec for _, reason, rec in _classified(tmp_path, 3) if reason is None]
    assert {r["workflow"] for r in valid if r.get("workflow")} == {"expense_report"}
    assert {r["step"] for r in valid if r.get("step")} == {"receipt_uploaded", "approved"}
    assert {r["topic"] for r in valid if r.get("topic")} <= {"expenses", "general", "api"}
    assert summary.bug_events == 0  # no invoice_download workflow configured


def test_telemetry_day_bytes_has_the_requested_size_and_mix() -> None:
    day = dt.date(2025, 3, 4)
    data = telemetry_day_bytes(day, 5_000, seed=1)
    assert data == telemetry_day_bytes(day, 5_000, seed=1)
    path_rows = [line for line in data.decode().split("\n") if line.strip()]
    # 5000 / 1.02 = 4901.96 -> 4902 valid rows; 0.02 / 7 * 4902 = 14.0 -> 14 rows of each of 7 kinds
    assert len(path_rows) == 4_902 + 7 * 14 == 5_000
    seen: set[str] = set()
    reasons = Counter()
    for line in path_rows:
        try:
            rec = {k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(line).items()}
        except json.JSONDecodeError:
            rec = None
        reasons[_telemetry_reason(rec, day, seen)] += 1
    bad = len(path_rows) - reasons[None]
    assert bad == 98
    assert reasons["duplicate_event_id"] == 14 and reasons["outside_partition"] == 14


def test_more_weekly_ticket_exports_than_kinds_of_bad_rows(tmp_path: Path) -> None:
    """42 days from 2025-01-01 make 7 weekly ticket exports for 6 kinds of bad rows (the benchmark's
    ``generate --days 42``): the export without bad rows is written, every kind is still injected."""
    summary = generate_dataset(tmp_path, days=42, users=20, seed=1, start=dt.date(2025, 1, 1))
    exports = sorted((tmp_path / "raw" / "tickets").iterdir())
    assert len(exports) == 7
    assert len(summary.bad_rows["tickets"]) == 6 and all(n > 0 for n in summary.bad_rows["tickets"].values())


# ----------------------------------------------------------------------------- support service


def _ticket_versions(root: Path) -> dict[str, list[dict[str, str]]]:
    """The valid versions of each ticket, export by export (oldest first)."""
    versions: dict[str, list[dict[str, str]]] = {}
    for path in sorted((root / "raw" / "tickets").iterdir()):
        for rec in _records(path):
            if _ticket_reason(rec) is None:
                versions.setdefault(rec["ticket_id"], []).append(rec)
    return versions


def _closed_days(hours: BusinessHours, years: range) -> set[dt.date]:
    country = holidays.country_holidays(hours.country, years=years) if hours.country else {}
    return set(hours.holidays) | set(country)


def _in_hours(at: dt.datetime, hours: BusinessHours, closed: set[dt.date]) -> bool:
    local = at.astimezone(zoneinfo.ZoneInfo(hours.timezone))
    minute = local.hour * 60 + local.minute
    return (
        WEEKDAYS[local.weekday()] in hours.days
        and local.date() not in closed
        and hours.start <= minute < hours.end
    )


def _business_minutes(
    start: dt.datetime, end: dt.datetime, hours: BusinessHours, closed: set[dt.date]
) -> float:
    """Minutes of [start, end) inside the hours, day by day (an independent, slow reckoning)."""
    zone = zoneinfo.ZoneInfo(hours.timezone)
    total = 0.0
    day = start.astimezone(zone).date()
    while day <= end.astimezone(zone).date():
        if WEEKDAYS[day.weekday()] in hours.days and day not in closed:
            midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone)
            opens = (midnight + dt.timedelta(minutes=hours.start)).astimezone(UTC)
            closes = (midnight + dt.timedelta(minutes=hours.end)).astimezone(UTC)
            total += max((min(end, closes) - max(start, opens)).total_seconds(), 0.0) / 60
        day += dt.timedelta(days=1)
    return total


@pytest.fixture(scope="module")
def tickets(dataset: tuple[Path, GenerationSummary, list[str]]) -> dict[str, list[dict[str, str]]]:
    return _ticket_versions(dataset[0])


def test_sample_config_has_support_hours_costs_and_slas() -> None:
    packaged = Path(__file__).parents[1] / "kpi_pipeline" / "sample_kpi.yaml"
    support = load_config(packaged).support
    hours = support.business_hours
    assert hours is not None
    assert (hours.timezone, hours.days, hours.start, hours.end, hours.country) == (
        "Europe/Berlin",
        ("mon", "tue", "wed", "thu", "fri"),
        9 * 60,
        17 * 60,
        "DE",
    )
    # a listed day off inside the default sample range (2025-01-01 …), not a public holiday already
    assert hours.holidays == (dt.date(2025, 1, 2),)
    assert dt.date(2025, 1, 2) not in holidays.country_holidays("DE", years=2025)
    costs = support.cost_per_ticket_by_channel
    assert set(costs) == set(TICKET_CHANNELS) and len(set(costs.values())) == len(costs)
    assert costs["phone"] > costs["email"] > costs["chat"]
    for targets in (support.sla.first_reply, support.sla.resolution):
        order = [targets[p] for p in ("urgent", "high", "normal", "low")]
        assert order == sorted(set(order))  # urgent tightest, low loosest


def test_replies_and_solves_fall_in_business_hours(
    dataset: tuple[Path, GenerationSummary, list[str]], tickets: dict[str, list[dict[str, str]]]
) -> None:
    root = dataset[0]
    hours = load_config(root / "config" / "kpi.yaml").support.business_hours
    assert hours is not None
    closed = _closed_days(hours, range(2024, 2027))
    replies = solves = 0
    off_hours_created = []
    for history in tickets.values():
        for version in history:
            if version["first_reply_at"]:
                replies += 1
                assert _in_hours(_timestamp(version["first_reply_at"]), hours, closed), version
            if version["solved_at"]:
                solves += 1
                assert _in_hours(_timestamp(version["solved_at"]), hours, closed), version
        latest = history[-1]
        created = _timestamp(latest["created_at"])
        if latest["first_reply_at"] and not _in_hours(created, hours, closed):
            off_hours_created.append((created, _timestamp(latest["first_reply_at"])))
    assert replies > 100 and solves > 100
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    local_days = {c.astimezone(berlin).date() for c, _ in off_hours_created}
    # tickets arrive on the public holiday (New Year), the listed day off and at the weekend too ...
    assert {dt.date(2025, 1, 1), dt.date(2025, 1, 2), dt.date(2025, 1, 4), dt.date(2025, 1, 5)} <= local_days
    # ... and a ticket created on Friday evening or at the weekend is answered on Monday
    weekend = [
        (c, r)
        for c, r in off_hours_created
        if c.astimezone(berlin).weekday() >= 5
        or (c.astimezone(berlin).weekday() == 4 and c.astimezone(berlin).hour >= 17)
    ]
    assert weekend and Counter(r.astimezone(berlin).weekday() for _, r in weekend).most_common(1)[0][0] == 0


def test_urgent_tickets_are_answered_faster_than_low_ones(
    dataset: tuple[Path, GenerationSummary, list[str]], tickets: dict[str, list[dict[str, str]]]
) -> None:
    hours = load_config(dataset[0] / "config" / "kpi.yaml").support.business_hours
    assert hours is not None
    closed = _closed_days(hours, range(2024, 2027))
    waits: dict[str, list[float]] = {}
    for history in tickets.values():
        latest = history[-1]
        if latest["first_reply_at"]:
            start, end = _timestamp(latest["created_at"]), _timestamp(latest["first_reply_at"])
            waits.setdefault(latest["priority"], []).append(_business_minutes(start, end, hours, closed))
    medians = {p: statistics.median(w) for p, w in waits.items()}
    assert len(waits["urgent"]) >= 5 and len(waits["low"]) >= 5
    assert medians["urgent"] < medians["high"] < medians["low"]
    assert medians["urgent"] < medians["normal"] < medians["low"]
    assert 3 * medians["urgent"] < medians["low"]  # drawn: a sixth of the low-priority wait
    assert max(max(w) for w in waits.values()) > 8 * 60  # some wait longer than a business day


def test_open_unanswered_and_reopened_tickets_at_the_end(
    dataset: tuple[Path, GenerationSummary, list[str]], tickets: dict[str, list[dict[str, str]]]
) -> None:
    latest = [history[-1] for history in tickets.values()]
    unanswered = [t for t in latest if not t["first_reply_at"] and not t["solved_at"]]
    unsolved = [t for t in latest if t["first_reply_at"] and not t["solved_at"]]
    merged = [t for t in latest if not t["first_reply_at"] and t["solved_at"]]
    assert unanswered and unsolved and merged  # the as-of rule and the reply clock's fallbacks matter
    assert {t["status"].lower() for t in unanswered} == {"new"}
    assert {t["status"].lower() for t in unsolved} <= {"open", "pending"}
    reopened = [t for history in tickets.values() for t in history if int(t["reopens"]) > 0]
    assert reopened and all(t["solved_at"] for t in reopened)
    assert all(t["status"].lower() in ("solved", "closed") for t in reopened)
    channels = Counter(t["channel"] for t in latest)
    assert set(channels) == set(TICKET_CHANNELS) and channels["email"] > channels["phone"]


def test_business_hours_draw_from_their_own_random_stream(tmp_path: Path) -> None:
    """Without business hours the tickets are the same tickets at other times, and telemetry and
    incidents are byte for byte those of the sample config: hours take no draw of the main stream."""
    with_hours = generate_dataset(tmp_path / "a", days=9, seed=4, start=START, users=40)
    config = (tmp_path / "a" / "config" / "kpi.yaml").read_text(encoding="utf-8")
    before, _, after = config.partition("\nsupport:")
    without = before + after[after.index("\nworkflows:") :]
    (tmp_path / "b" / "config").mkdir(parents=True)
    (tmp_path / "b" / "config" / "kpi.yaml").write_text(without, encoding="utf-8")
    around_the_clock = generate_dataset(tmp_path / "b", days=9, seed=4, start=START, users=40)
    assert load_config(tmp_path / "b" / "config" / "kpi.yaml").support.business_hours is None
    assert with_hours.files[1:] == around_the_clock.files  # the first wrote config/kpi.yaml
    for name in with_hours.files:
        if name.startswith(("raw/telemetry/", "raw/incidents/")):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a, b = _ticket_versions(tmp_path / "a"), _ticket_versions(tmp_path / "b")
    assert set(a) == set(b)
    fixed = ("created_at", "channel", "priority", "topic", "requester_id")
    assert all([a[t][-1][f] for f in fixed] == [b[t][-1][f] for f in fixed] for t in a)
    assert any(a[t][-1]["first_reply_at"] != b[t][-1]["first_reply_at"] for t in a)


def test_every_lifecycle_status_occurs(classified: list) -> None:
    """Growth accounting on the production events, by UTC Monday week (kpis-v2.md)."""
    active: dict[dt.date, set[str]] = {}
    for _, reason, rec in classified:
        if reason is None and (rec.get("environment") or "production") == "production":
            day = _timestamp(rec["occurred_at"]).date()
            active.setdefault(day - dt.timedelta(days=day.weekday()), set()).add(rec["user_id"])
    weeks = sorted(active)
    first_week: dict[str, dt.date] = {}
    for week in weeks:
        for user in active[week]:
            first_week.setdefault(user, week)
    counts: Counter[str] = Counter()
    for week in weeks:
        now, before = active[week], active.get(week - dt.timedelta(days=7), set())
        new = {u for u in now if first_week[u] == week}
        counts["new"] += len(new)
        counts["returning"] += len((now & before) - new)
        counts["resurrecting"] += len(now - before - new)
        counts["dormant"] += len(before - now)
    assert all(counts[s] > 0 for s in ("new", "returning", "resurrecting", "dormant")), counts
