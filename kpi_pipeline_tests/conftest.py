"""Shared fixtures: one small generated data set, materialized once per test session, and an empty
warehouse on each backend."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import StepResult
from kpi_pipeline.sample_data import GenerationSummary, generate_dataset
from kpi_pipeline_tests.postgres import POSTGRES_ENV, POSTGRES_SKIP_REASON, postgres_schema_url
from kpi_pipeline_tests.support import DAYS, START, PipelineRun, materialize_all, settings_for


def _build_sample(root: Path, days: list[dt.date]) -> tuple[GenerationSummary, list[StepResult]]:
    summary = generate_dataset(root, days=DAYS, seed=11, start=START, users=120)
    return summary, materialize_all(settings_for(root), days)[1]


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> PipelineRun:
    """The sample data set (21 days, 120 users), generated and materialized end to end.

    Under pytest-xdist the first worker to need it builds it once (under a file lock, in the
    directory all workers share); every worker then works on its own copy, as tests write to it.
    """
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    root = tmp_path_factory.mktemp("sample")
    if worker_id == "master":
        summary, results = _build_sample(root, days)
    else:
        shared = tmp_path_factory.getbasetemp().parent / "sample_built"
        with open(shared.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (shared / "built.pickle").exists():
                shutil.rmtree(shared / "data", ignore_errors=True)  # a failed build's leftovers
                built = _build_sample(shared / "data", days)
                (shared / "built.pickle").write_bytes(pickle.dumps(built))
        shutil.copytree(shared / "data", root, dirs_exist_ok=True)
        summary, results = pickle.loads((shared / "built.pickle").read_bytes())
    settings = settings_for(root)
    return PipelineRun(settings, summary, build_definitions(settings), days, results)


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
