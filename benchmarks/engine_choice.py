"""Benchmark: DuckDB vs Polars on one raw telemetry day (line numbers, classify, stage Parquet, KPI).

    python benchmarks/engine_choice.py [--events 1000000] [--days 1] [--repeats 2] [--keep DIR]

Needs Polars (``pip install polars``), which the project itself does not depend on.

Writes (or reuses, with --keep) a JSONL day with ~2 % bad lines, then runs the same workload in each
engine, each run in a fresh child process so the peak RSS printed (VmHWM) is that engine's own:
read every line with its 1-based number, classify bad lines (blank, not a JSON object, a missing
required field, an unparseable occurred_at), write the good rows and the bad lines to Parquet, then
per (date, workflow) attempts, completions within 24 h and the median minutes to complete. Both
engines must agree exactly on the counts, the bad lines, the staged rows and the KPI table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kpi_pipeline.contract import TELEMETRY_FIELDS, TELEMETRY_REQUIRED

DAY = dt.date(2025, 1, 15)
ENGINES = ("duckdb", "polars")
# The contract's identifying and routing fields, then duration_ms last (the one number).
FIELDS = (*TELEMETRY_FIELDS[: TELEMETRY_FIELDS.index("topic") + 1], "duration_ms")
REQUIRED = TELEMETRY_REQUIRED
# Blank (a line or a value) and the start of an object, the same regexes in both engines. (DuckDB's
# trim(x, characters) walks the whole string: 5 s a million lines, where the regex takes 0.4 s.)
BLANK = r"^[ \t\r\n]*$"
OBJECT_START = r"^[ \t\r\n]*\{"
# The occurred_at shapes both engines parse: ISO date and time, optional fraction, Z, offset or naive (UTC).
TS_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
WINDOW_HOURS = 24
MS_PER_MINUTE = 60_000


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM; not inherited across exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(row for row in status if row.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


# ----------------------------------------------------------------------------- input


def write_input(path: Path, events: int, days: int) -> None:
    """``days`` differently seeded days concatenated; event and task ids get a per-day prefix."""
    from kpi_pipeline.sample_data import telemetry_day_bytes

    with open(path, "wb") as out:
        for i in range(days):
            data = telemetry_day_bytes(DAY + dt.timedelta(days=i), events, seed=1 + i)
            if i:
                data = data.replace(b'"event_id":"evt_', f'"event_id":"d{i}_evt_'.encode())
                data = data.replace(b'"task_id":"task_', f'"task_id":"d{i}_task_'.encode())
            out.write(data if data.endswith(b"\n") else data + b"\n")


# ----------------------------------------------------------------------------- DuckDB


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def run_duckdb(source: Path, out: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {_sql(str(out / 'spill'))}")
    phases: dict[str, float] = {}
    mark = time.perf_counter()
    # One VARCHAR column split on a byte that never occurs: each line as text (a blank line is NULL).
    # row_number() OVER () is a streaming window; with preserve_insertion_order (default) it is the
    # line number, which the parent checks against the file for every bad line. max_line_size stays
    # at its default (2 MB): the reader's buffer grows with it (100 MB asks for one 816 MiB block,
    # which fails under a memory_limit of 512 MB).
    lines = (
        f"SELECT row_number() OVER () AS line_no, line FROM read_csv({_sql(str(source))}, "
        "columns = {'line': 'VARCHAR'}, delim = '\x01', quote = '', escape = '', header = false, "
        "auto_detect = false)"
    )
    blank, object_start = _sql(BLANK), _sql(OBJECT_START)
    paths = ", ".join(f"'$.{name}'" for name in FIELDS)
    pre = (
        f"CASE WHEN coalesce(regexp_matches(line, {blank}), true) THEN 'blank_line' "
        f"WHEN NOT (json_valid(line) AND regexp_matches(line, {object_start})) THEN 'not_json_object' END"
    )
    parsed = (
        "SELECT line_no, line, pre, "
        f"CASE WHEN pre IS NULL THEN json_extract_string(line, [{paths}]) END AS v "
        f"FROM (SELECT line_no, line, {pre} AS pre FROM ({lines}))"
    )
    values = ", ".join(f"v[{i + 1}] AS {name}" for i, name in enumerate(FIELDS))
    whens = " ".join(
        f"WHEN coalesce(regexp_matches({n}, {blank}), true) THEN 'missing_field:{n}'" for n in REQUIRED
    )
    classified = (
        f"SELECT *, CASE WHEN pre IS NOT NULL THEN pre {whens} WHEN ts IS NULL THEN 'bad_timestamp' END "
        "AS reason "
        f"FROM (SELECT line_no, line, pre, {values}, CASE WHEN regexp_full_match(v[2], {_sql(TS_PATTERN)}) "
        f"THEN TRY_CAST(v[2] AS TIMESTAMPTZ) END AS ts FROM ({parsed}))"
    )
    # DuckDB writes one file per statement: the classified rows go to a temporary table (spilled to
    # temp_directory beyond memory_limit), holding the line's text for bad lines only.
    good = [n for n in FIELDS if n not in ("event_id", "occurred_at", "duration_ms")]
    con.execute(
        "CREATE TEMP TABLE classified AS SELECT line_no, reason, "
        "CASE WHEN reason IS NOT NULL THEN coalesce(line, '') END AS line, "
        f"event_id, ts AS occurred_at, {', '.join(good)}, TRY_CAST(duration_ms AS DOUBLE) AS duration_ms "
        f"FROM ({classified})"
    )
    con.execute(
        f"COPY (SELECT {', '.join(FIELDS)} FROM classified WHERE reason IS NULL) "
        f"TO {_sql(str(out / 'good.parquet'))} (FORMAT parquet)"
    )
    con.execute(
        "COPY (SELECT line_no, reason, line FROM classified WHERE reason IS NOT NULL) "
        f"TO {_sql(str(out / 'bad.parquet'))} (FORMAT parquet)"
    )
    counts = dict(
        con.execute("SELECT coalesce(reason, 'good'), count(*) FROM classified GROUP BY ALL").fetchall()
    )
    con.execute("DROP TABLE classified")
    phases["stage"] = time.perf_counter() - mark

    mark = time.perf_counter()
    good_file = _sql(str(out / "good.parquet"))
    rows = con.execute(
        "WITH ev AS (SELECT task_id, workflow, event_type, occurred_at AS ts "
        f"FROM read_parquet({good_file}) WHERE event_type IN ('task_started', 'task_completed') "
        f"AND NOT coalesce(regexp_matches(task_id, {blank}), true) "
        f"AND NOT coalesce(regexp_matches(workflow, {blank}), true)), "
        "starts AS (SELECT task_id, arg_min(workflow, (ts, workflow)) AS workflow, min(ts) AS start "
        "FROM ev WHERE event_type = 'task_started' GROUP BY task_id), "
        "done AS (SELECT s.task_id, min(e.ts) AS first_done FROM starts s JOIN ev e ON e.task_id = s.task_id "
        f"AND e.event_type = 'task_completed' AND e.ts BETWEEN s.start AND s.start + INTERVAL {WINDOW_HOURS} "
        "HOUR GROUP BY s.task_id) "
        "SELECT CAST(CAST(s.start AS DATE) AS VARCHAR) AS date, s.workflow, count(*) AS attempts, "
        "count(d.first_done) AS completions, quantile_cont("
        "epoch_ms(d.first_done) - epoch_ms(s.start), 0.5) AS median_ms "
        "FROM starts s LEFT JOIN done d USING (task_id) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    phases["aggregate"] = time.perf_counter() - mark
    con.close()
    return {"phases": phases, "counts": counts, "kpi": in_minutes(rows)}


# ----------------------------------------------------------------------------- Polars


def run_polars(source: Path, out: Path) -> dict[str, Any]:
    import polars as pl

    phases: dict[str, float] = {}
    mark = time.perf_counter()
    line = pl.col("line")
    blank = line.is_null() | line.str.contains(BLANK)
    # No json_valid in Polars: json_path_match returns null for invalid JSON, and json_decode (one
    # parse for all fields) raises on it, so it only sees lines known to be objects. (It also raises
    # on an object or array where the schema says String; DuckDB's json_extract_string gives its text.)
    is_object = line.str.json_path_match("$").is_not_null() & line.str.contains(OBJECT_START)
    schema = pl.Struct({name: pl.String for name in FIELDS})
    text = pl.col("occurred_at")
    with_zone = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_unit="us")
    naive = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    ts = pl.when(text.str.contains(TS_PATTERN)).then(
        pl.coalesce(with_zone, naive.dt.replace_time_zone("UTC"))
    )
    reason = pl.when(pl.col("pre").is_not_null()).then(pl.col("pre"))
    for name in REQUIRED:
        reason = reason.when(pl.col(name).str.contains(BLANK).fill_null(True)).then(
            pl.lit(f"missing_field:{name}")
        )
    reason = reason.when(pl.col("ts").is_null()).then(pl.lit("bad_timestamp")).otherwise(None)
    classified = (
        pl.scan_lines(source, row_index_name="line_no", row_index_offset=1)
        .with_columns(
            pre=pl.when(blank)
            .then(pl.lit("blank_line"))
            .when(~is_object)
            .then(pl.lit("not_json_object"))
            .otherwise(None)
        )
        .with_columns(v=pl.when(pl.col("pre").is_null()).then(line).str.json_decode(schema))
        .unnest("v")
        .with_columns(ts=ts)
        .with_columns(reason=reason)
    )
    good = classified.filter(pl.col("reason").is_null()).select(
        "event_id",
        pl.col("ts").alias("occurred_at"),
        *[n for n in FIELDS if n not in ("event_id", "occurred_at", "duration_ms")],
        pl.col("duration_ms").cast(pl.Float64, strict=False),
    )
    bad = classified.filter(pl.col("reason").is_not_null()).select("line_no", "reason", line.fill_null(""))
    # Both sinks in one streaming query: the plan shares the scan and parse through a CACHE node.
    pl.collect_all(
        [
            good.sink_parquet(out / "good.parquet", lazy=True),
            bad.sink_parquet(out / "bad.parquet", lazy=True),
        ],
        engine="streaming",
    )
    n_good = pl.scan_parquet(out / "good.parquet").select(pl.len()).collect().item()
    by_reason = pl.scan_parquet(out / "bad.parquet").group_by("reason").len().collect(engine="streaming")
    counts = {"good": n_good, **dict(zip(by_reason["reason"], by_reason["len"], strict=True))}
    phases["stage"] = time.perf_counter() - mark

    mark = time.perf_counter()
    t = pl.col("ts")
    ev = (
        pl.scan_parquet(out / "good.parquet")
        .filter(
            pl.col("event_type").is_in(["task_started", "task_completed"])
            & ~pl.col("task_id").str.contains(BLANK).fill_null(True)
            & ~pl.col("workflow").str.contains(BLANK).fill_null(True)
        )
        .select("task_id", "workflow", "event_type", ts=pl.col("occurred_at"))
    )
    starts = (
        ev.filter(pl.col("event_type") == "task_started")
        .group_by("task_id")
        .agg(start=t.min(), workflow=pl.col("workflow").filter(t == t.min()).min())
    )
    completed = ev.filter(pl.col("event_type") == "task_completed").select("task_id", done=t)
    done = (
        starts.join(completed, on="task_id")
        .filter(pl.col("done").is_between(pl.col("start"), pl.col("start") + pl.duration(hours=WINDOW_HOURS)))
        .group_by("task_id")
        .agg(first_done=pl.col("done").min())
    )
    ms = (pl.col("first_done") - pl.col("start")).dt.total_milliseconds()
    kpi = (
        starts.join(done, on="task_id", how="left")
        .group_by(pl.col("start").dt.date().cast(pl.String).alias("date"), "workflow")
        .agg(
            attempts=pl.len(),
            completions=pl.col("first_done").count(),
            median_ms=ms.median(),
        )
        .sort("date", "workflow")
        .collect(engine="streaming")
    )
    phases["aggregate"] = time.perf_counter() - mark
    return {"phases": phases, "counts": counts, "kpi": in_minutes(kpi.iter_rows())}


def in_minutes(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """KPI rows with the median in minutes. Each engine gives the median of whole milliseconds (exact
    in a double); dividing here, not in the engine, keeps the engines' float kernels out of it
    (Polars divides by a scalar as a multiplication by its reciprocal on some paths: 1 ulp off)."""
    return [[*row[:4], None if row[4] is None else row[4] / MS_PER_MINUTE] for row in rows]


RUNNERS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {"duckdb": run_duckdb, "polars": run_polars}


def child(engine: str, source: Path, out: Path) -> None:
    """Child process: run one engine and print its figures as one JSON line."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    figures = RUNNERS[engine](source, out)
    figures.update(seconds=time.perf_counter() - started, peak_mb=peak_rss_mb())
    print(json.dumps(figures, default=str), flush=True)


# ----------------------------------------------------------------------------- parent: checks


def _bad_table(out: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(out / "bad.parquet")
    return table.cast(pa.schema([("line_no", pa.int64()), ("reason", pa.string()), ("line", pa.string())]))


def _good_table(out: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(out / "good.parquet")
    schema = pa.schema(
        [(n, pa.timestamp("us", "UTC") if n == "occurred_at" else pa.string()) for n in FIELDS[:-1]]
        + [("duration_ms", pa.float64())]
    )
    table = table.select(list(FIELDS)).cast(schema)
    return table.sort_by([(n, "ascending") for n in FIELDS])


def check_lines(source: Path, bad: Any) -> tuple[int, int]:
    """(lines in the file, bad lines whose text is not the file's line at their number)."""
    by_number = dict(zip(bad["line_no"].to_pylist(), bad["line"].to_pylist(), strict=True))
    matched = 0
    total = 0
    with open(source, encoding="utf-8", newline="\n") as lines:
        for number, text in enumerate(lines, start=1):
            total = number
            if by_number.get(number) == text.rstrip("\n"):
                matched += 1
    return total, len(by_number) - matched


def compare(source: Path, results: dict[str, dict[str, Any]], outs: dict[str, Path]) -> list[str]:
    """What the two engines disagree on (an empty list: they agree exactly)."""
    problems: list[str] = []
    a, b = (results[e] for e in ENGINES)
    if a["counts"] != b["counts"]:
        problems.append(f"counts differ: duckdb {a['counts']} vs polars {b['counts']}")
    bads = {e: _bad_table(outs[e]).sort_by("line_no") for e in ENGINES}
    if not bads["duckdb"].equals(bads["polars"]):
        problems.append("bad lines (line_no, reason, text) differ")
    for engine, bad in bads.items():
        total, mismatched = check_lines(source, bad)
        if mismatched:
            problems.append(f"{engine}: {mismatched} bad lines do not match the file's text at their number")
        if sum(results[engine]["counts"].values()) != total:
            problems.append(
                f"{engine}: good + bad = {sum(results[engine]['counts'].values())} != {total} lines"
            )
    if not _good_table(outs["duckdb"]).equals(_good_table(outs["polars"])):
        problems.append("staged good rows differ")
    if a["kpi"] != b["kpi"]:
        problems.append(f"KPI tables differ: duckdb {a['kpi']} vs polars {b['kpi']}")
    return problems


# ----------------------------------------------------------------------------- parent: driver


def run_child(engine: str, source: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", engine, "--source", str(source), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = time.perf_counter() - started
    return figures


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def measure(root: Path, events: int, days: int, repeats: int) -> None:
    source = root / f"telemetry_{events}x{days}.jsonl"
    if source.exists():
        print(f"reusing {source} ({source.stat().st_size / 1e6:,.0f} MB)")
    else:
        started = time.perf_counter()
        write_input(source, events, days)
        print(
            f"wrote {source} ({source.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f} s"
        )
    versions = ", ".join(f"{e} {importlib.metadata.version(e)}" for e in ENGINES)
    print(f"{versions}; python {sys.version.split()[0]}; before: {load()}")
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
    outs = {e: root / f"out_{e}" for e in ENGINES}
    for rep in range(repeats):
        for engine in ENGINES if rep % 2 == 0 else ENGINES[::-1]:
            figures = run_child(engine, source, outs[engine])
            runs[engine].append(figures)
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in figures["phases"].items())
            print(
                f"  rep {rep + 1} {engine:<6}: wall {figures['seconds']:6.2f} s ({phases}; process "
                f"{figures['process_seconds']:.2f} s), peak RSS {figures['peak_mb']:,.0f} MB"
            )
    print(f"after: {load()}")
    last = {e: runs[e][-1] for e in ENGINES}
    for engine in ENGINES:
        counts = last[engine]["counts"]
        bad = {k: v for k, v in sorted(counts.items()) if k != "good"}
        print(f"{engine}: good {counts.get('good', 0):,}, bad {sum(bad.values()):,} {bad}")
    for name, key in (("wall", "seconds"), ("peak RSS", "peak_mb")):
        best = {e: min(r[key] for r in runs[e]) for e in ENGINES}
        print(f"{name} polars/duckdb (best of {repeats}): {best['polars'] / best['duckdb']:.2f}x")
    print(f"KPI rows: {len(last['duckdb']['kpi'])}; first: {last['duckdb']['kpi'][:1]}")
    problems = compare(source, last, outs)
    for problem in problems:
        print(f"DISAGREE: {problem}")
    if not problems:
        print("engines agree exactly: counts, bad lines + numbers + reasons, staged rows, KPI table")
    assert not problems, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="raw lines per day")
    parser.add_argument("--days", type=int, default=1, help="differently seeded days concatenated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="directory to write (or reuse) the input and outputs in")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if importlib.util.find_spec("polars") is None:
        parser.exit(
            2,
            "engine_choice.py compares with Polars, which the project does not install: "
            "run `.venv/bin/pip install polars` first\n",
        )
    if args.child:
        child(args.child, args.source, args.out)
    elif args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        measure(args.keep, args.events, args.days, args.repeats)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            measure(Path(tmp), args.events, args.days, args.repeats)


if __name__ == "__main__":
    main()
