"""DuckDB's fast pass over JSONL telemetry changes no outcome (issue 10).

Staging a partition with the fast pass and with the exact reader alone (``fast=False``) must give
the same staged rows (values, types, order), the same quarantine (reasons, files, line numbers,
text) and the same report. Checked on lines picked to hit every guard of the fast pass, on files
DuckDB cannot split as the exact reader does, and on random mixes (Hypothesis). The fast pass
must also really take the plain lines, so the comparison is not between two exact runs.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_pipeline.config import EventAlias
from kpi_pipeline.ingest import jsonl_fast
from kpi_pipeline.ingest.engine import duckdb_connection
from kpi_pipeline.ingest.raw_files import UnreadableFileError
from kpi_pipeline.ingest.telemetry import StagedTelemetry, stage_telemetry_partition

DAY = dt.date(2026, 2, 4)
TS = "2026-02-04T10:00:00Z"
ALIASES = (
    EventAlias(from_="task_done", to="task_completed", valid_from=DAY, valid_until=DAY),
    EventAlias(from_="done_later", to="task_completed", valid_from=DAY + dt.timedelta(days=1)),
)


def event(event_id: Any, /, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": TS,
        "user_id": "u1",
        "account_id": "a1",
        "event_type": "feature_used",
        "feature": "search",
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}


def text(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


PLAIN = [text(event(f"p{i}", duration_ms=i * 10)) for i in range(20)]
# Lines aimed at each guard of the fast pass (and a few the fast pass does take).
TRICKY: list[str] = [
    '{"event_id":"t1","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f",}',  # trailing comma: DuckDB reads it, Python does not
    '{"event_id":"t2","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f","duration_ms":nan}',
    '{"event_id":"t3","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f","extra":inf}',
    '{"event_id":"t4","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f","extra":NaN}',
    '{"event_id":"t5","occurred_at":"2026-02-04T10:00:00Z","user_id":"u\\ud800","account_id":"a",'
    '"event_type":"feature_used","feature":"f"}',  # a lone surrogate: malformed for Python
    '{"event_id":"t6","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","user_id":"v","account_id":"a",'
    '"event_type":"feature_used","feature":"f"}',  # a key twice: Python keeps the last value
    '{"event_id":"t6b","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f","x":1,"x":null}',
    text(event("t7", duration_ms=1e300 * 10)).replace("Infinity", "1e400"),
    '{"event_id":"t8","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f","duration_ms":12345678901234567}',
    text(event("t9", duration_ms=0.1)),
    text(event("t10", duration_ms=123.456789012345678)),
    text(event("t11", duration_ms=-5)),
    '{"event_id":"t12","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f","duration_ms":-0}',
    text(event("t13", duration_ms=-0.0)),
    text(event("t14", duration_ms="42")),
    text(event("t15", duration_ms=True)),
    text(event("t16", user_id=" u")),
    text(event("t17", user_id="\u3000")),
    text(event("t18", user_id="\u00e9mile")),
    text(event("t19", persona=" ")),
    text(event("t20", persona="")),
    text(event("t21", persona="\u2003")),
    text(event("t22", channel=None, environment="")),
    text(event("t23", occurred_at="2026-02-04t10:00:00Z")),
    text(event("t24", occurred_at="2026-02-04 10:00:00")),
    text(event("t25", occurred_at="2026-02-04T10:00:00.1234567Z")),
    text(event("t26", occurred_at="2026-02-04T10:00:00")),
    text(event("t27", occurred_at="2026-02-04T23:30:00-02:00")),
    text(event("t28", occurred_at="2026-02-05T01:00:00+02:00")),
    text(event("t29", occurred_at="2026-02-30T10:00:00Z")),
    text(event("t30", occurred_at=" 2026-02-04T10:00:00Z")),
    text(event("t31", occurred_at="2026-02-04T24:00:00Z")),
    text(event("t32", event_type="task_done", workflow="w", task_id="k")),
    text(event("t33", event_type="done_later", workflow="w", task_id="k")),
    text(event("t34", event_type="task_step", workflow="w", task_id="k")),
    text(event("t35", event_type="help_viewed", topic="")),
    text(event("t36", feature=["a", "b"])),
    text(event("t37", feature={"name": "a"})),
    text(event("t38", feature=7)),
    text(event("t39", feature="x" * 5000)),
    text(event("t40", release="r" * 4100)),
    text(event("t41", session_id=None, other=3)),
    text(event("t42", session_id="s", nested={"a": [1, None]})),
    text(event("t43", **{"odd key": 1})),
    text(event("t44", **{"": 1})),
    text(event("p3")),  # a duplicate of a plain line's id
    text(event("t9")),  # a duplicate of a tricky line's id
    '{"event_id":"t45","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"tab\tinside"}',
    '  {"event_id":"t46","occurred_at":"2026-02-04T10:00:00Z","user_id":"u","account_id":"a",'
    '"event_type":"feature_used","feature":"f"}  ',
    '{"event_id": "t47", "occurred_at": "2026-02-04T10:00:00Z", "user_id": "u", "account_id": "a", '
    '"event_type": "feature_used", "feature": "f" , "extra": null}',
    "[1, 2]",
    "not json",
    '{"event_id":"t48"',
    "",
    "   ",
    text(event(7)),
    text(event("t50", user_id="a\\u0000b")),
    text(event("t51", user_id="caf\u00e9", topic="x\\n")),
    text(event("t52", event_type="unknown_kind")),
    text(event("t53", occurred_at="2026-02-03T10:00:00Z")),
    text(event("t54", error_code="E1", step="s")),
    # Unknown fields whose values the exact reader counts differently (a null inside a list, objects
    # without a name in a list) or not at all: the line is for it to count.
    text(event("t55", x=[1, None])),
    text(event("t56", x=["a", None], y=3)),
    text(event("t57", x=[{"name": "a"}, {"b": 1}])),
    text(event("t58", x=[{"name": "a"}, {}])),
    text(event("t59", x={"a": None})),
]


def write(root: Path, name: str, data: bytes) -> None:
    folder = root / "raw" / "telemetry" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def assert_same(root: Path, aliases: Sequence[EventAlias] = ALIASES) -> StagedTelemetry:
    """Stage ``root``'s partition both ways; the two results must be identical."""
    fast = stage_telemetry_partition(root, DAY, aliases)
    exact = stage_telemetry_partition(root, DAY, aliases, fast=False)
    pd.testing.assert_frame_equal(fast.events, exact.events)
    pd.testing.assert_frame_equal(fast.quarantine, exact.quarantine)
    assert fast.report == exact.report
    return fast


def fast_lines(path: Path) -> int:
    """How many of the file's lines the fast pass takes."""
    con = duckdb_connection()
    try:
        return jsonl_fast.read_fast(con, path, "judged", DAY, ALIASES).fast_rows
    finally:
        con.close()


def test_plain_lines_take_the_fast_pass_and_every_guarded_line_the_exact_one(tmp_path: Path) -> None:
    write(tmp_path, "plain.jsonl", ("\n".join(PLAIN) + "\n").encode())
    assert fast_lines(tmp_path / "raw/telemetry/date=2026-02-04/plain.jsonl") == len(PLAIN)
    for index, line in enumerate(TRICKY):
        root = tmp_path / f"case{index}"
        write(root, "events.jsonl", (line + "\n").encode())
        assert_same(root)


def test_a_mixed_day_stages_the_same_with_and_without_the_fast_pass(tmp_path: Path) -> None:
    lines = [x for pair in zip(PLAIN, TRICKY, strict=False) for x in pair] + TRICKY[len(PLAIN) :]
    write(tmp_path, "a.jsonl", ("\n".join(lines) + "\n").encode())
    # A second file repeats ids of the first (duplicates across files, in file order).
    write(tmp_path, "b.jsonl.gz", gzip.compress(("\n".join(reversed(lines)) + "\n").encode()))
    write(
        tmp_path,
        "c.csv",
        b"event_id,occurred_at,user_id,account_id,event_type,feature\np5,"
        + TS.encode()
        + b",u,a,feature_used,f\n",
    )
    staged = assert_same(tmp_path)
    # Hand-checked points of the result: the plain lines are staged once, the second file's copies
    # and the CSV's copy of p5 are duplicates, aliased events are counted as completions.
    assert staged.events["event_id"].is_unique
    assert set(PLAIN_IDS) <= set(staged.events["event_id"])
    duplicates = staged.quarantine[staged.quarantine["reason"] == "duplicate_event_id"]
    assert ("raw/telemetry/date=2026-02-04/c.csv", 2) in set(
        zip(duplicates["file"], duplicates["line"], strict=True)
    )
    completed = staged.events.set_index("event_id").loc["t32", "event_type"]
    assert completed == "task_completed"
    assert staged.report.raw_rows == staged.report.staged_rows + staged.report.quarantined_rows


PLAIN_IDS = [f"p{i}" for i in range(20)]


@pytest.mark.parametrize(
    "data",
    [
        ("\r\n".join(PLAIN[:5]) + "\r\n").encode(),  # CRLF throughout
        ("\n".join(PLAIN[:3]) + "\r\n" + PLAIN[3] + "\n").encode(),  # mixed line breaks
        (PLAIN[0] + "\r" + PLAIN[1] + "\n" + PLAIN[2] + "\n").encode(),  # a lone carriage return
        (PLAIN[0] + "\n" + PLAIN[1].replace("search", "se\x1farch") + "\n").encode(),  # a unit separator
        ("\ufeff" + "\n".join(PLAIN[:3]) + "\n").encode(),  # a byte-order mark
        ("\n".join(PLAIN[:3])).encode(),  # no final line break
        b"",
        ("# a comment line\n" + PLAIN[0] + "\n#x\n" + PLAIN[1] + "\n").encode(),  # not a comment to DuckDB
        (PLAIN[0] + "\n" + PLAIN[0] + "\n\x1f\n").encode(),  # a line of only the unit separator
    ],
    ids=[
        "crlf",
        "mixed-breaks",
        "lone-cr",
        "unit-separator",
        "bom",
        "no-final-break",
        "empty",
        "hash-lines",
        "separator-line",
    ],
)
def test_files_duckdb_splits_differently_stage_the_same(tmp_path: Path, data: bytes) -> None:
    write(tmp_path, "events.jsonl", data)
    assert_same(tmp_path)


def test_counts_of_unknown_fields_agree_over_several_lines(tmp_path: Path) -> None:
    lines = [text(event("u1", x=[1])), text(event("u2", x=[1, None])), text(event("u3", x=[1]))]
    write(tmp_path, "events.jsonl", ("\n".join(lines) + "\n").encode())
    staged = assert_same(tmp_path)
    # Every line holds a value ([1, null] is the text "1;" on the exact reader's columnar path too).
    assert staged.report.unknown_fields == {"x": 3}
    one = tmp_path / "one"
    write(one, "events.jsonl", (text(event("u9", x=[1, None])) + "\n").encode())
    assert assert_same(one).report.unknown_fields == {"x": 1}


@pytest.mark.parametrize("damage", ["crc", "length"])
def test_a_gzip_file_with_a_broken_trailer_is_refused_as_before(tmp_path: Path, damage: str) -> None:
    packed = gzip.compress(("\n".join(PLAIN[:3]) + "\n").encode())
    broken = packed[:-8] + b"\0\0\0\0" + packed[-4:] if damage == "crc" else packed[:-4] + b"\0\0\0\0"
    write(tmp_path, "events.jsonl.gz", broken)
    assert not jsonl_fast.eligible(tmp_path / "raw/telemetry/date=2026-02-04/events.jsonl.gz")
    with pytest.raises(UnreadableFileError, match=r"events\.jsonl\.gz: not a valid gzip file"):
        stage_telemetry_partition(tmp_path, DAY, ALIASES)


def test_a_file_that_is_not_utf8_fails_naming_the_file_as_before(tmp_path: Path) -> None:
    write(tmp_path, "events.jsonl", (PLAIN[0] + "\n").encode() + b"\xff\xfe broken\n")
    with pytest.raises(UnreadableFileError, match=r"events\.jsonl: not UTF-8 text \(invalid byte at offset"):
        stage_telemetry_partition(tmp_path, DAY, ALIASES)


# --- random mixes -------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.sampled_from(["", " ", "x", " x ", "\u3000", "\u00e9", "a\tb", "task_done", "feature_used"]),
    st.text(max_size=6),
    st.integers(-3, 10**17),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.lists(st.sampled_from(["a", 1, None]), max_size=2),
)
_TIMES = st.sampled_from(
    [
        TS,
        "2026-02-04T00:00:00.5+00:30",
        "2026-02-04T23:59:59.999999Z",
        "2026-02-04 10:00",
        "2026-02-05T00:00:00Z",
        "2026-02-04T10:00:00.123456789Z",
        "x",
        "",
    ]
)
_TYPES = st.sampled_from(["feature_used", "task_started", "task_step", "help_viewed", "task_done", "nope"])


@st.composite
def records(draw: st.DrawFn) -> str:
    record = event(
        draw(st.sampled_from(["e1", "e2", "e3", "e4", "e5", "e6"])),
        occurred_at=draw(_TIMES),
        event_type=draw(_TYPES),
        workflow=draw(st.sampled_from(["w", "", ...])),
        task_id=draw(st.sampled_from(["k", ...])),
        step=draw(st.sampled_from(["s", ...])),
        topic=draw(st.sampled_from(["t", " ", ...])),
    )
    for name in draw(
        st.lists(st.sampled_from(["user_id", "persona", "duration_ms", "session_id", "feature"]), max_size=3)
    ):
        record[name] = draw(_VALUES)
    line = json.dumps(
        record, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    )
    damage = draw(st.sampled_from(["none"] * 6 + ["trailing-comma", "cut", "nan-token", "garbage"]))
    if damage == "trailing-comma":
        line = line[:-1] + ",}"
    elif damage == "cut":
        line = line[: len(line) // 2]
    elif damage == "nan-token":
        line = line[:-1] + ',"z":nan}'
    elif damage == "garbage":
        line = draw(st.text(max_size=10))
    return line.replace("\n", " ").replace("\r", " ")


@settings(deadline=None)
@given(lines=st.lists(records(), min_size=1, max_size=12), split=st.integers(0, 12))
def test_random_mixes_stage_the_same_with_and_without_the_fast_pass(lines: list[str], split: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, "a.jsonl", ("\n".join(lines[:split]) + "\n").encode())
        write(root, "b.jsonl", ("\n".join(lines[split:]) + "\n").encode())
        assert_same(root)


def test_a_file_name_duckdb_would_read_as_a_pattern_is_read_the_exact_way(tmp_path: Path) -> None:
    """``a[1].jsonl`` as a DuckDB path is a pattern matching ``a1.jsonl``: such a file is read the
    exact way, and its neighbour is not read twice."""
    write(tmp_path, "a[1].jsonl", (PLAIN[0] + "\n").encode())
    write(tmp_path, "a1.jsonl", (PLAIN[1] + "\n").encode())
    folder = tmp_path / "raw/telemetry/date=2026-02-04"
    assert not jsonl_fast.eligible(folder / "a[1].jsonl")
    assert jsonl_fast.eligible(folder / "a1.jsonl")
    staged = assert_same(tmp_path)
    assert staged.report.raw_rows == 2
    # Files in path order: "a1.jsonl" sorts before "a[1].jsonl".
    assert staged.events["event_id"].tolist() == [
        json.loads(PLAIN[1])["event_id"],
        json.loads(PLAIN[0])["event_id"],
    ]
