"""Apply a source mapping: a source file's columns become the contract's fields, as text.

The result looks like the rows of a native file (a string column per contract
field plus ``_line``), so the contract's validation, quarantine and
latest-version rules apply unchanged. Timestamps are parsed here, with the
source's format and time zone, and handed on as ISO-8601 UTC text; a field
given as ``minutes_after`` another is that field's time plus its column's
minutes. What the mapping itself rejects (a timestamp that does not parse, a
value its map does not know, minutes that are not a number ≥ 0) travels in
``_reason``; validation merges it with its own reasons by the contract's
precedence. ``_order`` carries the version order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kpi_pipeline.contract import BAD_TIMESTAMP, BAD_VALUE
from kpi_pipeline.ingest.raw_files import LINE, ORDER, PRIOR
from kpi_pipeline.sources.model import FILE_COLUMN, LINE_COLUMN, FieldSpec, SourceMapping, fold

# A timestamp that states its own offset; any other is read in the source's time zone.
OFFSET_PATTERN = r"(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$"
# A number of minutes as exports write numbers (the contract's decimal numbers, as
# ``ingest.rows.NUMBER_PATTERN``): optional sign, digits with an optional fraction and exponent.
MINUTES_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
MICROSECONDS_PER_MINUTE = 60_000_000
# The latest time a field given in minutes may reach: its ISO-8601 text has a four-digit year.
LAST_MICROSECOND = np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64)

Column = Callable[[str], pd.Series]


@dataclass
class MappedRows:
    """A file's rows as contract fields: ``rows`` (fields, ``_line``, ``_reason``, maybe ``_order``),
    the contract ``fields`` the mapping fills, and how many rows its filters left out."""

    rows: pd.DataFrame
    fields: tuple[str, ...]
    filtered: int


def parse_local_timestamps(values: pd.Series, fmt: str, timezone: str) -> pd.Series:
    """Text → UTC timestamps (NaT where it does not parse).

    A value with an offset (or ``Z``) keeps it; a naive value is wall time in
    ``timezone``. In the hour a DST change repeats, the first occurrence is
    taken; a time in the hour it skips moves forward to the first valid time.
    """
    text = values.astype("string").str.strip()
    if timezone == "UTC":
        return pd.to_datetime(text, format=fmt, utc=True, errors="coerce").astype("datetime64[us, UTC]")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    aware = text.str.contains(OFFSET_PATTERN, regex=True).fillna(False).to_numpy(dtype=bool)
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], format=fmt, utc=True, errors="coerce")
    naive = ~aware & text.notna().to_numpy(dtype=bool)
    if naive.any():
        local = pd.to_datetime(text[naive], format=fmt, errors="coerce")
        if local.dt.tz is None:
            local = local.dt.tz_localize(
                timezone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="shift_forward"
            )
        out[naive] = local.dt.tz_convert("UTC")
    return out


def iso_text(timestamps: pd.Series) -> pd.Series:
    """UTC timestamps as ISO-8601 text ending in ``Z`` (NA for NaT)."""
    wall = timestamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.char.add(np.datetime_as_string(wall, unit="us"), "Z")
    return pd.Series(text, index=timestamps.index, dtype="string").where(timestamps.notna())


def _column_reader(rows: pd.DataFrame, file_label: str, markers: frozenset[str]) -> Column:
    """A cached reader of source columns with missing-value markers turned into NA.

    ``$line`` is the row's line number, ``$file`` the file as the quarantine
    names it (``file_label``); a column the file lacks is all NA.
    """
    cache: dict[str, pd.Series] = {}

    def column(name: str) -> pd.Series:
        if name not in cache:
            if name == LINE_COLUMN:
                values = rows[LINE].astype("string")
            elif name == FILE_COLUMN:
                values = pd.Series(file_label, index=rows.index, dtype="string")
            elif name in rows.columns:
                values = rows[name].astype("string")
                values = values.mask(values.str.strip().isin(markers).to_numpy(dtype=bool))
            else:
                values = pd.Series(pd.NA, index=rows.index, dtype="string")
            cache[name] = values
        return cache[name]

    return column


def _markers(mapping: SourceMapping) -> frozenset[str]:
    return frozenset({"", *(m.strip() for m in mapping.missing)})


def _kept(mapping: SourceMapping, column: Column, count: int) -> np.ndarray:
    """Rows that pass the mapping's ``include`` and ``exclude`` filters."""
    keep = np.ones(count, dtype=bool)
    for name, allowed in mapping.include.items():
        folded = column(name).str.strip().str.casefold()
        keep &= folded.isin([fold(v) for v in allowed]).to_numpy(dtype=bool)
    for name, banned in mapping.exclude.items():
        folded = column(name).str.strip().str.casefold()
        keep &= ~folded.isin([fold(v) for v in banned]).to_numpy(dtype=bool)
    return keep


def _translate(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, np.ndarray]:
    """Values through the field's value map, and where the map did not know a value.

    An unknown value stays as it was (with ``unmapped: keep`` that is the point;
    with ``reject`` the row is rejected anyway).
    """
    folded = values.str.strip().str.casefold()
    mapped = pd.Series(folded.map(spec.folded_values()), index=values.index, dtype="string")
    unknown = (values.notna() & mapped.isna()).to_numpy(dtype=bool)
    return mapped.where(~unknown, values), unknown


def _list_values(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, np.ndarray]:
    """A list field: split on the field's separator (``;`` by default), items trimmed and mapped,
    re-joined with ``;``; and the rows holding an item the value map did not know."""
    exploded = values.str.split(spec.split or ";", regex=False).explode()
    row = exploded.index.to_numpy()
    items = pd.Series(exploded.to_numpy(), dtype="string").str.strip()
    present = (items.notna() & items.ne("")).to_numpy(dtype=bool)
    items, row = items[present].reset_index(drop=True), row[present]
    unknown = np.zeros(len(values), dtype=bool)
    if spec.values:
        items, item_unknown = _translate(items, spec)
        unknown = values.index.isin(row[item_unknown])
    joined = items.groupby(row).agg(";".join)
    return joined.reindex(values.index).astype("string"), unknown


def _field_text(
    name: str, mapping: SourceMapping, column: Column, index: pd.Index
) -> tuple[pd.Series, np.ndarray]:
    """A contract field's text before timestamp parsing, and the rows whose value the map rejects."""
    if name in mapping.constants:
        return pd.Series(mapping.constants[name], index=index, dtype="string"), np.zeros(len(index), bool)
    spec = mapping.fields[name]
    parts = [column(n) for n in spec.names]
    values = parts[0] if len(parts) == 1 else parts[0].str.cat(parts[1:], sep=spec.join)
    unknown = np.zeros(len(index), dtype=bool)
    if name in mapping.LISTS:
        values, unknown = _list_values(values, spec)
    elif spec.values:
        values, unknown = _translate(values, spec)
    if spec.default is not None:
        values = values.fillna(spec.default)
    rejected = unknown if spec.unmapped == "reject" else np.zeros(len(index), dtype=bool)
    return values, rejected


def minutes_after(base: pd.Series, minutes: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``base`` (UTC timestamps) plus ``minutes`` (text), to the microsecond; and the rows whose
    minutes are given but are not a decimal number ≥ 0 (or would pass the year 9999).

    Blank minutes, or a base without a time, give NaT.
    """
    text = minutes.str.strip()
    decimal = text.str.fullmatch(MINUTES_PATTERN).fillna(False).to_numpy(dtype=bool)
    number = pd.to_numeric(text.where(decimal), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        micro = np.rint(number * MICROSECONDS_PER_MINUTE)
        fits = np.isfinite(micro) & (micro >= 0) & (micro <= LAST_MICROSECOND)
    delta = np.where(fits, micro, 0.0).astype(np.int64)
    wall = base.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    fits &= delta <= LAST_MICROSECOND - np.maximum(wall.astype(np.int64), 0)  # NaT counts as 1970
    stamps = np.where(fits, wall + delta.astype("timedelta64[us]"), np.datetime64("NaT", "us"))
    result = pd.Series(stamps, index=base.index, dtype="datetime64[us]").dt.tz_localize("UTC")
    return result, minutes.notna().to_numpy(dtype=bool) & ~fits


@dataclass
class _Timestamps:
    """A timestamp field of the rows: its ``text`` as handed on, ``parsed`` UTC times, the rows
    whose text is no timestamp (``unparsed``) and those the mapping rejects (``rejected``)."""

    text: pd.Series
    parsed: pd.Series
    unparsed: np.ndarray
    rejected: np.ndarray


def _timestamp_field(
    name: str, mapping: SourceMapping, column: Column, index: pd.Index, done: dict[str, _Timestamps]
) -> _Timestamps:
    """A timestamp field, parsed in the source's format and zone or counted in minutes after
    another (``minutes_after``; that one is parsed once, kept in ``done``)."""
    if name in done:
        return done[name]
    values, rejected = _field_text(name, mapping, column, index)
    spec = mapping.fields.get(name)
    if spec is not None and spec.minutes_after is not None:
        base = _timestamp_field(spec.minutes_after, mapping, column, index, done)
        parsed, bad = minutes_after(base.parsed, values)
        field = _Timestamps(iso_text(parsed), parsed, np.zeros(len(index), dtype=bool), rejected | bad)
    else:
        parsed = parse_local_timestamps(values, mapping.format_of(name), mapping.timezone)
        unparsed = (values.notna() & parsed.isna()).to_numpy(dtype=bool)
        field = _Timestamps(iso_text(parsed).where(~unparsed, values), parsed, unparsed, rejected)
    done[name] = field
    return field


def mapped_timestamps(rows: pd.DataFrame, mapping: SourceMapping, name: str, file_label: str) -> pd.Series:
    """One timestamp field of every row (no filters applied), as UTC timestamps; NaT where absent
    or unparseable."""
    column = _column_reader(rows, file_label, _markers(mapping))
    return _timestamp_field(name, mapping, column, rows.index, {}).parsed


def map_rows(rows: pd.DataFrame, mapping: SourceMapping, file_label: str) -> MappedRows:
    """Source rows (string columns plus ``_line``) → contract fields as text plus ``_line``,
    ``_reason`` (the mapping's own quarantine reason, NA when none) and ``_order`` (when versioned).

    Rows the filters leave out are dropped and counted.
    """
    markers = _markers(mapping)
    keep = _kept(mapping, _column_reader(rows, file_label, markers), len(rows))
    rows = rows.loc[keep].reset_index(drop=True)
    column = _column_reader(rows, file_label, markers)
    fields = tuple(f for f in mapping.FIELDS if f in mapping.fields or f in mapping.constants)

    out: dict[str, pd.Series] = {}
    bad_timestamp = np.zeros(len(rows), dtype=bool)
    labels: list[str] = []
    rejected: list[np.ndarray] = []
    timestamps: dict[str, _Timestamps] = {}
    for name in fields:
        if name in mapping.TIMESTAMPS:
            field = _timestamp_field(name, mapping, column, rows.index, timestamps)
            values, unknown = field.text, field.rejected
            bad_timestamp |= field.unparsed
        else:
            values, unknown = _field_text(name, mapping, column, rows.index)
        out[name] = values
        labels.append(f"{BAD_VALUE}:{name}")
        rejected.append(unknown)

    reason = np.full(len(rows), None, dtype=object)
    if rejected:
        matrix = np.column_stack(rejected)
        reason = np.where(matrix.any(axis=1), np.array(labels, dtype=object)[matrix.argmax(axis=1)], None)
    reason = np.where(bad_timestamp, BAD_TIMESTAMP, reason)

    mapped = pd.DataFrame(out, index=rows.index)
    mapped[LINE] = rows[LINE].to_numpy()
    mapped[PRIOR] = pd.Series(reason, index=rows.index, dtype="string")
    if mapping.version is not None:
        raw = column(mapping.version.column)
        if mapping.version.type == "number":
            mapped[ORDER] = pd.to_numeric(raw.str.strip(), errors="coerce").astype("float64")
        else:
            mapped[ORDER] = parse_local_timestamps(raw, mapping.timestamp_format, mapping.timezone)
    return MappedRows(mapped, fields, int((~keep).sum()))
