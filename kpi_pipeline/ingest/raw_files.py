"""Read one raw export file (JSONL, CSV or whitespace-separated; optionally gzip or zip) into
string columns.

Every raw row becomes either a parsed row (all values as strings, with the
1-based line number where it starts) or a malformed row; nothing is dropped.
Parsing is columnar (pyarrow). JSONL lines pyarrow cannot take (broken lines,
values of an unexpected JSON type, numbers whose exact text matters) are
parsed one by one, the path the contract needs to find and keep the broken
lines. CSV is RFC 4180: a quoted value may hold delimiters, doubled quotes and
line breaks, so one record may span several lines; where records start is
found with numpy over the file's bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from kpi_pipeline.storage import StoragePath

LINE = "_line"
PRIOR = "_reason"  # a source mapping's quarantine reason for the row (NA where it found none)
ORDER = "_order"  # a source mapping's version order of the row (the latest version wins)
# Contract fields whose JSON lists are lists (items ';'-joined); in any other field a list is its JSON text.
LIST_FIELDS: tuple[str, ...] = ("affected_workflows",)
# pyarrow's default block; a longer record gets a block of its own size.
_BLOCK = 1 << 20
_NEWLINE, _CR, _QUOTE = ord("\n"), ord("\r"), ord('"')


class UnreadableFileError(RuntimeError):
    """A file that cannot be read at all; the message names the file and the problem."""


class Lines:
    """The lines of a decoded file as one Arrow array over the file's own bytes (no copy per
    line). Element i is line i+1 with its line break, so the lines chosen by a mask, taken
    together, are the text to hand to pyarrow's readers. ``offsets[i]`` is the byte where line
    i+1 starts (the last one is the file's length)."""

    def __init__(self, data: bytes) -> None:
        breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
        starts = np.concatenate([[0], breaks + 1])
        if starts[-1] == len(data):  # the file ends with a line break: no empty last line
            starts = starts[:-1]
        self.data = data
        self.offsets = np.append(starts, len(data)).astype(np.int64)
        self.array = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(starts), [None, pa.py_buffer(self.offsets), pa.py_buffer(data)]
        )

    def __len__(self) -> int:
        return len(self.array)

    def matching(self, pattern: str) -> np.ndarray:
        """Boolean mask of the lines in which the RE2 ``pattern`` matches."""
        return np.asarray(pc.match_substring_regex(self.array, pattern), dtype=bool)

    def nonblank(self) -> np.ndarray:
        """1-based numbers of the lines that hold more than white space."""
        return np.flatnonzero(~self.matching(r"^\s*$")) + 1

    def longest(self) -> int:
        """Length in bytes of the longest line."""
        return int(np.diff(self.offsets).max()) if len(self) else 0

    def select(self, numbers: np.ndarray) -> pa.LargeBinaryArray:
        """The given 1-based lines, with their line breaks."""
        return self.array.take(pa.array(np.asarray(numbers, dtype=np.int64) - 1))

    def body(self, numbers: np.ndarray) -> pa.BufferReader:
        """The given lines as one text, each ending in its line break, for pyarrow's readers."""
        chosen = self.select(numbers)
        offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int64)[: len(chosen) + 1]
        data = chosen.buffers()[2]
        return pa.BufferReader(data.slice(0, int(offsets[-1])) if len(chosen) else pa.py_buffer(b""))

    def rows(self, numbers: np.ndarray | Sequence[int]) -> list[bytes]:
        """The given 1-based lines without their line breaks."""
        numbers = np.asarray(numbers, dtype=np.int64)
        return self.records(numbers, numbers)

    def records(self, first: np.ndarray, last: np.ndarray) -> list[bytes]:
        """Lines ``first[i]`` to ``last[i]`` (1-based, inclusive) as one text each, with the line
        breaks inside and without the final one."""
        starts = self.offsets[np.asarray(first, dtype=np.int64) - 1].tolist()
        ends = self.offsets[np.asarray(last, dtype=np.int64)].tolist()
        return [self.data[a:b].rstrip(b"\r\n") for a, b in zip(starts, ends, strict=True)]


def _no_spans() -> np.ndarray:
    return np.empty((0, 2), dtype=np.int64)


@dataclass
class RawFile:
    """One parsed raw file.

    ``rows`` holds one row per parsed record: a string column per field found
    in the file plus ``_line`` (where the record starts). ``malformed_lines``
    are the 1-based start lines of records that could not be parsed. ``lines``
    keeps every line (over the file's bytes) so rejected rows can be
    quarantined with their original text; ``spans`` lists the (first, last)
    lines of every record that spans more than one line (a CSV value with line
    breaks). ``header`` is the line number of the header row (0 when the file
    has none); ``filtered`` counts rows a source mapping's filters left out
    (not in ``rows``).
    """

    path: StoragePath
    rows: pd.DataFrame
    malformed_lines: np.ndarray
    lines: Lines = field(repr=False)
    columns: tuple[str, ...] = ()
    header: int = 0
    filtered: int = 0
    spans: np.ndarray = field(default_factory=_no_spans, repr=False)

    @property
    def raw_rows(self) -> int:
        return len(self.rows) + len(self.malformed_lines)

    def record_ends(self, line_numbers: np.ndarray | pd.Series | Sequence[int]) -> np.ndarray:
        """The last line of the records starting at the given 1-based lines."""
        first = np.asarray(line_numbers, dtype=np.int64)
        last = first.copy()
        if len(self.spans) and len(first):
            at = np.minimum(np.searchsorted(self.spans[:, 0], first), len(self.spans) - 1)
            hit = self.spans[at, 0] == first
            last[hit] = self.spans[at[hit], 1]
        return last

    def record_bytes(self, line_numbers: np.ndarray | pd.Series | Sequence[int]) -> list[bytes]:
        """Original bytes of the records starting at the given lines (all their lines; no final break)."""
        first = np.asarray(line_numbers, dtype=np.int64)
        return self.lines.records(first, self.record_ends(first))

    def line_text(self, line_numbers: np.ndarray | pd.Series | Sequence[int]) -> list[str]:
        """Original text of the records starting at the given 1-based lines (for the quarantine)."""
        return [text.decode("utf-8", errors="replace") for text in self.record_bytes(line_numbers)]


def file_format(path: StoragePath) -> str | None:
    """``jsonl`` or ``csv`` for readable extensions (optionally ``.gz``), else None."""
    name = path.name.lower()
    name = name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return None


def _unzip(path: StoragePath, data: bytes) -> bytes:
    """The one member of a zip archive (exports often arrive zipped)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = ", ".join(m.filename for m in members) or "none"
                raise UnreadableFileError(f"{path}: a zip export must hold exactly one file, found: {names}")
            return archive.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableFileError(f"{path}: not a valid zip file ({exc})") from None


def read_bytes(path: StoragePath) -> bytes:
    """File contents, gunzipped for ``.gz``, unzipped for a one-file ``.zip``; fails naming the
    file when the archive is broken or the text is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    name = path.name.lower()
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFileError(f"{path}: not a valid gzip file ({exc})") from None
    elif name.endswith(".zip"):
        data = _unzip(path, data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); re-export it as UTF-8"
        ) from None
    return data.removeprefix(b"\xef\xbb\xbf")


def _split_lines(data: bytes) -> tuple[Lines, np.ndarray]:
    """All lines, and the 1-based numbers of the non-blank ones."""
    lines = Lines(data)
    return lines, lines.nonblank()


# --- JSON values as text ------------------------------------------------------------------------


class _Number(str):
    """A JSON number token exactly as written (``NaN``, ``Infinity`` and ``-Infinity`` included)."""


def _json_text(value: object) -> str:
    """Compact JSON text of a parsed value, numbers spelled as in the file."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_json_text(v)}" for k, v in value.items())
            + "}"
        )
    return str(value)


def _item_text(item: object) -> str:
    """One item of a list field as text; an object stands for its ``name`` (status-page components)."""
    if isinstance(item, dict) and "name" in item:
        return _to_text(item["name"], as_list=False) or ""
    return _to_text(item, as_list=False) or ""


def _to_text(value: object, as_list: bool) -> str | None:
    """A parsed JSON value as the text validation receives: strings as they are, numbers as
    written, booleans as ``true``/``false``; a list ``;``-joined in a list field (``as_list``),
    and otherwise, like an object, its JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and as_list:
        return ";".join(_item_text(v) for v in value)
    return _json_text(value)


def _parse_json_line(line: bytes) -> dict[str, object] | None:
    """One line as a JSON object with number tokens kept as written (:class:`_Number`), or None
    when it is not a JSON object. ``NaN``, ``Infinity`` and ``-Infinity`` count as numbers;
    text that cannot be stored (a lone surrogate escape) makes the line malformed."""
    try:
        text = line.decode("utf-8")
        value = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    if "\\u" in text:
        try:
            orjson.dumps(value)
        except TypeError:
            return None
    return value


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _list_items(col: pa.Array) -> pa.Array:
    """A list column as lists of text: objects stand for their ``name`` (status-page components),
    a null item is empty text (as the record-by-record path writes it, so ``[1, null]`` is ``1;``
    whichever path a line takes, not a null that drops the whole value)."""
    items = col.values
    if pa.types.is_struct(items.type) and items.type.get_field_index("name") >= 0:
        items = pc.struct_field(items, "name")
    text = pc.fill_null(pc.cast(items, pa.string()), "")
    return pa.ListArray.from_arrays(col.offsets, text, mask=col.is_null())


def _arrow_to_strings(
    table: pa.Table,
    keep: Collection[str] | None = None,
    list_fields: Collection[str] = (),
    values: Collection[str] | None = None,
) -> pd.DataFrame:
    """Every column (or the ``keep`` ones) as pandas strings: numbers keep their JSON spelling.

    A list is ``;``-joined in ``list_fields`` and in columns whose text nobody reads (not in
    ``values``, e.g. unknown drift fields, only counted); in the other columns a list, like an
    object, becomes its JSON text.
    """
    out: dict[str, pd.Series] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if keep is not None and name not in keep:
            continue
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        joined = pa.types.is_list(col.type) and (
            name in list_fields or (values is not None and name not in values)
        )
        if joined:
            try:
                col = pc.binary_join(_list_items(col), ";")
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                col = pa.array([None if v is None else _to_text(v, as_list=True) for v in col.to_pylist()])
        elif pa.types.is_nested(col.type):
            col = pa.array([None if v is None else orjson.dumps(v).decode() for v in col.to_pylist()])
        elif not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        out[name] = pd.Series(col.to_pandas(), dtype="string")
    return pd.DataFrame(out)


# --- JSONL --------------------------------------------------------------------------------------


def _alternatives(names: Collection[str]) -> str:
    return "|".join(re.escape(n) for n in names) or "[^\\s\\S]"


def _odd_value_pattern(
    string_fields: Collection[str],
    numeric_fields: Collection[str],
    exact_fields: Collection[str] = (),
    list_fields: Collection[str] = (),
) -> str:
    """RE2 pattern for the values pyarrow's typed reader cannot take as the contract needs: a
    non-text JSON value in a text field, text (or a list, object, boolean) in a numeric field,
    and in an ``exact_fields`` field a number whose text a double would change (16 or more
    digits, a three-digit exponent, NaN or Infinity), an object, or a list (unless it is one of
    the ``list_fields``), whose JSON text must stay as written."""
    text, numeric, exact = (_alternatives(names) for names in (string_fields, numeric_fields, exact_fields))
    scalar = _alternatives([name for name in exact_fields if name not in list_fields])
    return (
        rf'"(?:{text})"\s*:\s*(?:-?\d|-?Infinity|NaN|true|false|\[|\{{)'
        rf'|"(?:{numeric})"\s*:\s*(?:"|true|false|\[|\{{)'
        rf'|"(?:{exact})"\s*:\s*(?:-?\d{{16}}|-?\d+(?:\.\d+)?[eE][+-]?\d{{3}}|-?Infinity|NaN|\{{)'
        rf'|"(?:{scalar})"\s*:\s*\['
    )


def _arrow_rows(
    body: pa.BufferReader,
    count: int,
    options: pa_json.ParseOptions,
    block: int,
    to_strings: dict[str, Collection[str] | None],
) -> tuple[pd.DataFrame | None, str]:
    """Parse JSONL with pyarrow: (rows, "") or (None, why pyarrow rejected the body)."""
    if count == 0:
        return pd.DataFrame(), ""
    try:
        table = pa_json.read_json(
            body, read_options=pa_json.ReadOptions(block_size=block), parse_options=options
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return None, str(exc)
    if table.num_rows != count:
        return None, f"{table.num_rows} records in {count} lines"
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_nested(col.type):
            try:
                col.validate(full=True)
            except pa.ArrowInvalid as exc:
                return None, f"pyarrow built an invalid column {name}: {exc}"
    return _arrow_to_strings(table, **to_strings), ""


# More than MAX_NESTING lists or objects opened in a row (the record's own braces count): no flat
# record comes from such a line, and its text could not be rebuilt (orjson stops at 255 levels,
# Python's recursion sooner), so it is malformed rather than a crash.
MAX_NESTING = 64
_TOO_DEEP = rf"(?:[\[{{][^\]}}]*){{{MAX_NESTING + 1}}}"
# pyarrow (26) drops the nulls that open a list followed by other items (``[null, 1]`` reads as
# ``[1, <garbage>]``): such lines go record by record.
_NULL_FIRST = r"\[\s*null"
# pyarrow's message when a field holds numbers in some rows and text in others.
_CHANGED_TYPE = re.compile(r"Column\(/([^)]+)\) changed from")
_MAX_TYPE_FIXES = 16


def _record_rows(
    lines: Lines, numbers: np.ndarray, keep: Collection[str] | None, list_fields: Collection[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The given lines built record by record (the path for lines pyarrow cannot take), and the
    numbers of those that are not JSON objects."""
    records: list[dict[str, str | None]] = []
    parsed: list[bool] = []
    for line in lines.rows(numbers):
        value = _parse_json_line(line)
        parsed.append(value is not None)
        if value is not None:
            records.append(
                {k: _to_text(v, k in list_fields) for k, v in value.items() if keep is None or k in keep}
            )
    good = np.asarray(parsed, dtype=bool)
    rows = pd.DataFrame.from_records(records).astype("string") if records else pd.DataFrame()
    rows[LINE] = numbers[good] if len(numbers) else np.array([], dtype=np.int64)
    return rows, numbers[~good] if len(numbers) else np.array([], dtype=np.int64)


def _read_jsonl(
    path: StoragePath,
    lines: Lines,
    numbers: np.ndarray,
    string_fields: tuple[str, ...],
    numeric_fields: tuple[str, ...],
    keep: Collection[str] | None = None,
    list_fields: Collection[str] = LIST_FIELDS,
) -> RawFile:
    """Columnar parse of the lines that are JSON objects (only the ``keep`` fields when given);
    the others are malformed.

    Lines that start with ``{`` and end with ``}`` (and open at most :data:`MAX_NESTING` lists
    or objects in a row) are parsed by pyarrow, except
    the few whose values it cannot take as the contract needs (see
    :func:`_odd_value_pattern`), which are built record by record. When pyarrow
    still rejects the body, a field it reports with mixed types is read as text
    (its non-text lines going record by record), and otherwise each line is
    checked with orjson, the lines it rejects going record by record too (where
    only those that are not JSON objects end malformed); failing all that, every
    record is built one by one. Numbers reach validation as written in the file.
    """
    ok = lines.matching(r"(?s)^\s*\{.*\}\s*$")[numbers - 1] & ~lines.matching(_TOO_DEEP)[numbers - 1]
    exact = tuple(keep) if keep is not None else numeric_fields
    pattern = f"{_odd_value_pattern(string_fields, numeric_fields, exact, list_fields)}|{_NULL_FIRST}"
    odd = lines.matching(pattern)[numbers - 1]
    text_fields = list(string_fields)
    values = None if keep is not None else (*string_fields, *numeric_fields)
    to_strings = {"keep": keep, "list_fields": list_fields, "values": values}
    block = max(_BLOCK, lines.longest() + 2)

    def arrow() -> tuple[pd.DataFrame | None, str]:
        schema = pa.schema([(name, pa.string()) for name in text_fields])
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        mask = ok & ~odd
        return _arrow_rows(lines.body(numbers[mask]), int(mask.sum()), options, block, to_strings)

    fast, error = arrow()
    checked = False
    for _ in range(_MAX_TYPE_FIXES):
        if fast is not None:
            break
        changed = _CHANGED_TYPE.search(error)
        if changed and changed.group(1) not in text_fields:
            # A field (e.g. an unknown drift field) with mixed types: the lines holding its rarer
            # kind of value (text, or anything else) go record by record; the rest parse typed.
            name = (changed.group(1),)
            as_text = lines.matching(_odd_value_pattern(name, ()))[numbers - 1]
            as_other = lines.matching(_odd_value_pattern((), name))[numbers - 1]
            if (as_text & ok & ~odd).sum() <= (as_other & ok & ~odd).sum():
                text_fields.append(name[0])
                odd |= as_text
            else:
                odd |= as_other
        elif not checked:
            candidates = np.flatnonzero(ok & ~odd)
            valid = np.fromiter(
                map(_is_json_object, lines.rows(numbers[candidates])), dtype=bool, count=len(candidates)
            )
            odd[candidates[~valid]] = True
            checked = True
        else:
            break
        fast, error = arrow()
    if fast is None:
        odd[:] = True
        fast = pd.DataFrame()
    fast[LINE] = numbers[ok & ~odd]
    slow, broken = _record_rows(lines, numbers[ok & odd], keep, list_fields)
    rows = pd.concat([fast, slow], ignore_index=True) if len(slow) else fast
    rows = rows.sort_values(LINE, kind="stable", ignore_index=True)
    present = tuple(c for c in rows.columns if c != LINE and rows[c].notna().any())
    malformed = np.sort(np.concatenate([numbers[~ok], broken]))
    return RawFile(path, rows, malformed, lines, present)


# --- CSV ----------------------------------------------------------------------------------------


class _Quotes:
    """The quote characters of a CSV text that change its quoting state, as pyarrow's (and
    Python's) CSV parsers read them.

    Only runs of an odd number of consecutive quotes matter (a pair is a literal quote or an
    empty value). A run at the start of a field (after a delimiter or a line feed) toggles
    the state: it opens a quoted value or, inside one, closes it. Any other run closes a
    quoted value and, outside one, is a literal character. So whether a byte lies inside a
    quoted value is the parity of the field-start runs since the last other run (or since
    the start of its line, given the state the line starts in).
    """

    def __init__(self, data: np.ndarray, begin: int, delimiter: int) -> None:
        quotes = np.flatnonzero(data[begin:] == _QUOTE) + begin
        first = np.flatnonzero(np.concatenate([[True], quotes[1:] != quotes[:-1] + 1])[: len(quotes)])
        odd = np.diff(np.append(first, len(quotes))) % 2 == 1
        self.positions = quotes[first][odd]
        before = data[np.maximum(self.positions - 1, 0)]
        field_start = (self.positions == 0) | np.isin(before, (delimiter, _NEWLINE))
        self.toggles = np.concatenate([[0], np.cumsum(field_start)])
        self.resets = np.flatnonzero(~field_start)

    def inside(self, points: np.ndarray, line_starts: np.ndarray, start_inside: int) -> np.ndarray:
        """1 where the byte at ``points`` lies inside a quoted value, its line starting at byte
        ``line_starts`` inside (``start_inside`` 1) or outside (0) a quoted value."""
        k = np.searchsorted(self.positions, points)
        k0 = np.searchsorted(self.positions, line_starts)
        j = np.searchsorted(self.resets, k) - 1
        last = self.resets[np.maximum(j, 0)] if len(self.resets) else np.zeros(len(k), dtype=np.int64)
        reset = (j >= 0) & (last >= k0)
        origin = np.where(reset, last + 1, k0)
        flips = self.toggles[k] - self.toggles[origin]
        return (np.where(reset, 0, start_inside) + flips) & 1


def _delimiters_outside(
    lines: Lines, data: np.ndarray, quotes: _Quotes, ranges: np.ndarray, delimiter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per line (0-based, all lines), the delimiters outside quoted values when the line starts
    outside a quoted value, and when it starts inside one; counted only in the line ``ranges``
    (0-based, inclusive, disjoint)."""
    positions = [
        np.flatnonzero(data[lines.offsets[a] : lines.offsets[b + 1]] == delimiter) + lines.offsets[a]
        for a, b in ranges.tolist()
    ]
    found = np.concatenate(positions) if positions else np.array([], dtype=np.int64)
    line = np.searchsorted(lines.offsets, found, side="right") - 1
    counts = []
    for start_inside in (0, 1):
        outside = quotes.inside(found, lines.offsets[line], start_inside) == 0
        counts.append(np.bincount(line[outside], minlength=len(lines)))
    return counts[0], counts[1]


@dataclass
class _Records:
    """Where the CSV records after the header are: ``first``/``last`` lines (1-based) of those
    handed to pyarrow, in order, and of those that are malformed before parsing."""

    first: np.ndarray
    last: np.ndarray
    bad_first: np.ndarray
    bad_last: np.ndarray


def _csv_records(lines: Lines, nonblank: np.ndarray, begin_line: int, width: int, delimiter: str) -> _Records:
    """Split the lines from ``begin_line`` (1-based) into RFC 4180 records of ``width`` fields;
    ``nonblank`` are the 1-based numbers of the lines that hold more than white space.

    A line that ends inside a quoted value opens a record that runs to the first
    line that closes it. That record is kept when it has ``width`` fields;
    otherwise — or when the quote is still open at the end of the file — the
    opening line alone is malformed and reading resumes at the next line.
    Blank lines outside quoted values are no records. A carriage return is an
    ordinary character in finding records, but a record with one outside quoted
    values that does not end a line is malformed (the CSV reader would split it
    there).
    """
    n = len(lines)
    data = np.frombuffer(lines.data, dtype=np.uint8)
    sep = ord(delimiter)
    begin = int(lines.offsets[begin_line - 1]) if begin_line <= n else len(lines.data)
    quotes = _Quotes(data, begin, sep)
    starts, ends = lines.offsets[:-1], lines.offsets[1:]
    openers = closers = np.array([], dtype=np.int64)
    if len(quotes.positions):
        quoted = np.unique(np.searchsorted(lines.offsets, quotes.positions, side="right") - 1)
        openers = quoted[quotes.inside(ends[quoted], starts[quoted], 0) == 1]
        closers = quoted[quotes.inside(ends[quoted], starts[quoted], 1) == 0]
    spans: list[tuple[int, int]] = []
    broken: list[int] = []
    if len(openers):
        at = np.searchsorted(closers, openers, side="right")
        closed = at < len(closers)
        close = np.full(len(openers), -1, dtype=np.int64)
        close[closed] = closers[at[closed]]
        fits = np.zeros(len(openers), dtype=bool)
        if closed.any():
            first, last = openers[closed], close[closed]
            reach = np.maximum.accumulate(last)
            group = np.flatnonzero(np.concatenate([[True], first[1:] > reach[:-1] + 1]))
            ranges = np.column_stack([first[group], reach[np.append(group[1:], len(first)) - 1]])
            from_start, within = _delimiters_outside(lines, data, quotes, ranges, sep)
            inner = np.concatenate([[0], np.cumsum(within)])
            fields = from_start[first] + inner[last + 1] - inner[first + 1] + 1
            fits[closed] = fields == width
        resume = begin_line - 1
        for opener, closer, fit in zip(openers.tolist(), close.tolist(), fits.tolist(), strict=True):
            if opener < resume:
                continue
            if fit:
                spans.append((opener, closer))
                resume = closer + 1
            else:
                broken.append(opener)
                resume = opener + 1
    in_span = np.zeros(n + 1, dtype=np.int64)
    span = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    np.add.at(in_span, span[:, 0], 1)
    np.add.at(in_span, span[:, 1] + 1, -1)
    covered = np.cumsum(in_span[:n]) > 0
    single = np.zeros(n, dtype=bool)
    single[nonblank - 1] = True
    single &= ~covered
    single[: begin_line - 1] = False
    single[np.asarray(broken, dtype=np.int64)] = False
    first = np.concatenate([np.flatnonzero(single), span[:, 0]])
    last = np.concatenate([np.flatnonzero(single), span[:, 1]])
    order = np.argsort(first, kind="stable")
    first, last = first[order], last[order]
    bad = np.zeros(len(first), dtype=bool)
    cr = np.flatnonzero(data[begin:] == _CR) + begin
    cr = cr[(cr + 1 < len(data)) & (data[np.minimum(cr + 1, len(data) - 1)] != _NEWLINE)]
    if len(cr) and len(first):
        line = np.searchsorted(lines.offsets, cr, side="right") - 1
        record = np.searchsorted(first, line, side="right") - 1
        member = (record >= 0) & (line <= last[np.maximum(record, 0)])
        line, record, cr = line[member], record[member], cr[member]
        start_inside = (line != first[record]).astype(np.int64)
        split = quotes.inside(cr, starts[line], start_inside) == 0
        bad[record[split]] = True
    broken_lines = np.asarray(broken, dtype=np.int64)
    return _Records(
        first[~bad] + 1,
        last[~bad] + 1,
        np.concatenate([broken_lines, first[bad]]) + 1,
        np.concatenate([broken_lines, last[bad]]) + 1,
    )


def _missing_columns_error(path: StoragePath, kind: str, missing: Sequence[str], header_line: str) -> str:
    columns = ", ".join(missing)
    return f"{path}: {kind} header has no {columns} column (header: {header_line!r})"


def _read_csv(
    path: StoragePath,
    lines: Lines,
    numbers: np.ndarray,
    required: Sequence[str],
    delimiter: str = ",",
    names: Sequence[str] = (),
    keep: Collection[str] | None = None,
) -> RawFile:
    """Parse RFC 4180 CSV records; the first non-blank line is the header unless ``names`` gives
    the columns. A record is positioned at the line where it starts.

    ``required`` columns must be in the header; ``keep`` limits the columns converted.
    """
    if len(numbers) == 0 and not names:
        raise UnreadableFileError(f"{path}: empty CSV file, expected a header row with {', '.join(required)}")
    header_line = ""
    if names:
        header = list(names)
    else:
        header_line = lines.rows(numbers[:1])[0].decode("utf-8")
        try:
            header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter))]
        except csv.Error as exc:
            raise UnreadableFileError(
                f"{path}: CSV header on line {numbers[0]} cannot be read ({exc}; header: {header_line!r})"
            ) from None
    missing = [c for c in required if c not in header]
    if missing:
        raise UnreadableFileError(_missing_columns_error(path, "CSV", missing, header_line))
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UnreadableFileError(f"{path}: CSV header repeats column(s) {', '.join(dupes)}")
    header_number = 0 if names else int(numbers[0])
    wanted = header if keep is None else [h for h in header if h in keep]
    records = _csv_records(lines, numbers, header_number + 1, len(header), delimiter)
    spans = np.column_stack(
        [np.concatenate([records.first, records.bad_first]), np.concatenate([records.last, records.bad_last])]
    )
    spans = spans[spans[:, 1] > spans[:, 0]]
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    if len(records.first) == 0:
        empty = pd.DataFrame({h: pd.Series(dtype="string") for h in wanted})
        empty[LINE] = np.array([], dtype=np.int64)
        return RawFile(
            path, empty, np.sort(records.bad_first), lines, tuple(header), header_number, spans=spans
        )
    invalid: list[int] = []

    def _skip(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.number)
        return "skip"

    member = np.zeros(len(lines) + 2, dtype=np.int64)
    np.add.at(member, records.first, 1)
    np.add.at(member, records.last + 1, -1)
    body_lines = np.flatnonzero(np.cumsum(member) > 0)
    longest = int((lines.offsets[records.last] - lines.offsets[records.first - 1]).max())
    try:
        table = pa_csv.read_csv(
            lines.body(body_lines),
            read_options=pa_csv.ReadOptions(
                use_threads=False, column_names=header, block_size=max(_BLOCK, longest + 2)
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=_skip, newlines_in_values=True
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                include_columns=wanted,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UnreadableFileError(f"{path}: CSV cannot be parsed: {exc}") from None
    bad_mask = np.zeros(len(records.first), dtype=bool)
    if invalid:
        bad_mask[np.asarray(invalid, dtype=np.int64) - 1] = True
    if table.num_rows != int((~bad_mask).sum()):
        raise UnreadableFileError(
            f"{path}: CSV records could not be matched to their lines "
            f"({table.num_rows} parsed, {int((~bad_mask).sum())} expected)"
        )
    rows = _arrow_to_strings(table)
    rows[LINE] = records.first[~bad_mask]
    malformed = np.sort(np.concatenate([records.bad_first, records.first[bad_mask]]))
    return RawFile(path, rows, malformed, lines, tuple(header), header=header_number, spans=spans)


def _read_whitespace(
    path: StoragePath,
    lines: Lines,
    numbers: np.ndarray,
    required: Sequence[str],
    names: Sequence[str] = (),
    keep: Collection[str] | None = None,
) -> RawFile:
    """Parse whitespace-separated rows (runs of spaces or tabs; leading ones ignored).

    A row with another number of values than the header has is malformed.
    """
    if len(numbers) == 0 and not names:
        raise UnreadableFileError(f"{path}: empty file, expected a header row with {', '.join(required)}")
    texts = pc.utf8_trim_whitespace(pc.cast(lines.select(numbers), pa.large_string()))
    parts = pc.split_pattern_regex(texts, r"\s+")
    header_line = ""
    if names:
        header = list(names)
    else:
        header_line = lines.rows(numbers[:1])[0].decode("utf-8")
        header = header_line.split()
        parts = parts.slice(1)
    missing = [c for c in required if c not in header]
    if missing:
        raise UnreadableFileError(_missing_columns_error(path, "whitespace-separated", missing, header_line))
    skip = 0 if names else 1
    data_numbers = numbers[skip:]
    ok = np.asarray(pc.equal(pc.list_value_length(parts), len(header)), dtype=bool)
    good = parts.filter(pa.array(ok))
    rows = pd.DataFrame(
        {
            name: pd.Series(pc.list_element(good, i).to_pandas(), dtype="string")
            for i, name in enumerate(header)
            if keep is None or name in keep
        },
        index=pd.RangeIndex(int(ok.sum())),
    )
    rows[LINE] = data_numbers[ok]
    header_number = 0 if names else int(numbers[0])
    return RawFile(path, rows, data_numbers[~ok], lines, tuple(header), header=header_number)


FORMATS: tuple[str, ...] = ("csv", "whitespace", "jsonl")


def read_table_file(
    path: StoragePath,
    fmt: str,
    required: Sequence[str] = (),
    *,
    delimiter: str = ",",
    names: Sequence[str] = (),
    string_fields: tuple[str, ...] = (),
    keep: Collection[str] | None = None,
    list_fields: Collection[str] = (),
) -> RawFile:
    """Parse ``path`` in format ``fmt`` (csv, whitespace or jsonl; the file may be gzip or zip).

    ``required`` columns must be in a header; ``names`` are the columns of a file
    without a header row; ``string_fields`` stay raw text in JSON; ``keep``
    limits the columns returned (None: all); a JSON list is ``;``-joined in
    ``list_fields`` and its JSON text elsewhere.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown file format {fmt!r}; formats: {', '.join(FORMATS)}")
    lines, numbers = _split_lines(read_bytes(path))
    if fmt == "jsonl":
        return _read_jsonl(path, lines, numbers, string_fields, (), keep, list_fields)
    if fmt == "whitespace":
        return _read_whitespace(path, lines, numbers, required, names, keep)
    return _read_csv(path, lines, numbers, required, delimiter, names, keep)


def read_jsonl_lines(
    path: StoragePath, lines: Lines, string_fields: tuple[str, ...], numeric_fields: tuple[str, ...]
) -> RawFile:
    """:func:`read_raw_file` of JSONL text already split into ``lines`` (``path`` names the file)."""
    return _read_jsonl(path, lines, lines.nonblank(), string_fields, numeric_fields)


def read_raw_file(
    path: StoragePath,
    key_field: str,
    string_fields: tuple[str, ...] = (),
    numeric_fields: tuple[str, ...] = (),
) -> RawFile:
    """Parse ``path`` (jsonl/csv, optionally gzip) into string columns plus line numbers.

    ``key_field`` is the record id a CSV header must name; ``string_fields``
    are read as text by the fast JSON reader (timestamps must stay raw text),
    ``numeric_fields`` are expected to hold JSON numbers (they reach validation
    as written). JSON lists are lists only in the contract's list fields
    (:data:`LIST_FIELDS`).
    """
    fmt = file_format(path)
    if fmt is None:
        raise UnreadableFileError(f"{path}: not a .jsonl or .csv file")
    lines, numbers = _split_lines(read_bytes(path))
    if fmt == "jsonl":
        return _read_jsonl(path, lines, numbers, string_fields, numeric_fields)
    return _read_csv(path, lines, numbers, (key_field,))
