"""The KPI report's pure parts on small hand-made frames: numbers for people, each chart's data
(rates, shaded incident windows, release marks, the funnel's week), the scorecard table's cells and
colours, the page's offline rules, the trend pictures of the UI and the atomic files. Expected
values are computed here by hand. (The page in a real browser: browser_tests/test_ui_and_report.py.)"""

from __future__ import annotations

import datetime as dt
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from kpi_pipeline.config import parse_config
from kpi_pipeline.contract import TICKET_PRIORITIES
from kpi_pipeline.defs.metadata import completion_trend
from kpi_pipeline.kpis.scorecard import SCORECARD_COLUMNS
from kpi_pipeline.report import charts
from kpi_pipeline.report import formatting as fmt
from kpi_pipeline.report.files import write_report
from kpi_pipeline.report.page import ReportData, report_page, scorecard_table
from kpi_pipeline.report.series import complete_week, daily_rate, ordered
from kpi_pipeline.report.trend import data_uri, line_chart_svg, sparkline

CONFIG = parse_config(
    {
        "currency": "EUR",
        "default_owner": "analytics",
        "scorecard": {"threshold": 0.05, "alpha": 0.05},
        "workflows": {
            "access_request": {"owner": "identity-team", "description": "Get access", "topics": ["access"]},
            "invoice_download": {"description": "Get an invoice", "topics": ["billing"]},
        },
    }
)
COLORS = {"access_request": "#1f77b4", "invoice_download": "#ff7f0e"}


def completion_rows(rows: list[tuple[str, str, int, int, int]]) -> pd.DataFrame:
    """kpi_task_completion_daily rows: (date, workflow, attempts, completions, first-pass)."""
    frame = pd.DataFrame(
        rows, columns=["date", "workflow", "attempts", "completions", "first_pass_completions"]
    )
    return frame.assign(persona="unknown", channel="unknown", fallbacks=0, fallback_tickets=0)


def test_numbers_are_written_for_people() -> None:
    assert [fmt.percent(0.74715), fmt.percent(1.0), fmt.percent(-0.05), fmt.percent(math.nan)] == [
        "74.7%",
        "100.0%",
        "−5.0%",
        "–",
    ]
    assert [fmt.points(-0.0222), fmt.points(0.12), fmt.points(0.0), fmt.points(None)] == [
        "−2.2 pts",
        "+12.0 pts",
        "±0.0 pts",
        "–",
    ]
    assert [fmt.number(12345), fmt.number(1234.567, 2), fmt.number(pd.NA)] == ["12,345", "1,234.57", "–"]
    assert [fmt.money(16573.4, "USD"), fmt.money(-1200, "EUR")] == ["USD 16,573", "EUR −1,200"]
    assert [fmt.change(110, 100), fmt.change(92.3, 100), fmt.change(5, 0)] == ["+10.0%", "−7.7%", "–"]
    assert [fmt.duration(45), fmt.duration(750), fmt.duration(3 * 3600 + 720), fmt.duration(2.5 * 86400)] == [
        "45 s",
        "12.5 min",
        "3.2 h",
        "2.5 days",
    ]
    assert [fmt.minutes(90), fmt.minutes(0), fmt.minutes(math.nan)] == ["1.5 h", "0 s", "–"]
    assert [fmt.p_value(0.0004), fmt.p_value(0.39), fmt.p_value(None)] == ["p < 0.001", "p 0.390", "p –"]


def test_daily_rates_are_ratios_of_sums_with_gaps_for_days_without_attempts() -> None:
    frame = completion_rows(
        [
            ("2025-01-01", "a", 4, 3, 2),
            ("2025-01-01", "a", 6, 3, 3),  # a second persona row of the same day
            ("2025-01-03", "a", 10, 5, 5),
        ]
    )
    dates = ["2025-01-01", "2025-01-02", "2025-01-03"]
    rates, attempts = daily_rate(frame, "completions", "attempts", dates)
    assert rates["a"].tolist()[0] == 6 / 10 and math.isnan(rates["a"].tolist()[1])
    assert rates["a"].tolist()[2] == 0.5 and attempts["a"].tolist() == [10, 0, 10]
    trailing, _ = daily_rate(frame, "completions", "attempts", dates, trailing=7)
    assert trailing["a"].tolist() == [0.6, 0.6, 11 / 20]


def test_known_values_come_in_their_order_then_the_others_sorted() -> None:
    # kpi.yaml's workflows in its order, a workflow it does not list after them, an absent one left out.
    seen = ["zeta", "invoice_download", "access_request", "invoice_download", "alpha"]
    assert ordered(list(CONFIG.workflows), seen) == ["access_request", "invoice_download", "alpha", "zeta"]
    # Ticket priorities urgent first (the support chart's bars), an unknown priority last.
    assert ordered(TICKET_PRIORITIES[::-1], ["low", "odd", "urgent", "normal"]) == [
        "urgent",
        "normal",
        "low",
        "odd",
    ]


def test_the_funnel_week_is_the_latest_complete_monday_to_sunday() -> None:
    days = [f"2025-01-{d:02d}" for d in range(1, 23)]  # Wed 1 … Wed 22
    assert complete_week(days, dt.date(2025, 1, 22)) == (dt.date(2025, 1, 13), dt.date(2025, 1, 19), True)
    assert complete_week(days, dt.date(2025, 1, 19)) == (dt.date(2025, 1, 13), dt.date(2025, 1, 19), True)
    # Data from Wednesday the 1st only: no complete week by the 5th, so its five days.
    assert complete_week(days, dt.date(2025, 1, 5)) == (dt.date(2025, 1, 1), dt.date(2025, 1, 5), False)
    funnel = pd.DataFrame(
        [
            (day, "access_request", i, step, reached)
            for day in days
            for i, (step, reached) in enumerate([("started", 10), ("form_opened", 8), ("completed", 5)])
        ],
        columns=["date", "workflow", "step_index", "step", "reached"],
    )
    figure = charts.funnel_chart(funnel, dt.date(2025, 1, 22), COLORS)
    [trace] = figure.data
    assert list(trace.y) == ["started", "form_opened", "completed"]
    assert list(trace.x) == [70, 56, 35]  # seven days of the week 13 … 19
    assert "2025-01-13 … 2025-01-19 (latest complete week)" in figure.layout.title.text


def test_completion_chart_shades_incident_days_and_marks_release_changes() -> None:
    completion = completion_rows(
        [
            ("2025-01-01", "access_request", 10, 8, 6),
            ("2025-01-02", "access_request", 20, 10, 9),
            ("2025-01-03", "access_request", 10, 9, 9),
            ("2025-01-02", "invoice_download", 4, 4, 2),
        ]
    )
    utc = "UTC"
    incidents = pd.DataFrame(
        {
            "incident_id": ["INC-1", "INC-OLD"],
            "severity": ["SEV1", "SEV3"],
            "service": ["auth", "auth"],
            "started_at": pd.to_datetime(["2025-01-02 10:00", "2024-11-01 10:00"]).tz_localize(utc),
            "resolved_at": pd.to_datetime(["2025-01-03 01:00", "2024-11-01 11:00"]).tz_localize(utc),
            "window_end": pd.to_datetime(["2025-01-03 01:00", "2024-11-01 11:00"]).tz_localize(utc),
            "affected_workflows": ["access_request", ""],
            "minutes_to_resolve": [900.0, 60.0],
        }
    )
    releases = pd.DataFrame(
        {
            "workflow": ["access_request", "access_request"],
            "release": ["1.0", "1.1"],
            "first_seen_at": pd.to_datetime(["2024-12-01 00:00", "2025-01-02 06:30"]).tz_localize(utc),
            "attempts": [100, 40],
            "completion_rate": [0.8, 0.758],
            "previous_release": [None, "1.0"],
            "completion_rate_delta": [math.nan, -0.042],
            "completion_p_value": [math.nan, 0.514],
        }
    )
    figure = charts.completion_chart(completion, incidents, releases, COLORS)
    lines = {(t.name, t.yaxis): t for t in figure.data if t.mode == "lines+markers"}
    access, first_pass = lines[("access_request", "y")], lines[("access_request", "y2")]
    assert list(access.x) == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert list(access.y) == [0.8, 0.5, 0.9] and list(first_pass.y) == [0.6, 0.45, 0.9]
    invoice = lines[("invoice_download", "y")]
    assert math.isnan(invoice.y[0]) and invoice.y[1] == 1.0  # a day without attempts is a gap
    assert access.customdata[1] == "50.0% of 20 attempts"
    # The incident was open on the 2nd and 3rd (UTC): those days' points are shaded; the old one is not.
    [shade] = [s for s in figure.layout.shapes if s.type == "rect"]
    assert (shade.x0, shade.x1, shade.opacity) == ("2025-01-01 12:00:00", "2025-01-03 12:00:00", 0.30)
    [marker] = [t for t in figure.data if t.name == "incident"]
    assert list(marker.x) == ["2025-01-02 10:00:00"] and "resolved after 15.0 h" in marker.customdata[0]
    # Release 1.1 (a change from 1.0) is marked where its first attempt started; 1.0 has no predecessor.
    [line] = [s for s in figure.layout.shapes if s.type == "line"]
    assert line.x0 == line.x1 == "2025-01-02 06:30:00"
    [release] = [t for t in figure.data if t.name == "release"]
    assert "access_request 1.1 (after 1.0)" in release.customdata[0]
    assert "75.8%, −4.2 pts (p 0.514) over 40 attempts" in release.customdata[0]


def test_roi_chart_stacks_net_value_and_runs_a_total_in_the_currency() -> None:
    roi = pd.DataFrame(
        {
            "date": ["2025-01-01", "2025-01-01", "2025-01-02"],
            "workflow": ["access_request", "invoice_download", "access_request"],
            "net_value": [1000.0, -250.0, 1500.5],
        }
    )
    figure = charts.roi_chart(roi, "EUR", COLORS)
    bars = {t.name: t for t in figure.data if t.type == "bar"}
    assert list(bars["access_request"].y) == [1000.0, 1500.5]
    assert list(bars["invoice_download"].y) == [-250.0, 0.0]
    [total] = [t for t in figure.data if t.name == "running total"]
    assert list(total.y) == [750.0, 2250.5] and list(total.customdata) == ["EUR 750", "EUR 2,250"]
    assert figure.layout.yaxis.tickprefix == "EUR "


def _scorecard_row(workflow: str, owner: str, status: str, **values: float) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(SCORECARD_COLUMNS, math.nan)
    row |= {
        "workflow": workflow,
        "owner": owner,
        "primary_outcome": "",
        "as_of": "2025-01-14",
        "status": status,
    }
    row |= {"attempts": 100, "attempts_prev": 100, "net_value": 1000.0, "net_value_prev": 1000.0}
    return row | values


class Cells(HTMLParser):
    """Each table row's cells as (tag, classes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str, str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = [tag, dict(attrs).get("class") or "", ""]

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[2] += data + " "

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append((self.cell[0], self.cell[1], " ".join(self.cell[2].split())))
            self.cell = None


def test_scorecard_table_colours_status_and_rates_that_moved_the_wrong_way() -> None:
    card = pd.DataFrame(
        [
            _scorecard_row(
                "access_request",
                "identity-team",
                "regressed: completion_rate",
                completion_rate=0.70,
                completion_rate_prev=0.80,
                completion_rate_p_value=0.01,
            ),
            _scorecard_row(
                "invoice_download",
                "analytics",
                "ok",
                fallback_to_ticket_rate=0.30,
                fallback_to_ticket_rate_prev=0.20,
                fallback_to_ticket_rate_p_value=0.2,
                net_value=1234.5,
                net_value_prev=1000.0,
            ),
        ]
    )
    parser = Cells()
    parser.feed(scorecard_table(card, CONFIG))
    header, access, invoice = parser.rows
    assert [text for _, _, text in header][:4] == ["Workflow · owner", "Status", "Completion", "First pass"]
    assert access[0] == ("th", "workflow", "access_request identity-team")
    assert access[1] == ("td", "status regressed", "regressed: completion_rate")
    assert access[2] == ("td", "metric worse flagged", "70.0% was 80.0% · −10.0 pts · p 0.010")
    assert invoice[1] == ("td", "status ok", "ok")
    # Higher is worse for fallback to ticket: +10 points beyond the threshold, not significant.
    assert invoice[4] == ("td", "metric worse held", "30.0% was 20.0% · +10.0 pts · p 0.200")
    assert invoice[8] == ("td", "metric better", "EUR 1,234 was EUR 1,000 · +23.4%")
    assert invoice[7] == ("td", "metric same", "100 was 100 · +0.0%")


def test_the_page_inlines_plotly_once_requests_nothing_and_says_no_data_yet() -> None:
    completion = completion_rows([("2025-01-01", "access_request", 10, 8, 6)])
    card = pd.DataFrame([_scorecard_row("access_request", "identity-team", "ok", completion_rate=0.8)])
    generated = dt.datetime(2025, 1, 3, 9, 30, tzinfo=dt.UTC)
    report = report_page(ReportData(scorecard=card, completion=completion), CONFIG, generated, "/*PLOTLY*/")
    page = report.html
    assert page.count("/*PLOTLY*/") == 1 and page.count('class="plotly-graph-div"') == len(report.charts)
    assert report.charts == ("completion", "deflection") and report.as_of == dt.date(2025, 1, 14)
    assert set(report.empty) == {
        "funnel", "adoption", "retention", "incidents", "roi", "latency", "errors", "recovery", "surveys",
        "support", "uptime",
    }  # fmt: skip
    assert page.count("No data yet:") == len(report.empty)
    assert "No data yet: kpi_uptime_monthly has no rows." in page
    assert not re.search(r"<link|\bsrc=|cdn\.|mathjax", page, re.IGNORECASE)
    assert '<meta name="kpi-report-charts" content="2">' in page
    assert "generated 2025-01-03 09:30 UTC" in page and "currency EUR" in page
    empty = report_page(ReportData(), CONFIG, generated, "")
    assert empty.charts == () and empty.as_of is None
    assert "No data yet: kpi_scorecard has no rows" in empty.html


def test_trend_pictures_for_the_dagster_ui() -> None:
    assert sparkline([0.0, 0.5, 1.0, math.nan, 1.0]) == "▁▅█ █"
    assert sparkline([0.3, 0.3]) == "▅▅" and sparkline([math.nan]) == " "
    svg = line_chart_svg(
        ["2025-01-01", "2025-01-02", "2025-01-03"], {"a": [0.0, math.nan, 1.0]}, {"a": "#f00"}, "t"
    )
    assert svg.count("<circle") == 2 and "<polyline" not in svg  # the missing day breaks the line
    assert ">a 100.0%</text>" in svg and data_uri(svg).startswith("data:image/svg+xml;base64,")
    completion = completion_rows(
        [("2025-01-14", "access_request", 10, 8, 6), ("2025-01-10", "access_request", 10, 5, 5)]
    )
    metadata = completion_trend(completion, dt.date(2025, 1, 14), CONFIG)
    values = metadata["daily_completion_rate"].value
    assert values["dates"][0] == "2024-12-18" and values["dates"][-1] == "2025-01-14"
    assert values["completion_rate"]["access_request"][-1] == 0.8
    assert values["completion_rate"]["access_request"][-5] == 0.5
    assert values["completion_rate"]["access_request"][0] is None
    markdown = metadata["completion_trend"].value
    assert markdown.startswith(
        "![Completion rate by day, 2024-12-18 … 2025-01-14](data:image/svg+xml;base64,"
    )
    assert "| access_request | identity-team | `" in markdown and "| 65.0% |" in markdown


def test_the_report_and_its_dated_copy_are_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest, dated = write_report(tmp_path, "<html>one</html>", dt.date(2025, 1, 14))
    assert latest == tmp_path / "reports" / "kpi_report.html"
    assert dated == tmp_path / "reports" / "kpi_report_2025-01-14.html"
    assert latest.read_text() == dated.read_text() == "<html>one</html>"

    def broken(source: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("kpi_pipeline.report.files.move", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path, "<html>two</html>", dt.date(2025, 1, 14))
    assert latest.read_text() == "<html>one</html>"  # the old report stays, no temporary file is left
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [latest.name, dated.name]
