"""The deployment of docs/deploy.md on one machine, against the local PostgreSQL server.

The code location runs as its own gRPC server, the webserver and the daemon as separate processes
that load it through a workspace file, all on a Dagster instance in PostgreSQL (``deploy/
dagster.yaml``) with the warehouse in PostgreSQL too: the commands are the services' commands of
``deploy/docker-compose.yaml``, with local hosts, ports and paths. A 30-day asset backfill runs as
concurrent ranged runs through the webserver's GraphQL API and must leave the tables a single
process leaves in SQLite; then a staging backfill has one run worker killed with SIGKILL mid-run,
and Dagster's run monitoring and run retries must finish it with nothing lost or doubled.

Run by ``make deploy-test`` (and ``.ci/run``). Without ``KPI_TEST_POSTGRES_URL`` it is skipped with
that reason.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from deploy_tests.support import instance_database
from kpi_pipeline.tables import TABLES
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON, postgres_schema_url

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(REPO / "benchmarks"))
from ui_backfill import (  # noqa: E402
    BACKFILL_QUERY,
    BIN,
    LAUNCH_MUTATION,
    WORKSPACE_QUERY,
    GraphQL,
    free_port,
    log_tail,
    stop_dagster,
)

START = dt.date(2025, 1, 1)
DAYS = [(START + dt.timedelta(days=n)).isoformat() for n in range(30)]
RANGE = "dagster/asset_partition_range"
DAYS_PER_RUN = 10  # 30 days in 3 ranged runs per asset group, which the queue runs side by side
STAGING = [["telemetry_events"], ["telemetry_quarantine"]]
RUNS_QUERY = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status runs { runId status startTime endTime tags { key value } stepStats { stepKey status } } } } }
"""
PID_QUERY = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename
  ... on MessageEvent { message } } } } }
"""
LOCK_ERRORS = re.compile(r"deadlock|could not obtain lock|database is locked|LockNotAvailable", re.I)

pytestmark = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=POSTGRES_SKIP_REASON)


def service_commands(web_port: int, code_port: int, workspace: Path) -> dict[str, list[str]]:
    """The compose file's commands of the code location, webserver and daemon, made local: this
    machine's executables, 127.0.0.1, free ports and the local workspace file."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    local = {"0.0.0.0": "127.0.0.1", "4000": str(code_port), "3000": str(web_port)}
    local["/opt/dagster/workspace.yaml"] = str(workspace)
    out = {}
    services = compose["services"]
    commands = {name: services[name]["command"] for name in ("migrate", "code", "webserver", "daemon")}
    commands["code_ready"] = services["code"]["healthcheck"]["test"][1:]  # after "CMD"
    out = {}
    for name, command in commands.items():
        command = [local.get(part, part) for part in command]
        out[name] = [str(BIN / command[0]), *command[1:]]
    return out


def wait_ready(command: list[str], code: subprocess.Popen[bytes], log: Path) -> None:
    """Until the code server answers its gRPC health check (the compose file's healthcheck)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if code.poll() is not None:
            pytest.fail(f"the code server exited with {code.returncode}:\n{log_tail(log)}")
        if subprocess.run(command, cwd=REPO, capture_output=True).returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"the code server did not answer its health check within 120 s:\n{log_tail(log)}")


def local_workspace(path: Path, code_port: int) -> Path:
    """deploy/workspace.yaml with the code location's gRPC server on this machine."""
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    entry["grpc_server"] |= {"host": "127.0.0.1", "port": code_port}
    path.write_text(yaml.safe_dump(workspace))
    return path


class Api(GraphQL):
    """The webserver's GraphQL API; an HTTP error fails with the body the server sent."""

    def __call__(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        try:
            return super().__call__(query, variables, timeout)
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"HTTP {error.code} from the webserver: {error.read()[:3000]!r}") from None


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_loaded(gql: Api, processes: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    """Until the webserver answers with the code location loaded from its gRPC server."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{log_tail(logs / f'{name}.log')}")
        try:
            entries = gql(WORKSPACE_QUERY, timeout=10)["workspaceOrError"].get("locationEntries") or []
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [
                e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"
            ]
            assert not errors, errors
            return
        time.sleep(1)
    pytest.fail(f"no loaded code location after 240 s:\n{log_tail(logs / 'webserver.log')}")


def launch(gql: Api, selection: list[list[str]] | None, title: str) -> str:
    """An asset backfill of DAYS over ``selection`` (every materializable asset when None)."""
    if selection is None:
        nodes = gql("{ assetNodes { assetKey { path } isMaterializable } }")["assetNodes"]
        selection = [n["assetKey"]["path"] for n in nodes if n["isMaterializable"]]
    params = {"assetSelection": [{"path": p} for p in selection], "partitionNames": DAYS, "title": title}
    result = gql(LAUNCH_MUTATION, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_backfill(gql: Api, backfill_id: str, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = gql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        runs_done = all(r["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for r in data["runs"])
        if data["status"] not in {"REQUESTED", "CANCELING"} and runs_done:
            return data
        time.sleep(3)
    pytest.fail(f"backfill {backfill_id} still running after {timeout:.0f} s")


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The largest number of the runs that were in progress at one instant."""
    edges = sorted(
        [(r["startTime"], 1) for r in runs if r["startTime"]]
        + [(r["endTime"], -1) for r in runs if r["startTime"] and r["endTime"]],
        key=lambda edge: (edge[0], edge[1]),
    )
    level = best = 0
    for _, step in edges:
        level += step
        best = max(best, level)
    return best


def report(what: str, backfill: dict[str, Any], began: float) -> None:
    """One line per backfill for the CI log: runs, how many at once, wall time."""
    runs = backfill["runs"]
    ends = [r["endTime"] for r in runs if r["endTime"]]
    print(
        f"backfill ({what}): {backfill['status']}, {len(runs)} runs "
        f"({sum(r['status'] == 'SUCCESS' for r in runs)} succeeded), at most {most_at_once(runs)} at once, "
        f"{max(ends) - began:.0f} s from launch to the last run's end"
    )
    for run in sorted(runs, key=lambda r: r["startTime"] or 0):
        tags = {t["key"]: t["value"] for t in run["tags"]}
        span = f"{tags.get(f'{RANGE}_start', '')} … {tags.get(f'{RANGE}_end', '')}".strip(" …")
        start, end = run["startTime"], run["endTime"]
        when = f"+{start - began:.0f} s → +{end - began:.0f} s" if start and end else "not started"
        print(f"  {run['runId'][:8]} {run['status']:<8} {when:<18} {span or 'unpartitioned'}")


def tables(url: str) -> dict[str, pd.DataFrame]:
    """Every table of the warehouse, sorted on all columns, values as text (SQLite and PostgreSQL
    return dates and numbers as different Python types)."""
    warehouse = Warehouse(url)
    out = {}
    for name in sorted(set(TABLES) - {"staging_commits"}):  # commits hold each run's file tokens
        frame = warehouse.read(name).astype(str)
        out[name] = frame.sort_values(list(frame.columns), ignore_index=True)
    return out


def assert_same_tables(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    assert sorted(got) == sorted(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, obj=name)


def staged(data: Path) -> dict[str, int]:
    """Staged telemetry per day: a hash of the day's rows in a fixed order, as the Parquet files
    hold them (equal for two stagings of the same raw files, whatever run wrote them)."""
    import pyarrow.parquet as pq

    out = {}
    for path in sorted((data / "staging" / "telemetry_events").glob("date=*/data.parquet")):
        frame = pq.read_table(path).to_pandas()
        frame = frame.sort_values(list(frame.columns), ignore_index=True)
        out[path.parent.name] = int(pd.util.hash_pandas_object(frame, index=False).sum())
    return out


def leftovers(data: Path) -> list[str]:
    """Files a killed writer left: staged files under ``_pending/``, pending or temporary files
    beside a partition (the next reader or writer of that partition removes them)."""
    staging = data / "staging"
    found = [*staging.glob("_pending/*"), *staging.glob("*/date=*/.data.parquet.*")]
    return sorted(str(path.relative_to(data)) for path in found)


def run_worker_pid(gql: Api, run_id: str) -> int | None:
    """The pid the run's engine event reports ("Started process for run (pid: N)")."""
    events = gql(PID_QUERY, {"id": run_id})["logsForRun"].get("events") or []
    for event in events:
        found = re.search(r"Started process for run \(pid: (\d+)\)", event.get("message") or "")
        if found:
            return int(found.group(1))
    return None


def kill_a_staging_run(gql: Api, backfill_id: str) -> str:
    """SIGKILL the worker of the first run of the backfill whose staging step is in progress."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        data = gql(RUNS_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        for run in data["runs"]:
            busy = any(s["status"] == "IN_PROGRESS" for s in run["stepStats"])
            pid = run_worker_pid(gql, run["runId"]) if run["status"] == "STARTED" and busy else None
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it finished between the poll and the kill: try another
                continue
            return run["runId"]
        time.sleep(0.5)
    pytest.fail("no staging run of the backfill reached its staging step within 300 s")


def test_concurrent_backfills_on_a_postgres_instance_equal_one_sqlite_process(tmp_path: Path) -> None:
    data, reference = tmp_path / "data", tmp_path / "reference"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "DAGSTER_"))}
    base |= {"KPI_START_DATE": START.isoformat()}
    generate = [str(BIN / "kpi-pipeline"), "generate", "--out", str(data), "--days", "30"]
    generate += ["--users", "40", "--seed", "11", "--start", START.isoformat()]
    subprocess.run(generate, env=base, cwd=REPO, check=True, capture_output=True)
    shutil.copytree(data, reference)
    # The reference: one process, SQLite, the CLI (no DAGSTER_HOME: an ephemeral instance).
    materialize = [str(BIN / "kpi-pipeline"), "materialize", "--start", DAYS[0], "--end", DAYS[-1]]
    done = subprocess.run(
        materialize, env=base | {"KPI_DATA_DIR": str(reference)}, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = tables(f"sqlite:///{reference / 'warehouse' / 'kpi.db'}")
    expected_staged = staged(reference)
    assert len(expected_staged) == 30 and len(expected["kpi_task_completion_daily"]) > 0

    with instance_database() as pg, postgres_schema_url() as warehouse_url:
        home, logs = tmp_path / "dagster_home", tmp_path / "logs"
        home.mkdir()
        logs.mkdir()
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        env = base | pg
        env |= {"DAGSTER_HOME": str(home), "KPI_DATA_DIR": str(data), "KPI_WAREHOUSE_URL": warehouse_url}
        env |= {"KPI_MAX_DAYS_PER_RUN": str(DAYS_PER_RUN)}
        web_port, code_port = free_port(), free_port()
        commands = service_commands(
            web_port, code_port, local_workspace(tmp_path / "workspace.yaml", code_port)
        )
        migrate = subprocess.run(commands["migrate"], env=env, cwd=REPO, capture_output=True, text=True)
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            processes["code"] = start(commands["code"], env, logs / "code.log")
            wait_ready(commands["code_ready"], processes["code"], logs / "code.log")
            for name in ("webserver", "daemon"):
                processes[name] = start(commands[name], env, logs / f"{name}.log")
            gql = Api(web_port)
            wait_loaded(gql, processes, logs)

            # 1. Every asset over 30 days: ranged runs of 10 days, side by side.
            began = time.time()
            first = wait_backfill(gql, launch(gql, None, "deploy test: every asset"))
            report("every asset", first, began)
            assert first["status"] == "COMPLETED_SUCCESS", first["status"]
            assert all(r["status"] == "SUCCESS" for r in first["runs"])
            assert most_at_once(first["runs"]) >= 2
            ranges = {
                (
                    tags.get("dagster/asset_partition_range_start"),
                    tags.get("dagster/asset_partition_range_end"),
                )
                for r in first["runs"]
                if (tags := {t["key"]: t["value"] for t in r["tags"]})
            }
            assert ("2025-01-01", "2025-01-10") in ranges and ("2025-01-21", "2025-01-30") in ranges
            assert_same_tables(tables(warehouse_url), expected)
            assert staged(data) == expected_staged

            # 2. Staging again, one run worker killed while it stages: the rows stand, the run is
            # retried by the daemon, and the backfill ends with the same tables.
            second = launch(gql, STAGING, "deploy test: staging with a killed run")
            began = time.time()
            killed = kill_a_staging_run(gql, second)
            print(f"killed the worker of run {killed[:8]} {time.time() - began:.1f} s after launch")
            assert_same_tables(tables(warehouse_url), expected)
            done_second = wait_backfill(gql, second)
            report("staging again, one worker killed", done_second, began)
            assert done_second["status"] == "COMPLETED_SUCCESS", done_second["status"]
            by_id = {r["runId"]: r for r in done_second["runs"]}
            assert by_id[killed]["status"] == "FAILURE"
            # Killed mid-stage: its staging step never succeeded; the retry staged those days.
            assert [s["status"] for s in by_id[killed]["stepStats"] if s["stepKey"] == "stage_telemetry"] != [
                "SUCCESS"
            ]
            retries = [
                r
                for r in done_second["runs"]
                if {"key": "dagster/parent_run_id", "value": killed} in r["tags"]
            ]
            assert [r["status"] for r in retries] == ["SUCCESS"]
            assert_same_tables(tables(warehouse_url), expected)
            assert staged(data) == expected_staged
            assert leftovers(data) == []
        finally:
            for process in processes.values():
                stop_dagster(process)
        for name in processes:
            locked = [line for line in (logs / f"{name}.log").read_text(errors="replace").splitlines()
                      if LOCK_ERRORS.search(line)]  # fmt: skip
            assert not locked, f"{name}: {locked[:5]}"
