"""Ranged runs (issue 10, item 1) around a blocked day: a failed range runs again one day at a
time, so every day has the outcome and the storage one run per day gives it. Apart from
test_ranged_runs.py so that pytest-xdist (--dist loadfile) runs the two long comparisons at once."""

from __future__ import annotations

import shutil
from pathlib import Path

from kpi_pipeline.runner import Step, StepResult, ranged
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline_tests.support import START
from kpi_pipeline_tests.test_ranged_runs import DAYS, assert_same_storage, run

BLOCKED_DAYS = DAYS[:5]  # the blocked 4th day has days on both sides, and the day before waits


def test_a_blocked_day_runs_its_range_again_one_day_at_a_time(tmp_path: Path) -> None:
    per_day, ranges = tmp_path / "per_day", tmp_path / "ranges"
    generate_dataset(per_day, days=len(BLOCKED_DAYS), users=40, seed=11, start=START)
    blocked_day = BLOCKED_DAYS[3]
    folder = per_day / "raw" / "telemetry" / f"date={blocked_day}"
    # A few hundred valid rows a day: 2,000 broken ones are far above quarantine_rate's 5 % and block the day.
    broken = "".join(f'{{"event_id": "x{n}", "occurred_at": "not a time"\n' for n in range(2_000))
    (folder / "broken.jsonl").write_text(broken, encoding="utf-8")
    shutil.copytree(per_day, ranges)

    daily = run(per_day, lambda steps: steps, days=BLOCKED_DAYS)
    merged = run(ranges, lambda steps: ranged(steps), days=BLOCKED_DAYS)

    [split] = [r for r in merged if r.split]
    assert split.step == Step(
        ("telemetry_events",), BLOCKED_DAYS[0].isoformat(), last=BLOCKED_DAYS[-1].isoformat()
    )
    assert f"telemetry_events {blocked_day} was not stored: quarantine_rate" in split.message

    def outcomes(results: list[StepResult]) -> list[tuple[str, str, bool, bool]]:
        return [
            (r.step.label, ",".join(r.step.assets), r.success, r.skipped)
            for r in results
            if not r.split and r.step.partition
        ]

    # After the split every day has the outcome it has with one run per day: the blocked day and
    # the day before it (its attempts read the blocked day) wait; the others are computed.
    assert sorted(outcomes(merged)) == sorted(outcomes(daily))
    failed = {label for label, _, ok, _ in outcomes(merged) if not ok}
    assert failed == {blocked_day.isoformat(), BLOCKED_DAYS[2].isoformat()}
    assert_same_storage(ranges, per_day)
