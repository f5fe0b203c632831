"""Benchmark: stage one telemetry partition of ~1M raw rows (with bad rows) and print figures.

    python benchmarks/stage_partition.py [--events 1000000] [--format jsonl|jsonl.gz]

Writes the partition with the sample-data generator, then stages it in a fresh
process so the peak memory printed is the staging step's own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kpi_pipeline.config import EventAlias
from kpi_pipeline.ingest.telemetry import partition_folder, stage_telemetry_partition
from kpi_pipeline.sample_data import telemetry_day_bytes

DAY = dt.date(2025, 1, 15)


def write_partition(root: Path, events: int, fmt: str) -> Path:
    data = telemetry_day_bytes(DAY, events, seed=1)
    folder = partition_folder(root, DAY)
    folder.mkdir(parents=True)
    path = folder / f"events.{fmt}"
    path.write_bytes(gzip.compress(data, compresslevel=1) if fmt.endswith(".gz") else data)
    return path


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it does not inherit the
    parent's peak across exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(row for row in status if row.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def stage_only(root: Path) -> None:
    """Child process: stage the partition and print the figures as JSON."""
    aliases = [EventAlias.model_validate({"from": "task_done", "to": "task_completed"})]
    started = time.perf_counter()
    report = stage_telemetry_partition(root, DAY, aliases).report
    seconds = time.perf_counter() - started
    peak_mb = _peak_rss_mb()
    figures = {"seconds": seconds, "peak_mb": peak_mb, "raw": report.raw_rows, "staged": report.staged_rows}
    print(json.dumps({**figures, "quarantined": report.quarantined_rows, "reconciled": report.reconciled}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["jsonl", "jsonl.gz"], default="jsonl")
    parser.add_argument("--stage-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_only:
        stage_only(args.stage_only)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        path = write_partition(root, args.events, args.format)
        seconds = time.perf_counter() - started
        print(f"wrote {path.name}: {path.stat().st_size / 1e6:.0f} MB in {seconds:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--stage-only", str(root)], check=True, capture_output=True, text=True
        )
    f = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"staged {f['staged']:,} + quarantined {f['quarantined']:,} = {f['raw']:,} raw rows"
        f" ({'reconciled' if f['reconciled'] else 'NOT reconciled'})"
    )
    print(f"staging: {f['seconds']:.2f} s, {f['raw'] / f['seconds']:,.0f} raw rows/s")
    print(f"peak RSS of the staging process: {f['peak_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
