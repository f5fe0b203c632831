"""The rows that break each expectation of a suite, found with vectorised column operations.

Great Expectations hashes and copies the frame it validates (2.6 s and ~200 MB kept for a 1M-row
day). Every expectation our suites use is row-wise (not null, in set, between, column pair) or
uniqueness, so its verdict and its unexpected rows depend only on the rows that break it: GX then
validates those rows plus a bounded sample, and reaches the same verdict, unexpected counts and
examples as on the whole frame. Percentages are of the whole frame (:func:`rebase_percent`).
An expectation of another kind makes the caller validate the whole frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
from great_expectations.expectations import Expectation

from kpi_pipeline.ingest.engine import shared_connection
from kpi_pipeline.storage import StoragePath, duckdb_path, parquet_file, read_parquet

SAMPLE_ROWS = 10_000  # rows GX always sees (the first ones), besides every row that breaks a rule
BATCH_ROWS = 1 << 18  # rows of a Parquet file judged at a time


@dataclass(frozen=True)
class Breaks:
    """One expectation on a frame: the rows that break it, and how many rows it judged (the
    denominator of its unexpected percentage)."""

    rows: np.ndarray
    judged: int


def _flags(mask: pd.Series) -> np.ndarray:
    return mask.fillna(False).to_numpy(dtype=bool)


def breaks(
    expectation: Expectation, frame: pd.DataFrame, repeated: Mapping[str, pd.Series] | None = None
) -> Breaks | None:
    """The rows of ``frame`` that break ``expectation`` (None for a kind not handled here, or a
    column the frame lacks: GX reports that itself). ``repeated`` holds, per column, the values
    that occur more than once in the whole table when ``frame`` is one batch of it."""
    columns = [c for c in (getattr(expectation, n, None) for n in ("column", "column_A", "column_B")) if c]
    if any(c not in frame.columns for c in columns):
        return None
    if isinstance(expectation, gx.expectations.ExpectColumnValuesToNotBeNull):
        values = frame[expectation.column]
        return Breaks(values.isna().to_numpy(dtype=bool), len(values))
    if isinstance(expectation, gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB):
        if expectation.ignore_row_if != "either_value_is_missing":
            return None
        a, b = frame[expectation.column_A], frame[expectation.column_B]
        both = a.notna() & b.notna()
        holds = a.ge(b) if expectation.or_equal else a.gt(b)
        return Breaks(_flags(both & ~holds.fillna(False)), int(both.sum()))
    values = frame[expectation.column]
    present = values.notna()
    if isinstance(expectation, gx.expectations.ExpectColumnValuesToBeUnique):
        if repeated is not None and expectation.column in repeated:
            bad = present & values.isin(repeated[expectation.column])
        else:
            bad = present & values.duplicated(keep=False)
    elif isinstance(expectation, gx.expectations.ExpectColumnValuesToBeInSet):
        bad = present & ~values.isin(list(expectation.value_set))
    elif isinstance(expectation, gx.expectations.ExpectColumnValuesToBeBetween):
        bad = pd.Series(False, index=values.index)
        if expectation.min_value is not None:
            low = (
                values.le(expectation.min_value)
                if expectation.strict_min
                else values.lt(expectation.min_value)
            )
            bad |= low.fillna(False)
        if expectation.max_value is not None:
            high = (
                values.ge(expectation.max_value)
                if expectation.strict_max
                else values.gt(expectation.max_value)
            )
            bad |= high.fillna(False)
        bad &= present
    else:
        return None
    return Breaks(_flags(bad), int(present.sum()))


def rows_for_gx(
    expectations: list[Expectation], frame: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]] | None:
    """The rows GX must see to judge ``frame`` exactly — every row that breaks an expectation and
    the first :data:`SAMPLE_ROWS` — and each expectation's judged rows on the whole frame (by
    description). None when the whole frame must be validated."""
    if len(frame) <= SAMPLE_ROWS:
        return None
    found = [breaks(e, frame) for e in expectations]
    if any(b is None for b in found):
        return None
    keep = np.zeros(len(frame), dtype=bool)
    keep[:SAMPLE_ROWS] = True
    for b in found:
        keep |= b.rows  # type: ignore[union-attr]
    judged = {str(e.description): b.judged for e, b in zip(expectations, found, strict=True)}  # type: ignore[union-attr]
    return frame[keep], judged


def rebase_percent(unexpected: int | None, judged: int) -> float | None:
    """An unexpected percentage of the whole frame's judged rows (GX's own definition)."""
    if unexpected is None or judged == 0:
        return None
    return unexpected / judged * 100


def _columns(expectation: Expectation) -> list[str]:
    names = (getattr(expectation, n, None) for n in ("column", "column_A", "column_B"))
    return [c for c in names if c]


def _repeated(path: StoragePath, columns: list[str]) -> dict[str, pd.Series]:
    """Per column, the non-null values that occur more than once in the Parquet file (DuckDB
    groups out of core, so a 10M-row day is not loaded)."""
    con = shared_connection()
    name = duckdb_path(con, path)
    return {
        c: con.execute(
            f'SELECT "{c}" FROM read_parquet(?) WHERE "{c}" IS NOT NULL GROUP BY ALL HAVING count(*) > 1',
            [name],
        ).df()[c]
        for c in columns
    }


def file_rows_for_gx(
    expectations: list[Expectation], path: StoragePath
) -> tuple[pd.DataFrame, dict[str, int], int]:
    """:func:`rows_for_gx` for a table stored as a Parquet file, read a batch at a time (only the
    columns the expectations name): the rows GX must see, each expectation's judged rows (empty when
    GX sees every row) and the file's row count. A small file, or a suite with an expectation of
    another kind, is read whole."""
    parquet = parquet_file(path)
    total = parquet.metadata.num_rows
    names = set(parquet.schema_arrow.names)
    needed = list(dict.fromkeys(c for e in expectations for c in _columns(e)))
    if total <= SAMPLE_ROWS or any(c not in names for c in needed):
        return read_parquet(path), {}, total
    unique = [e.column for e in expectations if isinstance(e, gx.expectations.ExpectColumnValuesToBeUnique)]
    repeated = _repeated(path, list(dict.fromkeys(unique)))
    kept: list[pd.DataFrame] = []
    judged = dict.fromkeys((str(e.description) for e in expectations), 0)
    start = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=needed):
        frame = pa.Table.from_batches([batch]).to_pandas()
        found = [breaks(e, frame, repeated) for e in expectations]
        if any(b is None for b in found):
            return read_parquet(path), {}, total
        keep = np.zeros(len(frame), dtype=bool)
        keep[: max(0, SAMPLE_ROWS - start)] = True
        for e, b in zip(expectations, found, strict=True):
            keep |= b.rows  # type: ignore[union-attr]
            judged[str(e.description)] += b.judged  # type: ignore[union-attr]
        kept.append(frame[keep])
        start += len(frame)
    return pd.concat(kept, ignore_index=True), judged, total
