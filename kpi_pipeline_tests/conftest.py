"""Shared fixtures: one small generated data set, materialized once per test session."""

from __future__ import annotations

import datetime as dt

import pytest

from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline_tests.support import DAYS, START, PipelineRun, materialize_all, settings_for


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The sample data set (21 days, 120 users), generated and materialized end to end."""
    root = tmp_path_factory.mktemp("sample")
    summary = generate_dataset(root, days=DAYS, seed=11, start=START, users=120)
    settings = settings_for(root)
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    defs, results = materialize_all(settings, days)
    return PipelineRun(settings, summary, defs, days, results)
