"""Run every benchmark, one after the other, and print one summary table at the end.

    python benchmarks/run_all.py [--10m]        # or BENCH_10M=1 python benchmarks/run_all.py

Runs day_vs_floor.py (1M lines), backfill.py and stage_partition.py (1M events); with ``--10m``
or ``BENCH_10M=1`` also day_vs_floor.py at 10M lines (~2.8 GB of JSONL; long). Each script's
output passes through; its ``RESULT {json}`` line (or, for stage_partition.py, its printed
figures) feeds the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULT_PREFIX = "RESULT "
STAGING = re.compile(r"^staging: ([\d.]+) s")
STAGING_PEAK = re.compile(r"^peak RSS of the staging process: ([\d,]+) MB")
COLUMNS = ("work", "project", "floor", "ratio", "peak_rss")
HEADER = ("work", "project", "floor", "ratio", "peak RSS (project / floor)")


def run(script: str, *args: str) -> tuple[int, list[str], float]:
    """Run one benchmark script, passing its output through; returns its exit status, lines and wall."""
    command = [sys.executable, str(HERE / script), *args]
    print(f"\n== {script} {' '.join(args)}".rstrip(), flush=True)
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.rstrip("\n"))
            if not line.startswith(RESULT_PREFIX):
                print(line, end="", flush=True)
    seconds = time.perf_counter() - started
    print(f"== {script}: exit {child.returncode} after {seconds / 60:.1f} min", flush=True)
    return child.returncode, lines, seconds


def result_rows(script: str, status: int, lines: list[str]) -> list[dict[str, str]]:
    """The table rows of a script's ``RESULT`` line (a failure row when there is none)."""
    results = [
        json.loads(line.removeprefix(RESULT_PREFIX)) for line in lines if line.startswith(RESULT_PREFIX)
    ]
    if not results:
        return [
            {"work": script, "project": f"failed (exit {status})", "floor": "", "ratio": "", "peak_rss": ""}
        ]
    return list(results[-1]["table"])


def staging_rows(events: int, status: int, lines: list[str]) -> list[dict[str, str]]:
    """The row of stage_partition.py, read from the figures it prints."""
    found: dict[str, Any] = {}
    for line in lines:
        for key, pattern in (("seconds", STAGING), ("peak", STAGING_PEAK)):
            match = pattern.match(line)
            if match:
                found[key] = float(match[1].replace(",", ""))
    work = f"stage one telemetry partition, {events / 1e6:g}M events (staging only)"
    if "seconds" not in found:
        return [
            {"work": work, "project": f"failed (exit {status})", "floor": "", "ratio": "", "peak_rss": ""}
        ]
    peak = f"{found['peak']:,.0f} MB" if "peak" in found else "—"
    return [
        {"work": work, "project": f"{found['seconds']:.1f} s", "floor": "—", "ratio": "", "peak_rss": peak}
    ]


def table(rows: list[dict[str, str]]) -> str:
    """The rows as a markdown table."""
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(row.get(k, "") for k in COLUMNS) + " |" for row in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="also the 10M-line day")
    args = parser.parse_args()
    ten_million = args.ten_million or os.environ.get("BENCH_10M", "") not in ("", "0")
    started = time.perf_counter()
    rows: list[dict[str, str]] = []
    timings: list[str] = []
    for script, extra in (
        ("day_vs_floor.py", ("--lines", "1000000")),
        ("backfill.py", ()),
        *((("day_vs_floor.py", ("--lines", "10000000")),) if ten_million else ()),
    ):
        status, lines, seconds = run(script, *extra)
        rows += result_rows(script, status, lines)
        timings.append(f"{script} {' '.join(extra)}".rstrip() + f": {seconds / 60:.1f} min")
    status, lines, seconds = run("stage_partition.py", "--events", "1000000")
    rows += staging_rows(1_000_000, status, lines)
    timings.append(f"stage_partition.py --events 1000000: {seconds / 60:.1f} min")
    print("\n## Benchmarks (2 cores, 24 GB)\n")
    print(table(rows))
    print(
        "\nproject and floor: wall seconds of a fresh process each, interpreter start and imports included; "
        "in brackets its CPU seconds (user + system, every thread). Staging only: the staging call's own "
        "seconds."
    )
    if not ten_million:
        print("the 10M-line day runs with --10m or BENCH_10M=1")
    print(
        "stage_partition.py is not run at 10M events: its generator builds the day in one piece "
        "(2.5 GB peak at 1M events, so ~25 GB at 10M)"
    )
    print("\n" + "; ".join(timings) + f"; all: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
