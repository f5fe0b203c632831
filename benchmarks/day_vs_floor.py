"""Benchmark: the project's materialize of one big telemetry day beside a DuckDB floor on the same file.

    python benchmarks/day_vs_floor.py [--lines 1000000] [--keep DIR]

Writes a day of ~LINES raw rows (~2 % bad rows of every kind, from the sample-data generator)
into a fresh data root, with small neighbour days D-1 and D+1 that the range leaves out. Then,
each in a fresh process: ``kpi-pipeline materialize --start D --end D``, and the floor (DuckDB
reads every line with its number, parses and classifies it, stages the good rows to Parquet and
computes per-(date, workflow) attempts, completions and median time to complete). Prints both
walls, both peak RSS and the ratios, then one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

DAY = dt.date(2025, 1, 15)
CHUNK_LINES = 1_000_000  # the generator peaks at ~2.5 GB per million rows, so bigger days come in chunks


def chunk_bytes(day: dt.date, lines: int, seed: int, chunk: int) -> bytes:
    """One chunk of a day: ``telemetry_day_bytes`` with event, task and user ids made unique per chunk.

    The generator numbers ids from 1 in every call (``evt_000000001``, ``evt_b0000001``,
    ``task_0000001``, ``u00001``), so every chunk after the first gets a ``<chunk>_`` infix.
    """
    from kpi_pipeline.sample_data import telemetry_day_bytes

    data = telemetry_day_bytes(day, lines, seed=seed)
    if chunk:
        for key, prefix in ((b"event_id", b"evt_"), (b"task_id", b"task_"), (b"user_id", b"u")):
            old = b'"' + key + b'":"' + prefix
            data = data.replace(old, old + str(chunk).encode() + b"_")
    return data


def write_day(root: Path, day: dt.date, lines: int, seed: int) -> Path:
    """``raw/telemetry/date=DAY/events.jsonl`` of ~``lines`` rows, written chunk by chunk."""
    folder = root / "raw" / "telemetry" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    with open(path, "wb") as out:
        for chunk, first in enumerate(range(0, lines, CHUNK_LINES)):
            out.write(chunk_bytes(day, min(CHUNK_LINES, lines - first), seed + 1000 * chunk, chunk))
    return path


def measure(root: Path, lines: int) -> dict[str, Any]:
    """Write the data, run the project and the floor, print the figures; returns them."""
    measured_on = c.context()
    started = time.perf_counter()
    path = write_day(root, DAY, lines, seed=1)
    neighbours = max(1, lines // 100)
    for offset, seed in ((-1, 2), (1, 3)):
        write_day(root, DAY + dt.timedelta(days=offset), neighbours, seed=seed)
    size = path.stat().st_size
    print(
        f"wrote {path.relative_to(root)}: {size / 1e6:,.0f} MB, {lines:,} rows requested, in "
        f"{time.perf_counter() - started:.1f} s (+ D-1 and D+1 of {neighbours:,} rows each, outside the "
        "range)"
    )

    env = c.bench_env(root, (DAY - dt.timedelta(days=1)).isoformat(), root / "dagster_home")
    print(f"project: kpi-pipeline materialize --start {DAY} --end {DAY}")
    project = c.run_cli(
        ["materialize", "--start", str(DAY), "--end", str(DAY)], env, root / "logs" / "project.log"
    )
    runs = project.runs()
    raw, staged = project.raw_rows()
    print(
        f"project: {c.seconds(project.wall)} wall ({c.seconds(project.cpu)} CPU), "
        f"peak RSS {c.megabytes(project.peak_mb)}, {project.figures.get('runs_in_instance')} Dagster runs, "
        f"exit {project.status}; {raw:,} raw = {staged:,} staged + {raw - staged:,} quarantined"
    )
    for line in project.error_lines():
        print(f"project error: {line}")

    aliases, window = c.floor_settings(root)
    spec = c.floor_spec(c.telemetry_files(root, [DAY]), root / "floor", aliases, window)
    floor = c.run_child("floor", spec, root / "logs" / "floor.log")
    f = floor.figures
    print(c.floor_line(floor, "floor:  "))
    kinds: dict[str, int] = {}
    for reason, count in f["reasons"].items():
        kinds[reason.split(":")[0]] = kinds.get(reason.split(":")[0], 0) + count
    print("floor quarantine: " + ", ".join(f"{k} {v:,}" for k, v in kinds.items()))
    warehouse = root / "warehouse" / "kpi.db"
    check = (
        c.agreement(c.project_attempts(warehouse), f["aggregate"]) if warehouse.exists() else "no warehouse"
    )
    print(f"attempts and completions, project vs floor: {check}")
    wall_ratio = c.ratio(project.wall, floor.wall)
    rss_ratio = c.ratio(project.peak_mb, floor.peak_mb)
    cpu_ratio = c.ratio(project.cpu, floor.cpu)
    print(f"ratio project/floor: wall {wall_ratio:.1f}×, CPU {cpu_ratio:.1f}×, peak RSS {rss_ratio:.1f}×")
    work = f"1 day, {lines / 1e6:g}M lines: materialize vs DuckDB floor"
    return {
        "benchmark": "day_vs_floor",
        "context": measured_on | {"load_at_end": os.getloadavg()[0]},
        "lines": lines,
        "file_mb": size / 1e6,
        "project": {
            "wall_s": project.wall,
            "inner_s": project.inner_seconds,
            "cpu_s": project.cpu,
            "peak_mb": project.peak_mb,
            "status": project.status,
            "runs": runs,
            "runs_in_instance": project.figures.get("runs_in_instance"),
            "raw": raw,
            "staged": staged,
        },
        "floor": c.floor_figures(floor),
        "ratio_wall": wall_ratio,
        "ratio_peak": rss_ratio,
        "ratio_cpu": cpu_ratio,
        "attempts_check": check,
        "table": [
            {
                "work": work,
                "project": c.timing(project.wall, project.cpu),
                "floor": c.timing(floor.wall, floor.cpu),
                "ratio": f"{wall_ratio:.1f}×",
                "peak_rss": f"{c.megabytes(project.peak_mb)} / {c.megabytes(floor.peak_mb)}",
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="raw rows of the day")
    parser.add_argument(
        "--keep", type=Path, help="write the data root here and keep it (must be empty or new)"
    )
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty")
        figures = measure(args.keep.resolve(), args.lines)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_day_") as tmp:
            figures = measure(Path(tmp), args.lines)
    c.emit(figures)


if __name__ == "__main__":
    main()
