"""The KPI report as one self-contained HTML page: the scorecard table, then a section per chart.

Pure: frames and the kpi.yaml in, HTML text out (no files, warehouse or Dagster). The page opens
offline: plotly.js is inlined once in ``<head>`` and each figure is a ``<div>`` with its own small
script (``include_plotlyjs=False``); styles are inlined, fonts are the system's; there is no CDN,
MathJax or web font, so it makes no request at all.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.scorecard import (
    HIGHER_IS_WORSE,
    METRICS,
    RELATIVE_METRICS,
    flagged_metrics,
    not_significant,
)
from kpi_pipeline.report import charts
from kpi_pipeline.report import formatting as fmt
from kpi_pipeline.report.colors import workflow_colors
from kpi_pipeline.report.series import in_window, last_date

CHART_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
METRIC_LABELS = {
    "completion_rate": "Completion",
    "first_pass_rate": "First pass",
    "fallback_to_ticket_rate": "Fallback → ticket",
    "deflection_rate": "Deflection",
    "csat_top_box_rate": "CSAT top box",
    "attempts": "Attempts",
    "net_value": "Net value",
}


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


@dataclass(frozen=True)
class ReportData:
    """The KPI tables the report reads (any may be empty, or absent as an empty frame)."""

    scorecard: pd.DataFrame = field(default_factory=_empty)
    completion: pd.DataFrame = field(default_factory=_empty)  # kpi_task_completion_daily
    funnel: pd.DataFrame = field(default_factory=_empty)
    deflection: pd.DataFrame = field(default_factory=_empty)
    adoption: pd.DataFrame = field(default_factory=_empty)  # kpi_feature_adoption_daily
    retention: pd.DataFrame = field(default_factory=_empty)  # kpi_retention_weekly
    incidents: pd.DataFrame = field(default_factory=_empty)
    releases: pd.DataFrame = field(default_factory=_empty)  # kpi_release_quality
    roi: pd.DataFrame = field(default_factory=_empty)
    latency: pd.DataFrame = field(default_factory=_empty)  # kpi_step_latency_daily
    errors: pd.DataFrame = field(default_factory=_empty)
    retries: pd.DataFrame = field(default_factory=_empty)
    surveys: pd.DataFrame = field(default_factory=_empty)
    support: pd.DataFrame = field(default_factory=_empty)
    uptime: pd.DataFrame = field(default_factory=_empty)


@dataclass(frozen=True)
class Report:
    """The page and what it shows: ``charts`` names the sections drawn, ``empty`` those without
    data yet; ``as_of`` is the scorecard's last complete date (None before any data)."""

    html: str
    as_of: dt.date | None
    charts: tuple[str, ...]
    empty: tuple[str, ...]
    headlines: tuple[str, ...]


Build = Callable[[ReportData, KpiConfig, "dt.date | None", dict[str, str]], "go.Figure | None"]


@dataclass(frozen=True)
class Section:
    """A section of the page: its chart function (whose docstring is the note under the title)
    and how the page calls it with the tables, the kpi.yaml, the as-of date and the colours."""

    name: str
    title: str
    source: str  # the tables it reads, named on the page
    chart: Callable[..., go.Figure | None]
    call: Build
    group: str = "Outcomes"

    def note(self) -> str:
        return " ".join((self.chart.__doc__ or "").replace("``", "").split())


V2 = "Observability and service"
SECTIONS: tuple[Section, ...] = (
    Section(
        "completion",
        "Completion and first pass over time",
        "kpi_task_completion_daily, kpi_incidents, kpi_release_quality",
        charts.completion_chart,
        lambda d, c, a, k: charts.completion_chart(d.completion, d.incidents, d.releases, k),
    ),
    Section(
        "funnel",
        "Funnel of the latest complete week",
        "kpi_funnel_daily",
        charts.funnel_chart,
        lambda d, c, a, k: charts.funnel_chart(d.funnel, a, k),
    ),
    Section(
        "deflection",
        "Deflection and fallback to a ticket",
        "kpi_ticket_deflection_daily, kpi_task_completion_daily",
        charts.deflection_chart,
        lambda d, c, a, k: charts.deflection_chart(d.deflection, d.completion, c, k),
    ),
    Section(
        "adoption",
        "Adoption by feature",
        "kpi_feature_adoption_daily",
        charts.adoption_chart,
        lambda d, c, a, k: charts.adoption_chart(d.adoption),
    ),
    Section(
        "retention",
        "Retention",
        "kpi_retention_weekly",
        charts.retention_chart,
        lambda d, c, a, k: charts.retention_chart(d.retention),
    ),
    Section(
        "incidents",
        "Incident impact",
        "kpi_incidents",
        charts.incidents_chart,
        lambda d, c, a, k: charts.incidents_chart(d.incidents),
    ),
    Section(
        "roi",
        "ROI over time",
        "kpi_roi_daily",
        charts.roi_chart,
        lambda d, c, a, k: charts.roi_chart(d.roi, c.currency, k),
    ),
    Section(
        "latency",
        "Step latency",
        "kpi_step_latency_daily",
        charts.latency_chart,
        lambda d, c, a, k: charts.latency_chart(d.latency, k),
        V2,
    ),
    Section(
        "errors",
        "Errors",
        "kpi_errors_daily",
        charts.errors_chart,
        lambda d, c, a, k: charts.errors_chart(d.errors, k),
        V2,
    ),
    Section(
        "recovery",
        "Recovery",
        "kpi_retry_daily",
        charts.recovery_chart,
        lambda d, c, a, k: charts.recovery_chart(d.retries, k),
        V2,
    ),
    Section(
        "surveys",
        "Surveys",
        "kpi_survey_daily",
        charts.survey_chart,
        lambda d, c, a, k: charts.survey_chart(d.surveys, k),
        V2,
    ),
    Section(
        "support",
        "Support SLAs",
        "kpi_support_daily",
        charts.support_chart,
        lambda d, c, a, k: charts.support_chart(d.support),
        V2,
    ),
    Section(
        "uptime",
        "Uptime",
        "kpi_uptime_monthly",
        charts.uptime_chart,
        lambda d, c, a, k: charts.uptime_chart(d.uptime),
        V2,
    ),
)


def report_as_of(data: ReportData) -> dt.date | None:
    """The scorecard's as-of date (the last date with complete data), else the day before the last
    completion date, else None."""
    card = data.scorecard
    if len(card) and card["as_of"].notna().any():
        return dt.date.fromisoformat(str(card["as_of"].dropna().iloc[0]))
    last = last_date(data.completion)
    return None if last is None else last - dt.timedelta(days=1)


def workflow_order(data: ReportData, config: KpiConfig) -> list[str]:
    """kpi.yaml's workflows, then any other seen in the scorecard or the completion table."""
    seen = [
        str(w)
        for frame in (data.scorecard, data.completion)
        if "workflow" in frame
        for w in frame["workflow"].dropna()
    ]
    return [*config.workflows, *sorted(set(seen) - set(config.workflows))]


def direction(metric: str, current: object, previous: object) -> str:
    """``worse``, ``better`` or ``same``: how ``metric`` moved (lower is worse except for the
    fallback-to-ticket rate); ``same`` when either side is missing."""
    if fmt.missing(current) or fmt.missing(previous):
        return "same"
    moved = float(current) - float(previous)  # type: ignore[arg-type]
    if metric in HIGHER_IS_WORSE:
        moved = -moved
    return "better" if moved > 0 else "worse" if moved < 0 else "same"


def metric_cell(
    row: pd.Series, metric: str, flagged: Sequence[str], held: Sequence[str], currency: str
) -> str:
    """One scorecard cell: the 7-day value, then the previous 7 days, the change and its p-value;
    its classes say how it moved and whether it flagged the workflow (or would have, without the
    significance rule)."""
    current, previous = row.get(metric), row.get(f"{metric}_prev")
    if metric == "net_value":
        value, before, moved = (
            fmt.money(current, currency),
            fmt.money(previous, currency),
            fmt.change(current, previous),
        )
    elif metric in RELATIVE_METRICS:
        value, before, moved = fmt.number(current), fmt.number(previous), fmt.change(current, previous)
    else:
        value, before = fmt.percent(current), fmt.percent(previous)
        moved = (
            fmt.points(float(current) - float(previous))
            if not (fmt.missing(current) or fmt.missing(previous))
            else fmt.MISSING
        )  # type: ignore[arg-type]
    details = [f"was {before}", moved]
    if f"{metric}_p_value" in row:
        details.append(fmt.p_value(row.get(f"{metric}_p_value")))
    classes = ["metric", direction(metric, current, previous)]
    classes += ["flagged"] if metric in flagged else ["held"] if metric in held else []
    note = (
        "flagged: moved the wrong way beyond the threshold"
        if metric in flagged
        else "beyond the threshold, not significant"
        if metric in held
        else ""
    )
    title = f' title="{html.escape(note)}"' if note else ""
    return (
        f'<td class="{" ".join(classes)}" data-metric="{metric}"{title}>'
        f'<span class="value">{html.escape(value)}</span>'
        f'<span class="was">{html.escape(" · ".join(details))}</span></td>'
    )


def scorecard_table(card: pd.DataFrame, config: KpiConfig) -> str:
    """The scorecard as an HTML table: per workflow its owner and status (green when ok, red when
    regressed), and each metric's 7 days against the 7 before with its p-value."""
    if card.empty:
        return '<p class="empty">No data yet: kpi_scorecard has no rows (no task events staged).</p>'
    held = not_significant(card, config)
    head = "".join(f"<th>{html.escape(METRIC_LABELS[m])}</th>" for m in METRICS)
    rows = []
    for i, row in card.iterrows():
        status = str(row["status"])
        flagged = flagged_metrics(status)
        quiet = [m for m in str(held[i]).split(", ") if m]
        cells = "".join(metric_cell(row, m, flagged, quiet, config.currency) for m in METRICS)
        state = "ok" if status == "ok" else "regressed"
        rows.append(
            f'<tr data-workflow="{html.escape(str(row["workflow"]))}">'
            f'<th scope="row" class="workflow"><span class="name">{html.escape(str(row["workflow"]))}</span>'
            f'<span class="owner">{html.escape(str(row["owner"]))}</span>'
            f'<span class="outcome">{html.escape(str(row["primary_outcome"] or ""))}</span></th>'
            f'<td class="status {state}">{html.escape(status)}</td>{cells}</tr>'
        )
    threshold, alpha = config.scorecard.threshold, config.scorecard.alpha
    return (
        '<table class="scorecard" id="scorecard-table"><thead><tr><th>Workflow · owner</th><th>Status</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="note">Each cell: the 7 days ending {html.escape(str(card["as_of"].iloc[0]))}, '
        "then the 7 days before, the change and the two-proportion z-test's p-value. A rate flags its "
        f"workflow (red) when it moved the wrong way by more than {threshold * 100:g} points and "
        f"p &lt; {alpha:g}; amber: beyond the threshold but not significant. Attempts and net value flag "
        f"on a relative drop beyond {fmt.percent(threshold)}. Arrows: ▲ better, ▼ worse.</p>"
    )


def incidents_table(incidents: pd.DataFrame) -> str:
    """The incidents as a table: times to detect and resolve, and their impact."""
    if incidents.empty:
        return ""
    rows = []
    for r in incidents.sort_values("started_at", ascending=False).itertuples(index=False):
        started = (
            pd.Timestamp(r.started_at).tz_convert("UTC").strftime("%Y-%m-%d %H:%M")
            if not pd.isna(r.started_at)
            else fmt.MISSING
        )
        resolve = fmt.minutes(r.minutes_to_resolve) if not pd.isna(r.resolved_at) else "open"
        cells = [
            str(r.incident_id),
            str(r.severity),
            str(r.service),
            started,
            fmt.minutes(r.minutes_to_detect),
            resolve,
            str(r.affected_workflows)
            if isinstance(r.affected_workflows, str) and r.affected_workflows
            else fmt.MISSING,
            fmt.number(r.attempts_during),
            fmt.points(r.completion_rate_delta),
            f"{fmt.number(r.tickets_per_hour_during, 2)} vs {fmt.number(r.baseline_tickets_per_hour, 2)}",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = (
        "incident", "severity", "service", "started (UTC)", "to detect", "to resolve", "affected workflows",
        "attempts during", "completion vs week before", "tickets / hour vs week before",
    )  # fmt: skip
    return (
        '<table class="plain"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def headlines(data: ReportData, config: KpiConfig, as_of: dt.date | None) -> list[str]:
    """A few sentences for the top of the page and the asset's markdown summary."""
    card = data.scorecard
    if card.empty or as_of is None:
        return ["No KPI data yet: stage telemetry and materialize (kpi-pipeline materialize)."]
    regressed = card[card["status"] != "ok"]
    lines = [
        f"{len(card) - len(regressed)} of {len(card)} workflows ok as of {as_of}"
        + (f"; regressed: {', '.join(map(str, regressed['workflow']))}" if len(regressed) else "")
    ]
    total = {column: float(card[column].astype(float).sum()) for column in ("attempts", "attempts_prev")}
    week = in_window(data.completion, as_of, 7) if len(data.completion) else data.completion
    if len(week) and total["attempts"]:
        done = float(week["completions"].astype(float).sum()) / float(week["attempts"].astype(float).sum())
        lines.append(
            f"completion {fmt.percent(done)} of {fmt.number(total['attempts'])} attempts in the 7 days "
            f"ending {as_of} ({fmt.change(total['attempts'], total['attempts_prev'])} attempts)"
        )
    value, before = (float(card[c].astype(float).sum()) for c in ("net_value", "net_value_prev"))
    lines.append(
        f"net value {fmt.money(value, config.currency)} in those 7 days ({fmt.change(value, before)})"
    )
    return lines


def _figure_html(name: str, figure: go.Figure) -> str:
    return figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=f"chart-{name}",
        config=CHART_CONFIG,
    )


def report_page(
    data: ReportData, config: KpiConfig, generated_at: dt.datetime, plotly_js: str | None = None
) -> Report:
    """The whole page. ``plotly_js``: the plotly.js bundle to inline (default: the one the plotly
    package ships, ``plotly.offline.get_plotlyjs()``; a test may pass ``""``)."""
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    as_of = report_as_of(data)
    colors = workflow_colors(workflow_order(data, config))
    drawn, empty, body = [], [], []
    group = ""
    for section in SECTIONS:
        if section.group != group:
            group = section.group
            body.append(f'<h2 class="group">{html.escape(group)}</h2>')
        figure = section.call(data, config, as_of, colors)
        doc = html.escape(section.note())
        if figure is None:
            empty.append(section.name)
            content = f'<p class="empty">No data yet: {html.escape(section.source)} has no rows.</p>'
        else:
            drawn.append(section.name)
            content = (
                f'<div class="chart" data-chart="{section.name}">{_figure_html(section.name, figure)}</div>'
            )
        if section.name == "incidents":
            content += incidents_table(data.incidents)
        note = html.escape(section.source) + (f" · {doc}" if doc else "")
        body.append(
            f'<section id="{section.name}"><h3>{html.escape(section.title)}</h3>'
            f'<p class="source">{note}</p>{content}</section>'
        )
    lines = headlines(data, config, as_of)
    shown_as_of = as_of.isoformat() if as_of else "no data yet"
    latest = last_date(data.completion)
    span = (
        f"{data.completion['date'].astype(str).min()} … {latest.isoformat()}"
        if latest is not None
        else "no days yet"
    )
    script = plotly_js.replace("</script", "<\\/script")  # never the case today; keeps the page whole
    generated = generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="kpi-report-charts" content="{len(drawn)}">
<meta name="kpi-report-as-of" content="{shown_as_of}">
<title>KPI report as of {shown_as_of}</title>
<style>{STYLE}</style>
<script type="text/javascript">{script}</script>
</head>
<body>
<header>
<h1>Product KPIs <span class="as-of">as of {shown_as_of}</span></h1>
<p class="meta">Days with data: {html.escape(span)} · generated {generated} UTC ·
currency {html.escape(config.currency)} · charts show the last {charts.REPORT_DAYS} days</p>
<ul class="headlines">{"".join(f"<li>{html.escape(line)}</li>" for line in lines)}</ul>
</header>
<main>
<section id="scorecard"><h2>Scorecard</h2>
<div class="wide">{scorecard_table(data.scorecard, config)}</div></section>
{"".join(body)}
</main>
<footer>kpi_pipeline · the tables and their definitions: docs/tables.md.</footer>
</body>
</html>
"""
    return Report(page, as_of, tuple(drawn), tuple(empty), tuple(lines))


STYLE = """
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #b42318; --bad-bg: #fde2e1; --held-bg: #fff4d6;
  --muted: #5b6470; --line: #d9dde3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #1f2328; background: #f6f8fa; }
header, main, footer { max-width: 1440px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { margin: 0 0 4px; font-size: 24px; }
h1 .as-of { color: var(--muted); font-weight: 400; }
h2 { font-size: 18px; margin: 28px 0 8px; }
section > h2:first-child { margin-top: 0; }
h2.group { border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 0 0 2px; }
.meta, .source, .note, footer { color: var(--muted); font-size: 12px; }
.headlines { margin: 8px 0 0; padding-left: 18px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px;
  margin: 12px 0; }
.empty { color: var(--muted); font-style: italic; margin: 8px 0; }
.chart { min-height: 200px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
thead th { font-size: 12px; color: var(--muted); font-weight: 600; }
table.plain { margin-top: 12px; font-size: 12px; }
.scorecard .workflow .name { display: block; font-weight: 600; }
.scorecard .workflow .owner { display: block; color: var(--muted); font-weight: 400; font-size: 12px; }
.scorecard .workflow .outcome { display: block; color: var(--muted); font-weight: 400; font-size: 11px; }
.status.ok { background: var(--ok-bg); color: var(--ok); font-weight: 600; }
.status.regressed { background: var(--bad-bg); color: var(--bad); font-weight: 600; }
.metric .value { display: block; font-size: 15px; font-weight: 600; }
.metric .was { display: block; color: var(--muted); font-size: 11px; }
.wide { overflow-x: auto; }
.metric.worse .value { color: var(--bad); }
.metric.better .value { color: var(--ok); }
.metric.worse .value::after { content: " ▼"; font-size: 10px; }
.metric.better .value::after { content: " ▲"; font-size: 10px; }
.metric.flagged { background: var(--bad-bg); }
.metric.held { background: var(--held-bg); }
footer { padding: 16px 24px 32px; }
"""
