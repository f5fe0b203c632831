"""Benchmark: stage one telemetry partition of ~N raw rows (2 % bad rows of every kind), beside the
DuckDB floor's staging on the same file.

    python benchmarks/stage_partition.py [--events 1000000] [--format jsonl|jsonl.gz] [--exact]

Writes the partition with the sample-data generator (in chunks, so 10M rows fit), then, each in a
fresh process so the peak memory printed is that step's own: the project's staging
(``stage_telemetry_partition`` to a Parquet file: DuckDB's fast pass and the exact reader for the
rest), with
``--exact`` also the exact reader alone (the staging before the fast pass), and the floor's read,
classify and stage-to-Parquet phases (DuckDB, ``_common.py``). Prints raw rows/s for each and one
``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
from day_vs_floor import DAY, write_day

from kpi_pipeline.config import EventAlias
from kpi_pipeline.ingest.telemetry import EventsFile, stage_telemetry_partition


def write_partition(root: Path, events: int, fmt: str) -> Path:
    path = write_day(root, DAY, events, seed=1)
    if fmt.endswith(".gz"):
        packed = path.with_name(path.name + ".gz")
        with open(path, "rb") as raw, gzip.open(packed, "wb", compresslevel=1) as out:
            while block := raw.read(1 << 24):
                out.write(block)
        path.unlink()
        path = packed
    return path


def stage_only(root: Path, exact: bool) -> None:
    """Child process: stage the partition to a Parquet file (as the asset does) and print the figures
    as JSON."""
    aliases = [EventAlias.model_validate({"from": "task_done", "to": "task_completed"})]
    out = EventsFile(root / "staged.parquet")
    started = time.perf_counter()
    report = stage_telemetry_partition(root, DAY, aliases, fast=not exact, out=out).report
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "peak_mb": c.peak_rss_mb(), "cpu_s": c.cpu_seconds()}
    counts = {"raw": report.raw_rows, "staged": report.staged_rows, "quarantined": report.quarantined_rows}
    print(json.dumps({**figures, **counts, "reconciled": report.reconciled}))


def staged_in_child(root: Path, exact: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stage-only", str(root), *(["--exact"] if exact else [])]
    child = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return figures


def line(label: str, seconds: float, rows: int, peak_mb: float) -> str:
    return f"{label}: {seconds:.2f} s, {rows / seconds:,.0f} raw rows/s, peak RSS {peak_mb:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["jsonl", "jsonl.gz"], default="jsonl")
    parser.add_argument("--exact", action="store_true", help="also stage with the exact reader alone")
    parser.add_argument("--stage-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_only:
        stage_only(args.stage_only, args.exact)
        return
    measured_on = c.context()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        path = write_partition(root, args.events, args.format)
        print(
            f"wrote {path.name}: {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - started:.1f} s"
        )
        project = staged_in_child(root, exact=False)
        exact = staged_in_child(root, exact=True) if args.exact else None
        spec = c.floor_spec(c.telemetry_files(root, [DAY]), root / "floor", [], 24.0)
        floor = c.run_child("floor", spec, root / "logs" / "floor.log", echo=False)
    raw = project["raw"]
    print(
        f"staged {project['staged']:,} + quarantined {project['quarantined']:,} = {raw:,} raw rows"
        f" ({'reconciled' if project['reconciled'] else 'NOT reconciled'})"
    )
    # run_all.py reads the next two lines.
    print(f"staging: {project['seconds']:.2f} s, {raw / project['seconds']:,.0f} raw rows/s")
    print(f"peak RSS of the staging process: {project['peak_mb']:,.0f} MB")
    if exact is not None:
        print(line("exact reader alone", exact["seconds"], exact["raw"], exact["peak_mb"]))
    phases = floor.figures["phases"]
    floor_seconds = phases["read_parse_classify"] + phases["stage_parquet"]
    print(
        line("floor (read, classify, stage to Parquet)", floor_seconds, floor.figures["raw"], floor.peak_mb)
    )
    ratio = c.ratio(project["seconds"], floor_seconds)
    print(f"ratio project/floor: {ratio:.1f}×")
    work = f"stage one telemetry partition, {args.events / 1e6:g}M events (staging only)"
    row = {
        "work": work,
        "project": f"{project['seconds']:.1f} s ({raw / project['seconds'] / 1e3:,.0f}k rows/s)",
        "floor": f"{floor_seconds:.1f} s ({floor.figures['raw'] / floor_seconds / 1e3:,.0f}k rows/s)",
        "ratio": f"{ratio:.1f}×",
        "peak_rss": f"{c.megabytes(project['peak_mb'])} / {c.megabytes(floor.peak_mb)}",
    }
    c.emit(
        {
            "benchmark": "stage_partition",
            "context": measured_on,
            "events": args.events,
            "project": project,
            "exact": exact,
            "floor_staging_s": floor_seconds,
            "floor_peak_mb": floor.peak_mb,
            "table": [row],
        }
    )


if __name__ == "__main__":
    main()
