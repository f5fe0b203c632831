"""Benchmark: stage one telemetry day whose data root is in an object store (moto's S3 server on
127.0.0.1, through s3fs), beside the same day on the local disk, each with the DuckDB floor reading
the same file the same way.

    python benchmarks/object_storage.py [--events 1000000]

The day is written by the sample-data generator (2 % bad rows of every kind) and uploaded. Each
staging runs in a fresh process (``stage_telemetry_partition`` to a Parquet file under the data
root: on S3 the raw file is read and the staged file written through s3fs). The floor's read,
classify and stage-to-Parquet phases read the raw file from the same place and write their Parquet
locally; from S3 the floor is the faster of DuckDB reading through s3fs (registered in DuckDB) and a
download followed by the local floor. moto keeps objects in memory and answers over
loopback: the figures show what the fsspec path costs, not a real store's latency or bandwidth.
Prints raw rows/s for each and one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
from day_vs_floor import DAY
from stage_partition import write_partition

from kpi_pipeline.config import EventAlias
from kpi_pipeline.ingest.telemetry import EventsFile, stage_telemetry_partition
from kpi_pipeline.storage import location
from kpi_pipeline_tests.object_store import new_bucket, s3_server, upload


def stage_only(root: str) -> None:
    """Child process: stage the day under ``root`` (a folder or an s3:// URL) to a Parquet file
    there, as the asset does, and print the figures as JSON."""
    aliases = [EventAlias.model_validate({"from": "task_done", "to": "task_completed"})]
    data = location(root)
    out = EventsFile(data / "staging" / "staged.parquet")
    out.path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = stage_telemetry_partition(data, DAY, aliases, out=out).report
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "peak_mb": c.peak_rss_mb(), "cpu_s": c.cpu_seconds()}
    print(json.dumps({**figures, "raw": report.raw_rows, "reconciled": report.reconciled}))


def staged_in_child(root: str) -> dict[str, Any]:
    child = subprocess.run([sys.executable, __file__, "--stage-only", root], capture_output=True, text=True)
    if child.returncode:
        raise SystemExit(f"staging {root} failed:\n{child.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return figures


def floor_seconds(files: list[tuple[str, str]], out: Path) -> tuple[float, int, float]:
    """(seconds of the floor's read, classify and stage phases, raw rows, peak MB)."""
    floor = c.run_child(
        "floor", c.floor_spec(files, out, [], 24.0), out.parent / f"{out.name}.log", echo=False
    )
    phases = floor.figures["phases"]
    return phases["read_parse_classify"] + phases["stage_parquet"], floor.figures["raw"], floor.peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stage-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_only:
        stage_only(args.stage_only)
        return
    measured_on = c.context()
    with tempfile.TemporaryDirectory() as tmp, s3_server():
        local = Path(tmp) / "local"
        path = write_partition(local, args.events, "jsonl")
        size_mb = path.stat().st_size / 1e6
        remote = new_bucket("data")
        started = time.perf_counter()
        upload(local, remote)
        print(
            f"wrote {path.name}: {size_mb:,.0f} MB; uploaded to {remote} "
            f"in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        remote_file = remote / path.relative_to(local).as_posix()
        remote_file.fs.get_file(remote_file.path, str(Path(tmp) / "downloaded.jsonl"))
        download = time.perf_counter() - started
        print(f"download of the raw file through s3fs: {download:.2f} s ({size_mb / download:,.0f} MB/s)")
        project = {"local": staged_in_child(str(local)), "s3": staged_in_child(str(remote))}
        local_floor = floor_seconds(c.telemetry_files(local, [DAY]), Path(tmp) / "floor_local")
        through_s3fs = floor_seconds(
            [
                (day, f"{remote}/{Path(p).relative_to(local).as_posix()}")
                for day, p in c.telemetry_files(local, [DAY])
            ],
            Path(tmp) / "floor_s3",
        )
    # The floor from S3 reads the file the faster way: DuckDB through s3fs, or a download and then the
    # local floor.
    fetched = (download + local_floor[0], local_floor[1], local_floor[2])
    print(
        f"floor from S3: DuckDB through s3fs {through_s3fs[0]:.2f} s; "
        f"download + local floor {fetched[0]:.2f} s"
    )
    floors = {"local": local_floor, "s3": min(through_s3fs, fetched)}
    rows = []
    for where in ("local", "s3"):
        mine, (floor, floor_raw, floor_mb) = project[where], floors[where]
        raw = mine["raw"]
        label = "local disk" if where == "local" else "S3 (moto, s3fs)"
        reconciled = "reconciled" if mine["reconciled"] else "NOT reconciled"
        ratio = c.ratio(mine["seconds"], floor)
        print(
            f"{label}: staging {mine['seconds']:.2f} s ({raw / mine['seconds']:,.0f} raw rows/s, "
            f"{reconciled}), peak RSS {mine['peak_mb']:,.0f} MB; "
            f"floor {floor:.2f} s ({floor_raw / floor:,.0f} raw rows/s); ratio {ratio:.1f}×"
        )
        rows.append(
            {
                "work": f"stage one telemetry day, {args.events / 1e6:g}M events, data root on {label}",
                "project": f"{mine['seconds']:.1f} s ({raw / mine['seconds'] / 1e3:,.0f}k rows/s)",
                "floor": f"{floor:.1f} s ({floor_raw / floor / 1e3:,.0f}k rows/s)",
                "ratio": f"{ratio:.1f}×",
                "peak_rss": f"{c.megabytes(mine['peak_mb'])} / {c.megabytes(floor_mb)}",
            }
        )
    s3_cost = project["s3"]["seconds"] / project["local"]["seconds"]
    print(f"S3 against local disk: staging {s3_cost:.2f}×, floor {floors['s3'][0] / floors['local'][0]:.2f}×")
    c.emit(
        {
            "benchmark": "object_storage",
            "context": measured_on,
            "events": args.events,
            "raw_mb": size_mb,
            "download_s": download,
            "project": project,
            "floor": {k: v[0] for k, v in floors.items()},
            "floor_s3_through_s3fs": through_s3fs[0],
            "table": rows,
        }
    )


if __name__ == "__main__":
    main()
