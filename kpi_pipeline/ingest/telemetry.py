"""Stage one day of telemetry: aliases, validation, quarantine, typed output.

``validate_events`` is pure (frames in, frames out); ``stage_telemetry_partition``
reads the partition folder and calls it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kpi_pipeline.config import EventAlias
from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    DUPLICATE_EVENT_ID,
    EVENT_TYPES,
    OUTSIDE_PARTITION,
    TELEMETRY_DEFAULTS,
    TELEMETRY_EXTENSIONS,
    TELEMETRY_FIELDS,
    TELEMETRY_REQUIRED,
    TELEMETRY_REQUIRED_FOR,
    UNKNOWN_EVENT_TYPE,
)
from kpi_pipeline.ingest.discovery import list_files
from kpi_pipeline.ingest.raw_files import LINE, read_raw_file
from kpi_pipeline.ingest.rows import (
    FILE,
    StagingReport,
    bad_value_checks,
    combine,
    first_reason,
    is_blank,
    parse_numbers,
    parse_timestamps,
    quarantine_frame,
    relative,
    staging_report,
    too_long,
    with_mapping_reasons,
)
from kpi_pipeline.sources.files import read_mapped_file
from kpi_pipeline.sources.model import TelemetryMapping
from kpi_pipeline.tables import TELEMETRY_EVENTS

STRING_FIELDS: tuple[str, ...] = tuple(f for f in TELEMETRY_FIELDS if f != "duration_ms")


class MissingPartitionError(FileNotFoundError):
    """The partition's raw folder does not exist."""


def apply_aliases(event_type: pd.Series, occurred_at: pd.Series, aliases: Sequence[EventAlias]) -> pd.Series:
    """Rename aliased event types; a dated alias applies only to events whose UTC date is in its window.

    Aliases map original names (no chaining); when two match, the first listed wins.
    """
    out = event_type.copy()
    event_day = occurred_at.dt.floor("D")
    for alias in reversed(aliases):
        mask = event_type.eq(alias.from_).fillna(False)
        if alias.valid_from is not None:
            mask &= (event_day >= pd.Timestamp(alias.valid_from, tz="UTC")).fillna(False)
        if alias.valid_until is not None:
            mask &= (event_day <= pd.Timestamp(alias.valid_until, tz="UTC")).fillna(False)
        out = out.mask(mask, alias.to)
    return out


def validate_events(
    rows: pd.DataFrame, day: dt.date, aliases: Sequence[EventAlias]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split parsed rows (string columns of every contract field, plus ``_file``/``_line``)
    into (staged events, rejected rows with ``reason``), using the contract's first-applicable reason
    (a mapped source's own reasons, ``_reason``, included).

    ``duration_ms`` must be a finite decimal number ≥ 0, and a text field longer than
    ``MAX_TEXT_LENGTH`` is a bad value (``bad_value:event_id`` for an over-long id); several bad
    values report the first in the contract's field order."""
    occurred_at = parse_timestamps(rows["occurred_at"])
    event_type = apply_aliases(rows["event_type"], occurred_at, aliases)
    checks: list[tuple[pd.Series, str]] = [
        (is_blank(rows[f]), f"missing_field:{f}") for f in TELEMETRY_REQUIRED
    ]
    for name, types in TELEMETRY_REQUIRED_FOR.items():
        checks.append((event_type.isin(types).fillna(False) & is_blank(rows[name]), f"missing_field:{name}"))
    duration = parse_numbers(rows["duration_ms"])
    bad = too_long(rows, [f for f in STRING_FIELDS if f != "occurred_at"])
    bad["duration_ms"] = ~is_blank(rows["duration_ms"]) & ~duration.ge(0)
    checks += [
        (occurred_at.isna(), BAD_TIMESTAMP),
        (occurred_at.dt.floor("D").ne(pd.Timestamp(day, tz="UTC")), OUTSIDE_PARTITION),
        (~event_type.isin(EVENT_TYPES).fillna(False), UNKNOWN_EVENT_TYPE),
        *bad_value_checks(TELEMETRY_FIELDS, bad),
    ]
    reason = with_mapping_reasons(first_reason(rows.index, checks), rows)
    clean = reason.isna()
    duplicate = clean & rows["event_id"].where(clean).duplicated(keep="first")
    reason = reason.mask(duplicate, DUPLICATE_EVENT_ID)
    keep = reason.isna().to_numpy(dtype=bool)

    staged = rows.loc[keep, list(TELEMETRY_FIELDS)].copy()
    staged["event_type"] = event_type[keep]
    staged["occurred_at"] = occurred_at[keep].astype("datetime64[us, UTC]")
    staged["duration_ms"] = duration[keep]
    for name, default in TELEMETRY_DEFAULTS.items():
        staged[name] = staged[name].mask(is_blank(staged[name]), default)
    staged = staged.astype(TELEMETRY_EVENTS.dtypes()).reset_index(drop=True)

    rejected = rows.loc[~keep, [FILE, LINE]].copy()
    rejected["reason"] = reason[~keep]
    return staged, rejected


@dataclass
class StagedTelemetry:
    events: pd.DataFrame
    quarantine: pd.DataFrame
    report: StagingReport


def partition_folder(data_root: Path, day: dt.date) -> Path:
    return data_root / "raw" / "telemetry" / f"date={day.isoformat()}"


def stage_telemetry_partition(
    data_root: Path, day: dt.date, aliases: Sequence[EventAlias], mapping: TelemetryMapping | None = None
) -> StagedTelemetry:
    """Read every data file of one day's folder, validate, and return staged events + quarantine.

    With a ``mapping`` the folder's files are in the mapping's format (the
    layout ``kpi-pipeline import`` writes) and are mapped onto the contract.
    Raises :class:`MissingPartitionError` when the folder is absent and
    ``UnreadableFileError`` when a file cannot be read at all; nothing is
    returned for the partition in either case.
    """
    folder = partition_folder(data_root, day)
    if not folder.is_dir():
        raise MissingPartitionError(
            f"no telemetry folder for partition {day.isoformat()}: expected {folder} "
            "(raw/telemetry/date=YYYY-MM-DD/ under the data root)"
        )
    if mapping is None:
        paths, ignored = list_files(folder, TELEMETRY_EXTENSIONS, recursive=False)
        files = [read_raw_file(p, "event_id", STRING_FIELDS, ("duration_ms",)) for p in paths]
    else:
        paths, ignored = list_files(folder, mapping.extensions(), recursive=False)
        files = [read_mapped_file(p, mapping, relative(p, data_root)) for p in paths]
    rows = combine(files, TELEMETRY_FIELDS, data_root)
    staged, rejected = validate_events(rows, day, aliases)
    quarantine = quarantine_frame("telemetry", day.isoformat(), files, data_root, rejected)

    report = staging_report(files, paths, ignored, data_root, TELEMETRY_FIELDS, len(staged), quarantine)
    return StagedTelemetry(staged, quarantine, report)
