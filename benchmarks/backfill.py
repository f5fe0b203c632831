"""Benchmark: backfills, and the daily run early and late in a backfilled history.

    python benchmarks/backfill.py [--days 42] [--users 6000] [--cdnow-days 90] [--keep DIR]

(a) The real CDNOW purchase log (``../shared/realdata/cdnow``; skipped when absent) imported
through the ``purchases`` preset, then materialized for its first day and for its first
CDNOW_DAYS days, each into a fresh warehouse and Dagster home: wall, Dagster runs, peak RSS
and the ratio of the two.
(b) A generated set (``kpi-pipeline generate --days DAYS --users USERS``, from 2025-01-01)
materialized in full, and a DuckDB floor (parse every day's files, stage to Parquet, per-day
attempt aggregates) on the same files. Then, on the same raw files, the history grown as the
daily schedule grows it: days 1-6, the daily run of day 7 (timed), days 7 to the one before
last, the daily run of the last day (timed) — each the newest day when it runs. The generated
days grow (the last holds ~20 % more events than day 7), so the last day's daily run is also
timed after a history of only the 6 days before it (partitions starting there): the same day
and the same 6 days, only the length of the history differs. Each timed daily run runs REPEATS
times on copies of its state, the three interleaved round by round so that the machine's drift
over minutes falls on all three alike; the medians are reported.
Every measured step runs in a fresh process; one ``RESULT {json}`` line closes the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as c

CDNOW = c.REPO.parent / "shared" / "realdata" / "cdnow" / "CDNOW_master.txt.gz"
CDNOW_START = dt.date(1997, 1, 1)
GENERATED_START = dt.date(2025, 1, 1)
DAILY_DAY = 7  # 1-based: the daily run early in the history, beside the last day's
SHORT_HISTORY = 6  # days before the last day in the short history (as many as before day 7)
REPEATS = 3  # each timed daily run, from copies of one state: the median is reported


def describe(label: str, measured: c.Measured, runs: int | None) -> str:
    """``label: 12.3 s wall (9.8 s CPU), 45 Dagster runs, peak RSS 678 MB, exit 0``."""
    return (
        f"{label}: {c.seconds(measured.wall)} wall ({c.seconds(measured.cpu)} CPU), {runs} Dagster runs, "
        f"peak RSS {c.megabytes(measured.peak_mb)}, exit {measured.status}"
    )


def report_errors(measured: c.Measured) -> None:
    for line in measured.error_lines():
        print(f"    project error: {line}")


def figures_of(measured: c.Measured, runs: int | None) -> dict[str, Any]:
    return {
        "wall_s": measured.wall,
        "inner_s": measured.inner_seconds,
        "cpu_s": measured.cpu,
        "peak_mb": measured.peak_mb,
        "runs": runs,
        "cli_runs": measured.runs(),
        "status": measured.status,
    }


def copy_state(source: Path, target: Path) -> None:
    """A copy of a data root (warehouse, staging, Dagster home); raw files are hard links (never written)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("raw"))
    if (source / "raw").exists():
        shutil.copytree(source / "raw", target / "raw", copy_function=os.link)


def link_raw(source: Path, target: Path, first: dt.date | None = None) -> None:
    """``source``'s config and raw files (hard links) under ``target``; telemetry days from ``first`` only."""
    shutil.copytree(source / "config", target / "config")

    def skipped(folder: str, names: list[str]) -> set[str]:
        if first is None or Path(folder).name != "telemetry":
            return set()
        return {n for n in names if n.startswith("date=") and n.removeprefix("date=") < first.isoformat()}

    shutil.copytree(source / "raw", target / "raw", copy_function=os.link, ignore=skipped)


def materialize(
    root: Path, start: dt.date, first: dt.date, last: dt.date, label: str, work: Path
) -> c.Measured:
    """``kpi-pipeline materialize --start FIRST --end LAST`` on ``root`` (partitions from ``start``)."""
    env = c.bench_env(root, start.isoformat(), root / "dagster_home")
    print(f"generated: kpi-pipeline materialize --start {first} --end {last} ({label})")
    measured = c.run_cli(
        ["materialize", "--start", str(first), "--end", str(last)],
        env,
        work / "logs" / f"{label}.log",
        echo=False,
    )
    report_errors(measured)
    return measured


@dataclass(frozen=True)
class Timed:
    """A daily run to time: ``day`` on copies of ``state`` (partitions from ``start``), whose
    instance holds ``before`` runs."""

    label: str
    state: Path
    before: int | None
    start: dt.date
    day: dt.date


def timed_daily(timed: list[Timed], work: Path) -> dict[str, dict[str, Any]]:
    """Each daily run REPEATS times, interleaved round by round (day 7, day 42, day 42 after a short
    history, then again), so the machine's drift over minutes falls on all of them alike; the
    figures of each one's median run, and each round's wall times."""
    runs: dict[str, list[tuple[c.Measured, int | None]]] = {t.label: [] for t in timed}
    for attempt in range(1, REPEATS + 1):
        for t in timed:
            root = work / f"{t.label}_{attempt}"
            copy_state(t.state, root)
            measured = materialize(root, t.start, t.day, t.day, f"{t.label}_{attempt}", work)
            total = measured.figures.get("runs_in_instance")
            runs[t.label].append((measured, None if total is None or t.before is None else total - t.before))
            print(describe(f"  {t.label} #{attempt}", measured, runs[t.label][-1][1]))
            shutil.rmtree(root)
    out = {}
    for label, done in runs.items():
        median, count = sorted(done, key=lambda run: run[0].wall)[len(done) // 2]
        out[label] = figures_of(median, count) | {"walls_s": [run.wall for run, _ in done]}
    return out


def daily_runs(work: Path, generated: Path, daily: dt.date, last: dt.date) -> dict[str, Any]:
    """The daily run of day 7 and of the last day, each the newest day, grown as the schedule grows
    the history; and the last day's daily run after a history of SHORT_HISTORY days only, which
    separates the cost of history from the cost of the day's own size."""
    one_day = dt.timedelta(days=1)
    grown = work / "grown"
    link_raw(generated, grown)
    out: dict[str, Any] = {}
    timed: list[Timed] = []
    steps = (
        ("grow_before_7", GENERATED_START, daily - one_day, "daily_7", daily),
        ("grow_before_last", daily, last - one_day, "daily_last", last),
    )
    before: int | None = 0
    for label, first, end, timed_label, day in steps:
        measured = materialize(grown, GENERATED_START, first, end, label, work)
        total = measured.figures.get("runs_in_instance")
        runs = None if total is None or before is None else total - before
        print(describe(f"{label} {first} … {end}", measured, runs))
        out[label] = figures_of(measured, runs)
        before = total
        state = grown
        if day != last:  # kept as it is while the history grows on, for the interleaved timing
            state = work / f"state_{timed_label}"
            copy_state(grown, state)
        timed.append(Timed(timed_label, state, before, GENERATED_START, day))
    short_start = last - dt.timedelta(days=SHORT_HISTORY)
    short = work / "short"
    link_raw(generated, short, short_start)
    measured = materialize(short, short_start, short_start, last - one_day, "grow_short", work)
    before = measured.figures.get("runs_in_instance")
    print(describe(f"grow_short {short_start} … {last - one_day}", measured, before))
    out["grow_short"] = figures_of(measured, before)
    timed.append(Timed("daily_last_short", short, before, short_start, last))
    out |= timed_daily(timed, work)
    out["ratio_history"] = c.ratio(out["daily_last"]["wall_s"], out["daily_last_short"]["wall_s"])
    return out


def cdnow(work: Path, days: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Import the CDNOW log with the purchases preset, then materialize 1 day and ``days`` days."""
    if not CDNOW.exists():
        print(f"CDNOW: {CDNOW} is absent (../shared/realdata beside the repository): skipping part (a)")
        return {"skipped": f"{CDNOW} absent"}, []
    base = work / "cdnow_import"
    (base / "config").mkdir(parents=True)
    (base / "config" / "kpi.yaml").write_text(
        "sources:\n  telemetry:\n    preset: purchases\n", encoding="utf-8"
    )
    env = c.bench_env(base, CDNOW_START.isoformat(), base / "dagster_home")
    print(f"CDNOW: kpi-pipeline import --source telemetry {CDNOW}")
    imported = c.run_cli(
        ["import", "--source", "telemetry", str(CDNOW)], env, work / "logs" / "cdnow_import.log"
    )
    print(f"CDNOW import: {c.seconds(imported.wall)} wall, exit {imported.status}")
    report_errors(imported)
    results: dict[str, Any] = {"import": figures_of(imported, None)}
    for span in (1, days):
        root = work / f"cdnow_{span}d"
        shutil.copytree(base / "raw", root / "raw")
        shutil.copytree(base / "config", root / "config")
        end = CDNOW_START + dt.timedelta(days=span - 1)
        env = c.bench_env(root, CDNOW_START.isoformat(), root / "dagster_home")
        print(f"CDNOW: kpi-pipeline materialize --start {CDNOW_START} --end {end}")
        argv = ["materialize", "--start", str(CDNOW_START), "--end", str(end)]
        measured = c.run_cli(argv, env, work / "logs" / f"cdnow_{span}d.log")
        runs = measured.figures.get("runs_in_instance")
        print(describe(f"CDNOW {span} day(s)", measured, runs))
        report_errors(measured)
        results[f"{span}d"] = figures_of(measured, runs)
    one, many = results["1d"], results[f"{days}d"]
    wall_ratio = c.ratio(many["wall_s"], one["wall_s"])
    print(
        f"CDNOW ratio {days} days / 1 day: wall {wall_ratio:.1f}×, runs {many['runs']} / {one['runs']}, "
        f"peak RSS {c.ratio(many['peak_mb'], one['peak_mb']):.1f}×"
    )
    results["ratio_wall"] = wall_ratio
    rows = [
        {
            "work": f"CDNOW (purchases preset): materialize 1 day, {one['runs']} runs",
            "project": c.timing(one["wall_s"], one["cpu_s"]),
            "floor": "—",
            "ratio": "",
            "peak_rss": c.megabytes(one["peak_mb"]),
        },
        {
            "work": f"CDNOW (purchases preset): materialize {days} days, {many['runs']} runs",
            "project": c.timing(many["wall_s"], many["cpu_s"]),
            "floor": "—",
            "ratio": f"{wall_ratio:.1f}× the 1-day run",
            "peak_rss": c.megabytes(many["peak_mb"]),
        },
    ]
    return results, rows


def generated(work: Path, days: int, users: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Generate ``days`` days, materialize them all, grow a copy day by day timing the daily runs of
    day 7 and the last day, run the floor."""
    root = work / "generated"
    env = c.bench_env(root, GENERATED_START.isoformat(), root / "dagster_home")
    argv = ["generate", "--out", str(root), "--days", str(days), "--users", str(users)]
    print(f"generated: kpi-pipeline {' '.join(argv)} --start {GENERATED_START}")
    made = c.run_cli(
        [*argv, "--start", str(GENERATED_START)], env, work / "logs" / "generate.log", echo=False
    )
    print(
        f"generate: {c.seconds(made.wall)} wall, exit {made.status}; {made.lines[-1] if made.lines else ''}"
    )
    report_errors(made)
    if made.status != 0:
        print("generated: generate failed, skipping part (b)")
        return {"skipped": f"generate exited {made.status}", "errors": made.error_lines()}, []
    last = GENERATED_START + dt.timedelta(days=days - 1)
    daily = GENERATED_START + dt.timedelta(days=DAILY_DAY - 1)
    results: dict[str, Any] = {"days": days, "users": users, "generate_s": made.wall}
    print(f"generated: kpi-pipeline materialize --start {GENERATED_START} --end {last}")
    measured = c.run_cli(
        ["materialize", "--start", str(GENERATED_START), "--end", str(last)],
        env,
        work / "logs" / "backfill.log",
    )
    runs = measured.figures.get("runs_in_instance")
    print(describe(f"backfill {GENERATED_START} … {last}", measured, runs))
    report_errors(measured)
    results["backfill"] = figures_of(measured, runs) | dict(
        zip(("raw", "staged"), measured.raw_rows(), strict=True)
    )
    results |= daily_runs(work, root, daily, last)
    aliases, window = c.floor_settings(root)
    files = c.telemetry_files(root)
    print(f"floor: DuckDB on the {len(files)} telemetry files of {days} days")
    floor = c.run_child(
        "floor", c.floor_spec(files, work / "floor", aliases, window), work / "logs" / "floor.log"
    )
    f = floor.figures
    print(c.floor_line(floor, "floor:"))
    backfill = results["backfill"]
    print(
        f"project backfill staged: {backfill['raw']:,} raw = {backfill['staged']:,} staged + "
        f"{backfill['raw'] - backfill['staged']:,} quarantined"
    )
    check = c.agreement(c.project_attempts(root / "warehouse" / "kpi.db"), f["aggregate"])
    print(f"attempts and completions, project vs floor: {check}")
    wall_ratio = c.ratio(backfill["wall_s"], floor.wall)
    daily_ratio = c.ratio(results["daily_last"]["wall_s"], results["daily_7"]["wall_s"])
    rss_ratio = c.ratio(backfill["peak_mb"], floor.peak_mb)
    cpu_ratio = c.ratio(backfill["cpu_s"], floor.cpu)
    print(f"ratio backfill/floor: wall {wall_ratio:.1f}×, CPU {cpu_ratio:.1f}×, peak RSS {rss_ratio:.1f}×")
    print(f"ratio daily run day {days} / day {DAILY_DAY}: wall {daily_ratio:.2f}× (medians)")
    print(
        f"ratio daily run day {days} after {days - 1} days / after {SHORT_HISTORY} days: "
        f"wall {results['ratio_history']:.2f}× (medians)"
    )
    results |= {
        "floor": c.floor_figures(floor),
        "ratio_wall": wall_ratio,
        "ratio_cpu": cpu_ratio,
        "ratio_daily": daily_ratio,
        "attempts_check": check,
    }
    name = f"generated {days} days × {users:,} users"
    rows = [
        {
            "work": f"{name}: full backfill vs DuckDB floor, {backfill['runs']} runs",
            "project": c.timing(backfill["wall_s"], backfill["cpu_s"]),
            "floor": c.timing(floor.wall, floor.cpu),
            "ratio": f"{wall_ratio:.1f}×",
            "peak_rss": f"{c.megabytes(backfill['peak_mb'])} / {c.megabytes(floor.peak_mb)}",
        }
    ]
    for label, what in (
        ("daily_7", f"daily run of day {DAILY_DAY}, the newest day, {DAILY_DAY - 1} days before it"),
        ("daily_last", f"daily run of day {days}, the newest day, {days - 1} days before it"),
        ("daily_last_short", f"daily run of day {days}, the newest day, {SHORT_HISTORY} days before it"),
    ):
        run = results[label]
        ratio = ""
        if label == "daily_last":
            ratio = f"{daily_ratio:.2f}× day {DAILY_DAY}; {results['ratio_history']:.2f}× its short history"
        rows.append(
            {
                "work": f"{name}: {what}, {run['runs']} runs, median of {len(run['walls_s'])}",
                "project": c.timing(run["wall_s"], run["cpu_s"]),
                "floor": "—",
                "ratio": ratio,
                "peak_rss": c.megabytes(run["peak_mb"]),
            }
        )
    return results, rows


def measure(work: Path, days: int, users: int, cdnow_days: int) -> dict[str, Any]:
    measured_on = c.context()
    cdnow_results, cdnow_rows = cdnow(work, cdnow_days)
    generated_results, generated_rows = generated(work, days, users)
    return {
        "benchmark": "backfill",
        "context": measured_on | {"load_at_end": os.getloadavg()[0]},
        "cdnow": cdnow_results,
        "generated": generated_results,
        "table": cdnow_rows + generated_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=42, help="days of the generated set (at least 8)")
    parser.add_argument("--users", type=int, default=6000, help="users of the generated set")
    parser.add_argument("--cdnow-days", type=int, default=90, help="days of the long CDNOW backfill")
    parser.add_argument("--keep", type=Path, help="work here and keep the data (must be empty or new)")
    args = parser.parse_args()
    if args.days <= DAILY_DAY:
        parser.error(
            f"--days must be at least {DAILY_DAY + 1}: the last day's run is timed beside day {DAILY_DAY}'s"
        )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty")
        figures = measure(args.keep.resolve(), args.days, args.users, args.cdnow_days)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmp:
            figures = measure(Path(tmp), args.days, args.users, args.cdnow_days)
    c.emit(figures)


if __name__ == "__main__":
    main()
