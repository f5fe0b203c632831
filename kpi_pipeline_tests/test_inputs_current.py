"""The inputs_current checks on a real instance: what a re-staged day or a changed raw file outdates,
and that ``kpi-pipeline materialize`` of the day leaves nothing outdated."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from kpi_pipeline import cli
from kpi_pipeline.automation.outdated import UNPARTITIONED, outdated
from kpi_pipeline.cli import materialize_range
from kpi_pipeline.config import load_config
from kpi_pipeline.definitions import build_definitions
from kpi_pipeline.defs.automation import followup_requests, request_span
from kpi_pipeline.defs.outdated import graph_nodes
from kpi_pipeline.runner import plan
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline_tests.support import START, settings_for

D = [(START + dt.timedelta(days=n)).isoformat() for n in range(5)]  # 2025-01-01 … 2025-01-05
UNPARTITIONED_KPIS = {"kpi_incidents", "kpi_reliability_weekly", "kpi_retention_weekly"}
UNPARTITIONED_KPIS |= {
    "kpi_time_to_value_weekly",
    "kpi_uptime_monthly",
    "kpi_scorecard",
    "kpi_release_quality",
    "kpi_cohort_retention",
    "kpi_lifecycle_weekly",
    "kpi_report",  # the HTML report reads the KPI tables
}


def failing(result: dg.SensorResult | dg.SkipReason) -> dict[str, str]:
    """Asset → the partitions its inputs_current evaluation lists ('' for a table)."""
    assert isinstance(result, dg.SensorResult)
    assert len(result.asset_events) == 34  # every materializable asset has the check
    return {
        e.asset_key.to_user_string(): str(e.metadata["partitions"].value)
        for e in result.asset_events
        if not e.passed
    }


def test_inputs_current_lists_what_a_change_outdates_until_materialize_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's materialize runs record into one in-memory instance that the sensor reads: the same
    event log tables as a $DAGSTER_HOME instance without its SQLite files (~3 s a run here)."""
    root = tmp_path / "data"
    generate_dataset(root, days=5, seed=3, start=START, users=40)
    settings = settings_for(root)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("inputs_current_sensor")
    with dg.DagsterInstance.ephemeral() as instance:
        monkeypatch.setattr(cli, "cli_instance", lambda: instance)
        assert materialize_range(settings, None, None, None) == 0

        def tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
            return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))

        first = tick(None)
        assert failing(first) == {}
        assert isinstance(tick(first.cursor), dg.SkipReason)  # nothing new: no evaluation

        # Re-stage the 3rd alone: what reads it through the graph's windows is outdated.
        assert (
            materialize_range(settings, dt.date(2025, 1, 3), dt.date(2025, 1, 3), ["telemetry_events"]) == 0
        )
        restaged = tick(first.cursor)
        two_to_four, three_to_five = f"{D[1]} … {D[3]}", f"{D[2]} … {D[4]}"
        assert failing(restaged) == {
            "task_starts": D[2],
            "daily_activity": D[2],
            "user_days": D[2],
            "kpi_ticket_deflection_daily": D[2],
            "task_attempts": two_to_four,  # telemetry D−1 … D+1, task_starts D−1 … D
            "kpi_task_completion_daily": two_to_four,
            "kpi_funnel_daily": two_to_four,
            "kpi_roi_daily": two_to_four,
            "attempt_events": two_to_four,  # telemetry D … D+1 and the attempts of D
            "kpi_step_latency_daily": two_to_four,
            "kpi_errors_daily": two_to_four,
            "kpi_retry_daily": f"{D[0]} … {D[3]}",  # the attempts of D … D+1
            "kpi_survey_daily": f"{D[1]} … {D[4]}",  # telemetry D and the attempts of D−1 … D
            "user_weeks": three_to_five,  # the week to date
            "account_weeks": three_to_five,  # the rollup of the week to date
            "kpi_engagement_daily": three_to_five,  # 28-day windows
            "kpi_feature_adoption_daily": three_to_five,
            **dict.fromkeys(UNPARTITIONED_KPIS, ""),
        }

        # materialize of the day recomputes exactly what reads it: nothing is left outdated.
        assert materialize_range(settings, dt.date(2025, 1, 3), dt.date(2025, 1, 3), None) == 0
        repaired = tick(restaged.cursor)
        assert failing(repaired) == {}

        # A re-exported raw file, once observed, outdates its staged day and what reads it.
        export = sorted((root / "raw" / "telemetry" / f"date={D[3]}").glob("*.jsonl*"))[0]
        export.write_bytes(export.read_bytes())
        observed = defs.resolve_job_def("observe_raw_telemetry_job").execute_in_process(instance=instance)
        assert observed.success
        changed = failing(tick(repaired.cursor))
        assert changed["telemetry_events"] == D[3]
        assert changed["task_attempts"] == f"{D[2]} … {D[4]}"
        assert changed["kpi_scorecard"] == ""
        evaluation = next(
            e for e in tick(repaired.cursor).asset_events if e.asset_key.path == ["telemetry_events"]
        )
        assert evaluation.description == (
            f"1 partition(s) need recomputing, their inputs changed after they were built (raw files): {D[3]}"
        )


@pytest.mark.parametrize("completion_hours", [24, 72])
def test_the_follow_up_sensor_reaches_exactly_the_days_the_asset_graph_says_read_a_day(
    tmp_path: Path, completion_hours: int
) -> None:
    """kpi_followup_sensor and the inputs_current rule agree: after day D is re-staged (a newer
    storage id), the days the sensor requests are the days the rule finds outdated, except D, and
    they span the completion and retry windows before D and the 28-day windows after it."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "kpi.yaml").write_text(f"windows:\n  completion: {completion_hours}\n")
    settings = settings_for(tmp_path)
    defs = build_definitions(settings)
    nodes = graph_nodes([a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)])
    days = [(START + dt.timedelta(days=n)).isoformat() for n in range(60)]
    ids = iter(range(1, 10**6))
    built = {
        n.name: {d: next(ids) for d in days} if n.partitioned else {UNPARTITIONED: next(ids)} for n in nodes
    }
    restaged = days[30]
    built["telemetry_events"][restaged] = next(ids)
    found = outdated(nodes, built)
    reading = {day for name, parts in found.items() for day in parts if day and name != "telemetry_events"}
    run = dg.DagsterRun(job_name="daily_kpi_job", tags={"dagster/partition": restaged})
    config = load_config(settings.config_path)
    spans = [request_span(r) for r in followup_requests(run, days, config, nodes)]
    requested = {d for span in spans if span for d in days if span[0] <= d <= span[1]}
    # The restaged day too: its retries read the next day's attempts, which the follow-up recomputes.
    assert requested == reading
    # Attempts read the completion window ahead; retries read the attempts of the retry window ahead.
    assert min(requested) == days[30 - config.completion_days() - config.retry_days()]
    assert max(requested) == days[30 + 27]  # the 28-day windows


def test_materialize_recomputes_every_partition_the_asset_graph_says_reads_a_restaged_range(
    tmp_path: Path,
) -> None:
    """The CLI's plan for re-staging days 11 … 13 of 60 recomputes exactly the partitions the
    inputs_current rule finds outdated (besides the range): through attempts, and through the
    7/28-day windows (user_weeks only the week after each day)."""
    settings = settings_for(tmp_path)
    defs = build_definitions(settings)
    nodes = graph_nodes([a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)])
    days = [START + dt.timedelta(days=n) for n in range(60)]
    restaged = days[10:13]
    ids = iter(range(1, 10**6))
    keys = [d.isoformat() for d in days]
    built = {
        n.name: {d: next(ids) for d in keys} if n.partitioned else {UNPARTITIONED: next(ids)} for n in nodes
    }
    for day in restaged:
        built["telemetry_events"][day.isoformat()] = next(ids)
        built["telemetry_quarantine"][day.isoformat()] = next(ids)
    found = outdated(nodes, built)
    steps = plan(defs, restaged, staged=days)
    planned: dict[str, set[str]] = {}
    for step in steps:
        for name in step.assets:
            planned.setdefault(name, set()).add(step.partition or UNPARTITIONED)
    range_keys = {d.isoformat() for d in restaged}
    for node in nodes:
        if node.partitioned and node.name in planned and node.name != "telemetry_events":
            assert planned[node.name] - range_keys == set(found.get(node.name, {})) - range_keys, node.name
    assert set(found["user_weeks"]) == {d.isoformat() for d in days[10:19]}  # the week after each day
    assert set(found["kpi_engagement_daily"]) == {d.isoformat() for d in days[10:40]}  # 28-day windows
