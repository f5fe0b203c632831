"""The outdated rule on a small hand-built graph: which built partitions read something newer."""

from __future__ import annotations

from kpi_pipeline.automation.outdated import UNPARTITIONED, Node, Read, day_ranges, outdated, reached

DAYS = [f"2025-01-0{d}" for d in range(1, 6)]
NODES = [
    Node("telemetry", True),
    Node("tickets", False),
    Node("starts", True, (Read("telemetry", (0, 0)), Read("starts", (-1, -1)))),
    Node("attempts", True, (Read("telemetry", (0, 1)), Read("tickets"), Read("starts", (-1, 0)))),
    Node("completion", True, (Read("attempts", (0, 0)),)),
    Node("scorecard", False, (Read("completion"),)),
]


def built(**newer: dict[str, int]) -> dict[str, dict[str, int]]:
    """Every partition built once, in dependency order (ids 1 …), then ``newer`` rebuilds."""
    ids = iter(range(1, 1000))
    out = {
        "telemetry": {d: next(ids) for d in DAYS},
        "tickets": {UNPARTITIONED: next(ids)},
        "starts": {d: next(ids) for d in DAYS},
        "attempts": {d: next(ids) for d in DAYS},
        "completion": {d: next(ids) for d in DAYS},
        "scorecard": {UNPARTITIONED: next(ids)},
    }
    for name, partitions in newer.items():
        out[name] = {**out[name], **partitions}
    return out


def test_nothing_is_outdated_when_every_partition_was_built_after_what_it_reads() -> None:
    assert outdated(NODES, built()) == {}


def test_a_restaged_day_outdates_the_days_whose_window_reads_it_and_everything_below() -> None:
    # telemetry of the 3rd re-staged: starts of the 3rd (not the 4th: starts' own chain is not
    # followed); attempts of the 2nd (reads telemetry of the 2nd … 3rd), the 3rd, and the 4th (reads
    # starts of the 3rd … 4th); completion of those days; the scorecard over all days.
    found = outdated(NODES, built(telemetry={"2025-01-03": 500}))
    assert found == {
        "starts": {"2025-01-03": "telemetry"},
        "attempts": {"2025-01-02": "telemetry", "2025-01-03": "telemetry, starts", "2025-01-04": "starts"},
        "completion": {"2025-01-02": "attempts", "2025-01-03": "attempts", "2025-01-04": "attempts"},
        "scorecard": {UNPARTITIONED: "completion"},
    }


def test_a_partition_rebuilt_after_its_inputs_is_current_again() -> None:
    fixed = built(
        telemetry={"2025-01-03": 500},
        starts={"2025-01-03": 501},
        attempts={"2025-01-02": 502, "2025-01-03": 503, "2025-01-04": 504},
        completion={"2025-01-02": 505, "2025-01-03": 506, "2025-01-04": 507},
    )
    assert outdated(NODES, fixed) == {"scorecard": {UNPARTITIONED: "completion"}}
    assert outdated(NODES, {**fixed, "scorecard": {UNPARTITIONED: 508}}) == {}


def test_an_unpartitioned_input_outdates_every_day_that_reads_it() -> None:
    found = outdated(NODES, built(tickets={UNPARTITIONED: 500}))
    assert found["attempts"] == dict.fromkeys(DAYS, "tickets")
    assert found["completion"] == dict.fromkeys(DAYS, "attempts")
    assert set(found) == {"attempts", "completion", "scorecard"}


def test_changed_raw_files_outdate_their_staged_day_and_what_reads_it() -> None:
    found = outdated(NODES, built(), changed={"telemetry": ["2025-01-05"]})
    assert found["telemetry"] == {"2025-01-05": "raw files"}
    assert found["attempts"] == {"2025-01-04": "telemetry", "2025-01-05": "telemetry, starts"}
    assert found["starts"] == {"2025-01-05": "telemetry"}
    assert found["scorecard"] == {UNPARTITIONED: "completion"}


def test_missing_partitions_are_not_outdated_and_missing_inputs_are_ignored() -> None:
    partial = built()
    del partial["telemetry"]["2025-01-02"]  # a day with no staged data: its readers read nothing there
    del partial["completion"]["2025-01-01"]  # never built: missing, not outdated
    partial["attempts"]["2025-01-01"] = 400  # newer than the completion of the 1st would be
    assert outdated(NODES, partial) == {}


def test_day_ranges_joins_consecutive_days() -> None:
    days = ["2025-01-05", "2025-01-01", "2025-01-02", "2025-01-03", "2025-01-09"]
    assert day_ranges(days) == "2025-01-01 … 2025-01-03, 2025-01-05, 2025-01-09"
    assert day_ranges([]) == ""


def test_reached_lists_what_a_run_changes_outside_itself_through_the_graph() -> None:
    """A run that re-stages telemetry of the 3rd and recomputes attempts of the 3rd: starts of the
    3rd and attempts of the 2nd read the new telemetry (the 4th's attempts read the 3rd's starts),
    completion of the 2nd … 4th reads those attempts, and the scorecard reads completion; the run's
    own partitions are left out, and only partitions that exist are listed."""
    present = {name: DAYS for name in ("telemetry", "starts", "attempts", "completion")}
    present |= {"tickets": [UNPARTITIONED], "scorecard": [UNPARTITIONED]}
    changed = {"telemetry": ["2025-01-03"], "attempts": ["2025-01-03"]}
    assert reached(NODES, present, changed) == {
        "starts": {"2025-01-03": "telemetry"},
        "attempts": {"2025-01-02": "telemetry", "2025-01-04": "starts"},
        "completion": {"2025-01-02": "attempts", "2025-01-03": "attempts", "2025-01-04": "attempts"},
        "scorecard": {UNPARTITIONED: "completion"},
    }
    # Without the 2nd and 4th staged, only the 3rd's own readers are reached.
    only = {name: ["2025-01-03"] for name in ("telemetry", "starts", "attempts", "completion")}
    assert reached(NODES, only, changed) == {
        "starts": {"2025-01-03": "telemetry"},
        "completion": {"2025-01-03": "attempts"},
    }
