"""Shared fixtures: the generated data sets materialized once per test session (under pytest-xdist,
once for all workers) and an empty warehouse on each backend."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from hypothesis import HealthCheck, settings

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import StepResult
from kpi_pipeline.sample_data import GenerationSummary, generate_dataset
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON, postgres_schema_url
from kpi_pipeline_tests.support import (
    DAYS,
    START,
    PipelineRun,
    SmallRun,
    generate_small,
    materialize_all,
    settings_for,
    small_days,
)

SAMPLE_DAYS = tuple(START + dt.timedelta(days=i) for i in range(DAYS))  # the sample: 2025-01-01 … 01-21


def shared_build(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str, build: Callable[[Path], Any]
) -> tuple[Path, Any]:
    """``build(root)`` once per session: its data root and what it returned (pickled).

    Under pytest-xdist the first worker to need it builds it, under a file lock, in the directory
    all workers share; the others wait for it and read the same files. Callers copy the root before
    writing to it."""
    if worker_id == "master":
        root = tmp_path_factory.mktemp(name) / "data"
        return root, build(root)
    shared = tmp_path_factory.getbasetemp().parent / f"{name}_built"
    with open(shared.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "built.pickle").exists():
            shutil.rmtree(shared / "data", ignore_errors=True)  # a failed build's leftovers
            built = build(shared / "data")
            (shared / "built.pickle").write_bytes(pickle.dumps(built))
    return shared / "data", pickle.loads((shared / "built.pickle").read_bytes())


def _build_sample(root: Path) -> tuple[GenerationSummary, list[StepResult]]:
    summary = generate_dataset(root, days=DAYS, seed=11, start=START, users=120)
    return summary, materialize_all(settings_for(root), list(SAMPLE_DAYS))[1]


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> PipelineRun:
    """The sample data set (21 days, 120 users), generated and materialized end to end, in a data
    root of this worker's own (tests write to it: re-materialize a day, run a follow-up)."""
    built, (summary, results) = shared_build(tmp_path_factory, worker_id, "sample", _build_sample)
    root = tmp_path_factory.mktemp("sample")
    shutil.copytree(built, root, dirs_exist_ok=True)
    settings = settings_for(root)
    return PipelineRun(settings, summary, build_definitions(settings), list(SAMPLE_DAYS), results)


def _build_small(root: Path) -> list[StepResult]:
    generate_small(root)
    return materialize_all(settings_for(root), small_days())[1]


@pytest.fixture(scope="session")
def small_built(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[Path, list[StepResult]]:
    """A small data set (4 days, 40 users) materialized end to end once per session; not to be
    written to: :func:`small_run` is a test's own copy."""
    return shared_build(tmp_path_factory, worker_id, "small", _build_small)


@pytest.fixture
def small_run(small_built: tuple[Path, list[StepResult]], tmp_path: Path) -> SmallRun:
    """The small data set materialized end to end, in a data root of the test's own."""
    built, results = small_built
    root = tmp_path / "small"
    shutil.copytree(built, root)
    return SmallRun(root, settings_for(root), small_days(), results)


# Hypothesis profiles: "ci" (the default) keeps the property suites inside the test budget and
# replays the same examples on every run; HYPOTHESIS_PROFILE=thorough hunts with many more.
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=POSTGRES_SKIP_REASON),
        ),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A warehouse URL of an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with postgres_schema_url() as scoped:
        yield scoped


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps that fail with a retryable error are retried as often as their policy says, without the
    policy's wait between tries (about 1 + 2 + 4 s of sleep per failing step)."""
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0)
