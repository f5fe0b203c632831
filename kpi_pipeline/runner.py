"""Materialize assets over a date range, in dependency order, one Dagster run per step.

Plan: (1) root assets — every telemetry partition of the range, then the
unpartitioned exports; (2) for each day in order, one run with every
partitioned asset downstream of the roots (a day may read the next day's
telemetry, staged in step 1, and earlier days' rollups, written by earlier
runs); (3) one run with the unpartitioned KPIs. Runs are recorded in the
Dagster instance (``$DAGSTER_HOME`` when set), so the UI shows them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import dagster as dg

from kpi_pipeline.defs.metadata import NEEDS
from kpi_pipeline.defs.partitions import daily_partitions


class UsageError(ValueError):
    """A range or selection the user asked for cannot be run; the message says why."""


@dataclass(frozen=True)
class Step:
    """One run: the assets it materializes and its partition (None = unpartitioned)."""

    assets: tuple[str, ...]
    partition: str | None


@dataclass(frozen=True)
class CheckResult:
    """One asset-check evaluation of a run."""

    asset: str
    name: str
    passed: bool
    severity: str  # ERROR or WARN: what a failure means
    description: str


@dataclass
class StepResult:
    step: Step
    success: bool
    seconds: float
    message: str = ""
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    skipped: bool = False

    @property
    def blocking_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "ERROR"]

    def check_summary(self) -> str:
        """``checks: 7 passed, 1 warned (schema_drift), 1 failed (quarantine_rate)``."""
        if not self.checks:
            return ""
        warned = [c.name for c in self.checks if not c.passed and c.severity != "ERROR"]
        failed = [c.name for c in self.blocking_failures]
        parts = [f"{sum(c.passed for c in self.checks)} passed"]
        parts.append(f"{len(warned)} warned" + (f" ({', '.join(warned)})" if warned else ""))
        parts.append(f"{len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""))
        return "checks: " + ", ".join(parts)


# Progress is printed per run; Dagster's own per-step log stays in the run's event log (UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _graph(defs: dg.Definitions) -> dict[str, tuple[bool, set[str]]]:
    """Materializable asset name → (partitioned, names of its materializable upstream assets)."""
    graph = defs.resolve_asset_graph()
    keys = graph.materializable_asset_keys
    out: dict[str, tuple[bool, set[str]]] = {}
    for key in keys:
        node = graph.get(key)
        parents = {p.to_user_string() for p in node.parent_keys if p in keys}
        out[key.to_user_string()] = (node.partitions_def is not None, parents)
    return out


def _topological(graph: dict[str, tuple[bool, set[str]]], names: set[str]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in sorted(graph[name][1]):
            if dep in names:
                visit(dep)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


def needed_sources(defs: dg.Definitions) -> dict[str, str]:
    """Asset name → the source (telemetry, tickets, incidents) it cannot do without."""
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.materializable_asset_keys:
        source = graph.get(key).metadata.get(NEEDS)
        if source is not None:
            out[key.to_user_string()] = str(getattr(source, "value", source))
    return out


def without_sources(defs: dg.Definitions, available: set[str]) -> dict[str, str]:
    """Assets to skip because their source has no data → why (for the user)."""
    return {
        name: f"no {source} data" for name, source in needed_sources(defs).items() if source not in available
    }


def plan(
    defs: dg.Definitions,
    days: Sequence[dt.date],
    select: Sequence[str] | None = None,
    skip: Collection[str] = (),
) -> list[Step]:
    """The ordered runs that materialize ``select`` (default: every asset but ``skip``) for ``days``."""
    graph = _graph(defs)
    unknown = sorted(set(select or ()) - set(graph))
    if unknown:
        raise UsageError(f"unknown asset(s): {', '.join(unknown)}; known: {', '.join(sorted(graph))}")
    names = (set(select) if select else set(graph)) - set(skip)
    order = _topological(graph, names)
    # Partitioned roots (telemetry) first: the exports' checks compare tickets with staged telemetry.
    roots = sorted((n for n in order if not (graph[n][1] & names)), key=lambda n: not graph[n][0])
    inner = [n for n in order if n not in roots]
    keys = [d.isoformat() for d in days]
    steps: list[Step] = []
    for name in roots:
        if graph[name][0]:
            steps += [Step((name,), key) for key in keys]
        else:
            steps.append(Step((name,), None))
    partitioned = tuple(n for n in inner if graph[n][0])
    unpartitioned = tuple(n for n in inner if not graph[n][0])
    for name in partitioned:
        late = graph[name][1] & set(unpartitioned)
        if late:
            raise UsageError(f"{name} is partitioned but reads unpartitioned KPI asset(s) {sorted(late)}")
    if partitioned:
        steps += [Step(partitioned, key) for key in keys]
    if unpartitioned:
        steps.append(Step(unpartitioned, None))
    return steps


def partition_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Days from ``start`` to ``end`` inclusive; each must be a partition that exists now."""
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    first = dt.date.fromisoformat(daily_partitions.get_first_partition_key() or "9999-12-31")
    last_key = daily_partitions.get_last_partition_key()
    last = dt.date.fromisoformat(last_key) if last_key else first
    if start < first:
        raise UsageError(f"--start {start} is before the first partition {first} (set KPI_START_DATE)")
    if end > last:
        raise UsageError(f"--end {end} is after the last complete UTC day {last}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _checks(result: dg.ExecuteInProcessResult) -> list[CheckResult]:
    out = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            out.append(
                CheckResult(
                    asset=evaluation.asset_key.to_user_string(),
                    name=evaluation.check_name,
                    passed=evaluation.passed,
                    severity=evaluation.severity.value,
                    description=evaluation.description or "",
                )
            )
    return out


def _failure_message(result: dg.ExecuteInProcessResult, checks: list[CheckResult]) -> str:
    """Why a run failed: the blocking checks that failed (they name partition and numbers),
    else the step errors."""
    blocking = [
        f"{c.asset}.{c.name}: {c.description}" for c in checks if not c.passed and c.severity == "ERROR"
    ]
    if blocking:
        return "; ".join(blocking)
    errors = [
        e.event_specific_data.error.message.strip()
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.event_specific_data.error
    ]
    return "; ".join(errors) or "run failed"


def execute(
    defs: dg.Definitions,
    steps: Sequence[Step],
    instance: dg.DagsterInstance,
    progress: Callable[[StepResult, int, int], None] | None = None,
    lookback_days: int = 1,
) -> list[StepResult]:
    """Run every step in order, continuing past failures; a failed day does not stop other days.

    When a root asset's partition fails (an unreadable file, or a blocking check such as
    the quarantine rate), the later runs of that partition's KPIs are skipped — and those
    of the ``lookback_days`` days before it, whose attempts read its telemetry — so the
    previous KPI rows of those days stay as they were. When a daily KPI table breaks its
    own invariants (a blocking check on a KPI asset), the unpartitioned KPIs that read
    every day (the scorecard among them) are skipped too.
    """
    assets = list(defs.assets or [])
    checks = list(defs.asset_checks or [])
    results: list[StepResult] = []
    failed_days: dict[str, str] = {}
    broken_kpis: list[str] = []
    for number, step in enumerate(steps, start=1):
        reason = failed_days.get(step.partition or "")
        if step.partition is None and broken_kpis and any(a.startswith("kpi_") for a in step.assets):
            reason = f"daily KPI checks failed ({'; '.join(broken_kpis)}), so the tables over all days wait"
        if reason:
            result = StepResult(step, False, 0.0, f"skipped: {reason}", skipped=True)
            results.append(result)
            if progress:
                progress(result, number, len(steps))
            continue
        started = time.perf_counter()
        run = dg.materialize(
            [*assets, *checks],
            run_config=QUIET,
            instance=instance,
            resources=defs.resources,
            partition_key=step.partition,
            selection=list(step.assets),
            raise_on_error=False,
            tags={"kpi_pipeline/source": "cli"},
        )
        run_checks = _checks(run)
        message = "" if run.success else _failure_message(run, run_checks)
        metadata = {
            e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in run.get_asset_materialization_events()
        }
        result = StepResult(step, run.success, time.perf_counter() - started, message, metadata, run_checks)
        results.append(result)
        if not run.success and step.partition is not None:
            failed = f"{', '.join(step.assets)} {step.partition} failed: {message}"
            failed_days.setdefault(step.partition, failed)
            day = dt.date.fromisoformat(step.partition)
            for back in range(1, lookback_days + 1):
                failed_days.setdefault((day - dt.timedelta(days=back)).isoformat(), f"it reads {failed}")
        broken_kpis += [
            f"{c.asset}.{c.name} {step.partition}"
            for c in result.blocking_failures
            if c.asset.startswith("kpi_")
        ]
        if progress:
            progress(result, number, len(steps))
    return results
