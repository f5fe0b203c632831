"""One colour per workflow on every chart of the report and the trend pictures of the UI."""

from __future__ import annotations

from collections.abc import Sequence

# Plotly's default qualitative palette (D3 category 10).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def workflow_colors(workflows: Sequence[str]) -> dict[str, str]:
    """A colour per workflow, in the given order (kpi.yaml's), cycling through :data:`PALETTE`."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(workflows)}
