"""Helpers shared by the end-to-end tests: build settings for a data root and materialize it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.runner import StepResult, execute, plan, ranged
from kpi_pipeline.sample_data import GenerationSummary, generate_dataset
from kpi_pipeline.settings import Settings
from kpi_pipeline.warehouse import Warehouse

START = dt.date(2025, 1, 1)
DAYS = 21  # covers the sample data's bug week (2025-01-13 … 2025-01-19)
SMALL_DAYS = 4  # the small data set: 2025-01-01 … 2025-01-04, 40 users


def small_days() -> list[dt.date]:
    return [START + dt.timedelta(days=i) for i in range(SMALL_DAYS)]


def generate_small(root: Path) -> None:
    """The small data set's raw files and kpi.yaml under ``root`` (conftest.small_run materializes it)."""
    generate_dataset(root, days=SMALL_DAYS, seed=9, start=START, users=40)


@dataclass
class PipelineRun:
    settings: Settings
    summary: GenerationSummary
    defs: dg.Definitions
    days: list[dt.date]
    results: list[StepResult]

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings.warehouse_url)


@dataclass
class SmallRun:
    """A test's own copy of the small data set, materialized end to end (conftest.small_run)."""

    root: Path
    settings: Settings
    days: list[dt.date]
    results: list[StepResult]


def cli_on(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI as a user runs it on ``root``: KPI_DATA_DIR names it, and no warehouse URL, kpi.yaml
    or DAGSTER_HOME comes from the environment (each CLI call then has a fresh in-memory instance)."""
    monkeypatch.setenv("KPI_DATA_DIR", str(root))
    for name in ("KPI_WAREHOUSE_URL", "KPI_CONFIG", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)


def settings_for(root: Path) -> Settings:
    return Settings(
        data_dir=root,
        warehouse_url=f"sqlite:///{root / 'warehouse' / 'kpi.db'}",
        config_path=root / "config" / "kpi.yaml",
        start_date=START,
    )


def materialize_all(
    settings: Settings, days: list[dt.date], per_day: bool = False
) -> tuple[dg.Definitions, list[StepResult]]:
    """Every asset of ``days`` in runs as the CLI makes them: consecutive days in ranged runs, or
    with ``per_day`` one run per day (what a test of per-day outcomes or metadata needs)."""
    defs = build_definitions(settings)
    steps = plan(defs, days)
    return defs, execute(defs, steps if per_day else ranged(steps), dg.DagsterInstance.ephemeral())
