"""Materialize assets over a date range: Dagster's own ranged runs, in an order and with a
failure policy that a Dagster backfill does not have.

Every run is Dagster's in-process execution of an asset job over a partition range (the
``BackfillPolicy`` ranges a UI backfill makes), and its outcome is read through Dagster's result
APIs. Which partitions a range reaches comes from the asset graph's partition mappings (the rule
of the ``inputs_current`` checks). The runner adds three things only:

1. Order without a daemon: every telemetry day of the range is staged (with the exports) before
   any KPI run, as a day's attempts read the next days' telemetry (a Dagster backfill waits for
   those partitions the same way, through its daemon); then the daily assets, on the range and
   on the staged days outside it whose partitions read what the range changes
   (:func:`_day_steps`), those reading later days of another daily KPI asset (retries) after
   all days of the rest; then one run of the unpartitioned tables.
2. A failed ranged run is run again one day at a time, so one bad day does not hold back the
   others (a Dagster backfill fails the whole range).
3. Days whose KPIs read a failed day's telemetry ahead (:func:`reads_ahead`) wait, so their
   previous rows stay; the tables over all days wait when a daily KPI check fails.

Runs are recorded in the Dagster instance (``$DAGSTER_HOME`` when set), so the UI shows them.
"""

from __future__ import annotations

import datetime as dt
import graphlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import dagster as dg

from kpi_pipeline.automation.outdated import UNPARTITIONED, reached
from kpi_pipeline.defs.metadata import NEEDS
from kpi_pipeline.defs.outdated import nodes_of, without_inputs_current
from kpi_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, partitions_of
from kpi_pipeline.defs.resources import KpiData
from kpi_pipeline.defs.staging import QUARANTINE_OF, RECONCILIATION_COUNTS
from kpi_pipeline.run_history import ASSETS_TAG, process_tags
from kpi_pipeline.settings import DEFAULT_DAYS_PER_RUN
from kpi_pipeline.windows import days_between

TELEMETRY = "telemetry_events"
# Daily assets that also read every earlier day through a lookup no range bounds: name → (the asset
# that makes the lookup exist, why a later day that is not recomputed may still show the old range).
HISTORY_READERS = {
    "kpi_engagement_daily": ("kpi_engagement_daily", "their new_users count users first seen in all history"),
    "task_attempts": (
        "task_starts",
        "their attempts look up in task_starts which task_ids started on earlier days",
    ),
}
CLI_JOB = "kpi_pipeline_cli"


class UsageError(ValueError):
    """A range or selection the user asked for cannot be run; the message says why."""


@dataclass(frozen=True)
class Step:
    """One run: the assets it materializes and its partition (None = unpartitioned), or with
    ``last`` the partition range ``partition`` … ``last`` (a ranged run, see :func:`ranged`).

    ``extra`` says why a day outside the requested range is recomputed (empty for range days).
    """

    assets: tuple[str, ...]
    partition: str | None
    extra: str = ""
    last: str | None = None

    @property
    def days(self) -> list[str]:
        """The partitions the run covers, in order."""
        if self.partition is None:
            return []
        first, last = (dt.date.fromisoformat(key) for key in (self.partition, self.last or self.partition))
        return [d.isoformat() for d in days_between(first, last)]

    @property
    def label(self) -> str:
        return f"{self.partition} … {self.last}" if self.last else self.partition or "unpartitioned"

    def single_days(self) -> list[Step]:
        """The ranged run as one run per day (how a failed range is retried)."""
        return [replace(self, partition=day, last=None) for day in self.days]


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
    split: bool = False  # a ranged run that failed and was run again one day at a time

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


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


@dg.logger(
    dg.colored_console_logger.config_schema,
    description="Dagster's console logger without ERROR records: the runner prints each failure's "
    "cause in one line, and the stack traces stay in the run's event log.",
)
def console_without_errors(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = dg.colored_console_logger.logger_fn(init_context)
    for handler in logger.handlers:
        handler.addFilter(_below_error)
    return logger


def _span(days: Sequence[dt.date]) -> str:
    return f"{days[0]}" if len(days) == 1 else f"{days[0]} … {days[-1]}"


def _day_steps(
    defs: dg.Definitions,
    names: set[str],
    partitioned: tuple[str, ...],
    days: Sequence[dt.date],
    staged: Collection[dt.date],
) -> list[Step]:
    """One step per requested day with every partitioned asset, and one per staged day outside
    them with the assets whose partitions read what the range changes (:func:`reached` over the
    graph's partition mappings: attempts reading re-staged telemetry, 7/28-day windows reading the
    re-computed activity rollup), in date order."""
    nodes = nodes_of(defs)
    keys = [d.isoformat() for d in days]
    present = {n.name: [d.isoformat() for d in staged] if n.partitioned else [UNPARTITIONED] for n in nodes}
    changed = {n.name: keys for n in nodes if n.partitioned and n.name in names}
    found = reached(nodes, present, changed)
    extra: dict[str, dict[str, str]] = {}
    for name in partitioned:
        for key, why in found.get(name, {}).items():
            extra.setdefault(key, {})[name] = why
    by_day = {key: Step(partitioned, key) for key in keys}
    for key, reasons in extra.items():
        assets = tuple(n for n in partitioned if n in reasons)
        inputs = sorted({i for why in reasons.values() for i in why.split(", ")} - set(assets))
        by_day[key] = Step(assets, key, f"extra day: reads the range's {', '.join(inputs)}")
    return [by_day[key] for key in sorted(by_day)]


def _graph(defs: dg.Definitions) -> dict[str, tuple[bool, set[str]]]:
    """Materializable asset name → (partitioned, names of its materializable upstream assets). The
    quarantine assets are left out: each runs with its staging asset (see :func:`_run`)."""
    graph = defs.resolve_asset_graph()
    companions = {dg.AssetKey(name) for name in QUARANTINE_OF.values()}
    keys = graph.materializable_asset_keys - companions
    out: dict[str, tuple[bool, set[str]]] = {}
    for key in keys:
        node = graph.get(key)
        parents = {p.to_user_string() for p in node.parent_keys if p in keys}
        out[key.to_user_string()] = (node.partitions_def is not None, parents)
    return out


def _topological(graph: dict[str, tuple[bool, set[str]]], names: set[str]) -> list[str]:
    """``names`` in dependency order (``graphlib``), each batch of independent assets by name."""
    # A day that waits for its own previous day (task_starts, user_days) is no dependency here.
    sorter = graphlib.TopologicalSorter({name: (graph[name][1] & names) - {name} for name in names})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return order


def _reading_ahead(
    defs: dg.Definitions, graph: dict[str, tuple[bool, set[str]]], partitioned: tuple[str, ...]
) -> set[str]:
    """The ``partitioned`` assets that read a later day of another of them (from the partition
    mappings), and everything downstream of those."""
    inner = set(partitioned)
    ahead = {
        n.name
        for n in nodes_of(defs)
        if n.name in inner
        and any(r.days and r.days[1] > 0 and r.upstream in inner and r.upstream != n.name for r in n.reads)
    }
    grown = True
    while grown:
        more = {name for name in inner - ahead if graph[name][1] & ahead}
        grown = bool(more)
        ahead |= more
    return ahead


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
    staged: Collection[dt.date] = (),
) -> list[Step]:
    """The ordered runs that materialize ``select`` (default: every asset but ``skip``) for ``days``.

    On the ``staged`` days (:func:`staged_days`) outside ``days``, the daily assets whose partitions
    read what the range changes are recomputed too, each in its date's place among the range's days.
    """
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
    steps = [Step((name,), key) for name in roots if graph[name][0] for key in keys]
    # The unpartitioned roots (the ticket and incident exports, or selected tables whose inputs are
    # not selected) share one run: none reads another, a failing one does not stop the others
    # (Dagster runs every step a failure does not feed), and a run each cost the exports 0.4-0.6 s
    # of CPU, 10-15 % of a one-day materialize (docs/benchmarks.md).
    unpartitioned_roots = tuple(name for name in roots if not graph[name][0])
    if unpartitioned_roots:
        steps.append(Step(unpartitioned_roots, None))
    partitioned = tuple(n for n in inner if graph[n][0])
    unpartitioned = tuple(n for n in inner if not graph[n][0])
    for name in partitioned:
        late = graph[name][1] & set(unpartitioned)
        if late:
            raise UsageError(f"{name} is partitioned but reads unpartitioned KPI asset(s) {sorted(late)}")
    if partitioned:
        # Assets that read a daily KPI asset's later days (a day's retries are the next days'
        # attempts) run after every day of the others, so no ranged run reads ahead of what exists.
        later = _reading_ahead(defs, graph, partitioned)
        for wave in (
            tuple(n for n in partitioned if n not in later),
            tuple(n for n in partitioned if n in later),
        ):
            if wave:
                steps += _day_steps(defs, names, wave, days, staged)
    if unpartitioned:
        steps.append(Step(unpartitioned, None))
    return steps


def _next_day(key: str) -> str:
    return (dt.date.fromisoformat(key) + dt.timedelta(days=1)).isoformat()


def ranged(steps: Sequence[Step], max_days: int = DEFAULT_DAYS_PER_RUN) -> list[Step]:
    """The plan with each stretch of runs of the same assets on consecutive days (of the requested
    range, or extra days recomputed for the same reason) merged into ranged runs of at most
    ``max_days`` days, as Dagster's backfill policy runs them: a backfill of N days takes a few
    runs, not 2N."""
    out: list[Step] = []
    for step in steps:
        last = out[-1] if out else None
        if (
            last is not None
            and step.partition is not None
            and last.partition is not None
            and step.extra == last.extra
            and step.assets == last.assets
            and step.partition == _next_day(last.days[-1])
            and len(last.days) < max_days
        ):
            out[-1] = replace(last, last=step.partition)
        else:
            out.append(step)
    return out


def not_recomputed(days: Sequence[dt.date], staged: Collection[dt.date], steps: Sequence[Step]) -> list[str]:
    """One line per history reader (:data:`HISTORY_READERS`) that a plan re-staging ``days`` leaves
    as it was on later staged days: which days, and why they may still show the old version."""
    if not days or not any(s.assets == (TELEMETRY,) for s in steps):
        return []
    planned = {(name, day) for s in steps for day in s.days or [s.partition] for name in s.assets}
    names = {name for name, _ in planned}
    later = sorted(d for d in set(staged) - set(days) if d > min(days))
    lines = []
    for name, (needs, why) in HISTORY_READERS.items():
        if name not in names or needs not in names:
            continue
        left = [d for d in later if (name, d.isoformat()) not in planned]
        if left:
            lines.append(
                f"not recomputed: {name} of {len(left)} later staged day(s) {_span(left)}: {why}, "
                "which this range re-stages; run materialize over them to refresh them"
            )
    return lines


def staged_days(defs: dg.Definitions, instance: dg.DagsterInstance, kpi_data: KpiData) -> set[dt.date]:
    """Days whose telemetry is staged: materialized according to the instance, or stored in
    ``kpi_data``'s staging folder (an ephemeral instance, as the CLI uses without ``$DAGSTER_HOME``,
    has no record)."""
    key = dg.AssetKey(TELEMETRY)
    found = set(instance.get_materialized_partitions(key))
    keys = partitions_of(defs).get_partition_keys()
    found |= set(keys) & kpi_data.staged_keys(key)
    return {dt.date.fromisoformat(k) for k in found}


def partition_days(defs: dg.Definitions, start: dt.date, end: dt.date) -> list[dt.date]:
    """Days from ``start`` to ``end`` inclusive; each must be a partition of ``defs`` that exists now."""
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}")
    partitions = partitions_of(defs)
    first = dt.date.fromisoformat(partitions.get_first_partition_key() or "9999-12-31")
    last_key = partitions.get_last_partition_key()
    last = dt.date.fromisoformat(last_key) if last_key else first
    if start < first:
        raise UsageError(f"--start {start} is before the first partition {first} (set KPI_START_DATE)")
    if end > last:
        raise UsageError(f"--end {end} is after the last complete UTC day {last}")
    return days_between(start, end)


def _checks(result: dg.ExecuteInProcessResult) -> list[CheckResult]:
    return [
        CheckResult(
            asset=evaluation.asset_key.to_user_string(),
            name=evaluation.check_name,
            passed=evaluation.passed,
            severity=evaluation.severity.value,
            description=evaluation.description or "",
        )
        for evaluation in result.get_asset_check_evaluations()
    ]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def root_cause(error: object) -> str:
    """The innermost error of a serialized error chain (``.cause``, else ``.context``) in one line:
    ``InsufficientPrivilege: permission denied for table quarantine``; a ``dg.Failure`` by its text."""
    while (inner := getattr(error, "cause", None) or getattr(error, "context", None)) is not None:
        error = inner
    name = getattr(error, "cls_name", None) or type(error).__name__
    text = _first_line(getattr(error, "message", "") or str(error))
    qualified, sep, rest = text.partition(": ")
    if sep and (qualified == name or qualified.endswith(f".{name}")):
        text = rest.strip()
    elif text == name or text.endswith(f".{name}"):
        text = ""
    if name == "Failure":
        return text or "failed"
    return f"{name}: {text}" if text else name


def _user_description(event: dg.DagsterEvent) -> str:
    """The first line of a failed step's ``dg.Failure`` description ("" for any other error)."""
    data = event.event_specific_data
    return _first_line(getattr(getattr(data, "user_failure_data", None), "description", None) or "")


def _step_failure(event: dg.DagsterEvent, partition: str | None) -> str:
    """One line for a failed step: a ``dg.Failure``'s description (written for the user), else the
    asset, the partition and the root cause of the error."""
    data = event.event_specific_data
    description = _user_description(event)
    if description:
        return description
    error = getattr(data, "error", None)
    cause = root_cause(error) if error is not None else "failed"
    where = " ".join(part for part in (event.step_key, partition) if part)
    return f"{where}: {cause}" if where else cause


def _failure_message(
    result: dg.ExecuteInProcessResult, checks: list[CheckResult], partition: str | None
) -> str:
    """Why a run failed, in one line: a ``dg.Failure`` written for the user (a staging step blocked
    by its checks names them and where the rejected version is kept), else the blocking checks that
    failed (they name partition and numbers), else each failed step's root cause; the stack traces
    stay in the run's event log."""
    failures = result.get_step_failure_events()
    for_user = [_step_failure(e, partition) for e in failures if _user_description(e)]
    if for_user:
        return "; ".join(dict.fromkeys(for_user))
    blocking = [
        f"{c.asset}.{c.name}: {c.description}" for c in checks if not c.passed and c.severity == "ERROR"
    ]
    if blocking:
        return "; ".join(blocking)
    errors = [_step_failure(e, partition) for e in failures]
    if not errors:
        run_failures = result.filter_events(lambda e: e.event_type == dg.DagsterEventType.RUN_FAILURE)
        errors = [
            root_cause(e.event_specific_data.error)
            for e in run_failures
            if getattr(e.event_specific_data, "error", None)
        ]
    return "; ".join(dict.fromkeys(errors)) or "run failed"


def _run_metadata(run: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    """Asset → the metadata of its latest materialization in the run; for a ranged staging run,
    the reconciliation counts and ignored files of all its partitions."""
    out: dict[str, dict[str, object]] = {}
    for event in run.get_asset_materialization_events():
        name = event.asset_key.to_user_string()
        values = {k: v.value for k, v in event.materialization.metadata.items()}
        earlier = out.get(name)
        if earlier is not None:
            for key in RECONCILIATION_COUNTS:
                if key in values and key in earlier:
                    values[key] = int(earlier[key]) + int(values[key])
            if "ignored_files" in values or "ignored_files" in earlier:
                both = [*(earlier.get("ignored_files") or []), *(values.get("ignored_files") or [])]
                values["ignored_files"] = list(dict.fromkeys(map(str, both)))
        out[name] = values
    return out


def _run(
    defs: dg.Definitions, step: Step, instance: dg.DagsterInstance, tags: Mapping[str, str]
) -> dg.ExecuteInProcessResult:
    """One in-process run of ``step``, as :func:`dagster.materialize` does it, but with the console
    logger that leaves failures to the runner's one-line message."""
    # Observe the sources the step reads first (raw_telemetry_files for staging), so each
    # materialization records the version it was built from.
    graph = defs.resolve_asset_graph()
    parents = {p for name in step.assets for p in graph.get(dg.AssetKey(name)).parent_keys}
    observed = sorted(p.to_user_string() for p in parents if graph.get(p).is_observable)
    # A staging asset's quarantine asset is made by the same op: it runs with it.
    companions = [
        QUARANTINE_OF[name]
        for name in step.assets
        if name in QUARANTINE_OF and dg.AssetKey(QUARANTINE_OF[name]) in graph.materializable_asset_keys
    ]
    run_defs = dg.Definitions(
        assets=list(defs.assets or []),
        asset_checks=list(defs.asset_checks or []),
        jobs=[
            dg.define_asset_job(
                CLI_JOB, selection=without_inputs_current(*observed, *step.assets, *companions, defs=defs)
            )
        ],
        resources=defs.resources,
        loggers={"console": console_without_errors},
    )
    run_tags = {**tags, ASSETS_TAG: ", ".join(step.assets)}
    if step.last:
        run_tags |= {RANGE_START_TAG: str(step.partition), RANGE_END_TAG: step.last}
    return run_defs.resolve_job_def(CLI_JOB).execute_in_process(
        run_config=QUIET,
        instance=instance,
        partition_key=None if step.last else step.partition,
        raise_on_error=False,
        tags=run_tags,
    )


def reads_ahead(defs: dg.Definitions) -> int:
    """The most days after its own that a daily partition reads, from the partition mappings (the
    attempts of D read telemetry up to D+n for an n-day completion window): how many days before a
    failed day wait with it in :func:`execute`."""
    ahead = [r.days[1] for n in nodes_of(defs) for r in n.reads if r.days and r.upstream != n.name]
    return max([0, *ahead])


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
    of the ``lookback_days`` days before it (:func:`reads_ahead`), whose attempts read its
    telemetry — so the
    previous KPI rows of those days stay as they were. When a daily KPI table breaks its
    own invariants (a blocking check on a KPI asset), the unpartitioned KPIs that read
    every day (the scorecard among them) are skipped too. A ranged run (:func:`ranged`) that
    fails, or that covers a day whose KPIs must wait, is run again one day at a time, so a
    range keeps exactly these per-day outcomes.
    """
    tags = process_tags()
    results: list[StepResult] = []
    failed_days: dict[str, str] = {}
    broken_kpis: list[str] = []
    queue = list(steps)

    def report(result: StepResult) -> None:
        results.append(result)
        if progress:
            progress(result, len(results), len(results) + len(queue))

    while queue:
        step = queue.pop(0)
        if step.last and any(day in failed_days for day in step.days):
            queue[:0] = step.single_days()  # some of its days wait: the others still run
            continue
        reason = failed_days.get(step.partition or "")
        if step.partition is None and broken_kpis and any(a.startswith("kpi_") for a in step.assets):
            reason = f"daily KPI checks failed ({'; '.join(broken_kpis)}), so the tables over all days wait"
        if reason:
            report(StepResult(step, False, 0.0, f"skipped: {reason}", skipped=True))
            continue
        started = time.perf_counter()
        run = _run(defs, step, instance, tags)
        run_checks = _checks(run)
        message = "" if run.success else _failure_message(run, run_checks, step.partition and step.label)
        metadata = _run_metadata(run)
        result = StepResult(step, run.success, time.perf_counter() - started, message, metadata, run_checks)
        if not run.success and step.last:
            # One bad day must not hold back the others: run the range again one day at a time.
            queue[:0] = step.single_days()
            report(replace(result, split=True))
            continue
        if not run.success and step.partition is not None:
            label = f"{', '.join(step.assets)} {step.partition}"
            failed = f"{label} failed: {message.removeprefix(f'{label}: ')}"
            failed_days.setdefault(step.partition, failed)
            day = dt.date.fromisoformat(step.partition)
            for back in range(1, lookback_days + 1):
                failed_days.setdefault((day - dt.timedelta(days=back)).isoformat(), f"it reads {failed}")
        broken_kpis += [
            f"{c.asset}.{c.name} {step.label}" for c in result.blocking_failures if c.asset.startswith("kpi_")
        ]
        report(result)
    return results
