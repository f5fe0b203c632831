"""What the Dagster UI shows, checked in a real headless Chromium against a real ``dagster dev``.

Run by ``make browser`` (and ``.ci/run``, with ``KPI_REQUIRE_BROWSER=1``): Debian's ``chromium``
driven by Playwright for Python, no browser download. Without Chromium or Playwright the test is
skipped with that reason, except where ``KPI_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from ui_backfill import BIN, GraphQL, free_port, start_dagster, stop_dagster, wait_for_location  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DAYS = 6


def _browser_or_skip() -> None:
    missing = ""
    if not Path(CHROMIUM).exists():
        missing = "no chromium (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e .[dev])"
    if missing and os.environ.get("KPI_REQUIRE_BROWSER") == "1":
        pytest.fail(f"KPI_REQUIRE_BROWSER=1 but {missing}")
    if missing:
        pytest.skip(missing)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "kpi-pipeline"), *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, f"kpi-pipeline {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, list[str]]]:
    """A demo of DAYS days ending yesterday, fully materialized, then its 3rd day re-staged alone;
    ``dagster dev`` on it. Yields the port, the data root and the days."""
    _browser_or_skip()
    work = tmp_path_factory.mktemp("ui")
    data, home = work / "data", work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env |= {"KPI_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    cli(env, "generate", "--out", str(data), "--days", str(DAYS), "--users", "40", "--seed", "5")
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    days = [(yesterday - dt.timedelta(days=DAYS - 1 - n)).isoformat() for n in range(DAYS)]
    cli(env, "materialize")
    cli(env, "materialize", "--start", days[2], "--end", days[2], "--select", "telemetry_events")
    port = free_port()
    process = start_dagster(port, env, work / "dagster_dev.log")
    try:
        wait_for_location(GraphQL(port), process, work / "dagster_dev.log", timeout=180)
        yield port, data, days
    finally:
        stop_dagster(process)


@pytest.fixture
def page(ui: tuple[int, Path, list[str]]) -> Iterator[object]:
    """A page of Debian's headless Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1500, "height": 1000})
        browser.close()


def open_check(page, check: str) -> None:  # noqa: ANN001
    """Select ``check`` on the checks tab (it opens on the first by name). Dagster's first-visit
    newsletter dialog may open over the page a moment after it loaded: skip it and click again."""
    for attempt in range(4):
        skip = page.get_by_role("button", name="Skip")
        if skip.count():
            skip.first.click()
        try:
            page.get_by_text(check, exact=True).first.click(timeout=5_000)
            return
        except Exception:
            if attempt == 3:
                raise


def check_text(page, url: str, check: str, expected: str, timeout: float = 120) -> str:  # noqa: ANN001
    """The text of an asset's checks tab with ``check`` selected, once it shows ``expected``
    (reloading while the daemon's sensor catches up)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        open_check(page, check)
        try:
            page.get_by_text(expected).first.wait_for(timeout=10_000)
            return page.inner_text("body")
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{url} did not show {expected!r}:\n{page.inner_text('body')[:3000]}"
                ) from None


def test_the_checks_tab_lists_every_partition_and_table_a_restaged_day_outdates(
    ui: tuple[int, Path, list[str]], page: object
) -> None:
    port, data, days = ui
    base = f"http://127.0.0.1:{port}"
    completion = check_text(
        page, f"{base}/assets/kpi_task_completion_daily?view=checks", "inputs_current", "need recomputing"
    )
    # task_attempts of D reads telemetry D−1 … D+1: the 2nd to the 4th day.
    listed = "3 partition(s) need recomputing, their inputs changed after they were built (task_attempts)"
    assert f"{listed}: {days[1]} … {days[3]}" in completion
    assert "inputs_current" in completion and "Failed" in completion
    shots = data / "reports"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "ui_inputs_current.png"), full_page=True)
    scorecard = check_text(
        page, f"{base}/assets/kpi_scorecard?view=checks", "inputs_current", "needs recomputing"
    )
    assert (
        "needs recomputing: kpi_roi_daily, kpi_survey_daily, kpi_task_completion_daily, "
        "kpi_ticket_deflection_daily" in scorecard
    )
    staged = check_text(
        page, f"{base}/assets/telemetry_events?view=checks", "inputs_current", "built after every input"
    )
    assert f"all {DAYS} built partition(s) built after every input they read" in staged


def test_the_quarantine_is_an_asset_with_its_lineage_and_its_own_check(
    ui: tuple[int, Path, list[str]], page: object
) -> None:
    port, data, _ = ui
    base = f"http://127.0.0.1:{port}"
    checks = check_text(
        page,
        f"{base}/assets/telemetry_quarantine?view=checks",
        "rows_located",
        "name their file, line and a contract reason",
        timeout=30,
    )
    assert "Succeeded" in checks and "This is a non-blocking asset check." in checks
    page.goto(f"{base}/assets/telemetry_quarantine?view=lineage")
    page.get_by_text("raw_telemetry_files").first.wait_for(timeout=30_000)
    lineage = page.inner_text("body")
    assert "raw_telemetry_files" in lineage and "telemetry_quarantine" in lineage
    (data / "reports").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(data / "reports" / "ui_quarantine_lineage.png"), full_page=True)
