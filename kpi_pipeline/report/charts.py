"""One Plotly figure per section of the report, each a pure function of KPI tables as frames.

A function returns ``None`` when its table has no rows yet (the page then says "no data yet").
Hover texts are formatted here with :mod:`kpi_pipeline.report.formatting`, so a chart shows the
same numbers as the tables; axes use Plotly's own formats (``.0%``, thousands separators).
Charts over time show the last :data:`~kpi_pipeline.report.series.REPORT_DAYS` days.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.contract import TICKET_PRIORITIES
from kpi_pipeline.report import formatting as fmt
from kpi_pipeline.report.colors import PALETTE
from kpi_pipeline.report.series import (
    REPORT_DAYS,
    all_dates,
    complete_week,
    daily_rate,
    floats,
    in_window,
    last_date,
    ordered,
    summed,
    touched_days,
    utc_text,
)

SEVERITY_SHADE = {"SEV1": 0.30, "SEV2": 0.22, "SEV3": 0.14, "SEV4": 0.08}
INCIDENT_COLOR = "#d62728"
DURATION_TICKS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
TRAILING = 7  # days of the trailing rates of small counts (deflection, fallback tickets, surveys)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"  # no web font


# A small template instead of "plotly_white", which adds ~7 KB of JSON to every figure.
GRID = "#e5e8ec"
TEMPLATE = go.layout.Template(
    layout={
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(PALETTE),
        "xaxis": {"gridcolor": GRID, "linecolor": GRID, "zerolinecolor": GRID, "automargin": True},
        "yaxis": {"gridcolor": GRID, "linecolor": GRID, "zerolinecolor": GRID, "automargin": True},
        "hoverlabel": {"align": "left"},
    }
)


TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 1, "xanchor": "right"}
BOTTOM_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0, "xanchor": "left"}


def _layout(fig: go.Figure, title: str, height: int, legend: Mapping[str, object] = TOP_LEGEND) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        template=TEMPLATE,
        height=height,
        margin={"l": 60, "r": 20, "t": 80, "b": 40},
        font={"family": FONT, "size": 12},
        legend=dict(legend),
        hovermode="closest",
    )
    return fig


def _dates(frame: pd.DataFrame, last: dt.date) -> list[str]:
    """Every date from the window's first date with data to ``last``."""
    first = dt.date.fromisoformat(str(frame["date"].astype(str).min()))
    return all_dates(max(first, last - dt.timedelta(days=REPORT_DAYS - 1)), last)


def _ordered(names: Sequence[str], colors: Mapping[str, str]) -> list[str]:
    """Workflows in kpi.yaml's order, then others alphabetically."""
    known = [n for n in colors if n in set(names)]
    return known + sorted(set(names) - set(known))


def _text(value: object) -> str:
    """A text cell, empty when missing."""
    return (
        ""
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
        else str(value)
    )


def _color(name: str, colors: Mapping[str, str]) -> str:
    return colors.get(name) or PALETTE[(len(colors) + sum(map(ord, name))) % len(PALETTE)]


def _rate_lines(
    fig: go.Figure,
    rates: pd.DataFrame,
    counts: pd.DataFrame,
    colors: Mapping[str, str],
    what: str,
    row: int,
    legend: bool,
) -> None:
    """One line per column of ``rates`` on subplot ``row``, hover: the rate and its denominator."""
    for name in _ordered(list(rates.columns), colors):
        values = rates[name]
        hover = [
            f"{fmt.percent(v)} of {fmt.number(n)} {what}" for v, n in zip(values, counts[name], strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=list(rates.index),
                y=floats(values),
                name=name,
                legendgroup=name,
                showlegend=legend,
                mode="lines+markers",
                marker={"size": 4},
                line={"color": _color(name, colors), "width": 2},
                customdata=hover,
                hovertemplate=f"%{{x}} · {name}<br>%{{customdata}}<extra></extra>",
            ),
            row=row,
            col=1,
        )


def _percent_axes(fig: go.Figure, rows: int) -> None:
    for row in range(1, rows + 1):
        fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=row, col=1)


def completion_chart(
    completion: pd.DataFrame,
    incidents: pd.DataFrame,
    releases: pd.DataFrame,
    colors: Mapping[str, str],
) -> go.Figure | None:
    """Daily completion and first-pass rate per workflow; the days an incident was open shaded
    (darker for a higher severity, hover the ▼ above for its times), a release's first attempt
    marked with a dotted line (hover the ◆ for its change against the release before)."""
    last = last_date(completion)
    if last is None:
        return None
    dates = _dates(completion, last)
    window = in_window(completion, last)
    done, attempts = daily_rate(window, "completions", "attempts", dates)
    first_pass, _ = daily_rate(window, "first_pass_completions", "attempts", dates)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=("Completion rate", "First-pass rate"),
    )
    _rate_lines(fig, done, attempts, colors, "attempts", 1, True)
    _rate_lines(fig, first_pass, attempts, colors, "attempts", 2, False)
    _percent_axes(fig, 2)
    span = (dates[0], dates[-1])
    _incident_windows(fig, incidents, span)
    _release_marks(fig, releases, span, colors)
    fig.update_xaxes(range=[_shift(dates[0], -0.5), _shift(dates[-1], 0.5)])
    return _layout(fig, "Completion and first-pass rate by day the attempts started", 560)


def _shift(day: str, days: float) -> str:
    moment = dt.datetime.fromisoformat(day) + dt.timedelta(days=days)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def incident_spans(incidents: pd.DataFrame, span: tuple[str, str]) -> list[tuple[str, str, str, str]]:
    """(incident id, severity, first shaded instant, last) of each incident whose days meet the
    window ``span`` (first and last ISO date): the daily points it can affect, half a day either
    side of the first and last UTC day it was open (until ``window_end`` while still open)."""
    out = []
    for row in incidents.itertuples(index=False):
        end = row.resolved_at if not pd.isna(row.resolved_at) else row.window_end
        if pd.isna(row.started_at) or pd.isna(end):
            continue
        first, last = touched_days(pd.Timestamp(row.started_at), pd.Timestamp(end))
        if last.isoformat() < span[0] or first.isoformat() > span[1]:
            continue
        out.append(
            (
                str(row.incident_id),
                str(row.severity),
                _shift(first.isoformat(), -0.5),
                _shift(last.isoformat(), 0.5),
            )
        )
    return out


def _full_height(fig: go.Figure, kind: str, x0: str, x1: str, **style: object) -> None:
    """A shape (``rect`` or ``line``) from ``x0`` to ``x1`` over the plot's whole height, drawn
    below the data."""
    fig.add_shape(type=kind, xref="x", yref="paper", x0=x0, x1=x1, y0=0, y1=1, layer="below", **style)


def _hover_markers(
    fig: go.Figure, x: Sequence[str], y: float, name: str, marker: dict[str, object], hover: list[str]
) -> None:
    """One marker per ``x`` at height ``y`` of the first panel, whose hover text is ``hover``."""
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[y] * len(x),
            mode="markers",
            name=name,
            marker=marker,
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        ),
        row=1,
        col=1,
    )


def _incident_windows(fig: go.Figure, incidents: pd.DataFrame, span: tuple[str, str]) -> None:
    shown = incident_spans(incidents, span) if len(incidents) else []
    for _, severity, x0, x1 in shown:
        opacity = SEVERITY_SHADE.get(severity, 0.1)
        _full_height(fig, "rect", x0, x1, fillcolor=INCIDENT_COLOR, opacity=opacity, line={"width": 0})
    if not shown:
        return
    ids = {incident for incident, *_ in shown}
    rows = incidents[incidents["incident_id"].astype(str).isin(ids)]
    hover = [
        f"{r.incident_id} {r.severity} {r.service}<br>from {s} UTC, "
        + (
            f"resolved after {fmt.minutes(r.minutes_to_resolve)}"
            if not pd.isna(r.resolved_at)
            else "still open"
        )
        + f"<br>affected: {_text(r.affected_workflows) or 'no workflow named'}"
        for r, s in zip(rows.itertuples(index=False), utc_text(rows["started_at"]), strict=True)
    ]
    marker = {"symbol": "triangle-down", "size": 10, "color": INCIDENT_COLOR}
    _hover_markers(fig, utc_text(rows["started_at"]), 1.03, "incident", marker, hover)


def _release_marks(
    fig: go.Figure, releases: pd.DataFrame, span: tuple[str, str], colors: Mapping[str, str]
) -> None:
    if releases.empty:
        return
    changed = releases[releases["previous_release"].notna() & releases["first_seen_at"].notna()]
    starts = utc_text(changed["first_seen_at"])
    keep = [span[0] <= s[:10] <= span[1] for s in starts]
    changed = changed[keep]
    starts = [s for s, k in zip(starts, keep, strict=True) if k]
    if changed.empty:
        return
    for start, workflow in zip(starts, changed["workflow"].astype(str), strict=True):
        _full_height(
            fig, "line", start, start, line={"color": _color(workflow, colors), "width": 1, "dash": "dot"}
        )
    hover = [
        f"{r.workflow} {r.release} (after {r.previous_release}), first attempt {s} UTC<br>"
        f"completion {fmt.percent(r.completion_rate)}, {fmt.points(r.completion_rate_delta)} "
        f"({fmt.p_value(r.completion_p_value)}) over {fmt.number(r.attempts)} attempts"
        for r, s in zip(changed.itertuples(index=False), starts, strict=True)
    ]
    marker = {
        "symbol": "diamond",
        "size": 9,
        "color": [_color(w, colors) for w in changed["workflow"].astype(str)],
        "line": {"width": 1, "color": "#333"},
    }
    _hover_markers(fig, starts, 0.03, "release", marker, hover)


def funnel_chart(funnel: pd.DataFrame, as_of: dt.date | None, colors: Mapping[str, str]) -> go.Figure | None:
    """Each workflow's funnel over the latest complete Monday–Sunday week up to ``as_of`` (else the
    days there are): attempts that reached each step, summed over the week's start dates."""
    if funnel.empty or as_of is None:
        return None
    first, last, complete = complete_week(funnel["date"].astype(str).unique(), as_of)
    week = in_window(funnel, last, (last - first).days + 1)
    if week.empty:
        return None
    reached = summed(week, ["workflow", "step_index", "step"], ["reached"]).reset_index()
    reached["step_index"] = reached["step_index"].astype(int)
    workflows = _ordered(list(reached["workflow"].unique()), colors)
    columns = min(len(workflows), 2)
    rows = math.ceil(len(workflows) / columns)
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=workflows, horizontal_spacing=0.2, vertical_spacing=0.12
    )
    for i, name in enumerate(workflows):
        steps = reached[reached["workflow"] == name].sort_values("step_index")
        fig.add_trace(
            go.Funnel(
                y=list(steps["step"]),
                x=floats(steps["reached"]),
                name=name,
                showlegend=False,
                marker={"color": _color(name, colors)},
                textinfo="value+percent initial",
                hovertemplate="%{y}: %{x:,} attempts, %{percentInitial:.1%} of started<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    which = "latest complete week" if complete else "no complete week yet"
    return _layout(fig, f"Funnel, attempts started {first} … {last} ({which})", 230 * rows + 80)


def deflection_chart(
    deflection: pd.DataFrame, completion: pd.DataFrame, config: KpiConfig, colors: Mapping[str, str]
) -> go.Figure | None:
    """Ticket deflection (help sessions with no ticket on the topic) per workflow of the topics,
    and fallback-to-ticket rate (fallbacks followed by a ticket) per workflow, each over the
    trailing 7 days: daily counts are small."""
    last = last_date(deflection, completion)
    if last is None or (deflection.empty and completion.empty):
        return None
    both = [f for f in (deflection, completion) if len(f)]
    dates = _dates(pd.concat([f[["date"]] for f in both]), last)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=(
            f"Deflection rate (trailing {TRAILING} days; topics by workflow)",
            f"Fallback-to-ticket rate (trailing {TRAILING} days; lower is better)",
        ),
    )
    if len(deflection):
        topics = config.topic_to_workflow()
        helped = deflection.assign(
            workflow=deflection["topic"].astype(str).map(topics).fillna("other topics")
        )
        rates, sessions = daily_rate(
            in_window(helped, last), "deflected", "help_sessions", dates, trailing=TRAILING
        )
        _rate_lines(fig, rates, sessions, colors, "help sessions", 1, True)
    if len(completion):
        rates, fallbacks = daily_rate(
            in_window(completion, last), "fallback_tickets", "fallbacks", dates, trailing=TRAILING
        )
        _rate_lines(fig, rates, fallbacks, colors, "fallbacks", 2, deflection.empty)
    _percent_axes(fig, 2)
    return _layout(fig, "Self-service: deflection and fallback to a ticket", 520)


def adoption_chart(adoption: pd.DataFrame) -> go.Figure | None:
    """Each feature's 28-day adoption (its users over the month's active users) on the last date."""
    last = last_date(adoption)
    if last is None:
        return None
    day = adoption[adoption["date"].astype(str) == last.isoformat()].sort_values("adoption_rate_28d")
    rates = floats(day["adoption_rate_28d"])
    hover = [
        f"{fmt.number(u)} users, {fmt.number(a)} accounts in 28 days; {fmt.percent(r)} of active users"
        for u, a, r in zip(day["users_28d"], day["accounts_28d"], rates, strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=rates,
            y=list(day["feature"].astype(str)),
            orientation="h",
            marker={"color": PALETTE[0]},
            text=[fmt.percent(r) for r in rates],
            textposition="auto",
            customdata=hover,
            hovertemplate="%{y}: %{customdata}<extra></extra>",
        )
    )
    fig.update_xaxes(tickformat=".0%", range=[0, 1.05])
    return _layout(fig, f"Adoption by feature, 28 days ending {last}", 120 + 28 * len(day))


def retention_chart(retention: pd.DataFrame) -> go.Figure | None:
    """Weekly retention of first-event cohorts: the share of each cohort active N weeks later."""
    if retention.empty:
        return None
    grid = retention.assign(cohort_week=retention["cohort_week"].astype(str))
    rates = grid.pivot_table(
        index="cohort_week", columns="week_number", values="retention_rate", aggfunc="first"
    )
    sizes = grid.groupby("cohort_week")["cohort_users"].max()
    rates = rates.sort_index(ascending=False)
    labels = [f"{week} · {fmt.number(sizes[week])} users" for week in rates.index]
    values = rates.to_numpy("float64")
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[f"week {int(n)}" for n in rates.columns],
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=[[fmt.percent(v) if not math.isnan(v) else "" for v in row] for row in values],
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
            colorbar={"tickformat": ".0%"},
        )
    )
    return _layout(fig, "Weekly retention by first-event cohort", 140 + 34 * len(labels))


def incidents_chart(incidents: pd.DataFrame) -> go.Figure | None:
    """Each incident's completion rate of the affected workflows while it lasted, against the
    week before it."""
    if incidents.empty:
        return None
    rows = incidents.sort_values("started_at")
    labels = [f"{r.incident_id} {r.severity} {r.service}" for r in rows.itertuples(index=False)]
    during, baseline = floats(rows["completion_rate_during"]), floats(rows["baseline_completion_rate"])
    notes = [
        f"{fmt.number(a)} attempts during, {fmt.points(d)} against the week before"
        if not fmt.missing(d)
        else "no attempts of an affected workflow during it"
        for a, d in zip(rows["attempts_during"], rows["completion_rate_delta"], strict=True)
    ]
    fig = go.Figure()
    for name, values, color in (("week before", baseline, "#9ecae1"), ("during", during, INCIDENT_COLOR)):
        fig.add_trace(
            go.Bar(
                x=values,
                y=labels,
                orientation="h",
                name=name,
                marker={"color": color},
                text=[fmt.percent(v) for v in values],
                textposition="auto",
                customdata=notes,
                hovertemplate=f"%{{y}} · {name}: %{{text}}<br>%{{customdata}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group", yaxis={"autorange": "reversed"})
    fig.update_xaxes(tickformat=".0%", range=[0, 1.05])
    return _layout(fig, "Incident impact: completion rate of the affected workflows", 120 + 46 * len(labels))


def roi_chart(roi: pd.DataFrame, currency: str, colors: Mapping[str, str]) -> go.Figure | None:
    """Net value per day and workflow (stacked) and its running total (right axis)."""
    last = last_date(roi)
    if last is None:
        return None
    dates = _dates(roi, last)
    value = summed(in_window(roi, last), ["date", "workflow"], ["net_value"])["net_value"].unstack("workflow")
    value = value.reindex(dates).fillna(0.0)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name in _ordered(list(value.columns), colors):
        fig.add_trace(
            go.Bar(
                x=dates,
                y=value[name].to_numpy(),
                name=name,
                marker={"color": _color(name, colors)},
                customdata=[fmt.money(v, currency) for v in value[name]],
                hovertemplate=f"%{{x}} · {name}: %{{customdata}}<extra></extra>",
            ),
            secondary_y=False,
        )
    total = value.sum(axis=1).cumsum()
    fig.add_trace(
        go.Scatter(
            x=dates,
            y=total.to_numpy(),
            name="running total",
            mode="lines",
            line={"color": "#333", "width": 2},
            customdata=[fmt.money(v, currency) for v in total],
            hovertemplate="%{x} · total since " + dates[0] + ": %{customdata}<extra></extra>",
        ),
        secondary_y=True,
    )
    fig.update_layout(barmode="relative")
    for secondary in (False, True):
        fig.update_yaxes(tickprefix=f"{currency} ", tickformat=",.0f", secondary_y=secondary)
    fig.update_yaxes(showgrid=False, secondary_y=True)
    return _layout(fig, f"ROI: net value per day ({currency})", 420)


def latency_chart(latency: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure | None:
    """The 95th percentile duration of each workflow step per day (log scale); hover: median and
    the share slower than the workflow's latency budget."""
    last = last_date(latency)
    if last is None:
        return None
    window = in_window(latency, last)
    dates = _dates(window, last)
    fig = go.Figure()
    steps = window.assign(step=window["step"].astype("object").where(window["step"].notna(), "(unnamed)"))
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for name in _ordered(list(steps["workflow"].astype(str).unique()), colors):
        mine = steps[steps["workflow"].astype(str) == name]
        for i, (step, rows) in enumerate(mine.groupby(mine["step"].astype(str), sort=True)):
            rows = rows.set_index(rows["date"].astype(str)).reindex(dates)
            hover = [
                f"median {fmt.duration(m / 1000)}, p95 {fmt.duration(p / 1000)}, {fmt.number(e)} events"
                + ("" if fmt.missing(s) else f", {fmt.percent(s)} over budget")
                for m, p, e, s in zip(
                    floats(rows["median_ms"]),
                    floats(rows["p95_ms"]),
                    rows["events"],
                    rows["slow_rate"],
                    strict=True,
                )
            ]
            fig.add_trace(
                go.Scatter(
                    x=dates,
                    y=floats(rows["p95_ms"]) / 1000,
                    name=f"{name} · {step}",
                    mode="lines",
                    line={"color": _color(name, colors), "dash": dashes[i % len(dashes)], "width": 1.5},
                    customdata=hover,
                    hovertemplate=f"%{{x}} · {name} · {step}<br>%{{customdata}}<extra></extra>",
                )
            )
    seconds = floats(window["p95_ms"]) / 1000
    ticks = [t for t in DURATION_TICKS if seconds[~pd.isna(seconds)].min() / 2 <= t <= seconds.max() * 2]
    fig.update_yaxes(type="log", title="p95", tickvals=ticks, ticktext=[fmt.duration(t) for t in ticks])
    return _layout(fig, "Step latency: 95th percentile per step and day", 520, BOTTOM_LEGEND)


def errors_chart(errors: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure | None:
    """Attempts with each error code per workflow over the last 28 days, and how many of them
    still completed after the error."""
    last = last_date(errors)
    if last is None:
        return None
    window = in_window(errors, last, 28)
    sums = summed(window, ["workflow", "error_code"], ["error_attempts", "recovered_attempts"]).reset_index()
    workflows = _ordered(list(sums["workflow"].unique()), colors)
    fig = go.Figure()
    for i, (code, rows) in enumerate(sums.groupby("error_code", sort=True)):
        rows = rows.set_index("workflow").reindex(workflows)
        hover = [
            f"{fmt.number(a)} attempts, {fmt.percent(r / a if a else float('nan'))} still completed"
            for a, r in zip(
                rows["error_attempts"].fillna(0), rows["recovered_attempts"].fillna(0), strict=True
            )
        ]
        fig.add_trace(
            go.Bar(
                x=rows["error_attempts"].to_numpy(),
                y=workflows,
                orientation="h",
                name=str(code),
                marker={"color": PALETTE[(i + 3) % len(PALETTE)]},
                customdata=hover,
                hovertemplate=f"%{{y}} · {code}: %{{customdata}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack", yaxis={"autorange": "reversed"})
    fig.update_xaxes(title="attempts with the error", tickformat=",d")
    first = last - dt.timedelta(days=27)
    return _layout(fig, f"Errors by code, attempts started {first} … {last}", 160 + 40 * len(workflows))


def recovery_chart(retries: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure | None:
    """Of the failed attempts, the share the same user retried, and the share whose retry
    completed, per workflow over the trailing 7 days."""
    last = last_date(retries)
    if last is None:
        return None
    dates = _dates(retries, last)
    window = in_window(retries, last)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=(
            f"Retry rate (trailing {TRAILING} days)",
            f"Recovery rate (trailing {TRAILING} days)",
        ),
    )
    retried, failed = daily_rate(window, "retried", "failed_attempts", dates, trailing=TRAILING)
    recovered, _ = daily_rate(window, "recovered", "failed_attempts", dates, trailing=TRAILING)
    _rate_lines(fig, retried, failed, colors, "failed attempts", 1, True)
    _rate_lines(fig, recovered, failed, colors, "failed attempts", 2, False)
    _percent_axes(fig, 2)
    return _layout(fig, "Recovery after a failed attempt", 520)


def survey_chart(surveys: pd.DataFrame, colors: Mapping[str, str]) -> go.Figure | None:
    """Each survey's top-box rate per workflow (NPS: promoters) over the trailing 7 days."""
    last = last_date(surveys)
    if last is None:
        return None
    window = in_window(surveys, last)
    window = window.assign(top=floats(window["top_box_rate"]) * floats(window["responses"]))
    names = sorted(window["survey"].astype(str).unique())[:4]
    dates = _dates(window, last)
    fig = make_subplots(
        rows=len(names),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[f"{name}: top-box rate (trailing {TRAILING} days)" for name in names],
    )
    for row, name in enumerate(names, start=1):
        rows = window[window["survey"].astype(str) == name]
        rates, answers = daily_rate(rows, "top", "responses", dates, trailing=TRAILING)
        _rate_lines(fig, rates, answers, colors, "answers", row, row == 1)
    _percent_axes(fig, len(names))
    return _layout(fig, "Surveys: top-box answers by workflow", 120 + 200 * len(names))


def support_chart(support: pd.DataFrame) -> go.Figure | None:
    """SLA breach rates per ticket priority over the last 28 days: tickets whose first reply or
    resolution took longer than the priority's target (in business minutes)."""
    last = last_date(support)
    if last is None:
        return None
    window = in_window(support, last, 28)
    fig = go.Figure()
    priorities = ordered(TICKET_PRIORITIES[::-1], window["priority"].astype(str))  # urgent first
    for kind, color in (("first_reply", PALETTE[0]), ("resolution", PALETTE[1])):
        targeted = window[window[f"{kind}_breach_rate"].notna()]
        sums = summed(targeted, ["priority"], ["tickets", f"{kind}_breaches"]).reindex(priorities)
        rates = (sums[f"{kind}_breaches"] / sums["tickets"].where(sums["tickets"] > 0)).to_numpy("float64")
        label = kind.replace("_", " ")
        hover = [
            f"{fmt.number(b)} of {fmt.number(t)} tickets over the {label} target"
            if not fmt.missing(t)
            else "no target for this priority"
            for b, t in zip(sums[f"{kind}_breaches"], sums["tickets"], strict=True)
        ]
        fig.add_trace(
            go.Bar(
                x=priorities,
                y=rates,
                name=f"{label} breaches",
                marker={"color": color},
                text=[fmt.percent(r) for r in rates],
                textposition="auto",
                customdata=hover,
                hovertemplate="%{x}: %{text}<br>%{customdata}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    first = last - dt.timedelta(days=27)
    return _layout(fig, f"Support SLA breaches by priority, tickets created {first} … {last}", 380)


def uptime_chart(uptime: pd.DataFrame) -> go.Figure | None:
    """Monthly uptime per service against the SLO; hover: outage minutes and error budget used."""
    if uptime.empty or not uptime["uptime"].notna().any():
        return None
    rows = uptime.assign(month=uptime["month"].astype(str).str[:7])
    fig = go.Figure()
    for i, (month, group) in enumerate(rows.groupby("month", sort=True)):
        values = floats(group["uptime"])
        hover = [
            f"outage {fmt.minutes(o)} of {fmt.minutes(m)}, error budget used {fmt.percent(b, 0)}"
            for o, m, b in zip(group["outage_minutes"], group["minutes"], group["budget_used"], strict=True)
        ]
        fig.add_trace(
            go.Bar(
                x=list(group["service"].astype(str)),
                y=values,
                name=month,
                marker={"color": PALETTE[i % len(PALETTE)]},
                text=[fmt.percent(v, 2) for v in values],
                textposition="auto",
                customdata=hover,
                hovertemplate=f"%{{x}} in {month}: %{{text}} up<br>%{{customdata}}<extra></extra>",
            )
        )
    slo = float(floats(rows["slo"])[0])
    low = float(min(floats(rows["uptime"])[~pd.isna(floats(rows["uptime"]))].min(), slo))
    fig.add_hline(y=slo, line={"dash": "dash", "color": "#333"}, annotation_text=f"SLO {fmt.percent(slo, 2)}")
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".1%", range=[max(0.0, low - (1 - low) * 0.2), 1.0005])
    return _layout(fig, "Uptime per service and month", 380)
