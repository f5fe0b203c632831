"""The KPI report and the Dagster UI, checked in a real headless Chromium on one demo built once.

Run by ``make test`` and ``make browser`` (``.ci/run`` sets ``KPI_REQUIRE_BROWSER=1``): Debian's
``chromium`` driven by Playwright for Python, no browser download. Without Chromium or Playwright
the tests are skipped with that reason, except where ``KPI_REQUIRE_BROWSER=1`` makes that a
failure.

One module, so that ``--dist loadfile`` gives every test to one worker and the demo is built once:
DAYS days × USERS users are generated and the CLI materializes them, which writes
``reports/kpi_report.html``. The report test opens that page from disk first; then the 3rd day's
``telemetry_events`` is re-staged alone and ``dagster dev`` serves the UI tests. The full-page
screenshots land in the data root's ``reports/``; ``KPI_SAVE_SCREENSHOT=docs/img/kpi_report.png``
copies the report's there too (relative to the repository), to refresh the README's picture.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from ui_backfill import BIN, GraphQL, free_port, start_dagster, stop_dagster, wait_for_location  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The scorecard compares the last 7 days with the 7 before: 14 days at least. At 60 users a day of
# the bug week (its task_done rows are quarantined) reaches the 5 % quarantine limit and fails.
DAYS, USERS = 14, 70
# Every chart container holds a Plotly graph that has drawn its SVG.
RENDERED = """declared => {
  const charts = [...document.querySelectorAll('[data-chart]')];
  const drawn = charts.filter(c => c.querySelector('.js-plotly-plot .main-svg'));
  return charts.length === declared && drawn.length === declared;
}"""
OK_BACKGROUND, REGRESSED_BACKGROUND = "rgb(218, 251, 225)", "rgb(253, 226, 225)"  # page.STYLE


class Demo(NamedTuple):
    """The materialized demo: its folders, the CLI's environment and output, and the report."""

    work: Path
    data: Path
    env: dict[str, str]
    days: list[str]
    output: str
    report: Path
    report_sha256: str


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


def first_day(today: dt.date) -> dt.date:
    """The Sunday that starts the latest DAYS days ending by yesterday. The sample's
    instrumentation-bug week (the third calendar week its data touch) then fills the scorecard's
    current period: invoice_download regresses (red), the other workflows stay ok (green), and the
    generated telemetry, hence every check's outcome, is the same whatever the date."""
    yesterday = today - dt.timedelta(days=1)
    last = yesterday - dt.timedelta(days=(yesterday.weekday() - 5) % 7)  # a Saturday
    return last - dt.timedelta(days=DAYS - 1)


@contextlib.contextmanager
def dagster_home(work: Path) -> Iterator[Path]:
    """An empty DAGSTER_HOME, in memory (/dev/shm) where the machine has it: the run storage's
    SQLite files sync to disk on every event, which made the CLI's materialize wait 4 s of its 26
    here. Elsewhere under ``work``."""
    shm = Path("/dev/shm")
    in_memory = shm.is_dir() and os.access(shm, os.W_OK)
    home = Path(tempfile.mkdtemp(prefix="kpi_browser_home_", dir=shm)) if in_memory else work / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("")
    try:
        yield home
    finally:
        if in_memory:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """DAYS days × USERS users from a Sunday, generated (``kpi-pipeline generate``'s function, in
    this process) and materialized with the CLI on a DAGSTER_HOME (the UI shows those runs)."""
    _browser_or_skip()
    work = tmp_path_factory.mktemp("browser")
    data = work / "data"
    with dagster_home(work) as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
        env |= {"KPI_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        start = first_day(dt.datetime.now(dt.UTC).date())
        days = [(start + dt.timedelta(days=n)).isoformat() for n in range(DAYS)]
        generate_dataset(data, days=DAYS, seed=5, start=start, users=USERS)
        output = cli(env, "materialize")
        report = data / "reports" / "kpi_report.html"
        yield Demo(work, data, env, days, output, report, hashlib.sha256(report.read_bytes()).hexdigest())


@pytest.fixture(scope="module")
def ui(demo: Demo) -> Iterator[int]:
    """The demo with its 3rd day's ``telemetry_events`` re-staged alone; ``dagster dev`` on it.
    Yields the port."""
    third = demo.days[2]
    cli(demo.env, "materialize", "--start", third, "--end", third, "--select", "telemetry_events")
    port = free_port()
    log = demo.work / "dagster_dev.log"
    process = start_dagster(port, demo.env, log)
    try:
        wait_for_location(GraphQL(port), process, log, timeout=180)
        yield port
    finally:
        stop_dagster(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium, driven by Playwright: launched once for the module."""
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(ui: int, browser: object) -> Iterator[object]:
    """A page in a fresh browser context (no cookies or storage of another test)."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    yield context.new_page()
    context.close()


def test_the_report_renders_every_chart_offline_with_the_scorecard_of_the_warehouse(
    demo: Demo, browser: object
) -> None:
    """First in the module, before ``dagster dev`` starts (whose daemon launches no run: its only
    running sensor, ``inputs_current_sensor``, records check results); the page must still be the
    bytes the CLI's ``materialize`` wrote."""
    report = demo.report
    assert f"report: {report}" in demo.output.splitlines()
    assert hashlib.sha256(report.read_bytes()).hexdigest() == demo.report_sha256
    assert 1_000_000 < report.stat().st_size < 6_000_000  # plotly.js (~4.8 MB) once, and the data
    card = Warehouse(f"sqlite:///{demo.data / 'warehouse' / 'kpi.db'}").read("kpi_scorecard")
    assert len(card) > 0
    errors: list[str] = []
    failed: list[str] = []
    requested: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
        page.on("request", lambda r: requested.append(r.url))
        page.goto(report.as_uri())
        declared = int(page.get_attribute('meta[name="kpi-report-charts"]', "content") or 0)
        page.wait_for_function(RENDERED, arg=declared, timeout=60_000)
        # The demo has every table: no section says "no data yet".
        assert declared == 13 and page.locator("p.empty").count() == 0
        rows = page.locator("#scorecard-table tbody tr")
        shown = {}
        for i in range(rows.count()):
            row = rows.nth(i)
            status = row.locator("td.status")
            colour = status.evaluate("td => getComputedStyle(td).backgroundColor")
            shown[row.get_attribute("data-workflow")] = (status.inner_text(), colour)
        expected = {
            r.workflow: (r.status, OK_BACKGROUND if r.status == "ok" else REGRESSED_BACKGROUND)
            for r in card.itertuples(index=False)
        }
        assert shown == expected
        assert {colour for _, colour in shown.values()} == {OK_BACKGROUND, REGRESSED_BACKGROUND}
        assert page.locator("#scorecard-table td.metric").count() == 7 * len(card)
        shots = demo.data / "reports"
        page.screenshot(path=str(shots / "kpi_report.png"), full_page=True)
    finally:
        context.close()
    assert errors == [] and failed == []
    assert requested == [report.as_uri()]  # nothing but the page itself: no CDN, font or map tile
    target = os.environ.get("KPI_SAVE_SCREENSHOT")
    if target:
        destination = REPO / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "kpi_report.png", destination)


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
    demo: Demo, ui: int, page: object
) -> None:
    base, days = f"http://127.0.0.1:{ui}", demo.days
    completion = check_text(
        page, f"{base}/assets/kpi_task_completion_daily?view=checks", "inputs_current", "need recomputing"
    )
    # task_attempts of D reads telemetry D−1 … D+1: the 2nd to the 4th day.
    listed = "3 partition(s) need recomputing, their inputs changed after they were built (task_attempts)"
    assert f"{listed}: {days[1]} … {days[3]}" in completion
    assert "inputs_current" in completion and "Failed" in completion
    page.screenshot(path=str(demo.data / "reports" / "ui_inputs_current.png"), full_page=True)
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
    demo: Demo, ui: int, page: object
) -> None:
    base = f"http://127.0.0.1:{ui}"
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
    page.screenshot(path=str(demo.data / "reports" / "ui_quarantine_lineage.png"), full_page=True)
