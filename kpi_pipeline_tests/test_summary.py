"""The demo's summary lines for the support, growth and scorecard tables, on hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kpi_pipeline.config import parse_config
from kpi_pipeline.summary import lifecycle_lines, scorecard_lines, support_lines
from kpi_pipeline.tables import table

NAN = np.nan


def test_support_lines_give_breach_rates_over_tickets_with_a_target_in_priority_order() -> None:
    support = pd.DataFrame(
        {
            "priority": ["low", "urgent", "urgent", "unknown"],
            "tickets": [4, 3, 1, 5],
            "first_reply_breaches": [1, 1, 1, 0],
            "first_reply_breach_rate": [0.25, 1 / 3, 1.0, NAN],
            "resolution_breaches": [0, 0, 1, 0],
            "resolution_breach_rate": [NAN, 0.0, 1.0, NAN],
        }
    )
    assert support_lines(support) == [
        "SLA breaches by priority over all dates (first reply / resolution; tickets):",
        "  urgent       50.0% /     25.0%       4",  # (1 + 1) / 4 and (0 + 1) / 4
        "  low          25.0% / no target       4",
        "  unknown  no target / no target       5",
    ]
    assert support_lines(support.iloc[:0]) == []


def test_lifecycle_lines_show_the_last_two_weeks() -> None:
    rows = []
    for week, counts, quick in (
        ("2026-11-16", (5, 0, 0, 0), NAN),
        ("2026-11-23", (2, 4, 1, 2), 1.5),
        ("2026-11-30", (0, 3, 0, 4), 0.0),
    ):
        for status, users in zip(("new", "returning", "resurrecting", "dormant"), counts, strict=True):
            rows.append({"week": week, "status": status, "users": users, "quick_ratio": quick})
    assert lifecycle_lines(pd.DataFrame(rows)) == [
        "growth by week (quick ratio = (new + resurrecting) / dormant):",
        "  week of 2026-11-23: new 2  returning 4  resurrecting 1  dormant 2  quick ratio 1.50",
        "  week of 2026-11-30: new 0  returning 3  resurrecting 0  dormant 4  quick ratio 0.00",
    ]


def test_scorecard_lines_name_the_p_values_and_the_moves_that_were_not_significant() -> None:
    card = pd.DataFrame(
        [
            {c: NAN for c in table("kpi_scorecard").column_names}
            | {
                "workflow": name,
                "as_of": "2026-12-05",
                "completion_rate": now,
                "completion_rate_prev": before,
                "completion_rate_p_value": p,
                "status": status,
            }
            for name, now, before, p, status in (
                ("fast", 0.70, 0.80, 0.0004, "regressed: completion_rate"),
                ("small", 0.70, 0.80, 0.2, "ok"),  # beyond the 0.05 threshold, p 0.2
                ("steady", 0.80, 0.80, 1.0, "ok"),
            )
        ]
    )
    lines = scorecard_lines(card, parse_config({}))
    assert lines == [
        "scorecard as of 2026-12-05 (a rate is flagged only when significant, p < 0.05):",
        "  fast                 regressed: completion_rate (p < 0.001)",
        "  small                ok; beyond the threshold, not significant: completion_rate (p 0.200)",
        "  steady               ok",
    ]
