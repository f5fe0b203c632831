"""Great Expectations 1.x suites for the staged sources, and one runner that turns a validation into a
``CheckOutcome``.

The suites live in code so an analyst can read each rule on one line. Every expectation carries a short
``description`` ("event_id unique"); the runner uses it to name failures in the check message.

GX 1.24 compares tz-aware UTC datetimes (also across ``us``/``ns`` units) and pandas' nullable dtypes
(``string``, ``str``, ``Int64``) correctly, which the tests pin, so frames are validated as they are,
without a converted copy. Column-value expectations skip nulls: a null ``duration_ms`` or ``solved_at``
is never "unexpected"; only the not-null expectations judge missing values.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.data_context import EphemeralDataContext
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations import Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from kpi_pipeline import contract
from kpi_pipeline.quality import violations
from kpi_pipeline.quality.outcome import CheckOutcome
from kpi_pipeline.storage import StoragePath

DATA_SOURCE = "kpi_pipeline_quality"
PARTIAL_UNEXPECTED = 5  # unexpected values kept per expectation, as examples in the metadata
_RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": PARTIAL_UNEXPECTED}
_LOCK = threading.RLock()  # the shared GX context is not thread-safe


def _utc(moment: pd.Timestamp) -> pd.Timestamp:
    """``moment`` as a tz-aware UTC timestamp (naive values are taken to be UTC)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _not_null(column: str) -> Expectation:
    """Every row has a value in ``column``."""
    return gx.expectations.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} not null")


def _unique(column: str) -> Expectation:
    """No value of ``column`` appears twice (nulls are ignored; every copy of a repeat is unexpected)."""
    return gx.expectations.ExpectColumnValuesToBeUnique(column=column, description=f"{column} unique")


def _in_set(column: str, values: Iterable[str]) -> Expectation:
    """Non-null values of ``column`` are among ``values``."""
    return gx.expectations.ExpectColumnValuesToBeInSet(
        column=column, value_set=list(values), description=f"{column} in allowed values"
    )


def _at_least_zero(column: str) -> Expectation:
    """Non-null values of ``column`` are >= 0."""
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=column, min_value=0, description=f"{column} >= 0"
    )


def _not_after(column: str, now: pd.Timestamp) -> Expectation:
    """Non-null values of ``column`` are not later than ``now``."""
    moment = _utc(now)
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=column,
        max_value=moment,
        description=f"{column} not after now ({moment:%Y-%m-%d %H:%M:%S} UTC)",
    )


def _on_day(column: str, day: dt.date) -> Expectation:
    """Non-null values of ``column`` fall inside [day 00:00 UTC, next day 00:00 UTC)."""
    start = pd.Timestamp(day.isoformat(), tz="UTC")
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column=column,
        min_value=start,
        max_value=start + pd.Timedelta(days=1),
        strict_max=True,
        description=f"{column} inside {day.isoformat()} UTC",
    )


def _not_before(later: str, earlier: str) -> Expectation:
    """``later`` >= ``earlier`` on every row where both are present."""
    return gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later,
        column_B=earlier,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        description=f"{later} not before {earlier}",
    )


def telemetry_suite(day: dt.date, now: pd.Timestamp) -> gx.ExpectationSuite:
    """Expectations for one day of staged telemetry (``telemetry_events``, partition ``day``)."""
    return gx.ExpectationSuite(
        name="telemetry_events",
        expectations=[
            # the contract's required fields are present on every event
            *(_not_null(column) for column in contract.TELEMETRY_REQUIRED),
            # staging keeps the first copy of each event_id
            _unique("event_id"),
            # aliases are resolved to the canonical event types during staging
            _in_set("event_type", contract.EVENT_TYPES),
            # a daily partition holds exactly the events of its UTC day
            _on_day("occurred_at", day),
            # no event comes from the future
            _not_after("occurred_at", now),
            # durations are elapsed times; missing durations are allowed
            _at_least_zero("duration_ms"),
        ],
    )


def tickets_suite(now: pd.Timestamp) -> gx.ExpectationSuite:
    """Expectations for the staged support tickets (``stg_support_tickets``)."""
    return gx.ExpectationSuite(
        name="stg_support_tickets",
        expectations=[
            # the contract's required fields are present on every ticket
            *(_not_null(column) for column in contract.TICKET_REQUIRED),
            # one row per ticket: the latest version wins
            _unique("ticket_id"),
            # statuses are lower-cased to the contract's five values
            _in_set("status", contract.TICKET_STATUSES),
            # no ticket is created in the future
            _not_after("created_at", now),
            # agent effort is a duration; missing values are allowed
            _at_least_zero("agent_work_minutes"),
            # a reopen count cannot be negative; missing values are allowed
            _at_least_zero("reopens"),
            # a ticket is solved after it was created (checked where both are known)
            _not_before("solved_at", "created_at"),
        ],
    )


def incidents_suite(now: pd.Timestamp) -> gx.ExpectationSuite:
    """Expectations for the staged incidents (``stg_incidents``)."""
    return gx.ExpectationSuite(
        name="stg_incidents",
        expectations=[
            # the contract's required fields are present on every incident
            *(_not_null(column) for column in contract.INCIDENT_REQUIRED),
            # one row per incident: the latest version wins
            _unique("incident_id"),
            # severities are SEV1..SEV4
            _in_set("severity", contract.SEVERITIES),
            # no incident starts in the future
            _not_after("started_at", now),
            # an incident is resolved after it started (open incidents have no resolved_at);
            # detected_at is not constrained by the contract, so it is not checked here
            _not_before("resolved_at", "started_at"),
        ],
    )


@functools.cache
def _context() -> EphemeralDataContext:
    """The process-wide in-memory GX context, created once (it is slow), with progress bars off."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.data_sources.add_pandas(DATA_SOURCE)
    return context


@functools.cache
def _batch_definition(name: str) -> BatchDefinition:
    """A whole-dataframe batch definition for the data asset ``name``, created once per process."""
    source = _context().data_sources.get(DATA_SOURCE)
    return source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)


def _is_missing(value: Any) -> bool:
    """True for the scalar missing markers: None, NA, NaT and float NaN."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def _iso(value: dt.datetime | np.datetime64) -> str:
    """A timestamp as ISO 8601 in UTC (GX hands back pair values as naive numpy datetimes, which are UTC)."""
    return _utc(pd.Timestamp(value)).isoformat()


def _jsonable(value: Any) -> Any:
    """``value`` with numpy, pandas and datetime scalars turned into plain JSON types."""
    if _is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime | np.datetime64):
        return _iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [_jsonable(item) for item in value]
    return str(value)


def _as_text(value: Any) -> str:
    """One unexpected value as readable text; a column pair becomes ``(a, b)``."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_as_text(item) for item in value) + ")"
    if _is_missing(value):
        return "null"
    if isinstance(value, dt.datetime | np.datetime64):
        return _iso(value)
    return str(_jsonable(value))


def _column(config: ExpectationConfiguration) -> str | list[str] | None:
    """The column an expectation judges, ``[A, B]`` for a column pair, None for a table expectation."""
    kwargs = config.kwargs
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return [str(kwargs["column_A"]), str(kwargs["column_B"])]
    return None


def _name(config: ExpectationConfiguration) -> str:
    """The expectation's description, or its type and column when it has none."""
    if config.description:
        return config.description
    column = _column(config)
    return config.type if column is None else f"{config.type} {column}"


def _exception_message(result: ExpectationValidationResult) -> str | None:
    """Why GX could not evaluate an expectation (e.g. a missing column), or None when it could."""
    info = result.exception_info or {}
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    messages = [
        str(detail.get("exception_message"))
        for detail in info.values()
        if isinstance(detail, Mapping) and detail.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def _expectation_metadata(result: ExpectationValidationResult) -> dict[str, Any]:
    """One expectation's result as JSON-able metadata."""
    details = result.result or {}
    count = details.get("unexpected_count")
    percent = details.get("unexpected_percent")
    return {
        "expectation": result.expectation_config.type,
        "description": _name(result.expectation_config),
        "column": _column(result.expectation_config),
        "success": bool(result.success),
        "observed_value": _jsonable(details.get("observed_value")),
        "unexpected_count": None if count is None else int(count),
        "unexpected_percent": None if _is_missing(percent) else float(percent),
        "partial_unexpected_list": [
            _as_text(value) for value in details.get("partial_unexpected_list", [])[:PARTIAL_UNEXPECTED]
        ],
        "exception": _exception_message(result),
    }


def _failure_text(entry: Mapping[str, Any], rows: int) -> str:
    """``event_id unique (3 unexpected of 17,000 rows)`` for one failed expectation."""
    if entry["exception"] is not None:
        return f"{entry['description']} (could not evaluate: {entry['exception']})"
    if entry["unexpected_count"] is not None:
        return f"{entry['description']} ({entry['unexpected_count']:,} unexpected of {rows:,} rows)"
    return f"{entry['description']} (observed {entry['observed_value']})"


def _validate(name: str, suite: gx.ExpectationSuite, frame: pd.DataFrame) -> ExpectationSuiteValidationResult:
    """Validate ``frame`` against ``suite`` on the shared context's data asset ``name``."""
    with _LOCK, warnings.catch_warnings():
        # GX collects a column pair's unexpected values through Series.values, which pandas 3 deprecates
        # for tz-aware columns; the naive values it gets are UTC and are rendered as such by _iso.
        warnings.filterwarnings(
            "ignore",
            message="Series.values returning an ndarray that drops timezone",
            category=DeprecationWarning,
        )
        batch = _batch_definition(name).get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format=_RESULT_FORMAT)


def run_suite(
    name: str, suite: gx.ExpectationSuite, frame: pd.DataFrame | StoragePath, label: str | None = None
) -> CheckOutcome:
    """Validate ``frame`` (a staged table ``name``) against ``suite`` and summarise it as a CheckOutcome.

    Uses one in-memory GX context per process (progress bars and GX logging silenced) and validates the
    frame as it is: GX 1.24 handles tz-aware UTC datetimes and pandas' nullable dtypes. ``passed`` means
    every expectation succeeded; failures are ERRORs named in the message, prefixed with ``label``
    (default ``name``), e.g. ``telemetry_events 2025-01-03``. A frame without rows passes without
    running GX: there is nothing to judge. Metadata lists every expectation in suite order.

    A frame larger than ``violations.SAMPLE_ROWS`` is judged by GX on the rows that break an
    expectation (found vectorised) plus its first rows: the same verdict, counts and examples as
    on the whole frame, without GX copying and hashing a whole day. ``frame`` may be a Parquet file
    (a staged day DuckDB wrote), read a batch at a time for the same result.
    """
    prefix = label or name
    if not isinstance(frame, pd.DataFrame):
        validated, judged, rows = violations.file_rows_for_gx(list(suite.expectations), frame)
    else:
        rows = len(frame)
        picked = violations.rows_for_gx(list(suite.expectations), frame) if rows else None
        validated, judged = (frame, {}) if picked is None else picked
    total = len(suite.expectations)
    if rows == 0:
        return CheckOutcome(
            passed=True,
            severity="ERROR",
            message=f"{prefix}: no rows to validate; {total} expectations not evaluated",
            metadata={"expectations": [], "evaluated": 0, "failed": 0, "rows": 0},
        )
    validation = _validate(name, suite, validated)
    order = {expectation.description: index for index, expectation in enumerate(suite.expectations)}
    entries = sorted(
        (_expectation_metadata(result) for result in validation.results),
        key=lambda entry: order.get(entry["description"], len(order)),
    )
    for entry in entries:
        if entry["description"] in judged:
            entry["unexpected_percent"] = violations.rebase_percent(
                entry["unexpected_count"], judged[entry["description"]]
            )
    failed = [entry for entry in entries if not entry["success"]]
    if failed:
        details = ", ".join(_failure_text(entry, rows) for entry in failed)
        message = f"{prefix}: {len(failed)} of {len(entries)} expectations failed: {details}"
    else:
        message = f"{prefix}: all {len(entries)} expectations passed on {rows:,} rows"
    return CheckOutcome(
        passed=not failed,
        severity="ERROR",
        message=message,
        metadata={
            "expectations": entries,
            "evaluated": len(entries),
            "failed": len(failed),
            "rows": rows,
            "rows_given_to_gx": len(validated),
        },
    )
