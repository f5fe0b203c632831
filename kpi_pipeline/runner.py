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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from kpi_pipeline.defs.partitions import daily_partitions


class UsageError(ValueError):
    """A range or selection the user asked for cannot be run; the message says why."""


@dataclass(frozen=True)
class Step:
    """One run: the assets it materializes and its partition (None = unpartitioned)."""

    assets: tuple[str, ...]
    partition: str | None


@dataclass
class StepResult:
    step: Step
    success: bool
    seconds: float
    message: str = ""
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)


# Progress is printed per run; Dagster's own per-step log stays in the run's event log (UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _graph(defs: dg.Definitions) -> dict[str, tuple[bool, set[str]]]:
    """asset name → (partitioned, names of its upstream assets)."""
    out: dict[str, tuple[bool, set[str]]] = {}
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        deps = {d.asset_key.to_user_string() for d in spec.deps}
        out[name] = (spec.partitions_def is not None, deps)
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


def plan(defs: dg.Definitions, days: Sequence[dt.date], select: Sequence[str] | None = None) -> list[Step]:
    """The ordered runs that materialize ``select`` (default: every asset) for ``days``."""
    graph = _graph(defs)
    unknown = sorted(set(select or ()) - set(graph))
    if unknown:
        raise UsageError(f"unknown asset(s): {', '.join(unknown)}; known: {', '.join(sorted(graph))}")
    names = set(select) if select else set(graph)
    order = _topological(graph, names)
    roots = [n for n in order if not (graph[n][1] & names)]
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


def _check_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    failures = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data.evaluation
            if not evaluation.passed:
                failures.append(f"{evaluation.asset_check_key.name} ({evaluation.severity.value})")
    return failures


def execute(
    defs: dg.Definitions,
    steps: Sequence[Step],
    instance: dg.DagsterInstance,
    progress: Callable[[StepResult, int, int], None] | None = None,
) -> list[StepResult]:
    """Run every step in order, continuing past failures; a failed day does not stop other days."""
    assets = list(defs.assets or [])
    checks = list(defs.asset_checks or [])
    results: list[StepResult] = []
    for number, step in enumerate(steps, start=1):
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
        message = ""
        if not run.success:
            errors = [
                e.event_specific_data.error.message.strip()
                for e in run.all_events
                if e.event_type_value == "STEP_FAILURE" and e.event_specific_data.error
            ]
            message = "; ".join(errors) or "run failed"
        metadata = {
            e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in run.get_asset_materialization_events()
        }
        result = StepResult(step, run.success, time.perf_counter() - started, message, metadata)
        result.failed_checks = _check_failures(run)
        results.append(result)
        if progress:
            progress(result, number, len(steps))
    return results
