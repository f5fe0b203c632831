"""Column operations shared by the staging of every source: blanks, timestamps,
first-applicable quarantine reason, and the quarantine frame itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    BAD_VALUE,
    DUPLICATE_EVENT_ID,
    MALFORMED,
    MAX_COUNT,
    MAX_TEXT_LENGTH,
    MISSING_FIELD,
    OUTSIDE_PARTITION,
    UNKNOWN_EVENT_TYPE,
)
from kpi_pipeline.ingest.discovery import list_files
from kpi_pipeline.ingest.raw_files import LINE, ORDER, PRIOR, RawFile, read_raw_file
from kpi_pipeline.sources.files import read_mapped_file, source_files
from kpi_pipeline.sources.model import SourceMapping
from kpi_pipeline.storage import StoragePath, relative_name
from kpi_pipeline.tables import conform, table

QUARANTINE_COLUMNS: tuple[str, ...] = table("quarantine").column_names
FILE = "_file"
# The contract's quarantine reasons, first applicable first (``missing_field:x`` ranks as missing_field).
REASON_ORDER: tuple[str, ...] = (
    MALFORMED,
    MISSING_FIELD,
    BAD_TIMESTAMP,
    OUTSIDE_PARTITION,
    UNKNOWN_EVENT_TYPE,
    BAD_VALUE,
    DUPLICATE_EVENT_ID,
)
_REASON_RANK: dict[str, int] = {name: position for position, name in enumerate(REASON_ORDER)}


def _arrow_text(values: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow array behind a pyarrow-backed string column (None for any other dtype). Arrow's
    kernels are what pandas runs for such a column anyway, without pandas' per-call overhead, which
    dominates on the small frames of a day's few odd lines or a small export."""
    if isinstance(values.array, pd.arrays.ArrowStringArray):
        return values.array.__arrow_array__()
    return None


def _mask(flags: pa.ChunkedArray, index: pd.Index) -> pd.Series:
    return pd.Series(flags.to_numpy(zero_copy_only=False), index=index, dtype=bool)


def is_blank(values: pd.Series) -> pd.Series:
    """True where a value is absent, null or only whitespace."""
    text = _arrow_text(values)
    if text is not None:
        return _mask(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True), values.index)
    return values.isna() | values.str.strip().eq("").fillna(True)


def parse_timestamps(values: pd.Series) -> pd.Series:
    """ISO-8601 text to UTC timestamps (naive = UTC); unparseable → NaT."""
    return pd.to_datetime(values.str.strip(), utc=True, format="ISO8601", errors="coerce")


# A decimal number as exports write it: optional sign, digits with an optional fraction, optional
# exponent. No hex, no digit separators, no inf/Infinity/NaN, no lists or booleans.
NUMBER_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
# A whole number in decimal digits, optionally with a zero fraction (``3.0``); groups: sign, digits
# without leading zeros.
COUNT_PATTERN = r"^([+-]?)0*([0-9]+?)(?:\.0*)?$"


def parse_numbers(values: pd.Series) -> pd.Series:
    """Decimal text (surrounding white space ignored) to float64; NaN where the text is not a
    decimal number or its value is not finite (``1e400``). ``-0`` is 0."""
    text = values.str.strip()
    decimal = _flags(text.str.fullmatch(NUMBER_PATTERN))
    number = pd.to_numeric(text.where(decimal), errors="coerce").astype("float64")
    return number.where(np.isfinite(number)) + 0.0


def parse_counts(values: pd.Series) -> pd.Series:
    """Whole-number text (``3``, ``+3``, ``003``, ``3.0``; surrounding white space ignored) to Int64;
    NA where the text is not a whole decimal number or its value does not fit int64. Exact for
    every int64 (no trip through float); ``-0`` is 0."""
    parts = values.str.strip().str.extract(COUNT_PATTERN)
    negative = _flags(parts[0].astype("string").eq("-"))
    digits = parts[1].astype("string")
    width, limit = digits.str.len(), str(MAX_COUNT)
    fits = _flags(width.lt(len(limit))) | (_flags(width.eq(len(limit))) & _flags(digits.le(limit)))
    counts = pd.to_numeric(digits.where(fits), errors="coerce").astype("Int64")
    return counts.mask(negative, -counts)


def _flags(mask: pd.Series) -> np.ndarray:
    """A nullable boolean mask as a numpy bool array (NA → False)."""
    return mask.fillna(False).to_numpy(dtype=bool)


def too_long(rows: pd.DataFrame, fields: Sequence[str]) -> dict[str, pd.Series]:
    """For each text field, True where its value is longer than ``MAX_TEXT_LENGTH`` characters."""
    return {name: _longer(rows[name], MAX_TEXT_LENGTH) for name in fields}


def _longer(values: pd.Series, limit: int) -> pd.Series:
    text = _arrow_text(values)
    if text is not None:
        return _mask(pc.fill_null(pc.greater(pc.utf8_length(text), limit), False), values.index)
    return pd.Series(_flags(values.str.len().gt(limit)), values.index)


def bad_value_checks(fields: Sequence[str], bad: Mapping[str, pd.Series]) -> list[tuple[pd.Series, str]]:
    """``(mask, "bad_value:<field>")`` checks in the contract's field order, so a row with several
    bad values is reported for the first of them."""
    return [(bad[name], f"{BAD_VALUE}:{name}") for name in fields if name in bad]


def first_reason(index: pd.Index, checks: Sequence[tuple[pd.Series, str]]) -> pd.Series:
    """The first reason whose mask is true for each row (NA where none applies)."""
    if not checks:
        return pd.Series(pd.NA, index=index, dtype="string")
    hits = np.vstack([mask.fillna(False).to_numpy(dtype=bool) for mask, _ in checks])
    labels = np.array([label for _, label in checks] + [None], dtype=object)
    first = np.where(hits.any(axis=0), hits.argmax(axis=0), len(checks))
    return pd.Series(labels[first], index=index, dtype="string")


def with_mapping_reasons(reason: pd.Series, rows: pd.DataFrame) -> pd.Series:
    """``reason`` merged with the reasons a source mapping gave the rows (``_reason``), keeping
    for each row the one the contract lists first; unchanged for native rows."""
    if PRIOR not in rows.columns:
        return reason
    prior = rows[PRIOR]
    if not prior.notna().any():
        return reason

    def ranks(values: pd.Series) -> pd.Series:
        return values.str.partition(":")[0].map(_REASON_RANK).astype("float64")

    earlier = prior.notna() & (reason.isna() | (ranks(prior) < ranks(reason)).fillna(False))
    return reason.mask(earlier.to_numpy(dtype=bool), prior)


def with_columns(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``rows`` with every named column present (absent ones as all-NA strings)."""
    missing = [c for c in columns if c not in rows.columns]
    if not missing:
        return rows
    null = pd.Series(pd.NA, index=rows.index, dtype="string")
    return pd.concat([rows, pd.DataFrame(dict.fromkeys(missing, null))], axis=1)


def combine(files: Sequence[RawFile], columns: Sequence[str], root: StoragePath) -> pd.DataFrame:
    """Parsed rows of several files in file order, with ``_file`` (relative path) and ``_line``
    (and a mapped source's ``_reason`` and ``_order``)."""
    frames = []
    for raw in files:
        mapped = [c for c in (PRIOR, ORDER) if c in raw.rows.columns]
        rows = with_columns(raw.rows, columns)[[*columns, LINE, *mapped]]
        rows[FILE] = relative(raw.path, root)
        frames.append(rows)
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
        empty[LINE] = pd.Series(dtype="int64")
        empty[FILE] = pd.Series(dtype="string")
        return empty
    return pd.concat(frames, ignore_index=True)


def relative(path: StoragePath, root: StoragePath) -> str:
    """``path`` relative to the data root, as POSIX text (its absolute path or URL when outside it)."""
    return relative_name(path.resolve(), root.resolve())


def quarantine_frame(
    source: str,
    partition: str,
    files: Sequence[RawFile],
    root: StoragePath,
    rejected: pd.DataFrame,
) -> pd.DataFrame:
    """Quarantine rows for every malformed line plus ``rejected`` (``_file``, ``_line``, ``reason``)."""
    parts = []
    for raw in files:
        name = relative(raw.path, root)
        bad = raw.malformed_lines
        mine = rejected[rejected[FILE] == name]
        if len(bad):
            parts.append(
                pd.DataFrame(
                    {"file": name, "line": bad, "reason": "malformed_record", "raw": raw.line_text(bad)}
                )
            )
        if len(mine):
            lines = mine[LINE].to_numpy(dtype=np.int64)
            parts.append(
                pd.DataFrame(
                    {
                        "file": name,
                        "line": lines,
                        "reason": mine["reason"].to_numpy(),
                        "raw": raw.line_text(lines),
                    }
                )
            )
    if not parts:
        out = pd.DataFrame({c: pd.Series(dtype="string") for c in ("file", "reason", "raw")})
        out["line"] = pd.Series(dtype="int64")
    else:
        out = pd.concat(parts, ignore_index=True)
    out.insert(0, "source", source)
    out.insert(1, "partition", partition)
    out["line"] = out["line"].astype("int64")
    out = out.sort_values(["file", "line"], kind="stable", ignore_index=True)
    return out[list(QUARANTINE_COLUMNS)].astype(
        {"source": "string", "partition": "string", "file": "string", "reason": "string", "raw": "string"}
    )


@dataclass
class StagingReport:
    """What a staging step read, kept and rejected — the reconciliation behind every run."""

    raw_rows: int
    staged_rows: int
    quarantined_rows: int
    files: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    fields_seen: dict[str, int] = field(default_factory=dict)
    unknown_fields: dict[str, int] = field(default_factory=dict)
    superseded_versions: int = 0
    filtered_rows: int = 0  # rows a source mapping's filters left out; not raw rows

    @property
    def reconciled(self) -> bool:
        return self.raw_rows == self.staged_rows + self.superseded_versions + self.quarantined_rows


def latest_versions(rows: pd.DataFrame, key: str, version: pd.Series) -> pd.DataFrame:
    """One row per ``key``: the latest ``version``; ties go to the file whose path sorts last
    (then the later line of that file)."""
    order = rows.assign(_version=version).sort_values(
        ["_version", FILE, LINE], kind="stable", na_position="first"
    )
    return order.drop_duplicates(key, keep="last").drop(columns="_version").sort_index()


@dataclass
class StagedExports:
    """Staged records of an unpartitioned source, its quarantine and its reconciliation."""

    records: pd.DataFrame
    quarantine: pd.DataFrame
    report: StagingReport


def staging_report(
    files: Sequence[RawFile],
    paths: Sequence[StoragePath],
    ignored: Sequence[StoragePath],
    data_root: StoragePath,
    fields: Sequence[str],
    staged_rows: int,
    quarantine: pd.DataFrame,
    superseded_versions: int = 0,
) -> StagingReport:
    """The reconciliation of one staging step over ``files`` (read from ``paths``)."""
    seen, unknown = field_counts(files, fields)
    return StagingReport(
        raw_rows=sum(f.raw_rows for f in files),
        staged_rows=staged_rows,
        quarantined_rows=len(quarantine),
        files=[relative(p, data_root) for p in paths],
        ignored_files=[relative(p, data_root) for p in ignored],
        reasons=quarantine["reason"].value_counts().to_dict(),
        fields_seen=seen,
        unknown_fields=unknown,
        superseded_versions=superseded_versions,
        filtered_rows=sum(f.filtered for f in files),
    )


def field_counts(files: Sequence[RawFile], known: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """(contract fields, unknown fields) found in the files → rows that carry a value."""
    seen: dict[str, int] = {}
    unknown: dict[str, int] = {}
    for raw in files:
        for column in raw.columns:
            present = int(raw.rows[column].notna().sum()) if column in raw.rows else 0
            target = seen if column in known else unknown
            target[column] = target.get(column, 0) + present
    return seen, unknown


Validator = Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]


def stage_exports(
    data_root: StoragePath,
    source: str,
    extensions: tuple[str, ...],
    fields: tuple[str, ...],
    key: str,
    validate: Validator,
    table_name: str,
    mapping: SourceMapping | None = None,
) -> StagedExports:
    """Read every export of ``source``, validate each version, and keep the latest version per
    ``key`` (by ``updated_at``, or the mapping's version column; ties → the path that sorts
    last) as rows of the warehouse table ``table_name``.

    Without a mapping the exports are the contract's files under ``raw/<source>``;
    with one they are read where the mapping says, and mapped onto the contract.
    """
    if mapping is None:
        paths, ignored = list_files(data_root / "raw" / source, extensions, recursive=True)
        files = [read_raw_file(p, key, fields) for p in paths]
    else:
        paths, ignored = source_files(data_root, source, mapping)
        files = [read_mapped_file(p, mapping, relative(p, data_root)) for p in paths]
    valid, rejected = validate(combine(files, fields, data_root))
    latest = latest_versions(valid, key, valid[ORDER] if ORDER in valid.columns else valid["updated_at"])
    records = conform(latest, table(table_name)).reset_index(drop=True)
    quarantine = quarantine_frame(source, "", files, data_root, rejected)
    report = staging_report(
        files, paths, ignored, data_root, fields, len(records), quarantine, len(valid) - len(records)
    )
    return StagedExports(records, quarantine, report)
