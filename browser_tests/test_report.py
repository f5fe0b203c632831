"""The KPI report (``kpi_report``) opened from disk in a real headless Chromium.

A small demo (14 days × 60 users, generated and materialized with the CLI) writes
``reports/kpi_report.html``; the page is opened as a ``file://`` URL with Debian's ``chromium``
driven by Playwright (no browser download). Every chart must render, the page must log no console
error, make no request but for itself, and its scorecard must show the warehouse's workflows and
statuses, in green and red. The full-page screenshot is kept as ``reports/kpi_report.png`` under
the data root; ``KPI_SAVE_SCREENSHOT=docs/img/kpi_report.png`` copies it there too (relative to the
repository), to refresh the README's picture. Skipped without Chromium or Playwright, except where
``KPI_REQUIRE_BROWSER=1`` (``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser_tests.test_ui_truth import CHROMIUM, REPO, _browser_or_skip, cli
from kpi_pipeline.warehouse import Warehouse

DAYS, USERS = 14, 60
# Every chart container holds a Plotly graph that has drawn its SVG.
RENDERED = """declared => {
  const charts = [...document.querySelectorAll('[data-chart]')];
  const drawn = charts.filter(c => c.querySelector('.js-plotly-plot .main-svg'));
  return charts.length === declared && drawn.length === declared;
}"""
OK_BACKGROUND, REGRESSED_BACKGROUND = "rgb(218, 251, 225)", "rgb(253, 226, 225)"  # page.STYLE


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """A materialized demo; yields the data root, the report and the CLI's output."""
    _browser_or_skip()
    work = tmp_path_factory.mktemp("report")
    data, home = work / "data", work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env |= {"KPI_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    cli(env, "generate", "--out", str(data), "--days", str(DAYS), "--users", str(USERS), "--seed", "5")
    output = cli(env, "materialize")
    yield data, data / "reports" / "kpi_report.html", output


def test_the_report_renders_every_chart_offline_with_the_scorecard_of_the_warehouse(
    demo: tuple[Path, Path, str],
) -> None:
    from playwright.sync_api import sync_playwright

    data, report, output = demo
    assert f"report: {report}" in output.splitlines()
    assert 1_000_000 < report.stat().st_size < 6_000_000  # plotly.js (~4.8 MB) once, and the data
    card = Warehouse(f"sqlite:///{data / 'warehouse' / 'kpi.db'}").read("kpi_scorecard")
    assert len(card) > 0
    errors: list[str] = []
    failed: list[str] = []
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
            assert page.locator("#scorecard-table td.metric").count() == 7 * len(card)
            shots = data / "reports"
            page.screenshot(path=str(shots / "kpi_report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and failed == []
    assert requested == [report.as_uri()]  # nothing but the page itself: no CDN, font or map tile
    target = os.environ.get("KPI_SAVE_SCREENSHOT")
    if target:
        destination = REPO / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "kpi_report.png", destination)
