"""Benchmark: stage one telemetry partition of ~1M raw rows (with bad rows) and print figures.

    python benchmarks/stage_partition.py [--events 1000000] [--format jsonl|jsonl.gz|csv]

Prints generation time, staging time, events/s and peak memory (RSS) of the staging step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from kpi_pipeline.config import EventAlias
from kpi_pipeline.ingest.telemetry import partition_folder, stage_telemetry_partition
from kpi_pipeline.sample_data import telemetry_day_bytes

DAY = dt.date(2025, 1, 15)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_partition(root: Path, events: int, fmt: str) -> Path:
    data = telemetry_day_bytes(DAY, events, seed=1)
    folder = partition_folder(root, DAY)
    folder.mkdir(parents=True)
    if fmt == "csv":
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        data = frame.to_csv(index=False).encode()
    path = folder / f"events.{fmt}"
    path.write_bytes(gzip.compress(data, compresslevel=1) if fmt.endswith(".gz") else data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["jsonl", "jsonl.gz", "csv"], default="jsonl")
    args = parser.parse_args()
    aliases = [EventAlias.model_validate({"from": "task_done", "to": "task_completed"})]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        path = write_partition(root, args.events, args.format)
        size_mb = path.stat().st_size / 1e6
        generated = time.perf_counter() - started
        before = _peak_rss_mb()
        started = time.perf_counter()
        staged = stage_telemetry_partition(root, DAY, aliases)
        seconds = time.perf_counter() - started
        report = staged.report
    print(f"file: {path.name}, {size_mb:.0f} MB")
    print(f"generated {report.raw_rows:,} raw rows in {generated:.1f} s")
    print(
        f"staged {report.staged_rows:,} + quarantined {report.quarantined_rows:,}"
        f" = {report.raw_rows:,} raw rows ({'reconciled' if report.reconciled else 'NOT reconciled'})"
    )
    print(f"staging: {seconds:.2f} s, {report.raw_rows / seconds:,.0f} raw rows/s")
    print(f"peak RSS: {_peak_rss_mb():,.0f} MB (before staging: {before:,.0f} MB)")


if __name__ == "__main__":
    main()
