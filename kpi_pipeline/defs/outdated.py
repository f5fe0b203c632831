"""The ``inputs_current`` checks: every built partition (or table) whose inputs changed after it.

Dagster's own staleness stops at the staging layer (see ``automation/outdated.py``); these checks
carry it down the whole graph. One check per asset lists the partitions that need recomputing and
why; ``inputs_current_sensor`` re-evaluates them whenever something is materialized or observed,
so the UI's asset pages always show the truth without a run. *Execute* on a check does the same.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterator, Sequence

import dagster as dg

from kpi_pipeline.automation.outdated import UNPARTITIONED, Node, Read, day_ranges, outdated

CHECK_NAME = "inputs_current"
RAW_TELEMETRY = dg.AssetKey("raw_telemetry_files")
PAGE = 1000


def without_inputs_current(*names: str, defs: dg.Definitions | None = None) -> dg.AssetSelection:
    """The assets ``names`` with their checks but ``inputs_current``: a job's run would evaluate it
    in the middle of the changes it makes; the sensor evaluates it after them. With ``defs``, only
    the checks these definitions have (a test's definitions may have none)."""
    keys = [
        dg.AssetCheckKey(dg.AssetKey(n), CHECK_NAME) for n in names if n != RAW_TELEMETRY.to_user_string()
    ]
    if defs is not None:
        present = {key for checks in defs.asset_checks or [] for key in checks.check_keys}
        keys = [key for key in keys if key in present]
    return dg.AssetSelection.assets(*names) - dg.AssetSelection.checks(*keys)


def graph_nodes(assets: Sequence[dg.AssetsDefinition]) -> list[Node]:
    """The materializable assets in dependency order, each with what it reads: the day offsets of
    its time-window partition mappings (identity between two daily assets; every partition where
    either side is unpartitioned). The observable raw source is left to :func:`raw_changes`."""
    nodes: dict[str, Node] = {}
    for definition in assets:
        for key in definition.keys:
            daily = definition.partitions_def is not None
            reads = []
            for dep in sorted(definition.asset_deps[key], key=lambda k: k.to_user_string()):
                if dep == RAW_TELEMETRY:
                    continue
                mapping = definition.get_partition_mapping(dep)
                if isinstance(mapping, dg.TimeWindowPartitionMapping):
                    days = (mapping.start_offset, mapping.end_offset)
                else:
                    days = (0, 0) if daily else None
                reads.append(Read(dep.to_user_string(), days))
            nodes[key.to_user_string()] = Node(key.to_user_string(), daily, tuple(reads))
    # An upstream without a node of its own (none today) is ignored by the rule; so are self-reads.
    order = graphlib.TopologicalSorter(
        {name: {r.upstream for r in node.reads if r.upstream in nodes and r.upstream != name}
         for name, node in nodes.items()}
    )  # fmt: skip
    return [nodes[name] for name in order.static_order()]


def nodes_of(defs: dg.Definitions) -> list[Node]:
    """:func:`graph_nodes` of the definitions' assets."""
    return graph_nodes([a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)])


def _records(
    fetch: Callable[..., dg.EventRecordsResult], records_filter: dg.AssetRecordsFilter
) -> Iterator[dg.EventLogRecord]:
    """Every event record matching the filter, newest first, a page at a time."""
    cursor = None
    while True:
        page = fetch(records_filter, limit=PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def latest_built(instance: dg.DagsterInstance, node: Node) -> dict[str, int]:
    """Partition (``UNPARTITIONED`` for a table) → when its current content was built: the storage
    id of the earliest of its latest materializations with the same data version. The exports'
    versions come from their content, so staging the same exports again changes nothing below."""
    key = dg.AssetKey(node.name)
    built: dict[str, int] = {}
    version: dict[str, str | None] = {}
    settled: set[str] = set()
    for record in _records(instance.fetch_materializations, dg.AssetRecordsFilter(asset_key=key)):
        partition = record.partition_key or UNPARTITIONED
        materialization = record.asset_materialization
        current = ((materialization.tags if materialization else None) or {}).get("dagster/data_version")
        if partition in settled:
            continue
        if partition in built and (current is None or current != version[partition]):
            settled.add(partition)
            continue
        built[partition], version[partition] = record.storage_id, current
    return built


def raw_changes(instance: dg.DagsterInstance, staged: dict[str, int]) -> list[str]:
    """Staged telemetry days whose raw files (or aliases) were observed with another data version
    after they were staged than the one observed just before (each staging run observes first)."""
    if not staged:
        return []
    after = dg.AssetRecordsFilter(asset_key=RAW_TELEMETRY, after_storage_id=min(staged.values()))
    newest: dict[str, dg.EventLogRecord] = {}
    for record in _records(instance.fetch_observations, after):
        if record.partition_key:
            newest.setdefault(record.partition_key, record)
    changed = []
    for day, record in sorted(newest.items()):
        if day not in staged or record.storage_id < staged[day]:
            continue
        before = instance.fetch_observations(
            dg.AssetRecordsFilter(
                asset_key=RAW_TELEMETRY, asset_partitions=[day], before_storage_id=staged[day]
            ),
            limit=1,
        ).records
        if before and _version(before[0]) != _version(record):
            changed.append(day)
    return changed


def _version(record: dg.EventLogRecord) -> str | None:
    observation = record.asset_observation
    return (observation.tags or {}).get("dagster/data_version") if observation else None


def evaluations(instance: dg.DagsterInstance, nodes: Sequence[Node]) -> list[dg.AssetCheckEvaluation]:
    """One ``inputs_current`` evaluation per asset, from what the instance recorded."""
    built = {node.name: latest_built(instance, node) for node in nodes}
    # A re-export outdates the staged day and its quarantine rows, made together.
    changed = raw_changes(instance, built["telemetry_events"])
    found = outdated(nodes, built, {"telemetry_events": changed, "telemetry_quarantine": changed})
    return [_evaluation(node, built[node.name], found.get(node.name, {})) for node in nodes]


def _evaluation(node: Node, built: dict[str, int], stale: dict[str, str]) -> dg.AssetCheckEvaluation:
    inputs = sorted({name for reasons in stale.values() for name in reasons.split(", ")})
    if not stale:
        what = f"all {len(built)} built partition(s)" if node.partitioned else "the table"
        description = f"{what} built after every input they read" if built else "nothing built yet"
    elif node.partitioned:
        description = (
            f"{len(stale)} partition(s) need recomputing, their inputs changed after they were built "
            f"({', '.join(inputs)}): {day_ranges(list(stale))}"
        )
    else:
        description = f"needs recomputing: {', '.join(inputs)} changed after it was built"
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(node.name),
        check_name=CHECK_NAME,
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "outdated_partitions": len(stale),
            "partitions": day_ranges(list(stale)) if node.partitioned else "",
            "changed_inputs": dg.MetadataValue.json(inputs),
        },
    )


def inputs_current_definitions(nodes: Sequence[Node]) -> dict[str, list]:
    """The ``inputs_current`` check of every asset of ``nodes`` (:func:`graph_nodes`; one
    multi-asset check: one pass over the event log answers them all) and the sensor that keeps
    them current."""
    specs = [
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=node.name,
            description="Every built partition was built after the inputs it reads (through the asset "
            "graph, down from the raw files); the failing ones are listed.",
        )
        for node in nodes
    ]

    # can_subset: a materialization launched from the asset graph runs the checks of its assets.
    @dg.multi_asset_check(specs=specs, name="inputs_current_checks", can_subset=True)
    # No annotation on context: multi_asset_check rejects a postponed (string) one.
    def inputs_current(context) -> Iterator[dg.AssetCheckResult]:  # noqa: ANN001
        selected = context.selected_asset_check_keys
        for evaluation in evaluations(context.instance, nodes):
            if dg.AssetCheckKey(evaluation.asset_key, CHECK_NAME) not in selected:
                continue
            yield dg.AssetCheckResult(
                asset_key=evaluation.asset_key,
                check_name=CHECK_NAME,
                passed=evaluation.passed,
                severity=evaluation.severity,
                description=evaluation.description,
                metadata=evaluation.metadata,
            )

    @dg.sensor(
        name="inputs_current_sensor",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Re-evaluates every asset's `inputs_current` check when anything was materialized "
        "or observed since its last tick. Launches no runs.",
    )
    def inputs_current_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        last = int(context.cursor or 0)
        keys = [dg.AssetKey(node.name) for node in nodes]
        newest = max(
            [
                *(_newest(context.instance.fetch_materializations, key, last) for key in keys),
                _newest(context.instance.fetch_observations, RAW_TELEMETRY, last),
            ]
        )
        if newest <= last:
            return dg.SkipReason("nothing materialized or observed since the last tick")
        return dg.SensorResult(asset_events=evaluations(context.instance, nodes), cursor=str(newest))

    return {"asset_checks": [inputs_current], "sensors": [inputs_current_sensor]}


def _newest(fetch: Callable[..., dg.EventRecordsResult], key: dg.AssetKey, after: int) -> int:
    """The storage id of the newest event of ``key`` after ``after`` (``after`` when none)."""
    records = fetch(dg.AssetRecordsFilter(asset_key=key, after_storage_id=after or None), limit=1).records
    return records[0].storage_id if records else after
