"""Property-based tests of raw-file parsing (issue 9).

Random mixes of valid records and broken ones (text that is not JSON, truncated and
trailing-comma JSON, wrong JSON types in every field, NaN and Infinity, random CSV quoting with
delimiters, quotes and line breaks inside values, unterminated quotes, rows of the wrong width,
BOMs, CRLF and blank lines) are written as a telemetry partition or a ticket export and staged
end to end. For every example: nothing crashes, raw = staged + quarantined, every quarantine row
has the reason the generator gave its record, the line where the record starts and the record's
text, and exactly the valid records are staged. CSV record splitting is also checked against a
plain sequential reading of the documented rule on random text.

Profiles (``kpi_pipeline_tests/conftest.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=thorough``
for a longer hunt.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    DUPLICATE_EVENT_ID,
    MALFORMED,
    OUTSIDE_PARTITION,
    TICKET_FIELDS,
    UNKNOWN_EVENT_TYPE,
)
from kpi_pipeline.ingest.raw_files import read_table_file
from kpi_pipeline.ingest.telemetry import stage_telemetry_partition
from kpi_pipeline.ingest.tickets import stage_tickets

DAY = dt.date(2026, 2, 4)
PARTITION = "raw/telemetry/date=2026-02-04"
TS = "2026-02-04T10:00:00Z"
OTHER_DAY = "2026-02-05T10:00:00Z"
BOM = "\ufeff"
BLANK = re.compile(r"[ \t\f\r]*")  # what the reader takes for a blank line (RE2's \s, no line break)
REASON = re.compile(
    r"malformed_record|missing_field:\w+|bad_timestamp|outside_partition|unknown_event_type|"
    r"bad_value:\w+|duplicate_event_id"
)
NOT_A_ROW = ""  # the reason of a blank line: it is no raw row


@dataclass
class Item:
    """One generated record (or blank line): its text without the final line break, the outcome
    the contract gives it (None: staged; NOT_A_ROW: a blank line), and its staged id and values."""

    text: str
    reason: str | None
    key: str | None = None
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class Example:
    name: str
    items: list[Item]
    header: str | None
    endings: list[str]
    bom: bool
    leading_blanks: int = 0

    def content(self) -> str:
        """The file's text; the last record may end without a line break."""
        parts = ["\n" * self.leading_blanks]
        if self.header is not None:
            parts.append(self.header + "\n")
        parts += [item.text + ending for item, ending in zip(self.items, self.endings, strict=True)]
        return (BOM if self.bom else "") + "".join(parts)

    def starts(self) -> list[int]:
        """The 1-based line where each item starts (header = the first non-blank line)."""
        line = 1 + self.leading_blanks + (self.header is not None)
        out = []
        for item in self.items:
            out.append(line)
            line += item.text.count("\n") + 1
        return out

    def expected(self, file: str) -> tuple[list[str], list[tuple[str, int, str, str]], int]:
        """(staged keys in line order, quarantine rows, raw rows)."""
        rows = [(start, item) for start, item in zip(self.starts(), self.items, strict=True)]
        rows = [(start, item) for start, item in rows if item.reason != NOT_A_ROW]
        staged = [item.key for _, item in rows if item.reason is None]
        quarantined = [
            (file, start, item.reason, item.text) for start, item in rows if item.reason is not None
        ]
        return staged, quarantined, len(rows)


def endings(count: int) -> st.SearchStrategy[list[str]]:
    """A line break after each record, LF or CRLF; the last one may be missing."""
    return st.tuples(
        st.lists(st.sampled_from(["\n", "\r\n"]), min_size=count, max_size=count),
        st.sampled_from(["\n", "\r\n", ""]),
    ).map(lambda pair: [*pair[0][:-1], pair[1]] if count else [])


BLANK_LINES = st.sampled_from(["", " ", "\t", "  \t "])
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def check_outcome(staged: Any, example: Example, file: str, key: str, values: Sequence[str] = ()) -> None:
    """The staged keys (and ``values`` of each staged record), the exact quarantine and the
    reconciliation the generator expects."""
    keys, quarantined, raw_rows = example.expected(file)
    table = staged.events if hasattr(staged, "events") else staged.records
    q = staged.quarantine
    got = list(zip(q["file"], q["line"].tolist(), q["reason"], q["raw"], strict=True))
    assert got == quarantined
    assert all(REASON.fullmatch(reason) for reason in q["reason"])
    assert table[key].tolist() == keys
    report = staged.report
    assert report.raw_rows == raw_rows
    assert report.raw_rows == report.staged_rows + report.superseded_versions + report.quarantined_rows
    by_key = {item.key: item.values for item in example.items if item.reason is None}
    for name in values:
        assert [None if pd.isna(v) else v for v in table[name]] == [by_key[k].get(name) for k in keys]


# --- JSON lines ---------------------------------------------------------------------------------

TYPES = {
    "feature_used": {"feature": "search"},
    "help_viewed": {"topic": "billing"},
    "task_started": {"workflow": "access_request", "task_id": "t1"},
    "task_step": {"workflow": "access_request", "task_id": "t1", "step": "submitted"},
}
OPTIONAL_TEXT = ("persona", "channel", "device", "release", "error_code", "environment")
SCALARS = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=6),
)
JSON_VALUES = st.recursive(
    SCALARS | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
RAW = "\u0000raw\u0000"  # placeholder for a token json.dumps cannot write (1e400)


def _event(draw: st.DrawFn, event_id: str) -> dict[str, Any]:
    event_type = draw(st.sampled_from(sorted(TYPES)))
    record: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": draw(st.sampled_from([TS, "2026-02-04T23:59:59.999+00:00", "2026-02-04 08:00:00"])),
        "user_id": draw(NAMES),
        "account_id": draw(NAMES),
        "event_type": event_type,
        **TYPES[event_type],
    }
    for name in draw(st.lists(st.sampled_from(OPTIONAL_TEXT), unique=True, max_size=3)):
        record[name] = draw(st.text(max_size=10))
    duration = draw(st.sampled_from([None, 0, 12.5, "7", " 1500.5 ", "", 99999999999999999999, "absent"]))
    if duration != "absent":
        record["duration_ms"] = duration
    if draw(st.booleans()):
        record[draw(st.sampled_from(["session", "tags", "meta"]))] = draw(JSON_VALUES)
    return record


def _dumps(draw: st.DrawFn, record: dict[str, Any], raw: str = "") -> str:
    keys = draw(st.permutations(list(record)))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    text = json.dumps({k: record[k] for k in keys}, separators=separators, ensure_ascii=draw(st.booleans()))
    return text.replace(json.dumps(RAW), raw) if raw else text


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text, parse_constant=str), dict)
    except (ValueError, RecursionError):
        return False


def _missing(draw: st.DrawFn, record: dict[str, Any], name: str) -> None:
    how = draw(st.sampled_from(["absent", None, "", "   "]))
    if how == "absent":
        del record[name]
    else:
        record[name] = how


@st.composite
def jsonl_item(draw: st.DrawFn, index: int, staged_ids: list[str]) -> Item:
    """A valid event, an event with one bad field (a known reason), a broken line or a blank one."""
    event_id = f"e{index}"
    record = _event(draw, event_id)
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "odd_type",
                "missing",
                "timestamp",
                "event_type",
                "duration",
                "duplicate",
                "truncated",
                "trailing_comma",
                "not_json",
                "surrogate",
                "blank",
            ]
        )
    )
    if kind == "blank":
        return Item(draw(BLANK_LINES), NOT_A_ROW)
    pad = draw(st.sampled_from(["", " ", "\t"]))
    if kind == "valid":
        return Item(pad + _dumps(draw, record) + pad, None, event_id)
    if kind == "odd_type":
        # Any JSON type in a text field is text (numbers as written, lists and objects as JSON).
        name = draw(st.sampled_from(["user_id", "account_id", *OPTIONAL_TEXT]))
        record[name] = draw(
            st.one_of(
                st.integers(),
                st.booleans(),
                st.lists(SCALARS, min_size=1, max_size=3),
                st.dictionaries(st.text(max_size=3), SCALARS, min_size=1, max_size=2),
            )
        )
        return Item(_dumps(draw, record), None, event_id)
    if kind == "missing":
        name = draw(
            st.sampled_from(["event_id", "occurred_at", "user_id", "account_id", "event_type", "type"])
        )
        name = next(iter(TYPES[record["event_type"]])) if name == "type" else name
        _missing(draw, record, name)
        return Item(_dumps(draw, record), f"missing_field:{name}")
    if kind == "timestamp":
        record["occurred_at"] = draw(
            st.sampled_from(["yesterday", True, [1], {"a": 1}, "2026-02-30T00:00:00Z", OTHER_DAY])
        )
        reason = OUTSIDE_PARTITION if record["occurred_at"] == OTHER_DAY else BAD_TIMESTAMP
        return Item(_dumps(draw, record), reason)
    if kind == "event_type":
        record["event_type"] = draw(st.sampled_from(["task_done", 7, ["feature_used"], {"t": "x"}]))
        return Item(_dumps(draw, record), UNKNOWN_EVENT_TYPE)
    if kind == "duration":
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1e309", "-1", "-0.5"]))
        value = draw(st.sampled_from([RAW, "abc", [5], {"v": 1}, True, "-2", "NaN", "1e400"]))
        record["duration_ms"] = value
        return Item(_dumps(draw, record, token if value == RAW else ""), "bad_value:duration_ms")
    if kind == "duplicate":
        assume(staged_ids)
        record["event_id"] = draw(st.sampled_from(staged_ids))
        return Item(_dumps(draw, record), DUPLICATE_EVENT_ID)
    if kind == "truncated":
        text = _dumps(draw, record)
        cut = text[: draw(st.integers(1, len(text) - 1))]
        assume(not BLANK.fullmatch(cut))
        return Item(cut, MALFORMED)
    if kind == "trailing_comma":
        odd = draw(st.sampled_from([{}, {"duration_ms": "1500"}, {"feature": ["f"]}, {"user_id": 7}]))
        return Item(_dumps(draw, {**record, **odd})[:-1] + ",}", MALFORMED)
    if kind == "surrogate":
        record["device"] = "\ud800"
        return Item(json.dumps(record), MALFORMED)
    text = draw(
        st.one_of(
            st.text(
                st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
                min_size=1,
                max_size=40,
            ),
            st.sampled_from(
                [
                    "[1, 2]",
                    '"text"',
                    "5",
                    "null",
                    "nan",
                    "{'a': 1}",
                    '{"a":1}{"b":2}',
                    '{"a":1} // c',
                    "{",
                    "}",
                    "{}}",
                    '{"a":01}',
                    '{"a":.5}',
                    '{"a":1,}',
                    "\ufeff{}",
                ]
            ),
        )
    )
    assume(not BLANK.fullmatch(text) and not _is_json_object(text))
    return Item(text, MALFORMED)


@st.composite
def jsonl_partitions(draw: st.DrawFn) -> Example:
    items: list[Item] = []
    staged_ids: list[str] = []
    for index in range(draw(st.integers(1, 14))):
        item = draw(jsonl_item(index, staged_ids))
        items.append(item)
        if item.reason is None:
            staged_ids.append(item.key or "")
    name = draw(st.sampled_from(["events.jsonl", "events.jsonl.gz"]))
    example = Example(name, items, None, draw(endings(len(items))), draw(st.booleans()))
    assume(example.bom or not example.content().startswith(BOM))  # a leading U+FEFF is the BOM
    return example


def _write_example(root: Path, relative: str, example: Example) -> None:
    data = example.content().encode("utf-8")
    if relative.endswith(".gz"):
        data = gzip.compress(data)
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@given(jsonl_partitions())
def test_random_jsonl_partitions_stage_exactly_the_valid_events(example: Example) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        file = f"{PARTITION}/{example.name}"
        _write_example(root, file, example)
        staged = stage_telemetry_partition(root, DAY, ())
        check_outcome(staged, example, file, "event_id")


# --- CSV ------------------------------------------------------------------------------------------

PIECES = ["a", "b", "Z", " ", ",", ";", '"', "\n", "\r\n", "\r", "é", "\t", "''"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=6).map(lambda parts: "v" + "".join(parts))
SAFE = st.lists(st.sampled_from(["a", "b", " ", ";", "é", '"']), max_size=5).map(
    lambda parts: "w" + "".join(parts)
)


def _needs_quotes(value: str) -> bool:
    return value.startswith('"') or any(c in value for c in ",\r\n")


def _cell(draw: st.DrawFn, value: str) -> str:
    if value and (_needs_quotes(value) or draw(st.booleans())):
        return '"' + value.replace('"', '""') + '"'
    return value


def _row(draw: st.DrawFn, header: Sequence[str], values: dict[str, str]) -> str:
    return ",".join(_cell(draw, values.get(name, "")) for name in header)


def _single_line_row(draw: st.DrawFn, header: Sequence[str], values: dict[str, str]) -> list[str]:
    """The cells of a row whose values hold no line break."""
    return [_cell(draw, re.sub(r"[\r\n]", "_", values.get(name, ""))) for name in header]


def _broken_row(draw: st.DrawFn, header: Sequence[str], values: dict[str, str]) -> Item | None:
    """A row that cannot be a record: the wrong number of cells, a quote left open, or a carriage
    return outside quotes; None when the draw asks for no broken row."""
    kind = draw(st.sampled_from(["none", "wider", "narrower", "unterminated", "carriage_return"]))
    if kind == "none":
        return None
    cells = _single_line_row(draw, header, values)
    if kind == "wider":
        cells.append(_cell(draw, draw(SAFE)))
    elif kind == "narrower":
        cells = cells[: draw(st.integers(1, len(cells) - 1))]
    elif kind == "unterminated":
        # The quote opens the last cell and nothing closes it on the line.
        junk = draw(st.text(alphabet="ab ,;é'", max_size=8))
        cells[-1] = '"' + junk
    else:
        at = draw(st.integers(0, len(cells) - 1))
        cells[at] = cells[at].strip('"') + "\rx" if not cells[at].startswith('"') else "y\rx"
    return Item(",".join(cells), MALFORMED)


def reference_records(
    text: str, width: int, first_line: int
) -> tuple[list[tuple[int, int, list[str | None]]], list[tuple[int, int]]]:
    """The documented CSV rule read character by character: (records as (first line, last line,
    values), malformed records as (first line, last line)), lines 1-based, from ``first_line``.

    Quotes work as in pyarrow and Python's csv module: a quote at the start of a field opens a
    quoted value, ``""`` inside it is a quote, any other quote closes it; elsewhere a quote is a
    literal character. A quote still open at the end of the file, or a record spanning lines
    without ``width`` fields, makes the opening line alone malformed and reading resumes at the
    next line. A record of the wrong width or with a carriage return outside quotes that does not
    end its line is malformed. Blank lines outside quoted values are no records.
    """
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    if starts[-1] == len(text):
        starts.pop()
    records: list[tuple[int, int, list[str | None]]] = []
    malformed: list[tuple[int, int]] = []
    line = first_line - 1
    while line < len(starts):
        begin = starts[line]
        end_of_line = starts[line + 1] if line + 1 < len(starts) else len(text)
        if BLANK.fullmatch(text[begin:end_of_line].rstrip("\n")):
            line += 1
            continue
        values: list[str | None] = []
        value: list[str] = []
        state, i, lone_cr = "start", begin, False
        while i < len(text):
            c = text[i]
            if state == "quoted":
                if c == '"' and text[i + 1 : i + 2] == '"':
                    value.append('"')
                    i += 2
                    continue
                if c == '"':
                    state = "field"
                else:
                    value.append(c)
                i += 1
                continue
            if c == "\n" or (c == "\r" and text[i + 1 : i + 2] in ("\n", "")):
                break
            if c == "\r":
                lone_cr = True
            if c == ",":
                values.append("".join(value))
                value, state = [], "start"
            elif c == '"' and state == "start":
                state = "quoted"
            else:
                value.append(c)
                state = "field"
            i += 1
        if state == "quoted":
            malformed.append((line + 1, line + 1))
            line += 1
            continue
        values.append("".join(value))
        last = text.count("\n", begin, i) + line
        if last > line and len(values) != width:
            malformed.append((line + 1, line + 1))
            line += 1
            continue
        if lone_cr or len(values) != width:
            malformed.append((line + 1, last + 1))
        else:
            records.append((line + 1, last + 1, [v if v != "" else None for v in values]))
        line = last + 1
    return records, malformed


def _ends_as_intended(example: Example) -> bool:
    """Whether the rule splits the file into the generated records (a quote left open can, by
    chance, be closed by a later line into a record of the right width)."""
    text = example.content().removeprefix(BOM)
    width = len((example.header or "").split(","))
    records, malformed = reference_records(text, width, 2 + example.leading_blanks)
    got = sorted([(first, last) for first, last, _ in records] + malformed)
    want = [
        (start, start + item.text.count("\n"))
        for start, item in zip(example.starts(), example.items, strict=True)
        if item.reason != NOT_A_ROW
    ]
    return got == want


EVENT_COLUMNS = (
    "event_id",
    "occurred_at",
    "user_id",
    "account_id",
    "event_type",
    "workflow",
    "task_id",
    "step",
    "feature",
    "topic",
    "persona",
    "device",
    "duration_ms",
    "note",
)


@st.composite
def csv_event_item(draw: st.DrawFn, index: int, header: Sequence[str], staged_ids: list[str]) -> Item:
    event_id = f"c{index}"
    event_type = draw(st.sampled_from(sorted(TYPES)))
    values = {
        "event_id": event_id,
        "occurred_at": TS,
        "user_id": draw(NAMES),
        "account_id": draw(NAMES),
        "event_type": event_type,
        **TYPES[event_type],
        "feature": draw(TEXT) if event_type == "feature_used" else draw(st.sampled_from(["", "x"])),
        "device": draw(st.sampled_from(["", "ios", ' 5" screen ', "a,b"])),
        "note": draw(TEXT),
        "duration_ms": draw(st.sampled_from(["", "12.5", " 7 ", "99999999999999999999"])),
    }
    broken = _broken_row(draw, header, values) if draw(st.integers(0, 4)) == 0 else None
    if broken is not None:
        return broken
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "valid",
                "missing",
                "timestamp",
                "event_type",
                "duration",
                "duplicate",
                "blank",
            ]
        )
    )
    reason: str | None = None
    if kind == "blank":
        return Item(draw(BLANK_LINES), NOT_A_ROW)
    if kind == "missing":
        name = draw(
            st.sampled_from(["event_id", "occurred_at", "user_id", "account_id", "event_type", "type"])
        )
        name = next(iter(TYPES[event_type])) if name == "type" else name
        values[name] = draw(st.sampled_from(["", "  "]))
        reason = f"missing_field:{name}"
    elif kind == "timestamp":
        values["occurred_at"] = draw(st.sampled_from(["yesterday", "2026-02-30T00:00:00Z", OTHER_DAY]))
        reason = OUTSIDE_PARTITION if values["occurred_at"] == OTHER_DAY else BAD_TIMESTAMP
    elif kind == "event_type":
        values["event_type"] = "task_done"
        reason = UNKNOWN_EVENT_TYPE
    elif kind == "duration":
        values["duration_ms"] = draw(st.sampled_from(["abc", "-1", "NaN", "inf", "1e400", "[5]", "1,5"]))
        reason = "bad_value:duration_ms"
    elif kind == "duplicate":
        assume(staged_ids)
        values["event_id"] = draw(st.sampled_from(staged_ids))
        reason = DUPLICATE_EVENT_ID
    staged_values = {"feature": values["feature"] or None, "device": values["device"] or None}
    return Item(_row(draw, header, values), reason, event_id if reason is None else None, staged_values)


@st.composite
def csv_partitions(draw: st.DrawFn) -> Example:
    header = draw(st.permutations(EVENT_COLUMNS))
    header_text = ",".join(f'"{name}"' if draw(st.booleans()) and name != "note" else name for name in header)
    items: list[Item] = []
    staged_ids: list[str] = []
    for index in range(draw(st.integers(1, 12))):
        item = draw(csv_event_item(index, header, staged_ids))
        items.append(item)
        if item.reason is None:
            staged_ids.append(item.key or "")
    example = Example(
        draw(st.sampled_from(["events.csv", "events.csv.gz"])),
        items,
        header_text,
        draw(endings(len(items))),
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )
    assume(_ends_as_intended(example))
    return example


@given(csv_partitions())
def test_random_csv_partitions_stage_exactly_the_valid_events(example: Example) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        file = f"{PARTITION}/{example.name}"
        _write_example(root, file, example)
        staged = stage_telemetry_partition(root, DAY, ())
        check_outcome(staged, example, file, "event_id", ["feature", "device"])


@st.composite
def ticket_item(draw: st.DrawFn, index: int, header: Sequence[str]) -> Item:
    ticket_id = f"T{index}"
    values = {
        "ticket_id": ticket_id,
        "created_at": "2026-02-01T09:00:00Z",
        "updated_at": "2026-02-01T10:00:00Z",
        "status": draw(st.sampled_from(["open", "Solved", " pending "])),
        "topic": draw(NAMES),
        "subject": draw(TEXT),
        "agent_work_minutes": draw(st.sampled_from(["", "2.5", "0"])),
        "reopens": draw(st.sampled_from(["", "0", "3", "9223372036854775807"])),
    }
    broken = _broken_row(draw, header, values) if draw(st.integers(0, 4)) == 0 else None
    if broken is not None:
        return broken
    kind = draw(
        st.sampled_from(
            ["valid", "valid", "status", "topic", "timestamp", "minutes", "reopens", "solved", "blank"]
        )
    )
    reason: str | None = None
    if kind == "blank":
        return Item(draw(BLANK_LINES), NOT_A_ROW)
    if kind == "status":
        values["status"], reason = "bogus", "bad_value:status"
    elif kind == "topic":
        values["topic"], reason = "", "missing_field:topic"
    elif kind == "timestamp":
        values["created_at"], reason = "2026-13-01", BAD_TIMESTAMP
    elif kind == "minutes":
        values["agent_work_minutes"] = draw(st.sampled_from(["inf", "-1", "NaN", "abc", "1e400"]))
        reason = "bad_value:agent_work_minutes"
    elif kind == "reopens":
        values["reopens"] = draw(
            st.sampled_from(["99999999999999999999", "-1", "1.5", "x", "9223372036854775808"])
        )
        reason = "bad_value:reopens"
    elif kind == "solved":
        values["solved_at"], reason = "2026-01-31T00:00:00Z", "bad_value:solved_at"
    return Item(
        _row(draw, header, values),
        reason,
        ticket_id if reason is None else None,
        {"subject": values["subject"]},
    )


@st.composite
def ticket_exports(draw: st.DrawFn) -> Example:
    header = draw(st.permutations([*TICKET_FIELDS, "subject"]))
    items = [draw(ticket_item(index, header)) for index in range(draw(st.integers(1, 10)))]
    example = Example("export.csv", items, ",".join(header), draw(endings(len(items))), draw(st.booleans()))
    assume(_ends_as_intended(example))
    return example


@given(ticket_exports())
def test_random_ticket_exports_stage_exactly_the_valid_tickets(example: Example) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        file = "raw/tickets/export.csv"
        _write_example(root, file, example)
        staged = stage_tickets(root)
        staged.records = staged.records.sort_values("ticket_id", key=lambda ids: ids.str[1:].astype(int))
        check_outcome(staged, example, file, "ticket_id")


# --- CSV record splitting against the rule --------------------------------------------------------

SOUP = st.lists(
    st.sampled_from(["a", "b", ",", '"', '""', "\n", "\r\n", "\r", " ", "\n\n"]), max_size=40
).map("".join)


@settings(max_examples=settings().max_examples * 5)  # cheap: five times the profile's examples
@given(SOUP, st.booleans())
def test_csv_records_follow_the_rule_on_random_text(body: str, final_break: bool) -> None:
    """Any text of quotes, delimiters and line breaks: the records the reader finds, their lines,
    values and raw text, and the malformed ones, are those of a sequential reading of the rule."""
    text = "a,b,c\n" + body + ("\n" if final_break else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "t.csv", text)
        raw = read_table_file(path, "csv", ("a",))
    records, malformed = reference_records(text, 3, 2)
    rows = raw.rows
    got = [
        (int(line), [None if pd.isna(v) else v for v in values])
        for line, *values in zip(rows["_line"], rows["a"], rows["b"], rows["c"], strict=True)
    ]
    assert got == [(first, values) for first, _, values in records]
    malformed.sort()
    assert raw.malformed_lines.tolist() == [first for first, _ in malformed]
    lines = text.split("\n")
    assert raw.line_text(raw.malformed_lines) == [
        "\n".join(lines[first - 1 : last]).rstrip("\r\n") for first, last in malformed
    ]
    spans = [(first, last) for first, last, _ in records] + malformed
    assert raw.record_ends([first for first, _ in spans]).tolist() == [last for _, last in spans]
