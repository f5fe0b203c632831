"""Stage support-ticket exports: validate every version, keep the latest per ticket."""

from __future__ import annotations

from pathlib import Path

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
    first_reason,
    is_blank,
    parse_timestamps,
    stage_exports,
    with_mapping_reasons,
)
from kpi_pipeline.sources.model import TICKET_TIMESTAMPS, TicketMapping

TIMESTAMPS: tuple[str, ...] = TICKET_TIMESTAMPS


def validate_tickets(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ticket versions into (valid typed versions, rejected rows with ``reason``); a mapped
    source's own reasons (``_reason``) count by the contract's precedence."""
    ts = {name: parse_timestamps(rows[name]) for name in TIMESTAMPS}
    status = rows["status"].str.strip().str.lower()
    priority = rows["priority"].str.strip().str.lower()
    minutes = pd.to_numeric(rows["agent_work_minutes"].str.strip(), errors="coerce").astype("float64")
    reopens = pd.to_numeric(rows["reopens"].str.strip(), errors="coerce").astype("float64")
    given = {name: ~is_blank(rows[name]) for name in TICKET_FIELDS}
    checks: list[tuple[pd.Series, str]] = [(~given[f], f"missing_field:{f}") for f in TICKET_REQUIRED]
    checks += [(given[name] & ts[name].isna(), BAD_TIMESTAMP) for name in TIMESTAMPS]
    checks += [
        (~status.isin(TICKET_STATUSES).fillna(False), "bad_value:status"),
        (given["priority"] & ~priority.isin(TICKET_PRIORITIES).fillna(False), "bad_value:priority"),
        (given["agent_work_minutes"] & ~minutes.ge(0).fillna(False), "bad_value:agent_work_minutes"),
        (given["reopens"] & ~(reopens.ge(0) & reopens.mod(1).eq(0)).fillna(False), "bad_value:reopens"),
        ((ts["solved_at"] < ts["created_at"]).fillna(False), "bad_value:solved_at"),
    ]
    reason = with_mapping_reasons(first_reason(rows.index, checks), rows)
    keep = reason.isna().to_numpy(dtype=bool)

    valid = rows.loc[keep].copy()
    for name in TIMESTAMPS:
        valid[name] = ts[name][keep]
    valid["status"] = status[keep]
    valid["priority"] = priority[keep]
    valid["agent_work_minutes"] = minutes[keep]
    valid["reopens"] = reopens[keep].astype("Int64")
    valid["source_file"] = valid[FILE]

    rejected = rows.loc[~keep, [FILE, LINE]].copy()
    rejected["reason"] = reason[~keep]
    return valid, rejected


def stage_tickets(data_root: Path, mapping: TicketMapping | None = None) -> StagedExports:
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
