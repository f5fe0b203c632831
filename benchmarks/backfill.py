"""Benchmark: backfills, and the daily run early and late in a backfilled history.

    python benchmarks/backfill.py [--days 42] [--users 6000] [--cdnow-days 90] [--keep DIR]

(a) The real CDNOW purchase log (``../shared/realdata/cdnow``; skipped when absent) imported
through the ``purchases`` preset, then materialized for its first day and for its first
CDNOW_DAYS days, each into a fresh warehouse and Dagster home: wall, Dagster runs, peak RSS
and the ratio of the two.
(b) A generated set (``kpi-pipeline generate --days DAYS --users USERS``, from 2025-01-01)
materialized in full, and a DuckDB floor (parse every day's files, stage to Parquet, per-day
attempt aggregates) on the same files. Then, in a copy of the raw files, the history grown as
the daily schedule grows it: days 1-6, the daily run of day 7 (timed), days 8 to the one before
last, the daily run of the last day (timed) — each the newest day when it runs, so the two
differ only in the history behind them.
Every measured step runs in a fresh process; one ``RESULT {json}`` line closes the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import _common as c

CDNOW = c.REPO.parent / "shared" / "realdata" / "cdnow" / "CDNOW_master.txt.gz"
CDNOW_START = dt.date(1997, 1, 1)
GENERATED_START = dt.date(2025, 1, 1)
DAILY_DAY = 7  # 1-based: the daily run early in the history, beside the last day's


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
    grown = work / "grown"
    grown.mkdir()
    for part in ("raw", "config"):
        if (root / part).exists():
            shutil.copytree(root / part, grown / part)
    grown_env = c.bench_env(grown, GENERATED_START.isoformat(), grown / "dagster_home")
    one_day = dt.timedelta(days=1)
    seen = {id(env): 0, id(grown_env): 0}
    for label, first, end, where in (
        ("backfill", GENERATED_START, last, env),
        ("grow_before_7", GENERATED_START, daily - one_day, grown_env),
        ("daily_7", daily, daily, grown_env),
        ("grow_before_last", daily + one_day, last - one_day, grown_env),
        ("daily_last", last, last, grown_env),
    ):
        print(f"generated: kpi-pipeline materialize --start {first} --end {end}")
        measured = c.run_cli(
            ["materialize", "--start", str(first), "--end", str(end)], where, work / "logs" / f"{label}.log"
        )
        total = measured.figures.get("runs_in_instance")
        runs = None if total is None else total - seen[id(where)]
        seen[id(where)] = total or seen[id(where)]
        print(describe(f"{label} {first} … {end}", measured, runs))
        report_errors(measured)
        results[label] = figures_of(measured, runs) | dict(
            zip(("raw", "staged"), measured.raw_rows(), strict=True)
        )
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
    print(f"ratio daily run day {days} / day {DAILY_DAY}: wall {daily_ratio:.2f}×")
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
    for label, number in (("daily_7", DAILY_DAY), ("daily_last", days)):
        run = results[label]
        rows.append(
            {
                "work": f"{name}: daily run of day {number}, the newest day, {run['runs']} runs",
                "project": c.timing(run["wall_s"], run["cpu_s"]),
                "floor": "—",
                "ratio": f"{daily_ratio:.2f}× day {DAILY_DAY}" if label == "daily_last" else "",
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
    parser.add_argument("--days", type=int, default=42, help="days of the generated set (at least 7)")
    parser.add_argument("--users", type=int, default=6000, help="users of the generated set")
    parser.add_argument("--cdnow-days", type=int, default=90, help="days of the long CDNOW backfill")
    parser.add_argument("--keep", type=Path, help="work here and keep the data (must be empty or new)")
    args = parser.parse_args()
    if args.days < DAILY_DAY:
        parser.error(f"--days must be at least {DAILY_DAY}")
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
