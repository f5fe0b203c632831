"""Stage support-ticket exports: validate every version, keep the latest per ticket."""

from __future__ import annotations

import pandas as pd

from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    TICKET_EXTENSIONS,
    TICKET_FIELDS,
    TICKET_PRIORITIES,
    TICKET_REQUIRED,
    TICKET_STATUSES,
)
from kpi_pipeline.ingest.raw_files import LINE
from kpi_pipeline.ingest.rows import (
    FILE,
    StagedExports,
    bad_value_checks,
    first_reason,
    is_blank,
    parse_counts,
    parse_numbers,
    parse_timestamps,
    stage_exports,
    too_long,
    with_mapping_reasons,
)
from kpi_pipeline.sources.model import TICKET_TIMESTAMPS, TicketMapping
from kpi_pipeline.storage import StoragePath

TIMESTAMPS: tuple[str, ...] = TICKET_TIMESTAMPS
NUMBERS: tuple[str, ...] = ("agent_work_minutes", "reopens")
TEXT_FIELDS: tuple[str, ...] = tuple(f for f in TICKET_FIELDS if f not in TIMESTAMPS + NUMBERS)


def validate_tickets(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ticket versions into (valid typed versions, rejected rows with ``reason``); a mapped
    source's own reasons (``_reason``) count by the contract's precedence.

    ``agent_work_minutes`` must be a finite decimal number ≥ 0 and ``reopens`` a whole number
    ≥ 0 that fits int64; text longer than ``MAX_TEXT_LENGTH`` is a bad value. Several bad values
    report the first in the contract's field order."""
    ts = {name: parse_timestamps(rows[name]) for name in TIMESTAMPS}
    status = rows["status"].str.strip().str.lower()
    priority = rows["priority"].str.strip().str.lower()
    minutes = parse_numbers(rows["agent_work_minutes"])
    reopens = parse_counts(rows["reopens"])
    given = {name: ~is_blank(rows[name]) for name in TICKET_FIELDS}
    checks: list[tuple[pd.Series, str]] = [(~given[f], f"missing_field:{f}") for f in TICKET_REQUIRED]
    checks += [(given[name] & ts[name].isna(), BAD_TIMESTAMP) for name in TIMESTAMPS]
    bad = too_long(rows, TEXT_FIELDS)
    bad["status"] |= ~status.isin(TICKET_STATUSES).fillna(False)
    bad["priority"] |= given["priority"] & ~priority.isin(TICKET_PRIORITIES).fillna(False)
    bad["solved_at"] = (ts["solved_at"] < ts["created_at"]).fillna(False)
    bad["agent_work_minutes"] = given["agent_work_minutes"] & ~minutes.ge(0)
    bad["reopens"] = given["reopens"] & ~reopens.ge(0).fillna(False)
    checks += bad_value_checks(TICKET_FIELDS, bad)
    reason = with_mapping_reasons(first_reason(rows.index, checks), rows)
    keep = reason.isna().to_numpy(dtype=bool)

    valid = rows.loc[keep].copy()
    for name in TIMESTAMPS:
        valid[name] = ts[name][keep]
    valid["status"] = status[keep]
    valid["priority"] = priority[keep]
    valid["agent_work_minutes"] = minutes[keep]
    valid["reopens"] = reopens[keep]
    valid["source_file"] = valid[FILE]

    rejected = rows.loc[~keep, [FILE, LINE]].copy()
    rejected["reason"] = reason[~keep]
    return valid, rejected


def stage_tickets(data_root: StoragePath, mapping: TicketMapping | None = None) -> StagedExports:
    """Read every ticket export (under ``raw/tickets``, or where ``mapping`` says, mapped onto the
    contract); the latest version of each ticket wins."""
    return stage_exports(
        data_root,
        "tickets",
        TICKET_EXTENSIONS,
        TICKET_FIELDS,
        "ticket_id",
        validate_tickets,
        "stg_support_tickets",
        mapping,
    )
