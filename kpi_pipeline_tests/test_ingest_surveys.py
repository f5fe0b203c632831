"""survey_response events through staging (kpis-v2.md, 'Telemetry: survey_response'): the new
reasons in the contract's order, exact files and lines, JSONL (with and without DuckDB's fast pass)
and CSV, kpi.yaml's own surveys, and a source mapping that renames a survey tool's export."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kpi_pipeline.config import parse_config
from kpi_pipeline.contract import TELEMETRY_FIELDS
from kpi_pipeline.ingest.telemetry import partition_folder, stage_telemetry_partition
from kpi_pipeline_tests.support import SmallRun

DAY = dt.date(2026, 2, 4)
SURVEYS = parse_config(
    {"surveys": {"effort": {"kind": "other", "scale": [1, 10], "top_box": [8, 10], "bottom_box": [1, 3]}}}
).surveys


def response(event_id: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": "2026-02-04T10:00:00Z",
        "user_id": "u1",
        "account_id": "a1",
        "event_type": "survey_response",
        "survey": "csat",
        "score": 4,
        "task_id": "t1",
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


# (record, expected reason or None when staged); the order of the checks is the contract's.
CASES: list[tuple[dict[str, Any], str | None]] = [
    (response("ok"), None),
    (response("edge", survey="nps", score=0), None),  # the scale's low end is on it
    (response("custom", survey="effort", score=10), None),  # a kpi.yaml survey
    (response("no_survey", survey=None), "missing_field:survey"),
    (response("blank_survey", survey="  "), "missing_field:survey"),
    (response("no_score", score=None), "missing_field:score"),
    (response("neither", survey=None, score=None), "missing_field:survey"),
    (response("case", survey="CSAT"), "bad_value:survey"),  # names are matched as written
    (response("unknown_and_off", survey="smile", score=99), "bad_value:survey"),
    (response("above", score=6), "bad_value:score"),
    (response("below", survey="ces", score=0.5), "bad_value:score"),
    (response("text", score="great"), "bad_value:score"),
    (response("score_before_duration", score=9, duration_ms=-1), "bad_value:score"),
    (response("late", survey=None, occurred_at="2026-02-05T00:00:00Z"), "outside_partition"),
    (response("typo", event_type="survey_reply", survey=None), "unknown_event_type"),
    (response("other_event", event_type="feature_used", feature="search", survey=None, score=7), None),
    (response("other_event_text", event_type="feature_used", feature="search", score="x"), "bad_value:score"),
]


def _stage(root: Path, fast: bool = True) -> tuple[pd.DataFrame, list[tuple[str, int, str]]]:
    staged = stage_telemetry_partition(root, DAY, (), fast=fast, surveys=SURVEYS)
    q = staged.quarantine
    return staged.events, list(zip(q["file"], q["line"], q["reason"], strict=True))


def _folder(root: Path) -> Path:
    folder = partition_folder(root, DAY)
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("fast", [True, False])
def test_jsonl_survey_responses_are_staged_or_quarantined_by_the_contracts_first_reason(
    tmp_path: Path, fast: bool
) -> None:
    (_folder(tmp_path) / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r, _ in CASES))
    events, quarantined = _stage(tmp_path, fast)
    name = "raw/telemetry/date=2026-02-04/events.jsonl"
    expected = [(name, n, why) for n, (_, why) in enumerate(CASES, start=1) if why]
    assert quarantined == expected
    staged = events.set_index("event_id")
    assert sorted(staged.index) == sorted(r["event_id"] for r, why in CASES if why is None)
    assert staged.loc["ok", ["event_type", "survey", "score"]].tolist() == ["survey_response", "csat", 4.0]
    assert staged.loc["custom", "score"] == 10.0 and staged.loc["edge", "score"] == 0.0
    assert staged.loc["other_event", "score"] == 7.0 and pd.isna(staged.loc["other_event", "survey"])
    assert str(events["score"].dtype) == "float64"


def test_csv_survey_responses_read_numeric_text_scores(tmp_path: Path) -> None:
    rows = [r for r, _ in CASES]
    frame = pd.DataFrame(rows).reindex(columns=list(TELEMETRY_FIELDS))
    (_folder(tmp_path) / "events.csv").write_text(frame.to_csv(index=False))
    events, quarantined = _stage(tmp_path)
    name = "raw/telemetry/date=2026-02-04/events.csv"
    # The header is line 1; in CSV a score is numeric text (4 and 4.0 alike).
    assert quarantined == [(name, n, why) for n, (_, why) in enumerate(CASES, start=2) if why]
    jsonl_root = tmp_path / "jsonl"
    (_folder(jsonl_root) / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_jsonl, _ = _stage(jsonl_root)
    by_id = ["event_id", "survey", "score"]
    pd.testing.assert_frame_equal(
        events[by_id].sort_values("event_id", ignore_index=True),
        from_jsonl[by_id].sort_values("event_id", ignore_index=True),
    )


def test_a_mapping_turns_a_survey_tools_export_into_survey_responses(tmp_path: Path) -> None:
    mapping = parse_config(
        {
            "sources": {
                "telemetry": {
                    "format": "csv",
                    "timestamp_format": "ISO8601",
                    "fields": {
                        "event_id": "id",
                        "occurred_at": "answered",
                        "user_id": "respondent",
                        "account_id": "org",
                        "event_type": {"column": "kind", "values": {"survey answered": "survey_response"}},
                        "survey": {"column": "form", "values": {"Satisfaction": "csat", "Effort": "effort"}},
                        "score": "rating",
                        "task_id": "context",
                    },
                }
            }
        }
    ).sources.telemetry
    (_folder(tmp_path) / "answers.csv").write_text(
        "id,answered,respondent,org,kind,form,rating,context\n"
        "1,2026-02-04T09:00:00Z,u1,o1,survey answered,Satisfaction,5,t1\n"
        "2,2026-02-04T09:05:00Z,u2,o1,survey answered,Effort,9,\n"
        "3,2026-02-04T09:10:00Z,u3,o1,survey answered,Satisfaction,7,t2\n"
    )
    staged = stage_telemetry_partition(tmp_path, DAY, (), mapping, surveys=SURVEYS)
    events = staged.events
    assert events[["event_id", "event_type", "survey", "score"]].values.tolist() == [
        ["1", "survey_response", "csat", 5.0],
        ["2", "survey_response", "effort", 9.0],
    ]
    q = staged.quarantine
    assert list(zip(q["line"], q["reason"], strict=True)) == [(4, "bad_value:score")]  # 7 is off csat's 1–5


def test_a_survey_change_moves_every_days_data_version_and_the_built_ins_none() -> None:
    from kpi_pipeline.automation.file_state import FileState, telemetry_data_versions
    from kpi_pipeline.defs.automation import surveys_json

    files = {"raw/telemetry/date=2026-02-04/a.jsonl": FileState(size=10, mtime_ns=1)}
    builtin = surveys_json(parse_config({}))
    assert builtin == ""
    before = telemetry_data_versions(files, ())
    assert telemetry_data_versions(files, (), "", builtin) == before  # unchanged by the upgrade
    custom = surveys_json(
        parse_config(
            {"surveys": {"csat": {"kind": "csat", "scale": [1, 5], "top_box": [5, 5], "bottom_box": [1, 1]}}}
        )
    )
    assert telemetry_data_versions(files, (), "", custom) != before


def test_survey_responses_reach_kpi_survey_daily_through_dagster(small_run: SmallRun) -> None:
    """End to end: responses staged with the day, paired with yesterday's attempt, and one about an
    attempt three days old that only names the workflow (looked up through task_starts). The small
    data set is materialized already; the responses come in a file of its last day, staged again."""
    from kpi_pipeline.warehouse import Warehouse
    from kpi_pipeline_tests.support import materialize_all

    root, settings, days = small_run.root, small_run.settings, small_run.days
    assert len(days) == 4 and all(r.success for r in small_run.results)
    # Surveys of the test's own, apart from the sample's csat, ces and nps answers.
    with (root / "config" / "kpi.yaml").open("a") as config:
        config.write(
            "surveys:\n"
            "  probe: {kind: csat, scale: [1, 5], top_box: [4, 5], bottom_box: [1, 2]}\n"
            "  probe_nps: {kind: nps, scale: [0, 10], top_box: [9, 10], bottom_box: [0, 6]}\n"
        )
    attempts = pd.read_parquet(root / "staging" / "task_attempts" / f"date={days[0]}" / "data.parquet")
    yesterday = pd.read_parquet(root / "staging" / "task_attempts" / f"date={days[2]}" / "data.parquet")
    recent = yesterday[yesterday["completed"]].iloc[0]
    old = attempts[attempts["workflow"] != recent["workflow"]].iloc[0]
    at = f"{days[3]}T12:00:00Z"
    lines = [
        response("s1", occurred_at=at, task_id=recent["task_id"], score=5, survey="probe"),
        response("s2", occurred_at=at, task_id=recent["task_id"], score=1, user_id="u2", survey="probe"),
        response("s3", occurred_at=at, task_id=old["task_id"], score=3, survey="probe"),
        response("s4", occurred_at=at, task_id=None, score=2, survey="probe_nps"),
    ]
    folder = partition_folder(root, days[3])
    (folder / "surveys.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    _, results = materialize_all(settings, days[3:])
    assert all(r.success for r in results), [r.message for r in results if not r.success]
    out = Warehouse(settings.warehouse_url).read("kpi_survey_daily")
    assert {"csat", "ces", "nps"} <= set(out["survey"])  # the sample's own answers, every day
    out = out[out["survey"].str.startswith("probe")]
    rows = {(r.workflow, r.survey): r for r in out.itertuples(index=False)}
    paired = rows[(recent["workflow"], "probe")]
    assert (paired.responses, paired.respondents, paired.paired_responses) == (2, 2, 2)
    assert (paired.mean_score_completed, paired.unhappy_completions, paired.unhappy_completion_rate) == (
        3.0,
        1,
        0.5,
    )
    assert pd.isna(paired.mean_score_failed)
    older = rows[(old["workflow"], "probe")]  # the workflow of an attempt three days before
    assert (older.responses, older.paired_responses, older.mean_score) == (1, 0, 3.0)
    none = rows[("none", "probe_nps")]
    assert (none.responses, none.nps) == (1, -100.0)
    assert set(out["date"]) == {days[3].isoformat()}


def test_the_posthog_preset_reads_survey_sent_events_of_an_event_export(tmp_path: Path) -> None:
    """A small export in PostHog's documented shape (event, uuid, distinct_id, timestamp and the
    survey properties flattened as columns), written by hand: not a real export."""
    config = parse_config(
        {
            "sources": {"telemetry": {"preset": "posthog_survey_events"}},
            "surveys": {
                "Checkout CSAT": {"kind": "csat", "scale": [1, 5], "top_box": [4, 5], "bottom_box": [1, 2]}
            },
        }
    )
    survey = "properties.$survey_id,properties.$survey_name,properties.$survey_response"
    header = f"uuid,event,distinct_id,timestamp,{survey}"
    (_folder(tmp_path) / "posthog.csv").write_text(
        f"{header}\n"
        "0190a1b2-0001,survey sent,person-1,2026-02-04T09:00:00.123000Z,0189-aa,Checkout CSAT,5\n"
        "0190a1b2-0002,$pageview,person-1,2026-02-04T09:01:00Z,,,\n"
        "0190a1b2-0003,survey sent,person-2,2026-02-04T09:02:00Z,0189-bb,Onboarding NPS,9\n"
        "0190a1b2-0004,survey sent,person-3,2026-02-04T09:03:00Z,0189-aa,Checkout CSAT,\n"
        "0190a1b2-0005,survey sent,person-4,2026-02-04T09:04:00+01:00,0189-aa,Checkout CSAT,4\n"
    )
    staged = stage_telemetry_partition(tmp_path, DAY, (), config.sources.telemetry, surveys=config.surveys)
    events = staged.events
    assert events[["event_id", "user_id", "account_id", "event_type", "survey", "score"]].values.tolist() == [
        ["0190a1b2-0001", "person-1", "person-1", "survey_response", "Checkout CSAT", 5.0],
        ["0190a1b2-0005", "person-4", "person-4", "survey_response", "Checkout CSAT", 4.0],
    ]
    assert events["occurred_at"].tolist() == [
        pd.Timestamp("2026-02-04T09:00:00.123Z"),
        pd.Timestamp("2026-02-04T08:04:00Z"),
    ]
    q = staged.quarantine
    # An NPS survey kpi.yaml does not name, and an answer without a response; the page view is filtered.
    assert list(zip(q["line"], q["reason"], strict=True)) == [
        (4, "bad_value:survey"),
        (5, "missing_field:score"),
    ]
    assert (staged.report.raw_rows, staged.report.filtered_rows) == (4, 1)
