"""Helpers that turn our table specs and reports into Dagster metadata."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

import dagster as dg
import numpy as np
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.report.colors import workflow_colors
from kpi_pipeline.report.formatting import percent
from kpi_pipeline.report.series import all_dates, daily_rate, in_window, ordered
from kpi_pipeline.report.trend import data_uri, line_chart_svg, sparkline
from kpi_pipeline.storage import StoragePath, relative_name
from kpi_pipeline.tables import TableSpec


def owner(name: str) -> str:
    """A Dagster owner string: e-mails and ``team:`` names pass, bare names become teams."""
    return name if "@" in name or name.startswith("team:") else f"team:{name}"


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, kind, description=text) for name, kind, text in spec.columns]
    )


# Definition metadata naming the source (telemetry, tickets, incidents) an asset cannot do without;
# `kpi-pipeline materialize` skips assets whose source has no data under the data root.
NEEDS = "kpi_pipeline/needs_source"


def workflow_owner_table(config: KpiConfig, others: Sequence[str] = ()) -> dg.MetadataValue:
    """Each configured workflow (and ``others``, such as the survey table's ``none``) and its owner,
    as a markdown table for a table's definition metadata."""
    names = [*sorted(config.workflows), *others]
    rows = [f"| {name} | {config.workflow_owner(name)} |" for name in names]
    return dg.MetadataValue.md("\n".join(["| workflow | owner |", "|---|---|", *rows]))


def table_metadata(spec: TableSpec, source: str, warehouse_table: bool = True) -> dict[str, object]:
    """Definition metadata of an asset stored as ``spec``: grain, column schema, needed source, and the
    warehouse table it is written to (Parquet-stored assets have none)."""
    metadata: dict[str, object] = {
        "grain": ", ".join(spec.grain),
        "dagster/column_schema": column_schema(spec),
        NEEDS: source,
    }
    return {"table": spec.name, **metadata} if warehouse_table else metadata


# Decimals a rate or other number keeps in metadata: the UI shows the value as stored, and a rate
# of 0.7213114754098361 reads as noise; 4 decimals keep a hundredth of a percentage point. A smaller
# value keeps 4 significant digits instead, so 40 rows of a million show as 4e-05, not 0.
METADATA_DIGITS = 4


def shown(value: object) -> object:
    """A metadata value as the UI should show it: a float rounded to :data:`METADATA_DIGITS`
    decimals, or to as many significant digits when it is smaller than that shows."""
    if not isinstance(value, float | np.floating) or not math.isfinite(value) or value == 0:
        return value
    magnitude = math.floor(math.log10(abs(value)))
    return round(float(value), max(METADATA_DIGITS, METADATA_DIGITS - 1 - magnitude))


def root_path(path: StoragePath, root: StoragePath) -> dg.MetadataValue:
    """A path as metadata, relative to the data root when inside it: the UI shows where the data is
    the same way on every machine (its absolute path or URL when it lies elsewhere)."""
    return dg.MetadataValue.path(relative_name(path, root))


def markdown_preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first rows of ``frame`` as a markdown table (floats rounded for reading)."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    head = frame.head(rows)
    floats = head.select_dtypes("float").columns
    shown = head.astype(object).where(head.notna(), "NULL")
    shown[floats] = head[floats].round(4).astype(object).where(head[floats].notna(), "NULL")
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(map(str, values)) + " |" for values in shown.itertuples(index=False)]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def counts_markdown(counts: Mapping[str, int], label: str) -> dg.MetadataValue:
    """A two-column markdown table of counts, largest first."""
    if not counts:
        return dg.MetadataValue.md(f"_no {label}_")
    lines = [f"| {label} | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return dg.MetadataValue.md("\n".join(lines))


TREND_DAYS = 28


def completion_trend(
    completion: pd.DataFrame, as_of: dt.date, config: KpiConfig
) -> dict[str, dg.MetadataValue]:
    """The last 28 days' daily completion rate per workflow up to ``as_of``, for an unpartitioned
    asset's page (a partitioned one plots its per-day figures itself): ``completion_trend``, a
    markdown line chart (an SVG ``data:`` image, which the UI's markdown renders) and a table with
    each workflow's owner, a sparkline and the rate of the last 7 days; ``daily_completion_rate``,
    the same series as JSON."""
    dates = all_dates(as_of - dt.timedelta(days=TREND_DAYS - 1), as_of)
    rates, attempts = daily_rate(in_window(completion, as_of, TREND_DAYS), "completions", "attempts", dates)
    workflows = ordered(config.workflows, rates.columns)
    series = {w: [float(v) for v in rates[w]] for w in workflows}
    title = f"Completion rate by day, {dates[0]} … {dates[-1]}"
    svg = line_chart_svg(dates, series, workflow_colors(workflows), title)
    week = completion[completion["date"].astype(str).between(dates[-7], dates[-1])]
    done = week.groupby("workflow")[["completions", "attempts"]].sum()
    table = [f"| workflow | owner | {dates[0]} … {dates[-1]} | last 7 days |", "|---|---|---|---|"]
    for name in workflows:
        rate = done.loc[name, "completions"] / done.loc[name, "attempts"] if name in done.index else math.nan
        table.append(
            f"| {name} | {config.workflow_owner(name)} | `{sparkline(series[name])}` | {percent(rate)} |"
        )
    markdown = "\n".join([f"![{title}]({data_uri(svg)})", "", *table])
    values = {
        "as_of": as_of.isoformat(),
        "dates": dates,
        "completion_rate": {w: [None if math.isnan(v) else shown(v) for v in series[w]] for w in workflows},
        "attempts": {w: [int(n) for n in attempts[w]] for w in workflows},
    }
    return {
        "completion_trend": dg.MetadataValue.md(markdown),
        "daily_completion_rate": dg.MetadataValue.json(values),
    }
