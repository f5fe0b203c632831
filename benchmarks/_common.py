"""Shared helpers of the benchmark scripts: measured child processes and the DuckDB floor.

Every measured step runs in a fresh child process that reports its own wall time and peak
resident memory (VmHWM) at exit, so no figure carries the parent's memory. Run as a script,
this module is that child:

    python benchmarks/_common.py cli SPEC.json     # kpi_pipeline.cli.main(argv) in this process
    python benchmarks/_common.py floor SPEC.json   # the DuckDB floor on the given files
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpi_pipeline.config import BUILTIN_SURVEYS
from kpi_pipeline.contract import TELEMETRY_FIELDS, TELEMETRY_REQUIRED

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT_PREFIX = "RESULT "
TELEMETRY_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz")
# The settings of the user's shell must not leak into a benchmark's data root.
CLEARED_ENV = ("KPI_WAREHOUSE_URL", "KPI_CONFIG", "KPI_DATA_DIR", "KPI_START_DATE", "DAGSTER_HOME")
# CLI lines echoed while a measured command runs (everything goes to its log file).
SHOWN = re.compile(
    r"^(materializing|also recomputing|done:|error|warning|imported|skipping)|FAILED|Traceback"
)
RAW_LINE = re.compile(r"^\s+telemetry_events: (\d+) raw = (\d+) staged")
RUNS_LINE = re.compile(r"^done: (\d+) runs succeeded, (\d+) failed, (\d+) skipped")

FIELDS = TELEMETRY_FIELDS  # the contract's fields, read by the floor as the project reads them
REQUIRED = TELEMETRY_REQUIRED
TASK_TYPES = ("task_started", "task_step", "task_completed", "task_error", "task_fallback")
EVENT_TYPES = (*TASK_TYPES, "feature_used", "help_viewed", "survey_response")
REQUIRED_FOR = {
    "workflow": TASK_TYPES,
    "task_id": TASK_TYPES,
    "step": ("task_step",),
    "feature": ("feature_used",),
    "topic": ("help_viewed",),
}
# The figures of a floor that died before reporting any.
FLOOR_NOTHING = {"raw": 0, "staged": 0, "quarantined": 0, "reasons": {}, "phases": {}, "aggregate": []}
FILE_STRIDE = 10**12  # ord = file index × stride + row: file order, then line order
DEFAULTS = {"persona": "unknown", "channel": "unknown", "environment": "production"}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM; unlike ru_maxrss not inherited across exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(row for row in status if row.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def children_peak_mb() -> float:
    """The largest peak resident memory of this process's waited-for children, in MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def emit(figures: Mapping[str, Any]) -> None:
    """Print the figures as one ``RESULT {json}`` line (what run_all.py collects)."""
    print(RESULT_PREFIX + json.dumps(figures, default=str), flush=True)


def seconds(value: float) -> str:
    return f"{value:,.1f} s" if value >= 10 else f"{value:,.2f} s"


def timing(wall: float, cpu: float) -> str:
    """A table cell: ``52.9 s (46.1 s CPU)``."""
    return f"{seconds(wall)} ({seconds(cpu)} CPU)"


def megabytes(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MB"


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def context() -> dict[str, Any]:
    """What the figures were measured on: the commit, the files edited beside it, the load average."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
        return done.stdout.rstrip()

    edited = [line[3:] for line in git("status", "--porcelain", "--", "kpi_pipeline").splitlines() if line]
    load = os.getloadavg()[0]
    print(
        f"measuring {git('rev-parse', '--short', 'HEAD') or 'an unknown commit'}"
        + (f" + {len(edited)} edited file(s) under kpi_pipeline/" if edited else "")
        + f"; load average {load:.2f} on {os.cpu_count()} cores"
        + (" (busy: the figures may be inflated)" if load >= (os.cpu_count() or 1) else ""),
        flush=True,
    )
    return {"commit": git("rev-parse", "HEAD"), "edited": edited, "load_at_start": load}


def bench_env(root: Path, start: str, home: Path) -> dict[str, str]:
    """The environment of a measured CLI call: the data root, first day and Dagster home, nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(KPI_DATA_DIR=str(root), KPI_START_DATE=start, DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return env


@dataclass
class Measured:
    """What a measured child process reported: its wall time (from the parent's start of the process to
    the end of the child's work: interpreter start and imports included, the run count after it not),
    its own peak RSS, its exit status and the lines it printed."""

    wall: float
    cpu: float
    peak_mb: float
    status: int
    inner_seconds: float
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def runs(self) -> tuple[int, int, int] | None:
        """(succeeded, failed, skipped) from the CLI's ``done:`` line."""
        for line in reversed(self.lines):
            match = RUNS_LINE.match(line)
            if match:
                return int(match[1]), int(match[2]), int(match[3])
        return None

    def raw_rows(self) -> tuple[int, int]:
        """(raw, staged) telemetry rows summed over the staging runs the CLI printed."""
        pairs = [RAW_LINE.match(line) for line in self.lines]
        return sum(int(m[1]) for m in pairs if m), sum(int(m[2]) for m in pairs if m)

    def error_lines(self) -> list[str]:
        """Failed runs, ``error:`` lines and the last line of every traceback, verbatim."""
        found, in_traceback = [], False
        for line in self.lines:
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                found.append(line)
                in_traceback = False
            elif "FAILED" in line or line.startswith("error"):
                found.append(line)
        return found


class HighWaterMark(threading.Thread):
    """Polls a child's VmHWM every second: its peak RSS even when it dies before reporting one."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.status = Path(f"/proc/{pid}/status")
        self.peak_mb = 0.0

    def run(self) -> None:
        while True:
            try:
                text = self.status.read_text(encoding="ascii")
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if fields.get("State", "").split()[:1] == ["Z"] or "VmHWM" not in fields:
                return
            self.peak_mb = max(self.peak_mb, int(fields["VmHWM"].split()[0]) / 1024)
            time.sleep(1.0)


def run_child(
    mode: str, spec: Mapping[str, Any], log: Path, env: Mapping[str, str] | None = None, echo: bool = True
) -> Measured:
    """Run ``_common.py MODE SPEC`` in a fresh process; its output goes to ``log`` (and the CLI's key
    lines to stdout), its figures come back through a JSON file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    spec_path = log.with_suffix(".spec.json")
    result_path = log.with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
    lines: list[str] = []
    started = time.time()
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), mode, str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=spec.get("cwd"),
        )
        assert child.stdout is not None
        watcher = HighWaterMark(child.pid)
        watcher.start()
        for line in child.stdout:
            out.write(line)
            lines.append(line.rstrip("\n"))
            if echo and SHOWN.search(line):
                print("    | " + line.rstrip("\n"), flush=True)
        status = child.wait()
        ended = time.time()
        watcher.join()
    if not result_path.exists():
        # Killed (the OOM killer, a signal) or crashed before it could report: the parent's figures.
        print(f"    {mode} child exited {status} without figures (see {log}); last lines:", flush=True)
        for line in lines[-5:]:
            print(f"    | {line}", flush=True)
        return Measured(
            wall=ended - started,
            cpu=float("nan"),
            peak_mb=watcher.peak_mb,
            status=status,
            inner_seconds=float("nan"),
            lines=lines,
            figures={"died": True} | (FLOOR_NOTHING if mode == "floor" else {}),
        )
    figures = json.loads(result_path.read_text(encoding="utf-8"))
    return Measured(
        wall=figures.get("ended_at", ended) - started,
        cpu=figures["cpu_s"],
        peak_mb=max(figures["peak_mb"], figures.get("children_peak_mb", 0.0)),
        status=status,
        inner_seconds=figures["seconds"],
        lines=lines,
        figures=figures,
    )


def run_cli(argv: Sequence[str], env: Mapping[str, str], log: Path, echo: bool = True) -> Measured:
    """``kpi-pipeline ARGV`` in a fresh process, measured (see :func:`run_child`)."""
    return run_child("cli", {"argv": list(argv), "cwd": str(REPO)}, log, env, echo)


def telemetry_files(root: Path, days: Iterable[Any] | None = None) -> list[tuple[str, str]]:
    """(day, path) of every telemetry file staging reads under ``root`` (of ``days`` when given)."""
    wanted = None if days is None else {str(d) for d in days}
    files = []
    for folder in sorted((root / "raw" / "telemetry").glob("date=*")):
        day = folder.name.removeprefix("date=")
        if wanted is not None and day not in wanted:
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.name.endswith(TELEMETRY_SUFFIXES):
                files.append((day, str(path)))
    return files


def floor_spec(
    files: Sequence[tuple[str, str]], out: Path, aliases: Sequence[Mapping[str, Any]], window_hours: float
) -> dict[str, Any]:
    """The spec of a floor child: the files to read, where to write, the aliases and the window."""
    return {"files": list(files), "out": str(out), "aliases": list(aliases), "window_hours": window_hours}


def floor_settings(root: Path) -> tuple[list[dict[str, Any]], float]:
    """The event aliases and completion window (hours) of the data root's kpi.yaml, as the floor uses them."""
    from kpi_pipeline.config import load_config

    config = load_config(root / "config" / "kpi.yaml")
    aliases = [
        {k: None if v is None else str(v) for k, v in a.model_dump(by_alias=True).items()}
        for a in config.event_aliases
    ]
    return aliases, float(config.windows.completion)


def project_attempts(warehouse: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(date, workflow) -> (attempts, completions) from the project's SQLite warehouse."""
    try:
        with sqlite3.connect(warehouse) as con:
            rows = con.execute(
                "SELECT date, workflow, SUM(attempts), SUM(completions) FROM kpi_task_completion_daily "
                "GROUP BY date, workflow"
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {(str(d)[:10], w): (int(a), int(c)) for d, w, a, c in rows}


def agreement(project: Mapping[tuple[str, str], tuple[int, int]], floor: Sequence[Sequence[Any]]) -> str:
    """How many (date, workflow) cells of the floor's aggregate equal the project's."""
    cells = {(str(d)[:10], w): (int(a), int(c)) for d, w, a, c, *_ in floor}
    keys = sorted(set(cells) | set(project))
    same = sum(cells.get(k) == project.get(k) for k in keys)
    differing = [k for k in keys if cells.get(k) != project.get(k)][:3]
    shown = "; ".join(
        f"{d} {w}: project {project.get((d, w))} floor {cells.get((d, w))}" for d, w in differing
    )
    return f"{same}/{len(keys)} (date, workflow) cells equal" + (f" (e.g. {shown})" if differing else "")


# ----------------------------------------------------------------------------- child processes


def _cli_child(spec: Mapping[str, Any]) -> None:
    """Run the project's CLI in this process, then write wall, VmHWM and the Dagster run count."""
    started = time.perf_counter()
    from kpi_pipeline.cli import main

    try:
        status = main(spec["argv"])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        traceback.print_exc(file=sys.stdout)
        status = 1
    elapsed = time.perf_counter() - started
    ended = time.time()
    sys.stdout.flush()
    sys.stderr.flush()
    figures: dict[str, Any] = {
        "seconds": elapsed,
        "ended_at": ended,
        "cpu_s": cpu_seconds(),
        "peak_mb": peak_rss_mb(),
        "children_peak_mb": children_peak_mb(),
        "status": status,
    }
    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            figures["runs_in_instance"] = instance.get_runs_count()
    Path(spec["result"]).write_text(json.dumps(figures), encoding="utf-8")
    sys.exit(status)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _csv_header(path: str) -> list[str]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [name.strip() for name in handle.readline().rstrip("\r\n").split(",")]


def _event_type_sql(aliases: Sequence[Mapping[str, Any]]) -> str:
    """The event type after kpi.yaml's aliases (bounded by the partition's date)."""
    cases = []
    for alias in aliases:
        cond = [f"event_type = {_sql_text(alias['from'])}"]
        if alias.get("valid_from"):
            cond.append(f"day >= DATE {_sql_text(str(alias['valid_from']))}")
        if alias.get("valid_until"):
            cond.append(f"day <= DATE {_sql_text(str(alias['valid_until']))}")
        cases.append(f"WHEN {' AND '.join(cond)} THEN {_sql_text(alias['to'])}")
    return f"CASE {' '.join(cases)} ELSE event_type END" if cases else "event_type"


def _scale_sql(end: int) -> str:
    """The low (0) or high (1) end of the answer's built-in survey scale, in SQL."""
    whens = " ".join(f"WHEN {_sql_text(name)} THEN {s.scale[end]}" for name, s in BUILTIN_SURVEYS.items())
    return f"CASE survey {whens} END"


def _reason_sql() -> str:
    """The first quarantine reason that applies to a parsed row (duplicates come after)."""

    def missing(name: str) -> str:
        return f"coalesce(trim({name}), '') = ''"

    def listed(values: Iterable[str]) -> str:
        return "(" + ", ".join(_sql_text(v) for v in values) + ")"

    whens = ["WHEN malformed THEN 'malformed_record'"]
    whens += [f"WHEN {missing(n)} THEN 'missing_field:{n}'" for n in REQUIRED]
    whens += [
        f"WHEN et IN {listed(t)} AND {missing(n)} THEN 'missing_field:{n}'" for n, t in REQUIRED_FOR.items()
    ]
    whens += [
        "WHEN ts IS NULL THEN 'bad_timestamp'",
        "WHEN CAST(ts AS DATE) <> day THEN 'outside_partition'",
        f"WHEN et NOT IN {listed(EVENT_TYPES)} THEN 'unknown_event_type'",
        # Survey answers, against the built-in surveys (the sample kpi.yaml's).
        f"WHEN et = 'survey_response' AND {missing('survey')} THEN 'missing_field:survey'",
        f"WHEN et = 'survey_response' AND {missing('score')} THEN 'missing_field:score'",
        f"WHEN et = 'survey_response' AND survey NOT IN {listed(BUILTIN_SURVEYS)} THEN 'bad_value:survey'",
        "WHEN et = 'survey_response' AND NOT coalesce(TRY_CAST(score AS DOUBLE) BETWEEN "
        + _scale_sql(0)
        + " AND "
        + _scale_sql(1)
        + ", false) THEN 'bad_value:score'",
        "WHEN coalesce(trim(duration_ms), '') <> '' AND coalesce(TRY_CAST(duration_ms AS DOUBLE) < 0, true) "
        "THEN 'bad_value:duration_ms'",
    ]
    return "CASE " + " ".join(whens) + " END"


def _json_rows(con: Any, index: int, day: str, path: str) -> str:
    """A query of a JSONL file's non-blank lines as field values, with line numbers."""
    # One VARCHAR column split on a byte that never occurs: every line as text, blank ones NULL;
    # the table's rowid is the 0-based line number (insertion order is preserved).
    con.execute(
        f"CREATE OR REPLACE TABLE lines AS SELECT line FROM read_csv({_sql_text(path)}, "
        "columns = {'line': 'VARCHAR'}, delim = '\x1f', quote = '', escape = '', header = false, "
        "auto_detect = false)"
    )
    paths = ", ".join(f"'$.{n}'" for n in FIELDS)
    values = ", ".join(f"v[{i + 1}] AS {n}" for i, n in enumerate(FIELDS))
    return (
        f"SELECT DATE {_sql_text(day)} AS day, {index} AS file, {index * FILE_STRIDE} + rowid AS ord, "
        f"rowid + 1 AS line_no, v IS NULL AS malformed, {values}, CASE WHEN v IS NULL THEN line END AS raw "
        "FROM (SELECT rowid, line, CASE WHEN json_valid(line) AND ltrim(line)[1] = '{' "
        f"THEN json_extract_string(line, [{paths}]) END AS v FROM lines WHERE trim(line) <> '')"
    )


def _csv_rows(con: Any, index: int, day: str, path: str) -> str:
    """A query of a CSV file's rows as field values; rows DuckDB's reader rejects are malformed."""
    header = [n for n in dict.fromkeys(_csv_header(path)) if n]
    struct = ", ".join(f"{_sql_text(n)}: 'VARCHAR'" for n in header)
    con.execute(
        f"CREATE OR REPLACE TABLE csv_rows AS SELECT * FROM read_csv({_sql_text(path)}, "
        f"columns = {{{struct}}}, header = true, delim = ',', quote = '\"', escape = '\"', "
        "auto_detect = false, ignore_errors = true, store_rejects = true, "
        f"rejects_table = 'rejects_{index}', rejects_scan = 'scans_{index}')"
    )
    # Absent columns are typed text, so a later file of the day that has them inserts by name.
    values = ", ".join(f'"{n}" AS {n}' if n in header else f"NULL::VARCHAR AS {n}" for n in FIELDS)
    nulls = ", ".join(f"NULL::VARCHAR AS {n}" for n in FIELDS)
    head = f"SELECT DATE {_sql_text(day)} AS day, {index} AS file"
    return (
        f"{head}, {index * FILE_STRIDE} + rowid AS ord, NULL AS line_no, false AS malformed, {values}, "
        f"NULL AS raw FROM csv_rows UNION ALL {head}, NULL, line, true, {nulls}, any_value(csv_line) "
        f"FROM rejects_{index} GROUP BY line"
    )


def _floor_child(spec: Mapping[str, Any]) -> None:
    """The DuckDB floor: day by day, read every line with its number, parse and classify it and stage
    the good rows to Parquet; then per-(date, workflow) attempts, completions and median time to
    complete over all staged days."""
    started = time.perf_counter()
    import duckdb

    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if any(path.startswith("s3://") for _, path in spec["files"]):
        import s3fs  # raw files in an object store: read through s3fs, as the project reads them

        con.register_filesystem(s3fs.S3FileSystem())
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = {_sql_text(str(out / 'spill'))}")
    phases = {"read_parse_classify": 0.0, "stage_parquet": 0.0}
    event_type = _event_type_sql(spec["aliases"])
    staged = [
        f"coalesce(nullif(trim({n}), ''), {_sql_text(DEFAULTS[n])}) AS {n}" if n in DEFAULTS else n
        for n in FIELDS
        if n not in ("occurred_at", "event_type", "duration_ms")
    ]
    by_day: dict[str, list[tuple[int, str]]] = {}
    for index, (day, path) in enumerate(spec["files"]):
        by_day.setdefault(day, []).append((index, path))
    reasons: dict[str, int] = {}
    for day, files in by_day.items():
        mark = time.perf_counter()
        for number, (index, path) in enumerate(files):
            rows = (_json_rows if path.endswith((".jsonl", ".jsonl.gz")) else _csv_rows)(
                con, index, day, path
            )
            classified = (
                f"SELECT *, {_reason_sql()} AS reason FROM (SELECT *, {event_type} AS et, "
                f"TRY_CAST(occurred_at AS TIMESTAMPTZ) AS ts FROM ({rows}))"
            )
            into = (
                "CREATE OR REPLACE TABLE classified AS " if number == 0 else "INSERT INTO classified BY NAME "
            )
            con.execute(into + classified)
        # A later copy of an event id seen earlier in the partition (among otherwise good rows).
        con.execute(
            "UPDATE classified c SET reason = 'duplicate_event_id' FROM (SELECT event_id, min(ord) AS first "
            "FROM classified WHERE reason IS NULL GROUP BY event_id HAVING count(*) > 1) k "
            "WHERE c.reason IS NULL AND c.event_id = k.event_id AND c.ord <> k.first"
        )
        phases["read_parse_classify"] += time.perf_counter() - mark
        mark = time.perf_counter()
        folder = out / "staged" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        con.execute(
            "COPY (SELECT ts AS occurred_at, et AS event_type, "
            f"TRY_CAST(duration_ms AS DOUBLE) AS duration_ms, {', '.join(staged)} FROM classified "
            "WHERE reason IS NULL) "
            f"TO {_sql_text(str(folder / 'events.parquet'))} (FORMAT parquet)"
        )
        (out / "quarantine").mkdir(exist_ok=True)
        con.execute(
            "COPY (SELECT file, line_no, reason, raw FROM classified WHERE reason IS NOT NULL) "
            f"TO {_sql_text(str(out / 'quarantine' / f'date={day}.parquet'))} (FORMAT parquet)"
        )
        for reason, count in con.execute(
            "SELECT coalesce(reason, 'staged'), count(*) FROM classified GROUP BY ALL"
        ).fetchall():
            reasons[reason] = reasons.get(reason, 0) + count
        phases["stage_parquet"] += time.perf_counter() - mark
    for table in ("classified", "lines", "csv_rows"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    reasons = dict(sorted(reasons.items()))

    mark = time.perf_counter()
    window = round(float(spec["window_hours"]) * 3600 * 1e6)
    staged_glob = _sql_text(str(out / "staged" / "*" / "*.parquet"))
    con.execute(
        "CREATE TABLE attempts AS WITH ev AS ("
        f"SELECT event_type, task_id, workflow, occurred_at AS ts FROM read_parquet({staged_glob}) "
        "WHERE environment = 'production' AND event_type IN ('task_started', 'task_completed')), "
        "starts AS (SELECT task_id, arg_min(workflow, ts) AS workflow, min(ts) AS start FROM ev "
        "WHERE event_type = 'task_started' GROUP BY task_id), "
        "done AS (SELECT s.task_id, min(e.ts) AS first_done FROM starts s JOIN ev e ON e.task_id = s.task_id "
        "AND e.event_type = 'task_completed' AND e.ts BETWEEN s.start AND s.start + "
        f"to_microseconds({window}) GROUP BY s.task_id) "
        "SELECT CAST(s.start AS DATE) AS date, s.workflow, count(*) AS attempts, count(d.first_done) AS "
        "completions, quantile_cont(epoch(d.first_done - s.start), 0.5) AS median_seconds_to_complete "
        "FROM starts s LEFT JOIN done d USING (task_id) GROUP BY ALL ORDER BY ALL"
    )
    con.execute(f"COPY attempts TO {_sql_text(str(out / 'kpi_attempts.parquet'))} (FORMAT parquet)")
    aggregate = con.execute(
        "SELECT CAST(date AS VARCHAR), workflow, attempts, completions, median_seconds_to_complete "
        "FROM attempts"
    ).fetchall()
    phases["aggregate"] = time.perf_counter() - mark
    con.close()
    staged_rows = reasons.pop("staged", 0)
    quarantined = sum(reasons.values())
    figures = {
        "seconds": time.perf_counter() - started,
        "ended_at": time.time(),
        "cpu_s": cpu_seconds(),
        "peak_mb": peak_rss_mb(),
        "children_peak_mb": children_peak_mb(),
        "raw": staged_rows + quarantined,
        "staged": staged_rows,
        "quarantined": quarantined,
        "reasons": reasons,
        "phases": phases,
        "aggregate": aggregate,
    }
    Path(spec["result"]).write_text(json.dumps(figures, default=str), encoding="utf-8")


if __name__ == "__main__":
    mode, spec_file = sys.argv[1], sys.argv[2]
    loaded = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    {"cli": _cli_child, "floor": _floor_child}[mode](loaded)


def floor_figures(floor: Measured) -> dict[str, Any]:
    """The floor child's figures for a RESULT line (without its aggregate table), with its wall,
    CPU and peak RSS."""
    figures = {k: v for k, v in floor.figures.items() if k != "aggregate"}
    return figures | {"wall_s": floor.wall, "cpu_s": floor.cpu, "peak_mb": floor.peak_mb}


def floor_line(floor: Measured, label: str = "floor:") -> str:
    """``floor: 5.2 s wall (8.8 s CPU; phases), peak RSS 960 MB; raw = staged + quarantined``."""
    f = floor.figures
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in f["phases"].items())
    return (
        f"{label} {seconds(floor.wall)} wall ({seconds(floor.cpu)} CPU; {phases}), "
        f"peak RSS {megabytes(floor.peak_mb)}; "
        f"{f['raw']:,} raw = {f['staged']:,} staged + {f['quarantined']:,} quarantined"
    )
