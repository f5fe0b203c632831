"""Stage one day of telemetry: aliases, validation, quarantine, typed output.

``validate_events`` is pure (frames in, frames out); ``stage_telemetry_partition``
reads the partition folder and calls it.
"""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from kpi_pipeline.config import BUILTIN_SURVEYS, EventAlias, Survey
from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    BAD_VALUE,
    DUPLICATE_EVENT_ID,
    EVENT_TYPES,
    MISSING_FIELD,
    OUTSIDE_PARTITION,
    SURVEY_REQUIRED,
    SURVEY_RESPONSE,
    TELEMETRY_DEFAULTS,
    TELEMETRY_EXTENSIONS,
    TELEMETRY_FIELDS,
    TELEMETRY_NUMBER_FIELDS,
    TELEMETRY_REQUIRED,
    TELEMETRY_REQUIRED_FOR,
    TELEMETRY_TEXT_FIELDS,
    UNKNOWN_EVENT_TYPE,
)
from kpi_pipeline.ingest import jsonl_fast
from kpi_pipeline.ingest.discovery import list_files
from kpi_pipeline.ingest.engine import shared_connection
from kpi_pipeline.ingest.jsonl_fast import ORDER_KEY
from kpi_pipeline.ingest.raw_files import LINE, RawFile, read_raw_file
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
from kpi_pipeline.storage import StoragePath, local_copies, write_parquet
from kpi_pipeline.tables import TELEMETRY_EVENTS, empty_frame

STRING_FIELDS: tuple[str, ...] = TELEMETRY_TEXT_FIELDS
TEMP_FILE = "events.parquet"  # the temporary file of a fast-pass day staged in memory


# What validation reads of kpi.yaml: the event aliases and the known surveys.
Rules = tuple[Sequence[EventAlias], Mapping[str, Survey]]


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


@dataclass
class RowOutcomes:
    """What validation makes of parsed rows before the duplicate rule: each row's first
    applicable reason (NA for a clean row) and its typed values."""

    reason: pd.Series
    event_type: pd.Series
    occurred_at: pd.Series
    duration_ms: pd.Series
    score: pd.Series


def survey_checks(
    rows: pd.DataFrame, event_type: pd.Series, score: pd.Series, surveys: Mapping[str, Survey]
) -> list[tuple[pd.Series, str]]:
    """kpis-v2.md's survey_response outcomes, in its order (right after unknown_event_type): a
    missing survey or score, a survey kpi.yaml does not know (names as written), a score that is
    not a finite number or lies outside its survey's scale."""
    survey = rows["survey"]
    answered = event_type.eq(SURVEY_RESPONSE).fillna(False).astype(bool)
    low = survey.map({name: s.scale[0] for name, s in surveys.items()}).astype("float64")
    high = survey.map({name: s.scale[1] for name, s in surveys.items()}).astype("float64")
    on_scale = score.ge(low) & score.le(high)
    return [
        *((answered & is_blank(rows[f]), f"{MISSING_FIELD}:{f}") for f in SURVEY_REQUIRED),
        (answered & ~survey.isin(list(surveys)).fillna(False).astype(bool), f"{BAD_VALUE}:survey"),
        (answered & ~on_scale.fillna(False).astype(bool), f"{BAD_VALUE}:score"),
    ]


def row_outcomes(
    rows: pd.DataFrame,
    day: dt.date,
    aliases: Sequence[EventAlias],
    surveys: Mapping[str, Survey] = BUILTIN_SURVEYS,
) -> RowOutcomes:
    """Every contract rule except ``duplicate_event_id`` (which needs all of a day's clean rows),
    applied to parsed rows (string columns of every contract field, plus ``_file``/``_line``)."""
    occurred_at = parse_timestamps(rows["occurred_at"])
    event_type = apply_aliases(rows["event_type"], occurred_at, aliases)
    checks: list[tuple[pd.Series, str]] = [
        (is_blank(rows[f]), f"missing_field:{f}") for f in TELEMETRY_REQUIRED
    ]
    for name, types in TELEMETRY_REQUIRED_FOR.items():
        checks.append((event_type.isin(types).fillna(False) & is_blank(rows[name]), f"missing_field:{name}"))
    duration = parse_numbers(rows["duration_ms"])
    score = parse_numbers(rows["score"])
    bad = too_long(rows, [f for f in STRING_FIELDS if f != "occurred_at"])
    bad["duration_ms"] = ~is_blank(rows["duration_ms"]) & ~duration.ge(0)
    # Any other event's score is staged when it is a finite number, as duration_ms is.
    bad["score"] = ~is_blank(rows["score"]) & score.isna()
    checks += [
        (occurred_at.isna(), BAD_TIMESTAMP),
        (occurred_at.dt.floor("D").ne(pd.Timestamp(day, tz="UTC")), OUTSIDE_PARTITION),
        (~event_type.isin(EVENT_TYPES).fillna(False), UNKNOWN_EVENT_TYPE),
        *survey_checks(rows, event_type, score, surveys),
        *bad_value_checks(TELEMETRY_FIELDS, bad),
    ]
    reason = with_mapping_reasons(first_reason(rows.index, checks), rows)
    return RowOutcomes(reason, event_type, occurred_at, duration, score)


def staged_events(rows: pd.DataFrame, outcomes: RowOutcomes, keep: np.ndarray) -> pd.DataFrame:
    """The kept rows as ``telemetry_events`` rows: typed, aliased, defaults filled in."""
    staged = rows.loc[keep, list(TELEMETRY_FIELDS)].copy()
    staged["event_type"] = outcomes.event_type[keep]
    staged["occurred_at"] = outcomes.occurred_at[keep].astype("datetime64[us, UTC]")
    staged["duration_ms"] = outcomes.duration_ms[keep]
    staged["score"] = outcomes.score[keep]
    for name, default in TELEMETRY_DEFAULTS.items():
        staged[name] = staged[name].mask(is_blank(staged[name]), default)
    return staged.astype(TELEMETRY_EVENTS.dtypes()).reset_index(drop=True)


def validate_events(
    rows: pd.DataFrame,
    day: dt.date,
    aliases: Sequence[EventAlias],
    surveys: Mapping[str, Survey] = BUILTIN_SURVEYS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split parsed rows (string columns of every contract field, plus ``_file``/``_line``)
    into (staged events, rejected rows with ``reason``), using the contract's first-applicable reason
    (a mapped source's own reasons, ``_reason``, included).

    ``duration_ms`` must be a finite decimal number ≥ 0, and a text field longer than
    ``MAX_TEXT_LENGTH`` is a bad value (``bad_value:event_id`` for an over-long id); several bad
    values report the first in the contract's field order."""
    outcomes = row_outcomes(rows, day, aliases, surveys)
    reason = outcomes.reason
    clean = reason.isna()
    duplicate = clean & rows["event_id"].where(clean).duplicated(keep="first")
    reason = reason.mask(duplicate, DUPLICATE_EVENT_ID)
    keep = reason.isna().to_numpy(dtype=bool)
    rejected = rows.loc[~keep, [FILE, LINE]].copy()
    rejected["reason"] = reason[~keep]
    return staged_events(rows, outcomes, keep), rejected


@dataclass
class StagedTelemetry:
    """A staged day: its events (None when they were written to the caller's file), quarantine
    rows and report."""

    events: pd.DataFrame | None
    quarantine: pd.DataFrame
    report: StagingReport


@dataclass(frozen=True)
class EventsFile:
    """Where staging writes a day's events instead of returning them: a Parquet file, with
    key-value ``metadata`` for its footer (a commit token, say)."""

    path: StoragePath
    metadata: Mapping[str, str] = field(default_factory=dict)


@functools.cache
def _pandas_metadata() -> str:
    """pandas' description of the ``telemetry_events`` dtypes, as Parquet footers carry it."""
    schema = pa.Schema.from_pandas(empty_frame(TELEMETRY_EVENTS), preserve_index=False)
    return schema.metadata[b"pandas"].decode()


def _file_metadata(extra: Mapping[str, str]) -> dict[str, str]:
    """Footer metadata of a staged events file: pandas' description of the table's dtypes (so every
    reader gets ``telemetry_events``' dtypes, whoever wrote the file) and ``extra``."""
    return {"pandas": _pandas_metadata(), **extra}


def write_events(frame: pd.DataFrame, out: EventsFile) -> None:
    """Write staged events held in memory to ``out``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    footer = {k.encode(): v.encode() for k, v in _file_metadata(out.metadata).items()}
    write_parquet(table.replace_schema_metadata({**(table.schema.metadata or {}), **footer}), out.path)


def partition_folder(data_root: StoragePath, day: dt.date) -> StoragePath:
    return data_root / "raw" / "telemetry" / f"date={day.isoformat()}"


def stage_telemetry_partition(
    data_root: StoragePath,
    day: dt.date,
    aliases: Sequence[EventAlias],
    mapping: TelemetryMapping | None = None,
    fast: bool = True,
    out: EventsFile | None = None,
    surveys: Mapping[str, Survey] = BUILTIN_SURVEYS,
) -> StagedTelemetry:
    """Read every data file of one day's folder, validate, and return staged events + quarantine
    (``surveys``: kpi.yaml's, which survey_response events must name).

    With a ``mapping`` the folder's files are in the mapping's format (the
    layout ``kpi-pipeline import`` writes) and are mapped onto the contract.
    Native JSONL files first go through DuckDB's fast pass (``fast=False``
    reads every line the exact way; the results are the same). With ``out`` the events are written
    to that Parquet file (by DuckDB when the fast pass ran, so a big day is never one frame in
    memory) and ``events`` is None. Raises
    :class:`MissingPartitionError` when the folder is absent and
    ``UnreadableFileError`` when a file cannot be read at all; nothing is
    returned for the partition in either case.
    """
    folder = partition_folder(data_root, day)
    if not folder.is_dir():
        raise MissingPartitionError(
            f"no telemetry folder for partition {day.isoformat()}: expected {folder} "
            "(raw/telemetry/date=YYYY-MM-DD/ under the data root)"
        )
    if mapping is not None:
        paths, ignored = list_files(folder, mapping.extensions(), recursive=False)
        files = [read_mapped_file(p, mapping, relative(p, data_root)) for p in paths]
        return _stage_exact(data_root, day, (aliases, surveys), files, paths, ignored, out)
    paths, ignored = list_files(folder, TELEMETRY_EXTENSIONS, recursive=False)
    with tempfile.TemporaryDirectory(prefix="kpi_pipeline_stage_") as scratch:
        # DuckDB reads a local file ~3x faster than through fsspec: the JSONL files of an object
        # store are fetched once (one request each), then checked and read from the copy.
        candidates = [p for p in paths if p.name.lower().endswith(jsonl_fast.SUFFIXES)] if fast else []
        copies = local_copies(candidates, Path(scratch))
        quick = {path: copy for path, copy in copies.items() if jsonl_fast.eligible(copy)}
        if not quick:
            files = [_read_exact(p) for p in paths]
            return _stage_exact(data_root, day, (aliases, surveys), files, paths, ignored, out)
        if out is not None:
            return _stage_native(data_root, day, (aliases, surveys), paths, ignored, quick, out)
        written = EventsFile(Path(scratch) / TEMP_FILE)
        staged = _stage_native(data_root, day, (aliases, surveys), paths, ignored, quick, written)
        staged.events = pd.read_parquet(written.path)
    return staged


def _read_exact(path: StoragePath) -> RawFile:
    """A native telemetry file read the exact way (every line by the pyarrow reader)."""
    return read_raw_file(path, "event_id", STRING_FIELDS, TELEMETRY_NUMBER_FIELDS)


def _stage_exact(
    data_root: StoragePath,
    day: dt.date,
    rules: Rules,
    files: Sequence[RawFile],
    paths: Sequence[StoragePath],
    ignored: Sequence[StoragePath],
    out: EventsFile | None,
) -> StagedTelemetry:
    """Stage files read the exact way: validate every row, quarantine, report."""
    rows = combine(files, TELEMETRY_FIELDS, data_root)
    staged, rejected = validate_events(rows, day, *rules)
    quarantine = quarantine_frame("telemetry", day.isoformat(), files, data_root, rejected)
    report = staging_report(files, paths, ignored, data_root, TELEMETRY_FIELDS, len(staged), quarantine)
    if out is None:
        return StagedTelemetry(staged, quarantine, report)
    write_events(staged, out)
    return StagedTelemetry(None, quarantine, report)


def _stage_native(
    data_root: StoragePath,
    day: dt.date,
    rules: Rules,
    paths: Sequence[StoragePath],
    ignored: Sequence[StoragePath],
    quick_paths: Mapping[StoragePath, StoragePath],
    out: EventsFile,
) -> StagedTelemetry:
    """Stage the contract's own files when some can take DuckDB's fast pass (``quick_paths``, each
    with the local file DuckDB reads: itself, or its copy from an object store): the
    lines it surely stages are typed there; every other line is read and validated the exact way;
    then the duplicate rule over both, in file and line order; DuckDB writes the staged rows to
    ``out``."""
    aliases = rules[0]
    con = shared_connection()
    try:
        files: list[RawFile] = []
        quick: list[tuple[int, jsonl_fast.FastFile]] = []
        for order, path in enumerate(paths):
            done = None
            if path in quick_paths:
                try:
                    done = jsonl_fast.read_fast(con, path, _judged(order), day, aliases, quick_paths[path])
                except duckdb.Error:
                    done = None  # DuckDB splits this file's lines differently: read it the exact way
            if done is not None:
                quick.append((order, done))
                files.append(done.slow)
            else:
                files.append(_read_exact(path))
        rows = combine(files, TELEMETRY_FIELDS, data_root)
        places = {relative(p, data_root): order for order, p in enumerate(paths)}
        rows[ORDER_KEY] = rows[FILE].map(places).astype("int64")
        outcomes = row_outcomes(rows, day, *rules)
        clean = outcomes.reason.isna()
        dropped = jsonl_fast.duplicates(con, quick, rows.loc[clean])
        duplicate = pd.MultiIndex.from_frame(rows[[ORDER_KEY, LINE]]).isin(pd.MultiIndex.from_frame(dropped))
        reason = outcomes.reason.mask(duplicate & clean.to_numpy(dtype=bool), DUPLICATE_EVENT_ID)
        keep = reason.isna().to_numpy(dtype=bool)
        rejected = rows.loc[~keep, [FILE, LINE]].copy()
        rejected["reason"] = reason[~keep]
        quarantine = quarantine_frame("telemetry", day.isoformat(), files, data_root, rejected)
        # The fast rows' duplicates take their text from DuckDB's copy of the lines, which is then let go.
        quarantine = _with_fast_duplicates(quarantine, con, quick, dropped, data_root, day)
        jsonl_fast.drop_lines(con, quick)
        staged = staged_events(rows, outcomes, keep)
        staged[[ORDER_KEY, LINE]] = rows.loc[keep, [ORDER_KEY, LINE]].to_numpy()
        del rows, outcomes
        written = jsonl_fast.write_staged(con, quick, staged, dropped, out.path, _file_metadata(out.metadata))
        report = staging_report(files, paths, ignored, data_root, TELEMETRY_FIELDS, written, quarantine)
        for _, done in quick:
            report.raw_rows += done.fast_rows
            for target, counts in (
                (report.fields_seen, done.fields_seen),
                (report.unknown_fields, done.unknown_fields),
            ):
                for name, count in counts.items():
                    if count:
                        target[name] = target.get(name, 0) + count
        return StagedTelemetry(None, quarantine, report)
    finally:
        for order in range(len(paths)):  # nothing of the day stays in the thread's connection
            jsonl_fast.drop_tables(con, _judged(order))


def _judged(order: int) -> str:
    """The DuckDB table of the fast pass over the day's ``order``-th file."""
    return f"judged_{order}"


def _with_fast_duplicates(
    quarantine: pd.DataFrame,
    con: duckdb.DuckDBPyConnection,
    quick: Sequence[tuple[int, jsonl_fast.FastFile]],
    dropped: pd.DataFrame,
    data_root: StoragePath,
    day: dt.date,
) -> pd.DataFrame:
    """``quarantine`` with the duplicates among the fast pass's rows (whose text DuckDB holds; the
    exact path's duplicates are in ``quarantine`` already)."""
    extra = []
    for order, done in quick:
        numbers = dropped.loc[dropped[ORDER_KEY] == order, LINE].to_numpy(dtype=np.int64)
        numbers = numbers[~np.isin(numbers, done.slow.rows[LINE].to_numpy(dtype=np.int64))]
        if len(numbers):
            extra.append(
                pd.DataFrame(
                    {
                        "source": "telemetry",
                        "partition": day.isoformat(),
                        "file": relative(done.path, data_root),
                        "line": numbers,
                        "reason": DUPLICATE_EVENT_ID,
                        "raw": jsonl_fast.line_texts(con, done.table, numbers),
                    }
                )
            )
    if not extra:
        return quarantine
    return (
        pd.concat([quarantine, *extra], ignore_index=True)
        .sort_values(["file", "line"], kind="stable", ignore_index=True)
        .astype(quarantine.dtypes.to_dict())
    )
