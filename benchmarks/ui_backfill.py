"""Benchmark: an asset backfill of a generated date range through the real Dagster UI stack.

    python benchmarks/ui_backfill.py [--days 30] [--users 300] [--start 2025-01-01] [--keep DIR]

Generates a data set, starts ``dagster dev -w workspace.yaml`` (webserver + daemon, queued run
coordinator) on a free port with a fresh DAGSTER_HOME, launches one asset backfill of every
materializable asset over the generated days through the GraphQL mutation the UI uses
(``launchPartitionBackfill``), polls it to its end, then prints every run of the backfill (its
assets, partition range, status, wall), the total wall, the errors of failed runs and the row
counts of the SQLite warehouse. Everything it started is stopped at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin" if (REPO / ".venv" / "bin" / "dagster").exists() else Path(sys.executable).parent
SELF_DEPENDENT = ("task_starts", "user_days")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message stack } } } } } }
"""
ASSETS_QUERY = (
    "{ assetNodes { assetKey { path } isMaterializable isPartitioned backfillPolicy { description } } }"
)
LAUNCH_MUTATION = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message }
  ... on PythonError { stack } } }
"""
BACKFILL_QUERY = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on Error { message } ... on PartitionBackfill { status timestamp endTimestamp
    error { message stack }
    runs { runId status creationTime startTime endTime assetSelection { path }
      assetCheckSelection { name assetKey { path } } stepKeysToExecute tags { key value }
      stepStats { stepKey status startTime endTime } }
    assetBackfillData { assetBackfillStatuses { __typename
      ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted
        numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed }
      ... on UnpartitionedAssetStatus { assetKey { path } inProgress materialized failed } } } } } }
"""
LOGS_QUERY = """
query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor) { __typename
  ... on EventConnection { cursor hasMore events { __typename
    ... on MessageEvent { message stepKey }
    ... on ErrorEvent { error { message stack cause { message stack } } } } }
  ... on Error { message } } }
"""


class GraphQL:
    """POSTs queries to one webserver's /graphql endpoint."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {json.dumps(answer['errors'])[:2000]}")
        return answer["data"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def key(path: list[str]) -> str:
    return "/".join(path)


def seconds(start: float | None, end: float | None) -> str:
    return "—" if start is None or end is None else f"{end - start:6.1f} s"


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def generate(data: Path, env: dict[str, str], days: int, users: int, start: dt.date) -> None:
    argv = [str(BIN / "kpi-pipeline"), "generate", "--out", str(data), "--days", str(days)]
    argv += ["--users", str(users), "--start", start.isoformat()]
    print(f"$ kpi-pipeline {' '.join(argv[1:])}", flush=True)
    began = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    last = done.stdout.strip().splitlines()[-1:] or [""]
    print(f"generate: {time.monotonic() - began:.1f} s, exit {done.returncode}; {last[0]}", flush=True)
    if done.returncode:
        raise SystemExit(f"generate failed:\n{done.stdout}\n{done.stderr}")


def _default_stop_signals() -> None:
    """In the child before exec: SIGINT, SIGQUIT and SIGTERM back to their defaults. An ignored
    signal stays ignored across fork and exec, and in the browser tests ``dagster dev`` started with
    all three ignored (/proc/PID/status SigIgn): it ignored the Ctrl-C of :func:`stop_dagster` and
    ran on until SIGKILL, 60 s later."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start_dagster(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    print(f"$ DAGSTER_HOME={env['DAGSTER_HOME']} {' '.join(argv[1:])}  (log: {log})", flush=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )


def stop_dagster(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (Ctrl-C, what ``dagster dev`` stops on) to the whole process group (webserver, daemon,
    code servers, run workers), then SIGKILL to what is left after 15 s (it takes 2–4 s here)."""
    group = process.pid
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                print(f"dagster dev stopped ({sig.name}; process group {group} gone)", flush=True)
                return
            time.sleep(0.5)
    process.poll()


def wait_for_location(gql: GraphQL, process: subprocess.Popen[bytes], log: Path, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            raise SystemExit(f"dagster dev exited with {process.returncode}:\n{log_tail(log)}")
        try:
            workspace = gql(WORKSPACE_QUERY, timeout=10)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
            time.sleep(1)
            continue
        entries = workspace.get("locationEntries") or []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            for entry in entries:
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise SystemExit(f"code location {entry['name']} failed to load: {loaded['message']}")
            return time.monotonic() - began
        time.sleep(1)
    raise SystemExit(f"no loaded code location after {timeout:.0f} s:\n{log_tail(log)}")


def run_line(run: dict[str, Any], launched: float) -> str:
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    if RANGE_START in tags:
        span = f"{tags[RANGE_START]} … {tags[RANGE_END]}"
    else:
        span = tags.get("dagster/partition", "unpartitioned")
    assets = ", ".join(sorted(key(a["path"]) for a in run["assetSelection"] or []))
    start, end = run["startTime"], run["endTime"]
    offsets = "" if start is None else f"+{start - launched:.1f} s → +{(end or start) - launched:.1f} s"
    return (
        f"  run {run['runId'][:8]} {run['status']:<8} wall {seconds(start, end)} "
        f"(queued {seconds(run['creationTime'], start)}; {offsets})\n"
        f"      range {span}\n      assets [{len(run['assetSelection'] or [])}]: {assets}\n"
        f"      checks [{len(run['assetCheckSelection'] or [])}]"
    )


def step_line(run: dict[str, Any]) -> str:
    steps = sorted(run["stepStats"], key=lambda s: s["startTime"] or 0)
    shown = [f"{s['stepKey']} {s['status']} {seconds(s['startTime'], s['endTime']).strip()}" for s in steps]
    return "      steps: " + "; ".join(shown)


def run_errors(gql: GraphQL, run_id: str) -> list[str]:
    """The error events of one run's event log, message and the last frames of the stack."""
    found: list[str] = []
    cursor: str | None = None
    while True:
        logs = gql(LOGS_QUERY, {"id": run_id, "cursor": cursor})["logsForRun"]
        if logs["__typename"] != "EventConnection":
            return [f"logsForRun: {logs.get('message')}"]
        for event in logs["events"]:
            error = event.get("error")
            if not error:
                continue
            found.append(f"[{event['__typename']} step={event.get('stepKey')}] {event.get('message')}")
            while error:
                found.append(f"    {error['message'].strip()}")
                found.extend("    | " + frame.rstrip() for frame in (error.get("stack") or [])[-6:])
                error = error.get("cause")
        if not logs["hasMore"]:
            return found
        cursor = logs["cursor"]


def warehouse_counts(db: Path) -> None:
    print(f"warehouse {db}:")
    if not db.exists():
        print("  (absent)")
        return
    with sqlite3.connect(db) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1")
        ]
        for table in tables:
            columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
            rows = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            extra = ""
            if "date" in columns:
                days, first, last = conn.execute(
                    f'SELECT COUNT(DISTINCT date), MIN(date), MAX(date) FROM "{table}"'
                ).fetchone()
                extra = f", {days} distinct dates {first} … {last}"
            print(f"  {table:<32} {rows:>9,} rows{extra}")


def backfill(gql: GraphQL, days: list[str], timeout: float, poll: float) -> tuple[dict[str, Any], float]:
    nodes = gql(ASSETS_QUERY)["assetNodes"]
    selection = [node["assetKey"] for node in nodes if node["isMaterializable"]]
    partitioned = sorted(
        key(n["assetKey"]["path"]) for n in nodes if n["isMaterializable"] and n["isPartitioned"]
    )
    plain = sorted(
        key(n["assetKey"]["path"]) for n in nodes if n["isMaterializable"] and not n["isPartitioned"]
    )
    skipped = sorted(key(n["assetKey"]["path"]) for n in nodes if not n["isMaterializable"])
    policies = {n["backfillPolicy"]["description"] for n in nodes if n["backfillPolicy"]}
    print(f"selection: {len(selection)} materializable assets; not selected (not materializable): {skipped}")
    print(f"  partitioned [{len(partitioned)}]: {', '.join(partitioned)}")
    print(f"  unpartitioned [{len(plain)}]: {', '.join(plain)}")
    print(f"  backfill policies: {sorted(policies)}")
    params = {
        "assetSelection": selection,
        "partitionNames": days,
        "title": f"ui_backfill {days[0]} … {days[-1]}",
    }
    launched = time.time()
    result = gql(LAUNCH_MUTATION, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"launchPartitionBackfill: {result}")
    backfill_id = result["backfillId"]
    print(f"backfill {backfill_id} launched over {days[0]} … {days[-1]} ({len(days)} partitions)", flush=True)
    seen: dict[str, str] = {}
    status = ""
    while True:
        data = gql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if data["__typename"] != "PartitionBackfill":
            raise SystemExit(f"partitionBackfillOrError: {data}")
        now = time.time() - launched
        if data["status"] != status:
            status = data["status"]
            print(f"  [{now:7.1f} s] backfill {status}", flush=True)
        for run in sorted(data["runs"], key=lambda r: r["creationTime"]):
            if seen.get(run["runId"]) != run["status"]:
                seen[run["runId"]] = run["status"]
                assets = ",".join(sorted(key(a["path"]) for a in run["assetSelection"] or []))
                print(f"  [{now:7.1f} s] run {run['runId'][:8]} {run['status']}: {assets}", flush=True)
        if status in DONE and all(run["status"] in RUN_DONE for run in data["runs"]):
            return data, launched
        if now > timeout:
            print(f"TIMEOUT after {timeout:.0f} s: backfill still {status}", flush=True)
            return data, launched
        time.sleep(poll)


def report(gql: GraphQL, data: dict[str, Any], launched: float, observed_end: float) -> None:
    runs = sorted(data["runs"], key=lambda r: r["creationTime"])
    print(f"\nbackfill status {data['status']}; {len(runs)} runs")
    if data.get("error"):
        print(f"backfill error: {data['error']['message']}\n" + "\n".join(data["error"]["stack"][-8:]))
    for run in runs:
        print(run_line(run, launched))
        print(step_line(run))
    own = []
    for name in SELF_DEPENDENT:
        holding = [r for r in runs if name in {key(a["path"]) for a in r["assetSelection"] or []}]
        alone = all(len(r["assetSelection"]) == 1 for r in holding)
        own.append(alone)
        print(f"self-dependent {name}: in {len(holding)} run(s), alone in each: {alone}")
    ranged = sum(1 for r in runs if any(t["key"] == RANGE_START for t in r["tags"]))
    print(f"self-dependent assets in runs of their own: {all(own)}")
    print(
        f"runs: {len(runs)} total, {ranged} ranged, {sum(r['status'] == 'SUCCESS' for r in runs)} succeeded"
    )
    statuses = data.get("assetBackfillData") or {}
    print("asset backfill statuses:")
    for entry in statuses.get("assetBackfillStatuses", []):
        name = key(entry["assetKey"]["path"])
        if entry["__typename"] == "AssetPartitionsStatusCounts":
            print(
                f"  {name:<30} targeted {entry['numPartitionsTargeted']:>3}, "
                f"materialized {entry['numPartitionsMaterialized']:>3}, "
                f"failed {entry['numPartitionsFailed']:>3}, "
                f"in progress {entry['numPartitionsInProgress']:>3}"
            )
        else:
            print(f"  {name:<30} materialized {entry['materialized']}, failed {entry['failed']}")
    for run in runs:
        if run["status"] != "SUCCESS":
            print(f"errors of run {run['runId']} ({run['status']}):")
            for line in run_errors(gql, run["runId"]):
                print(f"  {line}")
    busy = sum((r["endTime"] or r["startTime"]) - r["startTime"] for r in runs if r["startTime"])
    first_start = min((r["startTime"] for r in runs if r["startTime"]), default=None)
    last_end = max((r["endTime"] for r in runs if r["endTime"]), default=None)
    print(
        f"total wall: launch → backfill end {seconds(launched, data['endTimestamp'])}, "
        f"launch → last run end {seconds(launched, last_end)}, "
        f"first run start → last run end {seconds(first_start, last_end)}, "
        f"launch → observed completion {seconds(launched, observed_end)}; "
        f"sum of run walls {busy:.1f} s"
    )


def measure(work: Path, days: int, users: int, start: dt.date, timeout: float, poll: float) -> int:
    data_dir, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    env = os.environ | {
        "KPI_DATA_DIR": str(data_dir),
        "KPI_START_DATE": start.isoformat(),
        "DAGSTER_HOME": str(home),
    }
    for name in ("KPI_WAREHOUSE_URL", "KPI_CONFIG"):
        env.pop(name, None)
    generate(data_dir, env, days, users, start)
    port = free_port()
    log = work / "dagster_dev.log"
    began = time.monotonic()
    process = start_dagster(port, env, log)
    try:
        gql = GraphQL(port)
        ready = wait_for_location(gql, process, log, timeout=300)
        print(f"dagster dev ready on port {port}: code location loaded after {ready:.1f} s", flush=True)
        names = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
        data, launched = backfill(gql, names, timeout, poll)
        observed_end = time.time()
        report(gql, data, launched, observed_end)
    finally:
        stop_dagster(process)
    print(f"dagster dev up for {time.monotonic() - began:.1f} s in all")
    warehouse_counts(data_dir / "warehouse" / "kpi.db")
    errors = [line for line in log.read_text(errors="replace").splitlines() if " - ERROR - " in line]
    print(f"dagster dev log: {len(errors)} ERROR lines" + "".join(f"\n  {line}" for line in errors[:20]))
    ok = data["status"] in {"COMPLETED", "COMPLETED_SUCCESS"} and all(
        r["status"] == "SUCCESS" for r in data["runs"]
    )
    return 0 if ok else 1


@contextlib.contextmanager
def work_dir(parser: argparse.ArgumentParser, keep: Path | None, prefix: str) -> Iterator[Path]:
    """``--keep DIR`` (created; must be empty) or a temporary directory removed at the end."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
        return
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        parser.error(f"--keep {keep}: not empty")
    yield keep.resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days generated and backfilled")
    parser.add_argument("--users", type=int, default=300, help="users of the generated set")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1), help="first day")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the backfill")
    parser.add_argument("--poll", type=float, default=3, help="seconds between status polls")
    parser.add_argument("--keep", type=Path, help="work here and keep the data (must be empty or new)")
    args = parser.parse_args()
    with work_dir(parser, args.keep, "ui_backfill_") as work:
        code = measure(work, args.days, args.users, args.start, args.timeout, args.poll)
    sys.exit(code)


if __name__ == "__main__":
    main()
