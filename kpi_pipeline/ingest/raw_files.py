"""Read one raw export file (JSONL, CSV or whitespace-separated; optionally gzip or zip) into
string columns.

Every non-blank line becomes either a parsed row (all values as strings, with
its 1-based line number) or a malformed row; nothing is dropped. Parsing is
columnar (pyarrow); a JSONL file with broken lines falls back to orjson per
line, the path the contract needs to find and keep the broken lines.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

LINE = "_line"
PRIOR = "_reason"  # a source mapping's quarantine reason for the row (NA where it found none)
ORDER = "_order"  # a source mapping's version order of the row (the latest version wins)


class UnreadableFileError(RuntimeError):
    """A file that cannot be read at all; the message names the file and the problem."""


class Lines:
    """The lines of a decoded file as one Arrow array over the file's own bytes (no copy per
    line). Element i is line i+1 with its line break, so the lines chosen by a mask, taken
    together, are the text to hand to pyarrow's readers."""

    def __init__(self, data: bytes) -> None:
        breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        starts = np.concatenate([[0], breaks + 1])
        if starts[-1] == len(data):  # the file ends with a line break: no empty last line
            starts = starts[:-1]
        offsets = np.append(starts, len(data)).astype(np.int64)
        self.array = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )

    def __len__(self) -> int:
        return len(self.array)

    def matching(self, pattern: str) -> np.ndarray:
        """Boolean mask of the lines in which the RE2 ``pattern`` matches."""
        return np.asarray(pc.match_substring_regex(self.array, pattern), dtype=bool)

    def nonblank(self) -> np.ndarray:
        """1-based numbers of the lines that hold more than white space."""
        return np.flatnonzero(~self.matching(r"^\s*$")) + 1

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
        return [line.rstrip(b"\r\n") for line in self.select(np.asarray(numbers)).to_pylist()]


@dataclass
class RawFile:
    """One parsed raw file.

    ``rows`` holds one row per parsed record: a string column per field found
    in the file plus ``_line``. ``malformed_lines`` are the 1-based line numbers
    of records that could not be parsed. ``lines`` keeps every line (over the
    file's bytes) so rejected rows can be quarantined with their original text.
    ``header`` is the line number of the header row (0 when the file has none);
    ``filtered`` counts rows a source mapping's filters left out (not in ``rows``).
    """

    path: Path
    rows: pd.DataFrame
    malformed_lines: np.ndarray
    lines: Lines = field(repr=False)
    columns: tuple[str, ...] = ()
    header: int = 0
    filtered: int = 0

    @property
    def raw_rows(self) -> int:
        return len(self.rows) + len(self.malformed_lines)

    def line_text(self, line_numbers: np.ndarray | pd.Series) -> list[str]:
        """Original text of the given 1-based lines (for the quarantine)."""
        return [line.decode("utf-8", errors="replace") for line in self.lines.rows(np.asarray(line_numbers))]


def file_format(path: Path) -> str | None:
    """``jsonl`` or ``csv`` for readable extensions (optionally ``.gz``), else None."""
    name = path.name.lower()
    name = name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return None


def _unzip(path: Path, data: bytes) -> bytes:
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


def read_bytes(path: Path) -> bytes:
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


def _list_items(col: pa.Array) -> pa.Array:
    """A list column as lists of text: objects stand for their ``name`` (status-page components)."""
    items = col.values
    if pa.types.is_struct(items.type) and items.type.get_field_index("name") >= 0:
        items = pc.struct_field(items, "name")
    return pa.ListArray.from_arrays(col.offsets, pc.cast(items, pa.string()), mask=col.is_null())


def _arrow_to_strings(table: pa.Table, keep: Collection[str] | None = None) -> pd.DataFrame:
    """Every column (or the ``keep`` ones) as pandas strings: numbers keep their JSON spelling,
    lists are ';'-joined."""
    out: dict[str, pd.Series] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if keep is not None and name not in keep:
            continue
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_list(col.type):
            col = pc.binary_join(_list_items(col), ";")
        elif not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            try:
                col = pc.cast(col, pa.string())
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                col = pa.array([None if v is None else orjson.dumps(v).decode() for v in col.to_pylist()])
        out[name] = pd.Series(col.to_pandas(), dtype="string")
    return pd.DataFrame(out)


def _item_text(item: object) -> str:
    """One list item as text; an object stands for its ``name`` (as in :func:`_list_items`)."""
    if isinstance(item, dict) and "name" in item:
        return "" if item["name"] is None else str(item["name"])
    return str(item)


def _to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ";".join("" if v is None else _item_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)


def _parse_json_line(line: bytes) -> dict[str, str | None]:
    """One JSONL object (already known to be one) with every value as text."""
    return {str(k): _to_text(v) for k, v in orjson.loads(line).items()}


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _alternatives(names: tuple[str, ...]) -> str:
    return "|".join(re.escape(n) for n in names) or "[^\\s\\S]"


def _odd_value_pattern(string_fields: tuple[str, ...], numeric_fields: tuple[str, ...]) -> str:
    """RE2 pattern for a text field holding a non-text JSON value, or a numeric field
    holding text: the values pyarrow's typed reader cannot take."""
    text, numeric = _alternatives(string_fields), _alternatives(numeric_fields)
    return (
        rf'"(?:{text})"\s*:\s*(?:-?\d|true|false|\[|\{{)'
        rf'|"(?:{numeric})"\s*:\s*(?:"|true|false|\[|\{{)'
    )


def _arrow_rows(
    body: pa.BufferReader, count: int, options: pa_json.ParseOptions, keep: Collection[str] | None
) -> tuple[pd.DataFrame | None, str]:
    """Parse JSONL with pyarrow: (rows, "") or (None, why pyarrow rejected the body)."""
    if count == 0:
        return pd.DataFrame(), ""
    try:
        table = pa_json.read_json(body, parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return None, str(exc)
    if table.num_rows != count:
        return None, f"{table.num_rows} records in {count} lines"
    return _arrow_to_strings(table, keep), ""


# pyarrow's message when a field holds numbers in some rows and text in others.
_CHANGED_TYPE = re.compile(r"Column\(/([^)]+)\) changed from")
_MAX_TYPE_FIXES = 16


def _record_rows(lines: Lines, numbers: np.ndarray, keep: Collection[str] | None) -> pd.DataFrame:
    """The given lines built record by record (the path for lines pyarrow cannot type)."""
    records = [_parse_json_line(line) for line in lines.rows(numbers)]
    if not records:
        return pd.DataFrame()
    rows = pd.DataFrame.from_records(records).astype("string")
    return rows if keep is None else rows[[c for c in rows.columns if c in keep]]


def _read_jsonl(
    path: Path,
    lines: Lines,
    numbers: np.ndarray,
    string_fields: tuple[str, ...],
    numeric_fields: tuple[str, ...],
    keep: Collection[str] | None = None,
) -> RawFile:
    """Columnar parse of the lines that are JSON objects (only the ``keep`` fields when given);
    the others are malformed.

    Lines that start with ``{`` and end with ``}`` are parsed by pyarrow, except
    the few whose values pyarrow cannot type (a number in a text field, text in
    a numeric one), which are built record by record. When pyarrow still
    rejects the body, a field it reports with mixed types is read as text (its
    non-text lines going record by record), and otherwise each line is checked
    with orjson to find the broken ones; failing all that, every record is built
    one by one.
    """
    ok = lines.matching(r"(?s)^\s*\{.*\}\s*$")[numbers - 1]
    odd = lines.matching(_odd_value_pattern(string_fields, numeric_fields))[numbers - 1]
    text_fields = list(string_fields)

    def arrow() -> tuple[pd.DataFrame | None, str]:
        schema = pa.schema([(name, pa.string()) for name in text_fields])
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        mask = ok & ~odd
        return _arrow_rows(lines.body(numbers[mask]), int(mask.sum()), options, keep)

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
            ok &= np.fromiter(map(_is_json_object, lines.rows(numbers)), dtype=bool, count=len(numbers))
            checked = True
        else:
            break
        fast, error = arrow()
    if fast is None:
        odd[:] = True
        fast = pd.DataFrame()
    fast[LINE] = numbers[ok & ~odd]
    slow = _record_rows(lines, numbers[ok & odd], keep)
    slow[LINE] = numbers[ok & odd]
    rows = pd.concat([fast, slow], ignore_index=True) if len(slow) else fast
    rows = rows.sort_values(LINE, kind="stable", ignore_index=True)
    present = tuple(c for c in rows.columns if c != LINE and rows[c].notna().any())
    return RawFile(path, rows, numbers[~ok], lines, present)


def _missing_columns_error(path: Path, kind: str, missing: Sequence[str], header_line: str) -> str:
    columns = ", ".join(missing)
    return f"{path}: {kind} header has no {columns} column (header: {header_line!r})"


def _read_csv(
    path: Path,
    lines: Lines,
    numbers: np.ndarray,
    required: Sequence[str],
    delimiter: str = ",",
    names: Sequence[str] = (),
    keep: Collection[str] | None = None,
) -> RawFile:
    """Parse CSV rows; the first non-blank line is the header unless ``names`` gives the columns.

    ``required`` columns must be in the header; ``keep`` limits the columns converted.
    """
    if len(numbers) == 0 and not names:
        raise UnreadableFileError(f"{path}: empty CSV file, expected a header row with {', '.join(required)}")
    header_line = ""
    if names:
        header = list(names)
    else:
        header_line = lines.rows(numbers[:1])[0].decode("utf-8")
        header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter))]
    missing = [c for c in required if c not in header]
    if missing:
        raise UnreadableFileError(_missing_columns_error(path, "CSV", missing, header_line))
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UnreadableFileError(f"{path}: CSV header repeats column(s) {', '.join(dupes)}")
    skip = 0 if names else 1
    if len(numbers) == 0:
        empty = pd.DataFrame({h: pd.Series(dtype="string") for h in header if keep is None or h in keep})
        empty[LINE] = np.array([], dtype=np.int64)
        return RawFile(path, empty, numbers, lines, tuple(header))
    body = lines.body(numbers)
    invalid: list[int] = []

    def _skip(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.number)
        return "skip"

    wanted = header if keep is None else [h for h in header if h in keep]
    try:
        table = pa_csv.read_csv(
            body,
            read_options=pa_csv.ReadOptions(use_threads=False, column_names=header, skip_rows=skip),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=_skip, newlines_in_values=False
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
    # pyarrow numbers rows of the joined body from 1 (the header, when there is one); map them back.
    data_numbers = numbers[skip:]
    bad_mask = np.zeros(len(data_numbers), dtype=bool)
    if invalid:
        bad_mask[np.asarray(invalid, dtype=np.int64) - 1 - skip] = True
    rows = _arrow_to_strings(table)
    rows[LINE] = data_numbers[~bad_mask]
    header_number = 0 if names else int(numbers[0])
    return RawFile(path, rows, data_numbers[bad_mask], lines, tuple(header), header=header_number)


def _read_whitespace(
    path: Path,
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
    path: Path,
    fmt: str,
    required: Sequence[str] = (),
    *,
    delimiter: str = ",",
    names: Sequence[str] = (),
    string_fields: tuple[str, ...] = (),
    keep: Collection[str] | None = None,
) -> RawFile:
    """Parse ``path`` in format ``fmt`` (csv, whitespace or jsonl; the file may be gzip or zip).

    ``required`` columns must be in a header; ``names`` are the columns of a file
    without a header row; ``string_fields`` stay raw text in JSON; ``keep``
    limits the columns returned (None: all).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown file format {fmt!r}; formats: {', '.join(FORMATS)}")
    lines, numbers = _split_lines(read_bytes(path))
    if fmt == "jsonl":
        return _read_jsonl(path, lines, numbers, string_fields, (), keep)
    if fmt == "whitespace":
        return _read_whitespace(path, lines, numbers, required, names, keep)
    return _read_csv(path, lines, numbers, required, delimiter, names, keep)


def read_raw_file(
    path: Path, key_field: str, string_fields: tuple[str, ...] = (), numeric_fields: tuple[str, ...] = ()
) -> RawFile:
    """Parse ``path`` (jsonl/csv, optionally gzip) into string columns plus line numbers.

    ``key_field`` is the record id a CSV header must name; ``string_fields``
    are read as text by the fast JSON reader (timestamps must stay raw text),
    ``numeric_fields`` are expected to hold JSON numbers.
    """
    fmt = file_format(path)
    if fmt is None:
        raise UnreadableFileError(f"{path}: not a .jsonl or .csv file")
    lines, numbers = _split_lines(read_bytes(path))
    if fmt == "jsonl":
        return _read_jsonl(path, lines, numbers, string_fields, numeric_fields)
    return _read_csv(path, lines, numbers, (key_field,))
