"""The CLI's Dagster instance: created under a file lock, and cleared of runs whose process died.

Two CLI processes creating the SQLite storage of a fresh ``$DAGSTER_HOME`` at once
stamp its Alembic version twice ("more than one head present"), which breaks the
home for every later call; the lock serialises that. A run whose process was killed
stays STARTED for ever (Dagster's run monitoring cannot see in-process runs), so
every CLI start marks as failed the runs of this CLI on this host whose process is gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from filelock import FileLock, Timeout

SOURCE_TAG = "kpi_pipeline/source"
PID_TAG = "kpi_pipeline/pid"
HOST_TAG = "kpi_pipeline/host"
PROCESS_START_TAG = "kpi_pipeline/process_start"
ASSETS_TAG = "kpi_pipeline/assets"  # set by the runner: the assets a run materializes
CLI_SOURCE = "cli"
LOCK_FILE = ".kpi_pipeline_instance.lock"
LOCK_TIMEOUT_SECONDS = 120.0
# In-process runs go NOT_STARTED → STARTED → an end state; STARTING is for launched runs.
UNFINISHED = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


class InstanceLockTimeout(RuntimeError):
    """Another process held the instance lock for too long; the message names the lock file."""


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None when unknown.

    With the pid it identifies a process even after the pid is reused (containers reuse small pids).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_tags() -> dict[str, str]:
    """Tags that tie a run to the CLI process that runs it: source, pid, host and start time."""
    pid = os.getpid()
    tags = {SOURCE_TAG: CLI_SOURCE, PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    started = process_start(pid)
    if started is not None:
        tags[PROCESS_START_TAG] = started
    return tags


def process_alive(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` (that started at ``started``, when known) still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


def dead_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Unfinished runs of this CLI, started on this host, whose process is gone."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=list(UNFINISHED), tags={SOURCE_TAG: CLI_SOURCE, HOST_TAG: socket.gethostname()}
        )
    )
    dead = []
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and not process_alive(int(pid), run.tags.get(PROCESS_START_TAG)):
            dead.append(run)
    return dead


def describe(run: dg.DagsterRun) -> str:
    """``run 1a2b3c4d (telemetry_events 2025-01-12)``: the run and what it materialized."""
    assets = run.tags.get(ASSETS_TAG) or ", ".join(
        sorted(k.to_user_string() for k in run.asset_selection or ())
    )
    partition = run.tags.get("dagster/partition")
    what = " ".join(part for part in (assets, partition) if part)
    return f"run {run.run_id[:8]}" + (f" ({what})" if what else "")


def mark_dead_runs(instance: dg.DagsterInstance, report: Callable[[str], None] = print) -> list[str]:
    """Mark every dead run (see :func:`dead_runs`) as failed, saying so; returns their run ids."""
    marked = []
    for run in dead_runs(instance):
        pid, host = run.tags[PID_TAG], run.tags.get(HOST_TAG, "")
        message = (
            f"Marked as failed by kpi-pipeline: this run was {run.status.value} but its process {pid} on "
            f"{host} is gone (killed or crashed before the run ended)."
        )
        instance.report_run_failed(run, message)
        marked.append(run.run_id)
        report(f"{describe(run)} was left {run.status.value} by process {pid}, which is gone: marked FAILURE")
    return marked


def cli_instance(report: Callable[[str], None] = print) -> dg.DagsterInstance:
    """The instance under ``$DAGSTER_HOME`` (so the UI shows the runs), else an ephemeral one.

    It is opened, and its storage created or checked, under a file lock in ``$DAGSTER_HOME``;
    dead runs are marked failed under the same lock, so two CLIs never mark one run twice.
    """
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    lock = Path(home) / LOCK_FILE
    try:
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_SECONDS):
            instance = dg.DagsterInstance.get()
            mark_dead_runs(instance, report)
    except Timeout:
        raise InstanceLockTimeout(
            f"another process held {lock} for over {LOCK_TIMEOUT_SECONDS:.0f}s while opening the Dagster "
            f"instance under {home}; retry when it is done"
        ) from None
    return instance
