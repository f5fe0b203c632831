"""kpi_release_quality: did a release make a workflow better or worse than the release before it?

Over all staged attempts: the attempts come from ``task_attempts`` and the step durations from
``attempt_events`` (both read out of core by column), never from telemetry. A release's previous
release is the workflow's release first seen latest strictly before it (ties: the name that sorts
last); ``unknown`` is never one and has none. The completion p-value is the standard two-sided
pooled two-proportion z-test (``kpis.statistics.pooled_z_test``, its normal tail from
``scipy.stats``).
"""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.kpis.common import Events, query, ratio
from kpi_pipeline.kpis.statistics import pooled_z_test
from kpi_pipeline.tables import conform, table

RELEASE_QUALITY = table("kpi_release_quality")
UNKNOWN_RELEASE = "unknown"
RELEASE_ATTEMPT_COLUMNS: tuple[str, ...] = (
    "workflow",
    "release",
    "started_at",
    "completed",
    "first_pass",
    "error",
    "seconds_to_complete",
)
RELEASE_EVENT_COLUMNS: tuple[str, ...] = ("workflow", "release", "event_type", "duration_ms")

_SQL = """
WITH per_release AS (
    SELECT workflow, coalesce(release, 'unknown') AS release, min(started_at) AS first_seen_at,
        count(*) AS attempts,
        count(*) FILTER (WHERE completed) AS completions,
        count(*) FILTER (WHERE first_pass) AS first_pass_completions,
        count(*) FILTER (WHERE error) AS error_attempts,
        quantile_cont(seconds_to_complete, 0.5) FILTER (WHERE completed) AS median_seconds_to_complete
    FROM events GROUP BY ALL
),
steps AS (
    SELECT workflow, coalesce(release, 'unknown') AS release, quantile_cont(duration_ms, 0.95) AS p95_step_ms
    FROM step_events
    WHERE event_type = 'task_step' AND duration_ms IS NOT NULL
    GROUP BY ALL
)
SELECT r.*, s.p95_step_ms FROM per_release r LEFT JOIN steps s USING (workflow, release)
ORDER BY workflow, first_seen_at, release
"""

_DTYPES = {
    "workflow": "string",
    "release": "string",
    "first_seen_at": "datetime64[us, UTC]",
    "attempts": "int64",
    "completions": "int64",
    "first_pass_completions": "int64",
    "error_attempts": "int64",
    "median_seconds_to_complete": "float64",
    "p95_step_ms": "float64",
}


def _previous(out: pd.DataFrame) -> pd.Series:
    """Each row's previous release: the workflow's known release with the latest first_seen_at
    strictly before its own (among equal first_seen_at the name that sorts last)."""
    known = out[out["release"] != UNKNOWN_RELEASE]
    candidates = (
        known[["workflow", "release", "first_seen_at"]]
        .sort_values(["first_seen_at", "release"], kind="stable")
        .drop_duplicates(["workflow", "first_seen_at"], keep="last")
        .rename(columns={"release": "previous_release", "first_seen_at": "previous_seen_at"})
    )
    rows = known[["workflow", "first_seen_at"]].reset_index().sort_values("first_seen_at", kind="stable")
    if rows.empty:  # merge_asof cannot factorize empty Arrow-backed keys
        return pd.Series(pd.NA, index=out.index, dtype="string")
    matched = pd.merge_asof(
        rows,
        candidates,
        left_on="first_seen_at",
        right_on="previous_seen_at",
        by="workflow",
        direction="backward",
        allow_exact_matches=False,
    ).set_index("index")
    return matched["previous_release"].reindex(out.index).astype("string")


def release_quality(attempts: Events, attempt_events: Events) -> pd.DataFrame:
    """kpi_release_quality from every staged day's attempts and attempt events (frames or DuckDB
    relations over their Parquet files)."""
    out = query(attempts, _SQL, _DTYPES, {"step_events": attempt_events})
    out["completion_rate"] = ratio(out["completions"], out["attempts"])
    out["first_pass_rate"] = ratio(out["first_pass_completions"], out["attempts"])
    out["error_rate"] = ratio(out["error_attempts"], out["attempts"])
    out["previous_release"] = _previous(out)
    # The previous release's figures, looked up by name; rows without one get none.
    figures = out.set_index(["workflow", "release"])[["completions", "attempts", "completion_rate"]]
    keys = pd.MultiIndex.from_arrays([out["workflow"], out["previous_release"].fillna("")])
    prev = figures.reindex(keys).set_axis(out.index).astype("float64")
    prev = prev.where(out["previous_release"].notna())
    out["completion_rate_delta"] = out["completion_rate"] - prev["completion_rate"]
    out["completion_p_value"] = pooled_z_test(
        out["completions"], out["attempts"], prev["completions"], prev["attempts"]
    )
    return conform(out, RELEASE_QUALITY)
