"""Benchmark: one daily partition run launched from the Dagster UI stack against the same run from a CLI.

    python benchmarks/ui_vs_cli.py [--days 7] [--users 300] [--rounds 3] [--keep DIR]

Generates a data set and materializes it with ``kpi-pipeline materialize`` (so every day a run
reads is staged), then starts ``dagster dev -w workspace.yaml`` (webserver + daemon, queued run
coordinator, the default run launcher: one run-worker process per run) on a free port with that
DAGSTER_HOME. Round by round (interleaved, so drift in the machine's speed hits both alike) it
times, for the same day D:

- **ui**: ``daily_kpi_job`` for D launched through the GraphQL mutation the UI's *Materialize*
  and *Launch run* buttons use (``launchRun``), from the launch until the run ends (queue, run
  worker start, every step);
- **cli**: ``dagster job execute -j daily_kpi_job --tags '{"dagster/partition": D}'``, a fresh
  process running the same job and partition in process, from its start to its exit.

Then it launches ``exports_job`` and ``refresh_kpis_job`` once each from the UI and prints their
steps, and it times ``import kpi_pipeline.definitions`` in fresh interpreters. The figures it
prints: medians per kind, the ui / cli ratio (target ≤ 2), each UI run's steps (their start
offsets show the executor at work) and the import time (target ≤ 2 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ui_backfill import (
    BIN,
    REPO,
    RUN_DONE,
    GraphQL,
    free_port,
    start_dagster,
    stop_dagster,
    wait_for_location,
    work_dir,
)

LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
LAUNCH_RUN = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on Error { message } ... on PythonError { message stack } } }
"""
RUN_QUERY = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId status creationTime startTime
  endTime stepStats { stepKey status startTime endTime } } } }
"""


def run_cli(argv: list[str], env: dict[str, str], log: Path) -> float:
    """Wall seconds of one command; exits with its log's tail when it fails."""
    began = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - began
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{' '.join(argv)} failed with {done.returncode}:\n{tail}")
    return seconds


def launch(gql: GraphQL, location: str, job: str, tags: dict[str, str], timeout: float) -> dict[str, Any]:
    """Launch ``job`` as the UI does and wait for the run to end; the run with ``launched`` set."""
    params = {
        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = time.time()
    answer = gql(LAUNCH_RUN, {"params": params})["launchRun"]
    if answer["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launchRun {job}: {answer}")
    run_id = answer["run"]["runId"]
    while True:
        run = gql(RUN_QUERY, {"id": run_id})["runOrError"]
        if run["status"] in RUN_DONE:
            break
        if time.time() - launched > timeout:
            raise SystemExit(f"run {run_id} of {job} still {run['status']} after {timeout:.0f} s")
        time.sleep(0.25)
    if run["status"] != "SUCCESS":
        raise SystemExit(f"run {run_id} of {job} ended {run['status']}; see the UI or the dagster dev log")
    run["launched"] = launched
    return run


def run_summary(run: dict[str, Any]) -> str:
    launched = run["launched"]
    steps = sorted(run["stepStats"], key=lambda s: s["startTime"] or 0)
    lines = [
        f"  launch → end {run['endTime'] - launched:5.1f} s (queued {run['startTime'] - launched:4.1f} s, "
        f"run {run['endTime'] - run['startTime']:5.1f} s, {len(steps)} steps)"
    ]
    lines += [
        f"    +{s['startTime'] - run['startTime']:5.1f} s  {s['endTime'] - s['startTime']:5.2f} s  "
        + s["stepKey"]
        for s in steps
        if s["startTime"] and s["endTime"]
    ]
    return "\n".join(lines)


def import_seconds(env: dict[str, str], times: int) -> list[float]:
    """Seconds to import the code location in a fresh interpreter (interpreter start excluded)."""
    code = "import time; t = time.perf_counter(); import kpi_pipeline.definitions; "
    code += "print(time.perf_counter() - t)"
    out = []
    for _ in range(times):
        argv = [str(BIN / "python"), "-c", code]
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"import kpi_pipeline.definitions failed:\n{done.stderr[-2000:]}")
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def measure(work: Path, days: int, users: int, rounds: int, timeout: float) -> dict[str, Any]:
    data_dir, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    start = dt.date.today() - dt.timedelta(days=days)
    env = os.environ | {"KPI_DATA_DIR": str(data_dir), "KPI_START_DATE": start.isoformat()}
    env["DAGSTER_HOME"] = str(home)
    for name in ("KPI_WAREHOUSE_URL", "KPI_CONFIG"):
        env.pop(name, None)
    cli_log = work / "cli.log"
    generate = [str(BIN / "kpi-pipeline"), "generate", "--out", str(data_dir), "--days", str(days)]
    generate += ["--users", str(users), "--start", start.isoformat()]
    print(f"generate {days} days × {users} users: {run_cli(generate, env, cli_log):.1f} s", flush=True)
    prepared = run_cli([str(BIN / "kpi-pipeline"), "materialize"], env, cli_log)
    print(f"kpi-pipeline materialize (every day, so each run's inputs are staged): {prepared:.1f} s")
    day = (start + dt.timedelta(days=days // 2)).isoformat()
    cli = [str(BIN / "dagster"), "job", "execute", "-m", "kpi_pipeline.definitions", "-a", "defs"]
    cli += ["-j", "daily_kpi_job", "--tags", json.dumps({"dagster/partition": day})]
    imports = import_seconds(env, 3)
    print("import kpi_pipeline.definitions: " + ", ".join(f"{s:.2f} s" for s in imports), flush=True)

    port = free_port()
    log = work / "dagster_dev.log"
    process = start_dagster(port, env, log)
    timings: dict[str, list[float]] = {"ui": [], "cli": []}
    extra: dict[str, dict[str, Any]] = {}
    try:
        gql = GraphQL(port)
        ready = wait_for_location(gql, process, log, timeout=300)
        location = gql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"][0]["name"]
        print(f"dagster dev ready after {ready:.1f} s (code location {location!r})\n", flush=True)
        for number in range(1, rounds + 1):
            run = launch(gql, location, "daily_kpi_job", {"dagster/partition": day}, timeout)
            timings["ui"].append(run["endTime"] - run["launched"])
            print(f"round {number}, ui: daily_kpi_job {day}\n{run_summary(run)}", flush=True)
            timings["cli"].append(run_cli(cli, env, cli_log))
            cli_seconds = timings["cli"][-1]
            print(f"round {number}, cli: dagster job execute daily_kpi_job {day}: {cli_seconds:.1f} s\n")
        for job in ("exports_job", "refresh_kpis_job"):
            extra[job] = launch(gql, location, job, {}, timeout)
            print(f"ui: {job}\n{run_summary(extra[job])}\n", flush=True)
    finally:
        stop_dagster(process)
    ui, cli_median = statistics.median(timings["ui"]), statistics.median(timings["cli"])
    print(
        f"\ndaily_kpi_job for {day}, medians of {rounds}: ui {ui:.1f} s, cli {cli_median:.1f} s, "
        f"ui / cli {ui / cli_median:.2f} (target ≤ 2)"
    )
    print(f"import kpi_pipeline.definitions: median {statistics.median(imports):.2f} s (target ≤ 2 s)")
    return {"ui": timings["ui"], "cli": timings["cli"], "ratio": ui / cli_median, "import": imports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="days generated; the run is for the middle one")
    parser.add_argument("--users", type=int, default=300, help="users of the generated set")
    parser.add_argument("--rounds", type=int, default=3, help="ui and cli runs of the day, interleaved")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for one run")
    parser.add_argument("--keep", type=Path, help="work here and keep the data (must be empty or new)")
    args = parser.parse_args()
    with work_dir(parser, args.keep, "ui_vs_cli_") as work:
        result = measure(work, args.days, args.users, args.rounds, args.timeout)
    print("RESULT " + json.dumps(result))
    sys.exit(0)


if __name__ == "__main__":
    main()
