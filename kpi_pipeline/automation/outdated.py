"""Which materialized partitions need recomputing: an input they read changed after they were built.

Dagster marks a partition stale only when a direct input's data version changed; it does not carry
that down the graph, nor across a day window of more than a few partitions. This rule does, from
the asset graph alone: a partition is *outdated* when a partition it reads (through its partition
mapping) was materialized after it, or is itself outdated; a staging partition is outdated when its
raw files changed after it was staged. Storage ids order the events (a later event has a larger id).

A dependency of a day on its own previous day (``task_starts``, ``user_days``) only orders runs:
it is not followed, as ``kpi-pipeline materialize`` does not recompute that tail either.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

UNPARTITIONED = ""
"""The partition key of an unpartitioned asset."""

_OUTDATED = 2.0**60  # the effective id of an outdated partition: newer than any storage id
_NONE = -1.0  # the effective id of a partition never built


@dataclass(frozen=True)
class Read:
    """One input of an asset: ``upstream``, and for a daily asset over daily partitions the day
    offsets it reads (``(-1, 1)`` is D−1 … D+1); None reads every partition."""

    upstream: str
    days: tuple[int, int] | None = None


@dataclass(frozen=True)
class Node:
    name: str
    partitioned: bool
    reads: tuple[Read, ...] = ()


def outdated(
    nodes: Sequence[Node],
    built: Mapping[str, Mapping[str, int]],
    changed: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, str]]:
    """Asset → {outdated partition: the inputs that made it so}. ``nodes`` in dependency order;
    ``built``: asset → partition (``UNPARTITIONED`` for a whole table) → storage id of its latest
    materialization; ``changed``: asset → partitions whose raw inputs changed after they were built.
    An asset or partition never built is not listed (it is missing, not outdated)."""
    changed = changed or {}
    effective: dict[str, pd.Series] = {}
    found: dict[str, dict[str, str]] = {}
    for node in nodes:
        ids = _ids(built.get(node.name, {}), node.partitioned)
        newer = pd.DataFrame(index=ids.index)
        for read in node.reads:
            if read.upstream == node.name or read.upstream not in effective:
                continue
            newer[read.upstream] = _newest_read(effective[read.upstream], ids.index, node.partitioned, read)
        stale = newer.gt(ids, axis=0)
        if changed.get(node.name):
            stale["raw files"] = ids.index.isin(_index(changed[node.name], node.partitioned))
        mask = stale.any(axis=1)
        effective[node.name] = ids.where(~mask, _OUTDATED)
        reasons = {
            _key(index): ", ".join(col for col in stale.columns if row[col])
            for index, row in stale[mask].iterrows()
        }
        if reasons:
            found[node.name] = reasons
    return found


def reached(
    nodes: Sequence[Node], present: Mapping[str, Collection[str]], changed: Mapping[str, Collection[str]]
) -> dict[str, dict[str, str]]:
    """What recomputing ``changed`` (asset → partitions) outdates among the partitions that exist
    (``present``), by the rule of :func:`outdated`: asset → {partition that reads a changed one,
    directly or through other partitions: the inputs it reads them through}, the changed ones left
    out. How the CLI's ranges and the follow-up sensor find the days outside a run whose KPIs read
    what the run changes, from the partition mappings alone."""
    built = {name: dict.fromkeys(keys, 1) for name, keys in present.items()}
    for name, keys in changed.items():
        built.setdefault(name, {}).update(dict.fromkeys(keys, 2))
    done = {name: set(keys) for name, keys in changed.items()}
    found = {
        name: {key: why for key, why in partitions.items() if key not in done.get(name, set())}
        for name, partitions in outdated(nodes, built).items()
    }
    return {name: partitions for name, partitions in found.items() if partitions}


def _index(keys: Sequence[str], partitioned: bool) -> pd.Index:
    """Partition keys as the index the computation uses: days, or '' for a whole table."""
    return pd.DatetimeIndex(pd.to_datetime(list(keys))) if partitioned else pd.Index(list(keys), dtype=object)


def _ids(built: Mapping[str, int], partitioned: bool) -> pd.Series:
    """Storage ids as floats, by day or by ''."""
    ids = pd.Series(np.asarray(list(built.values()), dtype=float), index=_index(list(built), partitioned))
    return ids.sort_index()


def _newest_read(upstream: pd.Series, index: pd.Index, partitioned: bool, read: Read) -> np.ndarray:
    """For each partition in ``index``: the largest effective id among the upstream partitions it reads."""
    if upstream.empty or index.empty:
        return np.full(len(index), _NONE)
    if not isinstance(upstream.index, pd.DatetimeIndex):  # an unpartitioned upstream: one value
        return np.full(len(index), upstream.max())
    if not partitioned or read.days is None:  # every partition of the upstream
        return np.full(len(index), upstream.max())
    first, last = read.days
    days = pd.date_range(
        min(upstream.index.min(), index.min() + pd.Timedelta(days=first)),
        max(upstream.index.max(), index.max() + pd.Timedelta(days=last)),
        freq="D",
    )
    window = upstream.reindex(days, fill_value=_NONE).rolling(last - first + 1, min_periods=1).max()
    return window.reindex(index + pd.Timedelta(days=last)).fillna(_NONE).to_numpy()


def _key(index: object) -> str:
    return index.strftime("%Y-%m-%d") if isinstance(index, pd.Timestamp) else str(index)


def day_ranges(days: Sequence[str]) -> str:
    """``2026-11-22 … 2026-11-30, 2026-12-02``: sorted days as runs of consecutive days."""
    dates = sorted(pd.to_datetime(list(days)))
    if not dates:
        return ""
    parts, start, previous = [], dates[0], dates[0]
    for day in [*dates[1:], None]:
        if day is not None and day - previous == pd.Timedelta(days=1):
            previous = day
            continue
        a, b = start.strftime("%Y-%m-%d"), previous.strftime("%Y-%m-%d")
        parts.append(a if a == b else f"{a} … {b}")
        if day is not None:
            start = previous = day
    return ", ".join(parts)
