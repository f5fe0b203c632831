"""Small trend pictures for the Dagster UI, where a KPI asset's metadata can carry markdown but no
script: an SVG line chart (as a ``data:`` image, which the UI's markdown renders) and Unicode
sparklines. Pure text out; no plotting library."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence

from kpi_pipeline.report import formatting as fmt

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled between the values' own minimum and maximum (a gap
    for a missing value; a flat line at mid height when all are equal)."""
    known = [v for v in values if not fmt.missing(v)]
    if not known:
        return " " * len(values)
    low, high = min(known), max(known)
    out = []
    for value in values:
        if fmt.missing(value):
            out.append(" ")
        elif high == low:
            out.append(BLOCKS[len(BLOCKS) // 2])
        else:
            out.append(BLOCKS[round((value - low) / (high - low) * (len(BLOCKS) - 1))])
    return "".join(out)


def line_chart_svg(
    dates: Sequence[str],
    series: Mapping[str, Sequence[float]],
    colors: Mapping[str, str],
    title: str,
    width: int = 640,
    height: int = 220,
) -> str:
    """An SVG line chart of rates in [0, 1] by date: one polyline per series (broken at missing
    values), gridlines at 0, 50 and 100 %, the first and last date, and a legend with each
    series' last value."""
    left, right, top, bottom = 44, 190, 28, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    count = max(len(dates) - 1, 1)

    def x(i: int) -> float:
        return left + plot_w * i / count

    def y(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="12" font-weight="bold">{html.escape(title)}</text>',
    ]
    for level in (0.0, 0.5, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#ddd"/>'
            f'<text x="{left - 4}" y="{y(level) + 4:.1f}" text-anchor="end" fill="#666">{level:.0%}</text>'
        )
    if dates:
        parts.append(f'<text x="{left}" y="{height - 8}" fill="#666">{html.escape(dates[0])}</text>')
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" fill="#666">'
            f"{html.escape(dates[-1])}</text>"
        )
    for row, (name, values) in enumerate(series.items()):
        color = html.escape(colors.get(name, "#333"))
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if fmt.missing(value):
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(float(value)):.1f}")
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(run)}"/>'
                )
            elif run:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
        last = next((v for v in reversed(values) if not fmt.missing(v)), math.nan)
        ly = top + 8 + row * 16
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + plot_w + 26}" y="{ly + 1}">{html.escape(name)} {fmt.percent(last)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def data_uri(svg: str) -> str:
    """An SVG as a ``data:`` URI, what a markdown image can point at."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
