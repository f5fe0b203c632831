"""Split a many-day telemetry export into the daily folders the pipeline reads.

Telemetry is partitioned by UTC event date (``raw/telemetry/date=YYYY-MM-DD/``).
An export that holds many days in one file (an order log, a collector's dump)
is split here: each row's event date comes from ``occurred_at`` (through the
telemetry mapping of kpi.yaml, or the native contract when there is none), and
each day's rows are written, as their original records (every line of a
multi-line CSV record) under the file's header, to ``date=<day>/<name><ext>``.
The files stay in the source's format, so staging maps them like any file of
the source and quarantines their original records. Every file is written
under a hidden temporary name and renamed into place; a file of the same name
left by an earlier import on a day the new export no longer has is removed. A
re-import therefore replaces the last one.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_pipeline.contract import TELEMETRY_NUMBER_FIELDS
from kpi_pipeline.ingest.raw_files import LINE, RawFile, file_format, read_raw_file
from kpi_pipeline.ingest.rows import parse_timestamps, with_columns
from kpi_pipeline.ingest.telemetry import STRING_FIELDS
from kpi_pipeline.sources.files import read_source_file
from kpi_pipeline.sources.mapping import mapped_timestamps
from kpi_pipeline.sources.model import TelemetryMapping
from kpi_pipeline.storage import StoragePath, ensure_folder, move

# The file written in each day folder ends in the format's first extension.
OUTPUT_SUFFIX: dict[str, str] = {"csv": ".csv", "whitespace": ".txt", "jsonl": ".jsonl"}
COMPRESSION_SUFFIXES: tuple[str, ...] = (".gz", ".zip")


class TelemetryImportError(ValueError):
    """The export cannot be imported; the message names the file and the problem."""


@dataclass
class ImportResult:
    """What an import wrote: the file name used in every day folder, rows per day (ISO date →
    rows), the files written and removed, and the lines it could not place on a day."""

    name: str
    rows_by_day: dict[str, int]
    written: list[StoragePath] = field(default_factory=list)
    removed: list[StoragePath] = field(default_factory=list)
    unplaced_lines: list[int] = field(default_factory=list)


def import_name(path: StoragePath) -> str:
    """The default import name: the file name without compression suffix and extension."""
    name = path.name
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return Path(name).stem or name


def _read(path: StoragePath, mapping: TelemetryMapping | None) -> tuple[RawFile, pd.Series, str]:
    """(the parsed file, each row's UTC occurred_at, the suffix of the files to write)."""
    if mapping is None:
        fmt = file_format(path)
        if fmt is None:
            raise TelemetryImportError(
                f"{path}: not a .jsonl or .csv file of the contract; describe its format in kpi.yaml "
                "under sources.telemetry (see the purchases preset)"
            )
        raw = read_raw_file(path, "event_id", STRING_FIELDS, TELEMETRY_NUMBER_FIELDS)
        occurred = parse_timestamps(with_columns(raw.rows, ["occurred_at"])["occurred_at"])
        return raw, occurred, OUTPUT_SUFFIX[fmt]
    raw = read_source_file(path, mapping)
    occurred = mapped_timestamps(raw.rows, mapping, "occurred_at", path.as_posix())
    return raw, occurred, OUTPUT_SUFFIX[mapping.format]


def _write(target: StoragePath, content: bytes) -> None:
    """Write ``content`` under a hidden ``.part`` name (ignored by staging and sensors), then rename."""
    ensure_folder(target.parent)
    temporary = target.with_name(f".{target.name}.part")
    temporary.write_bytes(content)
    move(temporary, target)


def import_telemetry(
    path: StoragePath,
    data_root: StoragePath,
    mapping: TelemetryMapping | None = None,
    name: str | None = None,
) -> ImportResult:
    """Split the telemetry export ``path`` by UTC event date into ``raw/telemetry/date=…/<name><ext>``.

    Rows without a parseable ``occurred_at`` (and malformed lines) belong to
    no day: they are not written and are listed in ``unplaced_lines``. Fails
    without writing anything when the file cannot be read, or no row can be
    placed.
    """
    name = name or import_name(path)
    if "/" in name or "\\" in name or name.startswith("."):
        raise TelemetryImportError(
            f"import name {name!r}: give a plain file name (no folder, no leading dot)"
        )
    raw, occurred, suffix = _read(path, mapping)
    day = occurred.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[D]")
    placed = ~np.isnat(day)
    numbers = raw.rows[LINE].to_numpy(dtype=np.int64)
    unplaced = np.sort(np.concatenate([numbers[~placed], raw.malformed_lines.astype(np.int64)]))
    if not placed.any():
        raise TelemetryImportError(
            f"{path}: no row has a parseable occurred_at, nothing imported "
            "(check sources.telemetry's occurred_at column, timestamp_format and timezone)"
        )

    days, codes = np.unique(day[placed], return_inverse=True)
    order = np.argsort(codes, kind="stable")
    groups = np.split(numbers[placed][order], np.cumsum(np.bincount(codes))[:-1])
    header = raw.lines.rows([raw.header]) if raw.header else []
    telemetry = data_root / "raw" / "telemetry"
    file_name = f"{name}{suffix}"
    result = ImportResult(file_name, {}, unplaced_lines=unplaced.tolist())
    for value, group in zip(days, groups, strict=True):
        iso = str(value)
        target = telemetry / f"date={iso}" / file_name
        _write(target, b"\n".join([*header, *raw.record_bytes(group)]) + b"\n")
        result.rows_by_day[iso] = len(group)
        result.written.append(target)
    for existing in sorted(telemetry.glob(f"date=*/{glob.escape(file_name)}")):
        if existing.parent.name.removeprefix("date=") not in result.rows_by_day:
            existing.unlink()
            result.removed.append(existing)
    return result
