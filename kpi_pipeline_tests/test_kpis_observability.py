"""The observability tables on one hand-computed fixture: step latency, errors, retries and
release quality (kpis-v2.md), with every window edge the spec names.

The fixture (day D = 2025-01-10, windows.completion = windows.retry = 24 h):

- access_request (latency budget 2,000 ms), user u1:
  t1 10:00 release 4.1: steps form_opened 1,000 ms, submitted 3,000 ms; E1 at 10:03; completed 10:05.
  t2 11:00 release 4.1: form_opened 5,000 ms; E1 at 11:02 and 11:04, a code-less error at 11:03;
     fallback 11:05; never completes (failed).
  t3 12:00 release 4.2: form_opened without a duration, submitted 2,000 ms (not slower than the
     budget); E2 at 12:30, the instant it completes (not recovered: not strictly after).
- data_export (no budget):
  t4 u2 09:00, a blank release: export_configured 400 ms, 600 ms at D+1 08:59:59 (inside the window)
     and 9,999 ms at D+1 09:00:01 (outside); failed. u2's t5 at D+1 09:00:00, exactly 24 h later,
     is its retry and completes 09:10 (release 2.1).
  t6 u3 13:00 release 2.0: E_TIMEOUT 13:05 and a blank code 13:05:30, fallback 13:06,
     failed. t7 (u3, the same instant, so no
     retry) completes 13:20 and has a step without a name (100 ms). At 14:00 u3 starts t9b
     (completes 14:10) and t9a (fails): t9a, the smaller task_id, is t6's retry.
  t11 u4 15:00 release 2.0: fallback, failed; u4's t12 starts 24 h + 1 µs later (release 3.0,
     fails): no retry.
  t13 u5 D+1 09:00 release 2.0.9: fails (first seen at the same instant as 2.1).
  t14 u6 16:00 without a release: completes 16:05 (with t4, release ``unknown``).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
import pytest

from kpi_pipeline.config import KpiConfig, parse_config
from kpi_pipeline.contract import TELEMETRY_FIELDS, TICKET_FIELDS
from kpi_pipeline.kpis.attempts import attempt_events, build_attempts
from kpi_pipeline.kpis.errors import errors_daily
from kpi_pipeline.kpis.latency import step_latency_daily
from kpi_pipeline.kpis.releases import release_quality
from kpi_pipeline.kpis.retries import retry_daily
from kpi_pipeline.kpis.statistics import pooled_z_test

D = dt.date(2025, 1, 10)
NEXT = D + dt.timedelta(days=1)
CONFIG = parse_config(
    {
        "windows": {"completion": 24, "retry": 24},
        "workflows": {"access_request": {"latency_budget_ms": 2000}, "data_export": {}},
    }
)


def _p(x1: int, n1: int, x2: int, n2: int) -> float:
    """The pooled two-proportion z-test's two-sided p-value, by hand: erfc(|z| / √2)."""
    pooled = (x1 + x2) / (n1 + n2)
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def stats_normal_cdf(z: float) -> float:
    """The standard normal CDF, by hand."""
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _events() -> pd.DataFrame:
    rows: list[dict[str, object]] = []

    def add(at: str, task: str, kind: str, user: str, workflow: str, **extra: object) -> None:
        day = "2025-01-11" if at.startswith("+") else "2025-01-10"
        rows.append(
            {
                "event_id": f"e{len(rows):03d}",
                "occurred_at": f"{day}T{at.lstrip('+')}Z",
                "user_id": user,
                "account_id": "acc",
                "event_type": kind,
                "workflow": workflow,
                "task_id": task,
                "environment": "production",
                **extra,
            }
        )

    ar, de = "access_request", "data_export"
    add("10:00:00", "t1", "task_started", "u1", ar, release="4.1")
    add("10:01:00", "t1", "task_step", "u1", ar, step="form_opened", duration_ms=1000)
    add("10:02:00", "t1", "task_step", "u1", ar, step="submitted", duration_ms=3000)
    add("10:03:00", "t1", "task_error", "u1", ar, error_code="E1")
    add("10:05:00", "t1", "task_completed", "u1", ar)
    add("11:00:00", "t2", "task_started", "u1", ar, release="4.1")
    add("11:01:00", "t2", "task_step", "u1", ar, step="form_opened", duration_ms=5000)
    add("11:02:00", "t2", "task_error", "u1", ar, error_code="E1")
    add("11:03:00", "t2", "task_error", "u1", ar)
    add("11:04:00", "t2", "task_error", "u1", ar, error_code="E1")
    add("11:05:00", "t2", "task_fallback", "u1", ar)
    add("12:00:00", "t3", "task_started", "u1", ar, release="4.2")
    add("12:01:00", "t3", "task_step", "u1", ar, step="form_opened")
    add("12:02:00", "t3", "task_step", "u1", ar, step="submitted", duration_ms=2000)
    add("12:30:00", "t3", "task_error", "u1", ar, error_code="E2")
    add("12:30:00", "t3", "task_completed", "u1", ar)
    add("09:00:00", "t4", "task_started", "u2", de, release=" ")
    add("09:01:00", "t4", "task_step", "u2", de, step="export_configured", duration_ms=400)
    add("+08:59:59", "t4", "task_step", "u2", de, step="export_configured", duration_ms=600)
    add("+09:00:01", "t4", "task_step", "u2", de, step="export_configured", duration_ms=9999)
    add("+09:00:00", "t5", "task_started", "u2", de, release="2.1")
    add("+09:10:00", "t5", "task_completed", "u2", de)
    add("13:00:00", "t6", "task_started", "u3", de, release="2.0")
    add("13:05:00", "t6", "task_error", "u3", de, error_code="E_TIMEOUT")
    add("13:05:30", "t6", "task_error", "u3", de, error_code="")
    add("13:06:00", "t6", "task_fallback", "u3", de)
    add("13:00:00", "t7", "task_started", "u3", de, release="2.0")
    add("13:10:00", "t7", "task_step", "u3", de, duration_ms=100)
    add("13:20:00", "t7", "task_completed", "u3", de)
    add("14:00:00", "t9b", "task_started", "u3", de, release="2.0")
    add("14:10:00", "t9b", "task_completed", "u3", de)
    add("14:00:00", "t9a", "task_started", "u3", de, release="2.0")
    add("15:00:00", "t11", "task_started", "u4", de, release="2.0")
    add("15:30:00", "t11", "task_fallback", "u4", de)
    add("+15:00:00.000001", "t12", "task_started", "u4", de, release="3.0")
    add("+09:00:00", "t13", "task_started", "u5", de, release="2.0.9")
    add("16:00:00", "t14", "task_started", "u6", de)
    add("16:05:00", "t14", "task_completed", "u6", de)
    frame = pd.DataFrame(rows).reindex(columns=list(TELEMETRY_FIELDS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True, format="ISO8601")
    frame["duration_ms"] = frame["duration_ms"].astype(float)
    return frame


def _tickets() -> pd.DataFrame:
    return pd.DataFrame(columns=list(TICKET_FIELDS)).astype({"created_at": "datetime64[us, UTC]"})


def build_days() -> dict[dt.date, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each day's attempts and attempt events, as the pipeline builds them."""
    events = _events()
    out = {}
    for day in (D, NEXT):
        attempts = build_attempts(events, _tickets(), CONFIG, day)
        out[day] = attempts, attempt_events(events, attempts, CONFIG)
    return out


@pytest.fixture(scope="module")
def built() -> dict[dt.date, tuple[pd.DataFrame, pd.DataFrame]]:
    return build_days()


def _rows(frame: pd.DataFrame, key: list[str]) -> dict[tuple, dict[str, object]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return {tuple(r[k] for k in key): {c: v for c, v in r.items() if c not in key} for r in records}


def test_attempts_carry_the_release_of_their_start(built: dict) -> None:
    attempts = pd.concat([built[D][0], built[NEXT][0]])
    releases = dict(zip(attempts["task_id"], attempts["release"], strict=True))
    assert releases == {
        "t1": "4.1", "t2": "4.1", "t3": "4.2", "t4": "unknown", "t6": "2.0", "t7": "2.0", "t9a": "2.0",
        "t9b": "2.0", "t11": "2.0", "t5": "2.1", "t13": "2.0.9", "t12": "3.0", "t14": "unknown",
    }  # fmt: skip


def test_step_latency_counts_step_durations_in_the_window_against_the_budget(built: dict) -> None:
    out = _rows(step_latency_daily(built[D][1], CONFIG), ["date", "workflow", "step"])
    columns = ["events", "attempts", "median_ms", "p95_ms", "slow_events", "slow_rate"]
    assert {k: [v[c] for c in columns] for k, v in out.items()} == {
        ("2025-01-10", "access_request", "form_opened"): [2, 2, 3000.0, 4800.0, 1, 0.5],
        ("2025-01-10", "access_request", "submitted"): [2, 2, 2500.0, 2950.0, 1, 0.5],
        ("2025-01-10", "data_export", "export_configured"): [2, 1, 500.0, 590.0, None, None],
        ("2025-01-10", "data_export", None): [1, 1, 100.0, 100.0, None, None],
    }


def test_errors_count_each_code_and_recovery_strictly_after_its_first_error(built: dict) -> None:
    attempts, events = built[D]
    out = _rows(errors_daily(attempts, events), ["date", "workflow", "error_code"])
    columns = ["error_attempts", "error_events", "error_attempt_rate", "recovered_attempts", "recovery_rate"]
    assert {k: [v[c] for c in [*columns, "fallback_attempts"]] for k, v in out.items()} == {
        ("2025-01-10", "access_request", "E1"): [2, 3, 2 / 3, 1, 0.5, 1],
        ("2025-01-10", "access_request", "E2"): [1, 1, 1 / 3, 0, 0.0, 0],
        ("2025-01-10", "access_request", "unknown"): [1, 1, 1 / 3, 0, 0.0, 1],
        ("2025-01-10", "data_export", "E_TIMEOUT"): [1, 1, 1 / 7, 0, 0.0, 1],
        ("2025-01-10", "data_export", "unknown"): [1, 1, 1 / 7, 0, 0.0, 1],  # a blank code
    }


def test_retries_within_the_window_strictly_after_the_start_ties_to_the_smaller_task_id(built: dict) -> None:
    attempts = pd.concat([built[D][0], built[NEXT][0]], ignore_index=True)
    out = _rows(retry_daily(attempts, D, CONFIG), ["date", "workflow"])
    assert out == {
        ("2025-01-10", "access_request"): {
            "failed_attempts": 1, "retried": 1, "retry_rate": 1.0, "recovered": 1, "recovery_rate": 1.0,
            "fallback_without_retry": 0,
        },
        ("2025-01-10", "data_export"): {
            "failed_attempts": 4, "retried": 2, "retry_rate": 0.5, "recovered": 1, "recovery_rate": 0.25,
            "fallback_without_retry": 1,
        },
    }  # fmt: skip


def test_a_day_without_failures_has_null_retry_rates(built: dict) -> None:
    attempts = pd.concat([built[D][0], built[NEXT][0]], ignore_index=True)
    completed = attempts[attempts["completed"]]
    out = retry_daily(completed, D, CONFIG)
    assert out[["failed_attempts", "retried"]].to_numpy().tolist() == [[0, 0], [0, 0]]
    assert out["retry_rate"].isna().all() and out["recovery_rate"].isna().all()


def test_a_shorter_retry_window_loses_the_retry_at_exactly_24_hours(built: dict) -> None:
    attempts = pd.concat([built[D][0], built[NEXT][0]], ignore_index=True)
    short = parse_config({"windows": {"retry": 23.99}, "workflows": {"data_export": {}}})
    out = _rows(retry_daily(attempts, D, short), ["date", "workflow"])
    assert out[("2025-01-10", "data_export")]["retried"] == 1  # t6 only; t4's retry is 24 h later
    assert out[("2025-01-10", "data_export")]["recovered"] == 0


def test_release_quality_compares_each_release_with_the_one_before(built: dict) -> None:
    attempts = pd.concat([built[D][0], built[NEXT][0]], ignore_index=True)
    events = pd.concat([built[D][1], built[NEXT][1]], ignore_index=True)
    out = _rows(release_quality(attempts, events), ["workflow", "release"])
    columns = [
        "attempts", "completions", "completion_rate", "first_pass_rate", "error_rate",
        "median_seconds_to_complete", "p95_step_ms", "previous_release", "completion_rate_delta",
    ]  # fmt: skip
    assert {k: [v[c] for c in columns] for k, v in out.items()} == {
        ("access_request", "4.1"): [2, 1, 0.5, 0.0, 1.0, 300.0, 4800.0, None, None],
        ("access_request", "4.2"): [1, 1, 1.0, 1.0, 1.0, 1800.0, 2000.0, "4.1", 0.5],
        ("data_export", "unknown"): [2, 1, 0.5, 0.5, 0.0, 300.0, 590.0, None, None],
        ("data_export", "2.0"): [5, 2, 0.4, 0.4, 0.2, 900.0, 100.0, None, None],
        ("data_export", "2.0.9"): [1, 0, 0.0, 0.0, 0.0, None, None, "2.0", pytest.approx(-0.4)],
        ("data_export", "2.1"): [1, 1, 1.0, 1.0, 0.0, 600.0, None, "2.0", pytest.approx(0.6)],
        ("data_export", "3.0"): [1, 0, 0.0, 0.0, 0.0, None, None, "2.1", -1.0],
    }
    p_values = {k: v["completion_p_value"] for k, v in out.items()}
    assert p_values[("access_request", "4.1")] is None and p_values[("data_export", "unknown")] is None
    assert p_values[("data_export", "2.0")] is None  # 'unknown' is never a previous release
    assert p_values[("access_request", "4.2")] == pytest.approx(_p(1, 1, 1, 2), abs=1e-12)
    assert p_values[("data_export", "2.0.9")] == pytest.approx(_p(0, 1, 2, 5), abs=1e-12)
    assert p_values[("data_export", "2.1")] == pytest.approx(_p(1, 1, 2, 5), abs=1e-12)
    assert p_values[("data_export", "3.0")] == pytest.approx(math.erfc(1.0), abs=1e-12)  # z = −√2
    first_seen = {k: v["first_seen_at"] for k, v in out.items()}
    assert first_seen[("data_export", "2.1")] == pd.Timestamp("2025-01-11T09:00:00Z")


def test_the_pooled_z_test_matches_a_textbook_worked_example() -> None:
    # OpenIntro Statistics (4th ed.), section 6.2.3: breast cancer deaths, 500 of 44,925 with
    # mammograms against 505 of 44,910 controls: pooled proportion 0.0112, SE 0.00070, and with the
    # point estimate rounded to −0.00012, Z = −0.17 and p = 0.865. Unrounded, Z = −0.164, p = 0.870.
    p = pooled_z_test(pd.Series([500]), pd.Series([44_925]), pd.Series([505]), pd.Series([44_910]))
    assert p.iloc[0] == pytest.approx(0.870, abs=5e-4)
    assert 2 * stats_normal_cdf(-0.17) == pytest.approx(0.865, abs=5e-4)  # the book's rounded Z
    assert p.iloc[0] == pytest.approx(_p(500, 44_925, 505, 44_910), abs=1e-12)


def test_the_z_test_is_null_without_attempts_or_without_variance() -> None:
    x1, n1 = pd.Series([0, 3, 1, 2]), pd.Series([0, 3, 4, 5])
    x2, n2 = pd.Series([1, 4, 0, 3]), pd.Series([2, 4, 6, 0])
    p = pooled_z_test(x1, n1, x2, n2)
    assert p.isna().tolist() == [True, True, False, True]  # no attempts; pooled 1; defined; no attempts
    assert p.iloc[2] == pytest.approx(_p(1, 4, 0, 6), abs=1e-12)
    assert pooled_z_test(pd.Series([0]), pd.Series([5]), pd.Series([0]), pd.Series([7])).isna().all()


def test_config_keys_of_the_observability_tables_fail_at_load_naming_the_key() -> None:
    from kpi_pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r"windows\.retry: Input should be greater than 0, got 0"):
        parse_config({"windows": {"retry": 0}})
    with pytest.raises(ConfigError, match=r"workflows\.w\.latency_budget_ms: Input should be a valid number"):
        parse_config({"workflows": {"w": {"latency_budget_ms": "2s"}}})
    config: KpiConfig = parse_config({"owners": {"releases": "product-team"}})
    assert config.owner_for("releases") == "product-team"
    assert parse_config({}).owner_for("releases") == "product-analytics"
    assert parse_config({}).windows.retry == 24.0


def test_no_attempts_give_empty_tables_with_their_columns() -> None:
    from kpi_pipeline.kpis.releases import RELEASE_ATTEMPT_COLUMNS, RELEASE_EVENT_COLUMNS
    from kpi_pipeline.tables import ATTEMPT_EVENTS, ATTEMPTS, empty_frame, table

    attempts, events = empty_frame(ATTEMPTS), empty_frame(ATTEMPT_EVENTS)
    outputs = {
        "kpi_step_latency_daily": step_latency_daily(events, CONFIG),
        "kpi_errors_daily": errors_daily(attempts, events),
        "kpi_retry_daily": retry_daily(attempts, D, CONFIG),
        "kpi_release_quality": release_quality(
            attempts[list(RELEASE_ATTEMPT_COLUMNS)], events[list(RELEASE_EVENT_COLUMNS)]
        ),
    }
    for name, out in outputs.items():
        assert out.empty and tuple(out.columns) == table(name).column_names, name


def test_the_demo_summary_has_a_line_per_observability_table(built: dict) -> None:
    from kpi_pipeline.summary import errors_line, release_line, retry_line, step_latency_line

    attempts = pd.concat([built[D][0], built[NEXT][0]], ignore_index=True)
    events = pd.concat([built[D][1], built[NEXT][1]], ignore_index=True)
    latency = step_latency_daily(built[D][1], CONFIG)
    assert step_latency_line(latency) == (
        "most often over its latency budget on 2025-01-10: 50.0% of access_request / form_opened, "
        "median 3.0 s, p95 4.8 s"
    )
    unbudgeted = latency.assign(slow_events=pd.NA, slow_rate=float("nan"))
    assert step_latency_line(unbudgeted) == (
        "slowest step on 2025-01-10 (no latency budgets): access_request / form_opened, "
        "median 3.0 s, p95 4.8 s"
    )
    assert errors_line(errors_daily(*built[D])) == (
        "most frequent error over all dates: E1 in access_request, 2 attempts, 50.0% still completed"
    )
    assert retry_line(retry_daily(attempts, D, CONFIG)) == (
        "failed attempts over all dates: 5, retried 60.0%, recovered by the retry 40.0%"
    )
    assert release_line(release_quality(attempts, events)) == (
        "largest completion change between releases: data_export 3.0 -100.0 points against 2.1 (p 0.157)"
    )


def test_release_quality_over_attempts_written_before_releases_says_to_rematerialize(tmp_path: Path) -> None:
    import dagster as dg

    from kpi_pipeline.defs.resources import StagedDays
    from kpi_pipeline.kpis.releases import RELEASE_ATTEMPT_COLUMNS
    from kpi_pipeline.partition_store import PartitionStore
    from kpi_pipeline.tables import ATTEMPTS

    store = PartitionStore(tmp_path)
    old = build_days()[D][0].drop(columns="release")  # as an earlier version stored it
    store.write(("task_attempts",), D.isoformat(), old, None)
    staged = StagedDays(store, ATTEMPTS, ("task_attempts",), (D.isoformat(),))
    with pytest.raises(dg.Failure) as info:
        staged.every_day(RELEASE_ATTEMPT_COLUMNS)
    assert info.value.description == (
        "task_attempts: no stored partition has column(s) release: they were written by an earlier "
        "version; re-materialize task_attempts over every day (kpi-pipeline materialize --start "
        "<first day> --end <last day>)"
    )
