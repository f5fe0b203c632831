"""Read one raw export file (JSONL or CSV, optionally gzip) into string columns.

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
import zlib
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


class UnreadableFileError(RuntimeError):
    """A file that cannot be read at all; the message names the file and the problem."""


@dataclass
class RawFile:
    """One parsed raw file.

    ``rows`` holds one row per parsed record: a string column per field found
    in the file plus ``_line``. ``malformed_lines`` are the 1-based line numbers
    of records that could not be parsed. ``lines`` keeps the decoded text of
    every line so rejected rows can be quarantined with their original text.
    """

    path: Path
    rows: pd.DataFrame
    malformed_lines: np.ndarray
    lines: list[bytes] = field(repr=False)
    columns: tuple[str, ...] = ()

    @property
    def raw_rows(self) -> int:
        return len(self.rows) + len(self.malformed_lines)

    def line_text(self, line_numbers: np.ndarray | pd.Series) -> list[str]:
        """Original text of the given 1-based lines (for the quarantine)."""
        idx = np.asarray(line_numbers, dtype=np.int64) - 1
        return [self.lines[i].rstrip(b"\r").decode("utf-8", errors="replace") for i in idx]


def file_format(path: Path) -> str | None:
    """``jsonl`` or ``csv`` for readable extensions (optionally ``.gz``), else None."""
    name = path.name.lower()
    name = name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return None


def read_bytes(path: Path) -> bytes:
    """File contents, gunzipped for ``.gz``; fails naming the file when not gzip or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableFileError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); re-export it as UTF-8"
        ) from None
    return data.removeprefix(b"\xef\xbb\xbf")


def _split_lines(data: bytes) -> tuple[list[bytes], np.ndarray]:
    """All lines, and the 1-based numbers of the non-blank ones."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lengths = np.fromiter(map(len, map(bytes.strip, lines)), dtype=np.int64, count=len(lines))
    return lines, np.flatnonzero(lengths > 0) + 1


def _arrow_to_strings(table: pa.Table) -> pd.DataFrame:
    """Every column as pandas strings (numbers keep their JSON spelling, lists are ';'-joined)."""
    out: dict[str, pd.Series] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.binary_join(pc.cast(col, pa.list_(pa.string())), ";")
        elif not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            try:
                col = pc.cast(col, pa.string())
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                col = pa.array([None if v is None else orjson.dumps(v).decode() for v in col.to_pylist()])
        out[name] = pd.Series(col.to_pandas(), dtype="string")
    return pd.DataFrame(out)


def _to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ";".join("" if v is None else str(v) for v in value)
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


def _arrow_rows(body: bytes, count: int, options: pa_json.ParseOptions) -> pd.DataFrame | None:
    """Parse JSONL with pyarrow; None when it rejects the body (a broken line or mixed value types)."""
    if count == 0:
        return pd.DataFrame()
    try:
        table = pa_json.read_json(io.BytesIO(body), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return _arrow_to_strings(table) if table.num_rows == count else None


def _record_rows(candidates: list[bytes], mask: np.ndarray) -> pd.DataFrame:
    """The masked lines built record by record (the path for lines pyarrow cannot type)."""
    records = [_parse_json_line(c) for c, keep in zip(candidates, mask, strict=True) if keep]
    return pd.DataFrame.from_records(records).astype("string") if records else pd.DataFrame()


def _read_jsonl(
    path: Path,
    lines: list[bytes],
    numbers: np.ndarray,
    string_fields: tuple[str, ...],
    numeric_fields: tuple[str, ...],
) -> RawFile:
    """Columnar parse of the lines that are JSON objects; the others are malformed.

    Lines that start with ``{`` and end with ``}`` are parsed by pyarrow, except
    the few whose values pyarrow cannot type (a number in a text field, text in
    a numeric one), which are built record by record. When pyarrow still
    rejects the body, each line is checked with orjson to find the broken ones,
    and, failing that, every record is built one by one.
    """
    candidates = [lines[i - 1].strip() for i in numbers]
    count = len(candidates)
    column = pa.array(candidates, type=pa.binary())
    ok = np.array(pc.and_(pc.starts_with(column, "{"), pc.ends_with(column, "}")), dtype=bool)
    pattern = _odd_value_pattern(string_fields, numeric_fields)
    odd = np.array(pc.match_substring_regex(column, pattern), dtype=bool)
    schema = pa.schema([(name, pa.string()) for name in string_fields])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")

    def arrow(mask: np.ndarray) -> pd.DataFrame | None:
        body = b"\n".join(c for c, keep in zip(candidates, mask, strict=True) if keep)
        return _arrow_rows(body, int(mask.sum()), options)

    fast = arrow(ok & ~odd)
    if fast is None:
        ok &= np.fromiter(map(_is_json_object, candidates), dtype=bool, count=count)
        fast = arrow(ok & ~odd)
    if fast is None:
        odd[:] = True
        fast = pd.DataFrame()
    fast[LINE] = numbers[ok & ~odd]
    slow = _record_rows(candidates, ok & odd)
    slow[LINE] = numbers[ok & odd]
    rows = pd.concat([fast, slow], ignore_index=True) if len(slow) else fast
    rows = rows.sort_values(LINE, kind="stable", ignore_index=True)
    present = tuple(c for c in rows.columns if c != LINE and rows[c].notna().any())
    return RawFile(path, rows, numbers[~ok], lines, present)


def _read_csv(path: Path, lines: list[bytes], numbers: np.ndarray, key_field: str) -> RawFile:
    if len(numbers) == 0:
        raise UnreadableFileError(f"{path}: empty CSV file, expected a header row with {key_field}")
    header_line = lines[numbers[0] - 1].decode("utf-8").rstrip("\r")
    header = next(csv.reader([header_line]))
    header = [h.strip() for h in header]
    if key_field not in header:
        raise UnreadableFileError(f"{path}: CSV header has no {key_field} column (header: {header_line!r})")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UnreadableFileError(f"{path}: CSV header repeats column(s) {', '.join(dupes)}")
    body = b"\n".join(lines[i - 1] for i in numbers)
    invalid: list[int] = []

    def _skip(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.number)
        return "skip"

    try:
        table = pa_csv.read_csv(
            io.BytesIO(body),
            read_options=pa_csv.ReadOptions(use_threads=False, column_names=header, skip_rows=1),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=_skip, newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UnreadableFileError(f"{path}: CSV cannot be parsed: {exc}") from None
    # pyarrow numbers rows of the joined body from 1 (the header); map them back to file lines.
    data_numbers = numbers[1:]
    bad_mask = np.zeros(len(data_numbers), dtype=bool)
    if invalid:
        bad_mask[np.asarray(invalid, dtype=np.int64) - 2] = True
    rows = _arrow_to_strings(table)
    rows[LINE] = data_numbers[~bad_mask]
    return RawFile(path, rows, data_numbers[bad_mask], lines, tuple(header))


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
    return _read_csv(path, lines, numbers, key_field)
