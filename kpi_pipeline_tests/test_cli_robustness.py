"""The CLI under concurrent starts, killed runs, failing assets and stray files (issue 9, items 15–17, 19)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

import kpi_pipeline
from kpi_pipeline.cli import _print_step, main
from kpi_pipeline.run_history import cli_instance
from kpi_pipeline.runner import Step, execute
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON
from kpi_pipeline_tests.support import cli_on

REPO = Path(kpi_pipeline.__file__).resolve().parents[1]
DAY = "2025-01-02"


def python(code: str, home: Path, *args: str) -> subprocess.Popen[str]:
    """A Python subprocess running ``code`` (argv: ``args``) on ``home``, this repository importable."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


STARTER = """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from kpi_pipeline.run_history import cli_instance

    gate, name = Path(sys.argv[1]), sys.argv[2]
    (gate / f"ready-{name}").touch()
    while not (gate / "go").exists():
        time.sleep(0.002)
    cli_instance().add_run(dg.DagsterRun(job_name="starter", run_id=f"starter-{name}"))
"""


def test_cli_processes_starting_at_once_on_a_fresh_dagster_home_all_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the lock in cli_instance this fails every time here: "alembic … more than one head"."""
    home, gate = tmp_path / "dagster_home", tmp_path / "gate"
    gate.mkdir()
    count = 3
    # Every process imports dagster first, then all open the fresh home at the same instant.
    starters = [python(STARTER, home, str(gate), str(n)) for n in range(count)]
    wait_for(lambda: len(list(gate.glob("ready-*"))) == count, 120, "every process to import dagster")
    (gate / "go").touch()
    outcomes = [p.communicate(timeout=120) for p in starters]
    assert [p.returncode for p in starters] == [0] * count, [err[-2000:] for _, err in outcomes]

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert len(cli_instance().get_run_records()) == count  # and a later start works too


SLOW_RUN = """
    import time
    import dagster as dg
    from kpi_pipeline.run_history import cli_instance
    from kpi_pipeline.runner import Step, execute

    @dg.asset
    def slow_asset() -> None:
        time.sleep(120)

    execute(dg.Definitions(assets=[slow_asset]), [Step(("slow_asset",), None)], cli_instance())
"""


def test_a_killed_run_is_marked_failed_on_the_next_cli_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = cli_instance()
    child = python(SLOW_RUN, home)
    started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])

    def run_started() -> bool:
        if child.poll() is not None:
            raise AssertionError(f"the run's process ended early: {child.communicate()[1][-2000:]}")
        return bool(instance.get_run_records(filters=started))

    try:
        wait_for(run_started, 120, "the run to start")
    except AssertionError:
        child.kill()
        raise
    [record] = instance.get_run_records(filters=started)
    run = record.dagster_run
    assert run.tags["kpi_pipeline/pid"] == str(child.pid)

    lines: list[str] = []
    cli_instance(report=lines.append)  # its process is alive: the run is left alone
    assert lines == []
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=60)
    cli_instance(report=lines.append)
    assert lines == [
        f"run {run.run_id[:8]} (slow_asset) was left STARTED by process {child.pid}, which is gone: "
        "marked FAILURE"
    ]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    failures = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=10).records
    [message] = [r.event_log_entry.dagster_event.message for r in failures if r.run_id == run.run_id]
    host = run.tags["kpi_pipeline/host"]
    assert message == (
        f"Marked as failed by kpi-pipeline: this run was STARTED but its process {child.pid} on {host} "
        "is gone (killed or crashed before the run ended)."
    )
    cli_instance(report=lines.append)  # marked once only
    assert len(lines) == 1


def without_seconds(text: str) -> list[str]:
    return re.sub(r"\(\d+\.\d+s\)", "(…s)", text).splitlines()


def test_a_failed_run_prints_its_root_cause_in_one_line_and_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    @dg.asset
    def unreadable_file() -> None:
        raise dg.Failure(description=f"raw/telemetry/date={DAY}/a.jsonl.gz: not a valid gzip file")

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2025-01-01"))
    def quarantine_writer() -> None:
        engine = sa.create_engine("sqlite://")
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO quarantine VALUES (1)"))
        except sa.exc.OperationalError as exc:
            raise RuntimeError("could not write the quarantine") from exc

    defs = dg.Definitions(assets=[unreadable_file, quarantine_writer])
    instance = dg.DagsterInstance.ephemeral()
    steps = [Step(("unreadable_file",), None), Step(("quarantine_writer",), DAY)]
    results = execute(defs, steps, instance, progress=_print_step)
    out, err = capfd.readouterr()
    assert without_seconds(out) == [
        "[1/2] unpartitioned unreadable_file: FAILED (…s)",
        f"    raw/telemetry/date={DAY}/a.jsonl.gz: not a valid gzip file",
        f"[2/2] {DAY} quarantine_writer: FAILED (…s)",
        f"    quarantine_writer {DAY}: OperationalError: no such table: quarantine",
    ]
    assert err == ""
    assert [r.success for r in results] == [False, False]
    # The stack traces stay in the run's event log, for the UI.
    run_id = instance.get_run_records(limit=1)[0].dagster_run.run_id
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    error = failure.dagster_event.event_specific_data.error
    assert "could not write the quarantine" in error.cause.message
    assert error.cause.stack


def test_a_real_read_only_postgres_role_prints_the_permission_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = os.environ.get("KPI_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KPI_TEST_POSTGRES_URL is not set; export it to run the PostgreSQL CLI test")
    admin = sa.create_engine(url)
    schema = f"kpi_cli_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    role = f"{schema}_reader"
    write_day(tmp_path)
    monkeypatch.setenv("KPI_DATA_DIR", str(tmp_path))
    for name in ("KPI_CONFIG", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        conn.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'reader'")
    try:
        owner = sa.make_url(url).set(query={"options": f"-csearch_path={schema}"})
        monkeypatch.setenv("KPI_WAREHOUSE_URL", owner.render_as_string(hide_password=False))
        assert main(["materialize", "--start", DAY, "--end", DAY, "--select", "telemetry_events"]) == 0
        capsys.readouterr()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
            conn.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        reader = owner.set(username=role, password="reader")
        monkeypatch.setenv("KPI_WAREHOUSE_URL", reader.render_as_string(hide_password=False))
        assert main(["materialize", "--start", DAY, "--end", DAY, "--select", "telemetry_events"]) == 1
        out = capsys.readouterr().out
        [cause] = [line for line in out.splitlines() if "permission denied" in line]
        assert cause.strip().startswith(f"telemetry_events {DAY}: ")
        assert cause.endswith("permission denied for table quarantine")
        assert "Traceback" not in out and "Stack Trace" not in out
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


def write_day(root: Path) -> Path:
    """One telemetry day with two events, plus a notes file and a subfolder that staging ignores."""
    folder = root / "raw" / "telemetry" / f"date={DAY}"
    (folder / "old").mkdir(parents=True)
    events = [
        {
            "event_id": f"e{n}",
            "occurred_at": f"{DAY}T08:0{n}:00Z",
            "user_id": "u1",
            "account_id": "acme",
            "event_type": "feature_used",
            "feature": "search",
        }
        for n in range(2)
    ]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    (folder / "notes.txt").write_text("exported by hand\n", encoding="utf-8")
    (folder / "old" / "events.jsonl").write_text(json.dumps(events[0]) + "\n", encoding="utf-8")
    return folder


IGNORED = (
    "ignored 2 file(s) (only .jsonl/.jsonl.gz/.csv/.csv.gz files directly in the day folder are read, "
    f"never hidden or .tmp/.part ones): raw/telemetry/date={DAY}/notes.txt, "
    f"raw/telemetry/date={DAY}/old/events.jsonl"
)


def test_materialize_and_check_source_list_the_files_they_ignore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_day(tmp_path)
    cli_on(tmp_path, monkeypatch)

    assert main(["check-source", "telemetry", "--date", DAY, "--rows", "0"]) == 0
    assert f"    telemetry: {IGNORED}" in capsys.readouterr().out.splitlines()

    assert main(["materialize", "--start", DAY, "--end", DAY, "--select", "telemetry_events"]) == 0
    lines = without_seconds(capsys.readouterr().out)
    assert lines[2:4] == [
        "    telemetry_events: 2 raw = 2 staged + 0 quarantined",
        f"    telemetry_events: {IGNORED}",
    ]


def test_an_unreachable_warehouse_stops_materialize_at_once_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warehouse that cannot be reached (here a database that does not exist) is one line before
    any run starts, not the same failure in every run and every day after their retries."""
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(POSTGRES_SKIP_REASON)
    missing = sa.make_url(os.environ[POSTGRES_ENV]).set(database="kpi_no_such_database")
    monkeypatch.setenv("KPI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KPI_WAREHOUSE_URL", missing.render_as_string(hide_password=False))
    started = time.monotonic()
    assert main(["materialize", "--start", "2025-01-01", "--end", "2025-01-02"]) == 2
    assert time.monotonic() - started < 30
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"error: KPI_WAREHOUSE_URL {missing.render_as_string()}: cannot connect: ")
    assert line.endswith('database "kpi_no_such_database" does not exist')
