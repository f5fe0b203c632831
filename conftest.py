"""The order pytest-xdist hands test files to its workers (``make test`` runs kpi_pipeline_tests and
browser_tests together, on the workers pyproject.toml's addopts set)."""

from __future__ import annotations

import pytest

# Most expensive first (seconds of one core, from --durations with -n 0 on 2026-12-08), so the
# workers end together instead of one running the longest files last; every other file follows in
# pytest's order. --no-loadscope-reorder (pyproject.toml) turns off xdist's own reordering by the
# number of tests in a file, which put these files last.
HEAVY_FIRST = (
    "test_ui_and_report.py",  # ~52 s, ~10 s of it waiting on dagster dev and Chromium
    "test_pipeline.py",  # ~45 s; builds the shared sample first
    "test_runner_ranges.py",  # ~30 s
    "test_ranged_runs.py",  # ~21 s
    "test_sources_realdata.py",  # ~20 s
    "test_ranged_runs_blocked.py",  # ~16 s
    "test_checks_pipeline.py",  # ~14 s
    "test_ingest_fast_path.py",  # ~14 s
    "test_inputs_current.py",  # ~13 s
    "test_warehouse.py",  # ~10 s
    "test_automation.py",  # ~9 s
    "test_cli_robustness.py",  # ~9 s
    "test_pipeline_gaps.py",
    "test_quality_expectations.py",
    "test_ingest_properties.py",
    "test_partition_store.py",
    "test_sources_pipeline.py",
    "test_ingest_surveys.py",
    "test_kpi_oracle.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
