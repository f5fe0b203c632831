"""Run every benchmark, one after the other, and print one summary table at the end.

    python benchmarks/run_all.py [--10m]        # or BENCH_10M=1 python benchmarks/run_all.py

Runs day_vs_floor.py (1M lines), backfill.py, stage_partition.py (1M events, with the exact
reader alone too) and object_storage.py (1M events staged from S3, on moto's server); with
``--10m`` or ``BENCH_10M=1`` also the first and third at 10M lines (~2.8 GB of JSONL; long).
Each script's output passes through; its ``RESULT {json}`` line feeds the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT_PREFIX = "RESULT "
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
        ("stage_partition.py", ("--events", "1000000", "--exact")),
        ("object_storage.py", ("--events", "1000000")),
        *((("day_vs_floor.py", ("--lines", "10000000")),) if ten_million else ()),
        *((("stage_partition.py", ("--events", "10000000")),) if ten_million else ()),
    ):
        status, lines, seconds = run(script, *extra)
        rows += result_rows(script, status, lines)
        timings.append(f"{script} {' '.join(extra)}".rstrip() + f": {seconds / 60:.1f} min")
    print("\n## Benchmarks (2 cores, 24 GB)\n")
    print(table(rows))
    print(
        "\nproject and floor: wall seconds of a fresh process each, interpreter start and imports included; "
        "in brackets its CPU seconds (user + system, every thread). Staging only: the staging call's own "
        "seconds, beside the floor's read, classify and stage-to-Parquet phases."
    )
    if not ten_million:
        print("the 10M-line day (materialize and staging) runs with --10m or BENCH_10M=1")
    print("\n" + "; ".join(timings) + f"; all: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
