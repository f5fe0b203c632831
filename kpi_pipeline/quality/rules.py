"""The data-quality rules that Great Expectations does not cover, as pure functions.

Each rule takes numbers or frames and returns a :class:`CheckOutcome` whose message names the
check, the partition or table and the numbers behind the verdict, and whose metadata is
JSON-able (plain int/float/str/list/dict, never NaN), so Dagster can show it next to the asset.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    BAD_VALUE,
    DUPLICATE_EVENT_ID,
    MALFORMED,
    MISSING_FIELD,
    OUTSIDE_PARTITION,
    UNKNOWN_EVENT_TYPE,
)
from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.tables import TABLES

EXAMPLES = 5  # example keys kept per violated invariant

# (smaller, larger) column pairs that must hold row by row, per KPI table.
ORDERED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "kpi_task_completion_daily": (
        ("completions", "attempts"),
        ("first_pass_completions", "completions"),
        ("error_attempts", "attempts"),
        ("fallbacks", "attempts"),
        ("fallback_tickets", "fallbacks"),
    ),
    "kpi_ticket_deflection_daily": (("deflected", "help_sessions"),),
    # Not active_accounts <= dau, nor accounts_28d <= users_28d: a user may act in several accounts.
    "kpi_engagement_daily": (("dau", "wau"), ("wau", "mau")),
    "kpi_feature_adoption_daily": (
        ("users", "users_28d"),
        ("accounts", "accounts_28d"),
    ),
    "kpi_retention_weekly": (("retained_users", "cohort_users"),),
    "kpi_time_to_value_weekly": (("activated_users", "cohort_users"),),
    "kpi_roi_daily": (("completions", "attempts"),),
    "kpi_reliability_weekly": (("open_incidents", "incidents"),),
    "kpi_uptime_monthly": (("outage_minutes", "minutes"),),
    "kpi_step_latency_daily": (("slow_events", "events"), ("attempts", "events")),
    "kpi_errors_daily": (
        ("recovered_attempts", "error_attempts"),
        ("fallback_attempts", "error_attempts"),
        ("error_attempts", "error_events"),
    ),
    "kpi_retry_daily": (
        ("recovered", "retried"),
        ("retried", "failed_attempts"),
        ("fallback_without_retry", "failed_attempts"),
    ),
    "kpi_release_quality": (("completions", "attempts"),),
    "kpi_survey_daily": (
        ("paired_responses", "responses"),
        ("respondents", "responses"),
        ("unhappy_completions", "paired_responses"),
    ),
    "kpi_support_daily": (
        ("solved", "tickets"),
        ("first_reply_breaches", "tickets"),
        ("resolution_breaches", "tickets"),
        ("reopened", "solved"),
    ),
    "kpi_cohort_retention": (("retained", "cohort_size"),),
    "kpi_scorecard": (
        ("completion_rate_ci_low", "completion_rate"),
        ("completion_rate", "completion_rate_ci_high"),
    ),
}
# Columns bounded otherwise than rates: name -> (low, high), both included.
BOUNDED_COLUMNS: dict[str, tuple[float, float]] = {"nps": (-100.0, 100.0)}

FUNNEL_TABLE = "kpi_funnel_daily"
FUNNEL_GROUP: tuple[str, str] = ("date", "workflow")
FUNNEL_START = "started"

_RATE_NAMES = frozenset({"stickiness", "conversion_from_start", "baseline_completion_rate", "uptime", "slo"})
_RATE_SUFFIXES = ("_rate", "_rate_28d", "_rate_during", "_rate_prev", "_p_value", "_ci_low", "_ci_high")


def is_rate_column(name: str, kind: str) -> bool:
    """Whether a KPI column is a rate (or a p-value) bounded to [0, 1]; ratios and deltas that may leave that
    range by definition (conversion_from_previous, self_service_ratio, completion_rate_delta)
    are not."""
    return kind == "float" and (name in _RATE_NAMES or name.endswith(_RATE_SUFFIXES))


def _plain(value: Any) -> Any:
    """A JSON-able Python value for one cell: numpy scalars unwrapped, NA → None, times → ISO."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _examples(frame: pd.DataFrame, mask: pd.Series, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Up to ``EXAMPLES`` offending rows of ``frame``, as JSON-able dicts of ``columns``."""
    head = frame.loc[mask.to_numpy(dtype=bool), list(columns)].head(EXAMPLES)
    return [{k: _plain(v) for k, v in record.items()} for record in head.to_dict("records")]


def _numbers(values: pd.Series) -> pd.Series:
    """A column as nullable floats, so comparisons with missing values give NA, not errors."""
    return pd.to_numeric(values, errors="coerce").astype("Float64")


def _true(mask: pd.Series) -> pd.Series:
    """A boolean mask where NA (a comparison with a missing value) counts as not violated."""
    return mask.fillna(False).astype(bool)


def _percent(share: float) -> str:
    """A share as a percentage with one decimal, as the messages show it."""
    return f"{share:.1%}"


def reconciliation(
    label: str,
    raw_rows: int,
    staged_rows: int,
    quarantined_rows: int,
    superseded_versions: int = 0,
) -> CheckOutcome:
    """Every raw row is accounted for: staged, superseded by a later version, or quarantined.
    A gap means rows were silently lost (or double counted), so it blocks downstream KPIs."""
    accounted = staged_rows + superseded_versions + quarantined_rows
    difference = raw_rows - accounted
    metadata = {
        "raw_rows": int(raw_rows),
        "staged_rows": int(staged_rows),
        "superseded_versions": int(superseded_versions),
        "quarantined_rows": int(quarantined_rows),
        "difference": int(difference),
    }
    parts = f"{staged_rows:,} staged + {superseded_versions:,} superseded + {quarantined_rows:,} quarantined"
    if difference == 0:
        message = f"{label}: reconciled, {raw_rows:,} raw rows = {parts}"
    else:
        message = (
            f"{label}: reconciliation failed, {raw_rows:,} raw rows but {parts} = {accounted:,} "
            f"(difference {difference:+,})"
        )
    return CheckOutcome(difference == 0, "ERROR", message, metadata)


CONTRACT_REASON = "|".join(
    [MALFORMED, BAD_TIMESTAMP, OUTSIDE_PARTITION, UNKNOWN_EVENT_TYPE, DUPLICATE_EVENT_ID]
    + [f"{MISSING_FIELD}:[a-z_]+", f"{BAD_VALUE}:[a-z_]+"]
)


def quarantine_located(label: str, quarantine: pd.DataFrame) -> CheckOutcome:
    """WARN unless every quarantine row names its file, a line (1-based) and a contract reason
    (``missing_field`` and ``bad_value`` with the field): what makes a row findable and fixable."""
    n = len(quarantine)
    no_file = int((quarantine["file"].isna() | (quarantine["file"].astype(str) == "")).sum()) if n else 0
    lines = pd.to_numeric(quarantine["line"], errors="coerce") if n else pd.Series(dtype=float)
    no_line = int((lines.isna() | (lines < 1)).sum())
    reasons = quarantine["reason"].astype(str) if n else pd.Series(dtype=str)
    unknown = sorted(set(reasons[~reasons.str.fullmatch(CONTRACT_REASON)]))
    passed = not (no_file or no_line or unknown)
    problems = [
        f"{no_file} without a file" if no_file else "",
        f"{no_line} without a line" if no_line else "",
        f"reasons outside the contract: {', '.join(unknown)}" if unknown else "",
    ]
    message = (
        f"{label}: all {n} quarantine row(s) name their file, line and a contract reason"
        if passed
        else f"{label}: {'; '.join(p for p in problems if p)}"
    )
    return CheckOutcome(
        passed,
        "WARN",
        message,
        {"rows": n, "without_file": no_file, "without_line": no_line, "unknown": unknown},
    )


def quarantine_rate(
    label: str,
    raw_rows: int,
    quarantined_rows: int,
    reasons: dict[str, int],
    error_above: float,
    warn_above: float,
    top: int = 5,
) -> CheckOutcome:
    """Share of raw rows quarantined: ERROR (blocking) strictly above ``error_above``, WARN strictly
    above ``warn_above``. The top reasons (rows desc, then name) say what to fix; each reason's
    ``share`` is its rows over the raw rows, so the shares add up to the rate."""
    ranked = sorted(((str(r), int(n)) for r, n in reasons.items()), key=lambda item: (-item[1], item[0]))
    top_reasons = [
        {"reason": reason, "rows": rows, "share": rows / raw_rows if raw_rows else None}
        for reason, rows in ranked[:top]
    ]
    rate = quarantined_rows / raw_rows if raw_rows else None
    metadata: dict[str, Any] = {
        "raw_rows": int(raw_rows),
        "quarantined_rows": int(quarantined_rows),
        "rate": rate,
        "error_above": float(error_above),
        "warn_above": float(warn_above),
        "top_reasons": top_reasons,
    }
    if rate is None:
        return CheckOutcome(True, "ERROR", f"{label}: no raw rows, nothing quarantined", metadata)
    listed = ", ".join(f"{item['reason']} {item['rows']:,}" for item in top_reasons)
    tail = f"; top reasons: {listed}" if listed else ""
    head = f"{label}: {_percent(rate)} of {raw_rows:,} raw rows quarantined"
    if rate > error_above:
        return CheckOutcome(False, "ERROR", f"{head} (limit {_percent(error_above)}){tail}", metadata)
    if rate > warn_above:
        return CheckOutcome(False, "WARN", f"{head} (warn above {_percent(warn_above)}){tail}", metadata)
    return CheckOutcome(True, "ERROR", f"{head} (within {_percent(warn_above)}){tail}", metadata)


def schema_drift(
    label: str,
    fields_seen: dict[str, int],
    unknown_fields: dict[str, int],
    previously_seen: set[str],
) -> CheckOutcome:
    """Columns the contract does not know, and previously seen fields that now carry no value:
    both mean the producer changed its format, which the contract has to catch up with."""
    unknown = {str(name): int(rows) for name, rows in sorted(unknown_fields.items())}
    vanished = sorted(
        name for name in previously_seen if fields_seen.get(name, 0) == 0 and name not in unknown_fields
    )
    metadata = {"unknown_fields": unknown, "vanished_fields": vanished}
    if not unknown and not vanished:
        return CheckOutcome(
            True, "WARN", f"{label}: no schema drift ({len(fields_seen)} contract fields)", metadata
        )
    problems = []
    if unknown:
        problems.append(
            f"{len(unknown)} unknown field(s): " + ", ".join(f"{n} ({r:,} rows)" for n, r in unknown.items())
        )
    if vanished:
        problems.append(f"{len(vanished)} vanished field(s): " + ", ".join(vanished))
    return CheckOutcome(False, "WARN", f"{label}: schema drift, " + "; ".join(problems), metadata)


def volume_anomaly(
    label: str, staged_rows: int, trailing: list[int], tolerance: float, window: int
) -> CheckOutcome:
    """Staged rows against the median of the last ``window`` partitions (oldest first in
    ``trailing``): outside median × (1 ± tolerance), both ends allowed, means data went missing
    or was duplicated upstream."""
    if window < 1:
        raise ValueError(f"volume_anomaly: window must be at least 1, got {window}")
    history = [int(n) for n in trailing[-window:]]
    if not history:
        metadata = {
            "staged_rows": int(staged_rows),
            "median": None,
            "lower": None,
            "upper": None,
            "history": 0,
        }
        message = f"{label}: {staged_rows:,} staged rows; not enough history for a volume check"
        return CheckOutcome(True, "WARN", message, metadata)
    median = float(np.quantile(np.asarray(history, dtype=float), 0.5))
    lower, upper = median * (1 - tolerance), median * (1 + tolerance)
    metadata = {
        "staged_rows": int(staged_rows),
        "median": median,
        "lower": lower,
        "upper": upper,
        "history": len(history),
    }
    passed = lower <= staged_rows <= upper
    verdict = "within" if passed else "outside"
    message = (
        f"{label}: {staged_rows:,} staged rows, {verdict} [{lower:,.1f}, {upper:,.1f}] "
        f"(median {median:,.1f} of the last {len(history)} partitions ± {_percent(tolerance)})"
    )
    return CheckOutcome(passed, "WARN", message, metadata)


def _funnel_violations(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Masks of funnel rows that break the step-0 invariants."""
    keys = list(FUNNEL_GROUP)
    index = _numbers(frame["step_index"])
    is_start = _true(index == 0)
    has_start = is_start.groupby([frame[k] for k in keys], dropna=False).transform("any")
    start_reached = (
        _numbers(frame["reached"])
        .where(is_start)
        .groupby([frame[k] for k in keys], dropna=False)
        .transform("max")
    )
    return {
        f"step_index 0 is {FUNNEL_START!r}": is_start & _true(frame["step"].astype("string") != FUNNEL_START),
        "every (date, workflow) has step_index 0": ~has_start.astype(bool),
        "reached <= reached at step_index 0": _true(_numbers(frame["reached"]) > start_reached),
    }


def kpi_sanity(table_name: str, frame: pd.DataFrame, label: str | None = None) -> CheckOutcome:
    """The invariants every row of a KPI table must satisfy (unique grain, rates in [0, 1],
    non-negative counts, part ≤ whole); any break means a computation bug, so it blocks."""
    spec = TABLES[table_name]
    where = label or table_name
    if frame.empty:
        return CheckOutcome(
            True, "ERROR", f"{where}: KPI sanity passed (no rows)", {"rows": 0, "violations": {}}
        )
    violations: dict[str, dict[str, Any]] = {}
    missing = [c for c in spec.column_names if c not in frame.columns]
    if missing:
        violations["has the spec's columns"] = {"missing_columns": missing}
    grain = [c for c in spec.grain if c in frame.columns]

    def record(name: str, mask: pd.Series, columns: Sequence[str] = ()) -> None:
        """Keep a violated invariant: its offending rows and a few of their keys and values."""
        rows = int(mask.sum())
        if rows:
            shown = list(dict.fromkeys([*grain, *columns]))
            violations[name] = {"rows": rows, "examples": _examples(frame, mask, shown)}

    if grain and len(grain) == len(spec.grain):
        repeated = frame.duplicated(grain, keep=False)
        firsts = repeated & ~frame.duplicated(grain, keep="first")
        if firsts.any():
            violations[f"unique grain ({', '.join(grain)})"] = {
                "rows": int(repeated.sum()),
                "duplicate_keys": int(firsts.sum()),
                "examples": _examples(frame, firsts, grain),
            }
    present = [(name, kind) for name, kind, _ in spec.columns if name in frame.columns]
    for name, kind in present:
        values = _numbers(frame[name]) if kind in ("int", "float") else None
        if values is not None and is_rate_column(name, kind):
            record(f"{name} in [0, 1]", _true((values < 0) | (values > 1)), [name])
        elif values is not None and name in BOUNDED_COLUMNS:
            low, high = BOUNDED_COLUMNS[name]
            record(f"{name} in [{low:g}, {high:g}]", _true((values < low) | (values > high)), [name])
        elif values is not None and kind == "int":
            record(f"{name} >= 0", _true(values < 0), [name])
    for smaller, larger in ORDERED_COLUMNS.get(table_name, ()):
        if smaller in frame.columns and larger in frame.columns:
            broken = _true(_numbers(frame[smaller]) > _numbers(frame[larger]))
            record(f"{smaller} <= {larger}", broken, [smaller, larger])
    if table_name == FUNNEL_TABLE and not missing:
        for name, mask in _funnel_violations(frame).items():
            record(name, mask, ["step", "reached"])

    metadata = {"rows": len(frame), "violations": violations}
    if not violations:
        return CheckOutcome(True, "ERROR", f"{where}: KPI sanity passed on {len(frame):,} rows", metadata)
    details = "; ".join(
        f"{name}: {entry['rows']:,} rows" if "rows" in entry else f"{name}: missing {', '.join(missing)}"
        for name, entry in violations.items()
    )
    count = len(violations)
    message = f"{where}: KPI sanity failed, {count} invariant(s) broken in {len(frame):,} rows — {details}"
    return CheckOutcome(False, "ERROR", message, metadata)


def funnel_monotonic(frame: pd.DataFrame, label: str | None = None) -> CheckOutcome:
    """Rows of kpi_funnel_daily where ``reached`` grows from a configured step to the next one
    (step_index k → k+1 for k ≥ 1, the last configured step → ``completed`` included). Steps count
    by presence, not order, so this is legitimate but worth a look: events may be missing."""
    where = label or FUNNEL_TABLE
    if frame.empty:
        return CheckOutcome(True, "WARN", f"{where}: funnel monotonic (no rows)", {"rows": 0, "examples": []})
    order = frame.sort_values([*FUNNEL_GROUP, "step_index"], kind="stable")
    reached = _numbers(order["reached"])
    previous = reached.groupby([order[k] for k in FUNNEL_GROUP], dropna=False).shift(1)
    grows = _true((_numbers(order["step_index"]) >= 2) & (reached > previous))
    rows = int(grows.sum())
    shown = order.assign(previous_reached=previous)
    columns = [*FUNNEL_GROUP, "step_index", "step", "reached", "previous_reached"]
    examples = _examples(shown, grows, columns) if rows else []
    metadata = {"rows": rows, "examples": examples}
    if not rows:
        return CheckOutcome(True, "WARN", f"{where}: funnel monotonic over {len(frame):,} rows", metadata)
    message = (
        f"{where}: funnel not monotonic, reached grows from the previous configured step on "
        f"{rows:,} (date, workflow, step) row(s)"
    )
    return CheckOutcome(False, "WARN", message, metadata)


def unknown_requesters(
    tickets: pd.DataFrame, known_users: pd.Series | set[str], max_share: float
) -> CheckOutcome:
    """Share of tickets (with a requester) whose requester_id is no telemetry user_id; a high share
    means fallback tickets and deflection cannot be joined to product usage."""
    requester = tickets["requester_id"].astype("string")
    has_requester = _true(requester.str.strip().ne(""))
    known = (
        known_users if isinstance(known_users, pd.Series) else pd.Series(sorted(known_users), dtype="string")
    )
    unknown = has_requester & ~_true(requester.isin(known.dropna()))
    with_requester, unknown_count = int(has_requester.sum()), int(unknown.sum())
    share = unknown_count / with_requester if with_requester else None
    examples = requester[unknown.to_numpy()].drop_duplicates().sort_values().head(EXAMPLES).tolist()
    metadata = {
        "tickets": len(tickets),
        "with_requester": with_requester,
        "unknown": unknown_count,
        "share": share,
        "max_share": float(max_share),
        "examples": [str(e) for e in examples],
    }
    if share is None:
        return CheckOutcome(
            True, "WARN", f"support_tickets: none of {len(tickets):,} tickets has a requester", metadata
        )
    head = (
        f"support_tickets: {unknown_count:,} of {with_requester:,} tickets with a requester "
        f"({_percent(share)}) have a requester unknown to telemetry"
    )
    if share > max_share:
        return CheckOutcome(
            False, "WARN", f"{head} (limit {_percent(max_share)}), e.g. {', '.join(examples)}", metadata
        )
    return CheckOutcome(True, "WARN", f"{head} (within {_percent(max_share)})", metadata)


def unknown_workflows(incidents: pd.DataFrame, workflows: set[str]) -> CheckOutcome:
    """Incidents whose ``affected_workflows`` name a workflow kpi.yaml does not define: their impact
    on tasks and tickets cannot be measured until the config or the incident is fixed."""
    names = (
        incidents[["incident_id", "affected_workflows"]]
        .assign(workflow=incidents["affected_workflows"].astype("string").fillna("").str.split(";"))
        .explode("workflow")
    )
    names["workflow"] = names["workflow"].astype("string").str.strip()
    named = names[_true(names["workflow"].ne(""))]
    bad = named[~named["workflow"].isin(sorted(workflows))]
    unknown = bad["workflow"].drop_duplicates().sort_values().tolist()
    incident_ids = bad["incident_id"].astype("string").drop_duplicates().sort_values().tolist()
    metadata = {
        "unknown_workflows": [str(n) for n in unknown],
        "incident_ids": [str(i) for i in incident_ids],
    }
    if not unknown:
        return CheckOutcome(
            True,
            "WARN",
            f"incidents: all {len(incidents):,} incidents name only workflows of kpi.yaml",
            metadata,
        )
    message = (
        f"incidents: {len(incident_ids):,} incident(s) name {len(unknown):,} workflow(s) not in kpi.yaml: "
        f"{', '.join(unknown)} (incidents {', '.join(incident_ids)})"
    )
    return CheckOutcome(False, "WARN", message, metadata)


def freshness(
    label: str, newest: pd.Timestamp | None, now: pd.Timestamp, max_age_hours: float
) -> CheckOutcome:
    """WARN when the newest data (an event or a ticket version) is older than ``max_age_hours``."""
    if newest is None or pd.isna(newest):
        return CheckOutcome(False, "WARN", f"{label}: nothing staged yet", {"max_age_hours": max_age_hours})
    age = (now - newest).total_seconds() / 3600
    passed = age <= max_age_hours
    verdict = "within" if passed else "older than"
    return CheckOutcome(
        passed,
        "WARN",
        f"{label}: newest data is {age:,.1f} h old ({newest.isoformat()}), "
        f"{verdict} the {max_age_hours:g} h limit",
        {"newest": newest.isoformat(), "age_hours": round(age, 2), "max_age_hours": max_age_hours},
    )
