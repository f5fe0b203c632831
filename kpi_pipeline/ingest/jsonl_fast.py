"""DuckDB's pass over native JSONL telemetry: the lines the contract surely stages, typed, from one
vectorised query; every other line goes on to the exact reader (:mod:`raw_files`).

A line takes the fast path only when every rule of the contract is decided beyond doubt in SQL:
a JSON object that DuckDB and Python's json both read the same way (unique keys, no trailing
commas, no ``\\u`` escapes of control or surrogate characters); every text field a JSON string
(or null or absent) of at most ``MAX_TEXT_LENGTH`` bytes; required fields opening with a visible
ASCII character (other text fields too, or empty, where a default applies); ``occurred_at`` in the
plain ISO-8601 shape (``2025-01-15T10:00:00[.ffffff][Z|±hh:mm]``) on the partition's UTC date;
the aliased event type one of the contract's; ``duration_ms`` a finite number ≥ 0 whose shortest
spelling has at most 15 digits (so every parser reads the same double). Anything else — a blank
line aside — is read, validated and quarantined by the exact path, which is what keeps the
quarantine (reasons, files, line numbers, text) the same. ``test_ingest_fast_path`` checks that
staging with and without this pass gives identical results.
"""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kpi_pipeline.config import EventAlias
from kpi_pipeline.contract import (
    EVENT_TYPES,
    MAX_TEXT_LENGTH,
    SURVEY_RESPONSE,
    TELEMETRY_DEFAULTS,
    TELEMETRY_FIELDS,
    TELEMETRY_NUMBER_FIELDS,
    TELEMETRY_REQUIRED,
    TELEMETRY_REQUIRED_FOR,
    TELEMETRY_TEXT_FIELDS,
)
from kpi_pipeline.ingest.engine import GLOB_CHARACTERS
from kpi_pipeline.ingest.raw_files import LINE, Lines, RawFile, read_jsonl_lines
from kpi_pipeline.storage import StoragePath, duckdb_path

SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz")
FAST = "_fast"
ORDER_KEY = "_file_order"  # a row's file, by its place in the partition's sorted file list
_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 24
_SEPARATOR = b"\x1f"  # the delimiter of _lines_source
# RE2 patterns. A line of white space only is no row (as ``Lines.nonblank``); control characters
# and escapes of control or surrogate characters are for the exact reader to judge.
_BLANK = r"^\s*$"
_OBJECT = r"^\s*\{"
_ODD_ESCAPE = r"\\u(?:00[01]|[dD][89abAB])"
# JSON DuckDB reads but Python's json does not: trailing commas, and lowercase ``inf`` and ``nan``
# (with ``NaN`` and ``Infinity``), which a text field's type check or the duration rule already
# sends on, so only lines with other keys are searched for them. (DuckDB's JSON already refuses
# raw control characters.)
_TRAILING_COMMA = r",\s*[\]}]"
_NON_FINITE = r"[:\[,]\s*[+-]?[iInN][nNaA]"
_KEY = r"^[A-Za-z0-9_]+$"
# In a line with unknown keys: a null anywhere, or a list or object as a value. Both readers count
# an unknown field that holds a scalar; the exact reader's text of a list holding a null (or of
# objects without a ``name``) is null, so such lines are for it to count.
_NULL_OR_NESTED = r"null|:\s*[\[{]"
_TIMESTAMP = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)
# A number's shortest spelling without sign or exponent, and its digits once a ``.0`` is dropped: at
# most 15 of them, so every decimal parser reads the same double from it.
_PLAIN_NUMBER = r"^[0-9]+(?:\.[0-9]+)?$"
_MAX_DIGITS = 15


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _listed(values: Sequence[str]) -> str:
    return "[" + ", ".join(_sql(v) for v in values) + "]"


def _tuple(values: Sequence[str]) -> str:
    return "(" + ", ".join(_sql(v) for v in values) + ")"


def eligible(path: StoragePath) -> bool:
    """A native JSONL file (optionally gzipped) that DuckDB splits into lines exactly as the exact
    reader does: it does not open with a byte-order mark (the exact reader strips it) and holds no
    unit separator, the byte DuckDB splits each line on (a line of only that byte would read as
    blank), and its path has no glob character. A gzipped file must also be whole: DuckDB does not
    check the gzip trailer (CRC and length), which the exact reader refuses when wrong. The file is
    scanned once, a block at a time."""
    name = path.name.lower()
    if not name.endswith(SUFFIXES) or GLOB_CHARACTERS & set(str(path)):
        return False  # DuckDB would read a path with *, ? or [ as a pattern (other files too)
    try:
        with path.open("rb") as raw, gzip.open(raw) if name.endswith(".gz") else raw as handle:
            head = handle.read(_BLOCK)
            if head.startswith(_BOM):
                return False
            block = head
            while block:
                if _SEPARATOR in block:
                    return False
                block = handle.read(_BLOCK)
    except (OSError, EOFError, zlib.error):
        return False  # the exact reader reports what is wrong with the file
    return True


def _event_type_sql(aliases: Sequence[EventAlias], day: dt.date) -> str:
    """kpi.yaml's aliases on the raw event type, for events of ``day`` (the first listed wins)."""
    whens = []
    for alias in aliases:
        if alias.valid_from is not None and day < alias.valid_from:
            continue
        if alias.valid_until is not None and day > alias.valid_until:
            continue
        whens.append(f"WHEN s_event_type = {_sql(alias.from_)} THEN {_sql(alias.to)}")
    return f"CASE {' '.join(whens)} ELSE s_event_type END" if whens else "s_event_type"


def _lines_source(con: duckdb.DuckDBPyConnection, path: StoragePath) -> str:
    """Every line of a file as one text column, in order (split on the unit separator, which
    :func:`eligible` made sure the file does not hold)."""
    return (
        f"read_csv({_sql(duckdb_path(con, path))}, columns = {{'line': 'VARCHAR'}}, "
        f"delim = {_sql(_SEPARATOR.decode())}, "
        "quote = '', "
        "escape = '', header = false, auto_detect = false)"
    )


def _query(table: str, day: dt.date, aliases: Sequence[EventAlias]) -> str:
    """One row per non-blank line: its number, whether it is surely staged (``_fast``), the typed
    values of a fast line, the text of any other, and a fast line's unknown keys that hold a value."""
    paths = ", ".join(_sql(f'$."{name}"') for name in TELEMETRY_FIELDS)
    at = {name: i + 1 for i, name in enumerate(TELEMETRY_FIELDS)}
    text = ", ".join(f"s[{at[n]}] AS s_{n}" for n in TELEMETRY_TEXT_FIELDS)

    def visible(name: str) -> str:
        # The first character is visible ASCII (a string comparison DuckDB does on its prefix);
        # values that open with white space or other characters are left to the exact reader.
        return f"(s_{name} >= '!' AND s_{name} < chr(127))"

    event_type = _event_type_sql(aliases, day)
    text_kinds = f"[{', '.join(f't[{at[n]}]' for n in TELEMETRY_TEXT_FIELDS)}]"
    rules = [
        f"strlen(line) <= {MAX_TEXT_LENGTH}",
        f"NOT regexp_matches(line, {_sql(_TRAILING_COMMA)})",
        f"NOT (contains(line, '\\u') AND regexp_matches(line, {_sql(_ODD_ESCAPE)}))",
        # As many keys as contract fields present: no other keys, none twice. Otherwise keys must be
        # distinct and plain, and no value null (only unknown fields holding a value are counted).
        f"CASE WHEN len(keys) = list_count(t) THEN true ELSE len(keys) = len(list_distinct(keys)) AND "
        f"list_bool_and(list_transform(keys, lambda k: regexp_matches(k, {_sql(_KEY)}))) AND NOT "
        f"regexp_matches(line, {_sql(_NULL_OR_NESTED + '|' + _NON_FINITE)}) END",
        f"len(list_filter({text_kinds}, lambda k: k <> 'VARCHAR' AND k <> 'NULL')) = 0",
        *(visible(n) for n in TELEMETRY_REQUIRED),
        *(f"(et NOT IN {_tuple(types)} OR {visible(n)})" for n, types in TELEMETRY_REQUIRED_FOR.items()),
        *(f"(s_{n} IS NULL OR s_{n} = '' OR {visible(n)})" for n in TELEMETRY_DEFAULTS),
        f"CAST(timezone('UTC', ts) AS DATE) = DATE {_sql(day.isoformat())}",
        # survey_response lines need kpi.yaml's surveys: the exact reader judges them, and any line
        # with a score (staged only after its number is checked there).
        f"et IN {_tuple([t for t in EVENT_TYPES if t != SURVEY_RESPONSE])}",
        f"coalesce(t[{at['score']}], 'NULL') = 'NULL'",
        f"CASE coalesce(t[{at['duration_ms']}], 'NULL') WHEN 'NULL' THEN true "
        f"WHEN 'BIGINT' THEN d BETWEEN 0 AND 1e15 WHEN 'UBIGINT' THEN d <= 1e15 "
        f"ELSE regexp_matches(CAST(d AS VARCHAR), {_sql(_PLAIN_NUMBER)}) AND length(regexp_replace("
        f"regexp_replace(CAST(d AS VARCHAR), '\\.0$', ''), '[^0-9]', '', 'g')) <= {_MAX_DIGITS} END",
    ]
    fast = " AND ".join(f"coalesce({rule}, false)" for rule in rules)
    known = _listed(TELEMETRY_FIELDS)
    staged = ", ".join(
        "ts AS occurred_at"
        if n == "occurred_at"
        else "et AS event_type"
        if n == "event_type"
        else "d AS duration_ms"
        if n == "duration_ms"
        else "NULL::DOUBLE AS score"
        if n == "score"
        else f"CASE WHEN coalesce(s_{n}, '') = '' THEN {_sql(TELEMETRY_DEFAULTS[n])} ELSE s_{n} END AS {n}"
        if n in TELEMETRY_DEFAULTS
        else f"s_{n} AS {n}"
        for n in TELEMETRY_FIELDS
    )
    seen = ", ".join(f"s_{n} IS NOT NULL AS seen_{n}" for n in TELEMETRY_DEFAULTS)
    return f"""
    WITH lines AS (SELECT rowid + 1 AS line_no, line FROM {table}),
    parsed AS (
        SELECT line_no, line, s, t, keys FROM (
            SELECT line_no, line, json_valid(line) AND regexp_matches(line, {_sql(_OBJECT)}) AS ok,
                CASE WHEN ok THEN json_extract_string(line, [{paths}]) END AS s,
                CASE WHEN ok THEN json_type(line, [{paths}]) END AS t,
                CASE WHEN ok THEN json_keys(line) END AS keys
            FROM lines WHERE NOT coalesce(regexp_matches(line, {_sql(_BLANK)}), true)
        )
    ),
    typed AS (
        SELECT *, {event_type} AS et,
            CASE WHEN regexp_matches(s_occurred_at, {_sql(_TIMESTAMP)})
                THEN TRY_CAST(s_occurred_at AS TIMESTAMPTZ) END AS ts,
            CASE WHEN t[{at["duration_ms"]}] IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                THEN TRY_CAST(s[{at["duration_ms"]}] AS DOUBLE) END AS d
        FROM (SELECT *, {text} FROM parsed)
    ),
    judged AS (SELECT *, s IS NOT NULL AND {fast} AS {FAST} FROM typed)
    SELECT line_no AS {LINE}, {FAST},
        CASE WHEN NOT {FAST} THEN line END AS line,
        CASE WHEN {FAST} AND len(keys) > list_count(t)
            THEN list_filter(keys, lambda k: NOT list_contains({known}, k)) END AS unknown,
        {seen}, {staged}
    FROM judged
    """


@dataclass
class FastFile:
    """One JSONL file after the fast pass: the DuckDB table of its judged lines (``table``; the
    typed values of the ``fast_rows`` lines DuckDB stages), the other non-blank lines as the
    exact reader parses them, and the fields counted on the fast lines."""

    path: StoragePath
    table: str
    fast_rows: int
    slow: RawFile
    fields_seen: dict[str, int] = field(default_factory=dict)
    unknown_fields: dict[str, int] = field(default_factory=dict)


class SubsetLines(Lines):
    """Some lines of a file (``numbers``, ascending) over their own bytes, addressed by their line
    numbers in the file, so quarantined rows keep their text."""

    def __init__(self, data: bytes, numbers: np.ndarray) -> None:
        super().__init__(data)
        self.numbers = np.asarray(numbers, dtype=np.int64)

    def records(self, first: np.ndarray, last: np.ndarray) -> list[bytes]:
        at = np.searchsorted(self.numbers, np.asarray(first, dtype=np.int64)) + 1
        end = np.searchsorted(self.numbers, np.asarray(last, dtype=np.int64)) + 1
        return super().records(at, end)


def _slow_file(path: StoragePath, numbers: np.ndarray, texts: pa.Array) -> RawFile:
    """The exact reader over the given lines (their text without line breaks), at their numbers."""
    data = b"".join(t + b"\n" for t in pc.cast(texts, pa.binary()).to_pylist()) if len(texts) else b""
    raw = read_jsonl_lines(path, Lines(data), TELEMETRY_TEXT_FIELDS, TELEMETRY_NUMBER_FIELDS)
    rows = raw.rows
    if len(rows):
        rows[LINE] = numbers[rows[LINE].to_numpy(dtype=np.int64) - 1]
    malformed = numbers[np.asarray(raw.malformed_lines, dtype=np.int64) - 1]
    return RawFile(path, rows, malformed, SubsetLines(data, numbers), raw.columns)


def read_fast(
    con: duckdb.DuckDBPyConnection,
    path: StoragePath,
    table: str,
    day: dt.date,
    aliases: Sequence[EventAlias],
    source: StoragePath | None = None,
) -> FastFile:
    """Run the fast pass over one file into the DuckDB tables ``table`` (judged lines) and
    ``<table>_lines`` (every line, for :func:`line_texts`); DuckDB reads ``source`` when given (a
    local copy of ``path``, which names the file everywhere else). Raises ``duckdb.Error`` when DuckDB
    cannot split the file into lines as the exact reader does (a lone carriage return, mixed line
    breaks, invalid UTF-8, a line over its size limit), for the caller to read the file the exact
    way instead."""
    lines = f"{table}_lines"
    # The table's row ids are the 0-based line numbers (a window's row_number() would hold the
    # whole pass to one thread).
    reads = _lines_source(con, path if source is None else source)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {lines} AS SELECT line FROM {reads}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {_query(lines, day, aliases)}")
    slow = con.sql(f"SELECT {LINE}, line FROM {table} WHERE NOT {FAST} ORDER BY {LINE}").to_arrow_table()
    counted = ", ".join(
        f"sum(seen_{n}::INT)" if n in TELEMETRY_DEFAULTS else f"count({n})" for n in TELEMETRY_FIELDS
    )
    fast_rows, *counts = con.sql(f"SELECT count(*), {counted} FROM {table} WHERE {FAST}").fetchall()[0]
    unknown = con.sql(
        f"SELECT key, count(*) FROM (SELECT unnest(unknown) AS key FROM {table} WHERE {FAST}) GROUP BY key"
    ).fetchall()
    seen = {name: int(count or 0) for name, count in zip(TELEMETRY_FIELDS, counts, strict=True)}
    slow_raw = _slow_file(path, slow.column(LINE).to_numpy(), slow.column("line"))
    return FastFile(path, table, int(fast_rows), slow_raw, seen, {str(k): int(n) for k, n in unknown})


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, **frames: pd.DataFrame) -> Iterator[None]:
    """The frames registered under their names for the block's queries, unregistered after it even
    when it fails (the connection is the thread's, shared with later work)."""
    for name, frame in frames.items():
        con.register(name, frame)
    try:
        yield
    finally:
        for name in frames:
            con.unregister(name)


def _union(frame: str, files: Sequence[tuple[int, FastFile]], columns: str) -> str:
    """The registered ``frame``'s rows and the fast rows of ``files``: ``ORDER_KEY``, ``_line`` and
    ``columns``."""
    return " UNION ALL ".join(
        [
            f"SELECT {ORDER_KEY}, {LINE}, {columns} FROM {frame}",
            *(f"SELECT {order}, {LINE}, {columns} FROM {done.table} WHERE {FAST}" for order, done in files),
        ]
    )


def duplicates(
    con: duckdb.DuckDBPyConnection, files: Sequence[tuple[int, FastFile]], slow_clean: pd.DataFrame
) -> pd.DataFrame:
    """``(ORDER_KEY, _line)`` of every clean row — fast rows of the ``(order, file)`` pairs and the
    exact path's ``slow_clean`` rows (``ORDER_KEY``, ``_line``, ``event_id``) — whose event id an
    earlier clean row of the partition (by file, then line) already has."""
    keys = slow_clean[[ORDER_KEY, LINE, "event_id"]].astype({"event_id": "object"})
    union = _union("slow_keys", files, "event_id")
    with _registered(con, slow_keys=keys):
        found = con.sql(
            f"SELECT {ORDER_KEY}, {LINE} FROM (SELECT *, row_number() OVER (PARTITION BY event_id "
            f"ORDER BY {ORDER_KEY}, {LINE}) AS n FROM ({union})) WHERE n > 1 ORDER BY {ORDER_KEY}, {LINE}"
        ).df()
    return found.astype("int64")


def write_staged(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[tuple[int, FastFile]],
    slow_staged: pd.DataFrame,
    dropped: pd.DataFrame,
    out: StoragePath,
    metadata: Mapping[str, str],
) -> int:
    """Write the partition's staged rows to the Parquet file ``out`` (with key-value ``metadata``) in
    file and line order, and return how many: the fast rows of ``files`` except the ``dropped``
    ones (duplicates), and ``slow_staged`` (with ``ORDER_KEY`` and ``_line``). DuckDB writes the
    file itself, sorting out of core, so a day's staged rows never become one frame in Python."""
    columns = ", ".join(TELEMETRY_FIELDS)
    pairs = ", ".join(f"{_sql(k)}: {_sql(v)}" for k, v in metadata.items())
    options = f", KV_METADATA {{{pairs}}}" if pairs else ""
    with _registered(con, slow_staged=slow_staged, dropped=dropped):
        (written,) = con.execute(
            f"COPY (SELECT {columns} FROM ({_union('slow_staged', files, columns)}) "
            f"ANTI JOIN dropped USING ({ORDER_KEY}, {LINE}) ORDER BY {ORDER_KEY}, {LINE}) "
            f"TO {_sql(duckdb_path(con, out))} (FORMAT parquet{options})"
        ).fetchall()[0]
    return int(written)


def drop_lines(con: duckdb.DuckDBPyConnection, files: Sequence[tuple[int, FastFile]]) -> None:
    """Let go of DuckDB's copy of the files' lines (once no quarantined text is needed from it)."""
    for _, done in files:
        con.execute(f"DROP TABLE IF EXISTS {done.table}_lines")


def drop_tables(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop whatever :func:`read_fast` created for ``table`` (both tables, if they exist)."""
    con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute(f"DROP TABLE IF EXISTS {table}_lines")


def line_texts(con: duckdb.DuckDBPyConnection, table: str, numbers: np.ndarray) -> list[str]:
    """The text of the given lines (without line breaks) of the file :func:`read_fast` read into
    ``table``."""
    wanted = pd.DataFrame({"line_no": np.asarray(numbers, dtype=np.int64)})
    with _registered(con, wanted=wanted):
        found = con.sql(
            f"SELECT rowid + 1 AS line_no, line FROM {table}_lines SEMI JOIN wanted ON rowid + 1 = line_no"
        ).df()
    texts = found.set_index("line_no")["line"].fillna("").str.rstrip("\r\n")
    return texts.reindex(numbers).tolist()
