"""kpi_incidents and kpi_reliability_weekly: incident timing and user impact.

An incident's impact is measured on the attempts of its affected workflows
and the tickets on those workflows' topics, during the incident window
[started_at, resolved_at) against the 168 hours before it. Counting uses
sorted start times and ``numpy.searchsorted`` per workflow / topic, so each
attempt and ticket is touched once, however many incidents there are.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.kpis.activity import utc_naive, week_start
from kpi_pipeline.kpis.common import ratio
from kpi_pipeline.tables import table

BASELINE_HOURS = 168.0

INCIDENT_COLUMNS: tuple[str, ...] = table("kpi_incidents").column_names
RELIABILITY_COLUMNS: tuple[str, ...] = table("kpi_reliability_weekly").column_names


def _ns(values: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds, for searchsorted."""
    return utc_naive(values).to_numpy(dtype="datetime64[ns]").astype("int64")


def _split_workflows(incidents: pd.DataFrame) -> pd.DataFrame:
    """(incident_id, workflow) pairs from the ';'-joined affected_workflows, deduplicated."""
    names = incidents["affected_workflows"].fillna("").astype(str).str.split(";")
    pairs = pd.DataFrame({"incident_id": incidents["incident_id"].to_numpy(), "workflow": names.to_numpy()})
    pairs = pairs.explode("workflow")
    pairs["workflow"] = pairs["workflow"].astype(str).str.strip()
    pairs = pairs[(pairs["workflow"] != "").to_numpy(bool)]
    return pairs.drop_duplicates().sort_values(["incident_id", "workflow"]).reset_index(drop=True)


def _window_counts(
    windows: pd.DataFrame, items: pd.DataFrame, key: str, time: str, flag: str | None
) -> pd.DataFrame:
    """Per window row: items with the same ``key`` in [baseline_start, start) and [start, end).

    ``windows`` has ``key`` and int64-ns ``baseline_start``, ``start``, ``end``;
    ``items`` has ``key``, a timestamp column ``time`` and optionally a
    boolean ``flag`` that is summed as well. Returns columns baseline_n,
    during_n (and baseline_flag, during_flag) aligned to ``windows``.
    """
    result = pd.DataFrame(
        0, index=windows.index, columns=["baseline_n", "during_n", "baseline_flag", "during_flag"]
    )
    wanted = items[key].isin(windows[key].unique()).to_numpy(bool)
    usable = items[wanted & items[time].notna().to_numpy(bool)]
    for name, group in usable.groupby(key, sort=False):
        rows = windows.index[(windows[key] == name).to_numpy(bool)]
        if len(rows) == 0:
            continue
        times = _ns(group[time])
        order = np.argsort(times, kind="stable")
        times = times[order]
        flags = np.zeros(len(times), dtype="int64")
        if flag is not None:
            flags = group[flag].astype("boolean").fillna(False).astype(bool).to_numpy()[order].astype("int64")
        cum = np.concatenate([[0], np.cumsum(flags)])
        lo = np.searchsorted(times, windows.loc[rows, "baseline_start"].to_numpy(), side="left")
        mid = np.searchsorted(times, windows.loc[rows, "start"].to_numpy(), side="left")
        hi = np.searchsorted(times, windows.loc[rows, "end"].to_numpy(), side="left")
        result.loc[rows, "baseline_n"] = mid - lo
        result.loc[rows, "during_n"] = hi - mid
        result.loc[rows, "baseline_flag"] = cum[mid] - cum[lo]
        result.loc[rows, "during_flag"] = cum[hi] - cum[mid]
    return result


def _per_incident(pairs: pd.DataFrame, counts: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Sum pair-level counts per incident_id, 0 for incidents without pairs."""
    summed = counts.groupby(pairs["incident_id"].to_numpy()).sum()
    return summed.reindex(index, fill_value=0).astype("int64")


def _window(incidents: pd.DataFrame, telemetry_until: pd.Timestamp | None) -> tuple[pd.Series, pd.Series]:
    """Each incident's window [started_at, end): end is resolved_at, or while open the latest staged
    event (empty when there is none); a window that would end before it starts is empty."""
    started = pd.to_datetime(incidents["started_at"], utc=True)
    resolved = pd.to_datetime(incidents["resolved_at"], utc=True)
    if telemetry_until is None:
        open_end = started
    else:
        until = pd.Timestamp(telemetry_until)
        until = until.tz_localize("UTC") if until.tzinfo is None else until.tz_convert("UTC")
        open_end = pd.Series(until, index=incidents.index).astype(started.dtype)
    window_end = resolved.fillna(open_end)
    return started, window_end.where(window_end >= started, started)


def attempt_days(incidents: pd.DataFrame, telemetry_until: pd.Timestamp | None) -> list[dt.date]:
    """The UTC days whose attempts can start inside an incident's baseline or window: the only
    attempt partitions :func:`incident_impact` needs (its cost follows incidents, not history)."""
    if incidents.empty:
        return []
    started, window_end = _window(incidents, telemetry_until)
    first = (started - pd.Timedelta(hours=BASELINE_HOURS)).dt.floor("D")
    last = window_end.dt.floor("D")
    spans = [pd.date_range(a, b, freq="D") for a, b in zip(first, last, strict=True)]
    return sorted({stamp.date() for span in spans for stamp in span})


def incident_impact(
    incidents: pd.DataFrame,
    attempts: pd.DataFrame,
    tickets: pd.DataFrame,
    config: KpiConfig,
    telemetry_until: pd.Timestamp | None,
) -> pd.DataFrame:
    """kpi_incidents: one row per incident with detection, resolution and user impact.

    While an incident is open its window ends at ``telemetry_until`` (latest
    staged event, any environment), or is empty when that is None; a window
    that would end before it starts is empty. The output ``resolved_at`` and
    ``minutes_to_resolve`` stay NULL while open. ``window_end``,
    ``window_hours``, ``baseline_attempts`` and ``baseline_tickets`` are kept
    as extra columns so every rate can be re-derived.
    """
    inc = incidents.sort_values(["started_at", "incident_id"], kind="stable").reset_index(drop=True)
    started, window_end = _window(inc, telemetry_until)
    resolved = pd.to_datetime(inc["resolved_at"], utc=True)
    detected = pd.to_datetime(inc["detected_at"], utc=True).fillna(started)

    windows = pd.DataFrame(
        {
            "incident_id": inc["incident_id"].to_numpy(),
            "baseline_start": _ns(started - pd.Timedelta(hours=BASELINE_HOURS)),
            "start": _ns(started),
            "end": _ns(window_end),
        }
    )
    pairs = _split_workflows(inc).merge(windows, on="incident_id", how="left")
    attempt_counts = _window_counts(pairs, attempts, "workflow", "started_at", "completed")

    topics = pd.DataFrame(
        [(name, topic) for name, wf in config.workflows.items() for topic in wf.topics],
        columns=["workflow", "topic"],
        dtype=object,
    )
    topic_pairs = pairs.merge(topics, on="workflow", how="inner").reset_index(drop=True)
    ticket_counts = _window_counts(topic_pairs, tickets, "topic", "created_at", None)

    ids = pd.Index(inc["incident_id"].to_numpy())
    per_attempts = _per_incident(pairs, attempt_counts, ids)
    per_tickets = _per_incident(topic_pairs, ticket_counts, ids)

    out = pd.DataFrame(
        {
            "incident_id": inc["incident_id"].to_numpy(),
            "severity": inc["severity"].to_numpy(),
            "service": inc["service"].to_numpy(),
            "started_at": started,
            "detected_at": detected,
            "resolved_at": resolved,
        }
    )
    joined = pairs.groupby("incident_id")["workflow"].agg(";".join).astype(str)
    out["affected_workflows"] = joined.reindex(ids, fill_value="").to_numpy(dtype=object)
    out["minutes_to_detect"] = (detected - started).dt.total_seconds() / 60.0
    out["minutes_to_resolve"] = (resolved - started).dt.total_seconds() / 60.0
    out["attempts_during"] = per_attempts["during_n"].to_numpy()
    completed_during = pd.Series(per_attempts["during_flag"].to_numpy())
    out["completion_rate_during"] = ratio(completed_during, out["attempts_during"])
    out["baseline_attempts"] = per_attempts["baseline_n"].to_numpy()
    completed_baseline = pd.Series(per_attempts["baseline_flag"].to_numpy())
    out["baseline_completion_rate"] = ratio(completed_baseline, out["baseline_attempts"])
    out["completion_rate_delta"] = out["completion_rate_during"] - out["baseline_completion_rate"]
    out["window_end"] = window_end
    out["window_hours"] = (window_end - started).dt.total_seconds() / 3600.0
    out["tickets_during"] = per_tickets["during_n"].to_numpy()
    out["tickets_per_hour_during"] = ratio(out["tickets_during"], out["window_hours"])
    out["baseline_tickets"] = per_tickets["baseline_n"].to_numpy()
    out["baseline_tickets_per_hour"] = out["baseline_tickets"].astype("float64") / BASELINE_HOURS
    floats = [
        "minutes_to_detect",
        "minutes_to_resolve",
        "completion_rate_during",
        "baseline_completion_rate",
        "completion_rate_delta",
        "tickets_per_hour_during",
        "baseline_tickets_per_hour",
        "window_hours",
    ]
    ints = ["attempts_during", "tickets_during", "baseline_attempts", "baseline_tickets"]
    out = out.astype({**dict.fromkeys(floats, "float64"), **dict.fromkeys(ints, "int64")})
    return out[list(INCIDENT_COLUMNS)]


def reliability_weekly(incident_kpis: pd.DataFrame) -> pd.DataFrame:
    """kpi_reliability_weekly: incidents per (week of started_at, severity).

    ``mean_minutes_to_resolve`` is over resolved incidents only (NaN when
    none); ``open_incidents`` counts those with no ``resolved_at``.
    """
    frame = pd.DataFrame(
        {
            "week": week_start(incident_kpis["started_at"]),
            "severity": incident_kpis["severity"].astype(str),
            "minutes_to_detect": incident_kpis["minutes_to_detect"].astype("float64"),
            "minutes_to_resolve": incident_kpis["minutes_to_resolve"].astype("float64"),
            "open": incident_kpis["resolved_at"].isna().astype("int64"),
        }
    )
    out = (
        frame.groupby(["week", "severity"], sort=True)
        .agg(
            incidents=("open", "size"),
            mean_minutes_to_detect=("minutes_to_detect", "mean"),
            mean_minutes_to_resolve=("minutes_to_resolve", "mean"),
            open_incidents=("open", "sum"),
        )
        .reset_index()
    )
    out["week"] = out["week"].astype(str)
    return out.astype(
        {
            "incidents": "int64",
            "mean_minutes_to_detect": "float64",
            "mean_minutes_to_resolve": "float64",
            "open_incidents": "int64",
        }
    )[list(RELIABILITY_COLUMNS)]
