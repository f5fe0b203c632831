"""Prototype: could Dagster's declarative automation replace ``kpi_followup_sensor``?

It generates a small data set, materializes every day, then re-stages one historical day and
lets a declarative condition drive the rest: each tick evaluates the condition with Dagster's
own evaluator (``dg.evaluate_automation_conditions``, as the daemon would), runs exactly what it
requested (one run per partition, in dependency order), and ticks again until nothing is
requested. It prints, per asset, what automation rebuilt beside what needed rebuilding (the
``inputs_current`` rule over the asset graph) and what ``kpi_followup_sensor`` would request,
with the ticks, runs and evaluation times.

The condition is ``AutomationCondition.eager()`` without its latest-time-window clause, so a
change to a historical day reaches historical partitions:

    (newly_missing | any_deps_updated).since_last_handled
    & ~any_deps_missing & ~any_deps_in_progress & ~in_progress

    python benchmarks/automation_prototype.py [--days 10] [--users 40] [--restage 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg

from kpi_pipeline.automation.outdated import day_ranges, outdated
from kpi_pipeline.config import load_config
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.automation import followup_requests, request_span
from kpi_pipeline.defs.outdated import graph_nodes, latest_built
from kpi_pipeline.runner import Step, execute, plan, ranged
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.settings import Settings

HISTORICAL = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager, any partition")
STAGING = {"telemetry_events", "support_tickets", "incidents"}


def with_condition(defs: dg.Definitions) -> dg.Definitions:
    """The same definitions with the historical condition on every asset below staging."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    automated = dg.map_asset_specs(
        lambda spec: (
            spec
            if spec.key.to_user_string() in STAGING
            else spec.replace_attributes(automation_condition=HISTORICAL)
        ),
        assets,
    )
    sources = [a for a in defs.assets or [] if not isinstance(a, dg.AssetsDefinition)]
    return dg.Definitions(
        assets=[*sources, *automated],
        asset_checks=list(defs.asset_checks or []),
        resources=defs.resources,
        executor=dg.in_process_executor,
    )


def built_partitions(instance: dg.DagsterInstance, defs: dg.Definitions) -> dict[str, dict[str, int]]:
    nodes = graph_nodes([a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)])
    return {node.name: latest_built(instance, node) for node in nodes}


def shown(partitions: object, partitioned: bool) -> str:
    """Days as ranges, or "table" for an unpartitioned asset; "–" for none."""
    if not partitions:
        return "–"
    return day_ranges(list(partitions)) if partitioned else "table"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--restage", type=int, default=3, help="which day to re-stage (1 = the first)")
    args = parser.parse_args()
    # The data end yesterday, so every partition of the daily set has data (none "missing").
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days)
    with tempfile.TemporaryDirectory(prefix="kpi_automation_") as tmp:
        root = Path(tmp)
        generate_dataset(root, days=args.days, seed=5, start=start, users=args.users)
        settings = Settings(
            root, f"sqlite:///{root / 'warehouse' / 'kpi.db'}", root / "config" / "kpi.yaml", start
        )
        defs = build_definitions(settings)
        days = [start + dt.timedelta(days=n) for n in range(args.days)]
        instance = dg.DagsterInstance.ephemeral()
        began = time.monotonic()
        assert all(r.success for r in execute(defs, ranged(plan(defs, days)), instance))
        print(f"materialized {args.days} days × {args.users} users: {time.monotonic() - began:.1f} s")

        automated = with_condition(defs)
        began = time.monotonic()
        first = dg.evaluate_automation_conditions(defs=automated, instance=instance)
        print(
            f"first evaluation (every asset up to date): {first.total_requested} requested, "
            f"{time.monotonic() - began:.2f} s"
        )
        cursor = first.cursor

        day = days[args.restage - 1].isoformat()
        [restaged] = execute(defs, [Step(("telemetry_events",), day)], instance)
        assert restaged.success
        nodes = graph_nodes([a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)])
        needed = outdated(nodes, built_partitions(instance, defs))
        print(f"re-staged telemetry_events {day}\n")

        rebuilt: dict[str, set[str]] = defaultdict(set)
        ticks, runs, evaluation_seconds = 0, 0, 0.0
        while True:
            began = time.monotonic()
            result = dg.evaluate_automation_conditions(defs=automated, instance=instance, cursor=cursor)
            evaluation_seconds += time.monotonic() - began
            cursor = result.cursor
            ticks += 1
            requested: dict[str | None, list[str]] = defaultdict(list)
            for node in nodes:
                key = dg.AssetKey(node.name)
                if result.get_num_requested(key) == 0:
                    continue
                partitions = result.get_requested_partitions(key) if node.partitioned else {None}
                for partition in partitions:
                    requested[partition].append(node.name)
                    rebuilt[node.name].add(partition or "")
            if not requested:
                break
            order = [n.name for n in nodes]
            steps = [
                Step(tuple(sorted(names, key=order.index)), partition)
                for partition, names in sorted(requested.items(), key=lambda kv: kv[0] or "9999")
            ]
            results = execute(defs, steps, instance)
            runs += len(results)
            assert all(r.success for r in results), [r.message for r in results if not r.success]
            if ticks > 20:
                raise SystemExit("no fixed point after 20 ticks")

        run = dg.DagsterRun(job_name="daily_kpi_job", tags={"dagster/partition": day})
        config = load_config(settings.config_path)
        staged = [d.isoformat() for d in days]
        spans = [request_span(r) for r in followup_requests(run, staged, config, nodes)]
        followup = [d for span in spans if span for d in staged if span[0] <= d <= span[1]]
        followup_days = day_ranges(followup)
        print(f"{'asset':<30} {'needed (inputs_current)':<34} {'rebuilt by automation':<34}")
        for node in nodes:
            if node.name in STAGING:
                continue
            need = shown(needed.get(node.name, {}), node.partitioned)
            got = shown(rebuilt.get(node.name, set()), node.partitioned)
            print(f"{node.name:<30} {need:<34} {got:<34}")
        still = outdated(nodes, built_partitions(instance, defs))
        print(
            f"\nautomation: {ticks} evaluations ({evaluation_seconds:.2f} s in all), {runs} runs; "
            f"left outdated: {sum(len(v) for v in still.values())} partition(s)"
        )
        print(f"kpi_followup_sensor would request kpi_day_job for {followup_days} and refresh_kpis_job")


if __name__ == "__main__":
    main()
