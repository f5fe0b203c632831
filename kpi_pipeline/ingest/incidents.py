"""Stage incident-log exports: validate, normalise severities, keep the latest version."""

from __future__ import annotations

import orjson
import pandas as pd

from kpi_pipeline.contract import BAD_TIMESTAMP, INCIDENT_EXTENSIONS, INCIDENT_FIELDS, INCIDENT_REQUIRED
from kpi_pipeline.ingest.raw_files import LINE
from kpi_pipeline.ingest.rows import (
    FILE,
    StagedExports,
    bad_value_checks,
    first_reason,
    is_blank,
    parse_timestamps,
    stage_exports,
    too_long,
    with_mapping_reasons,
)
from kpi_pipeline.sources.model import INCIDENT_TIMESTAMPS, IncidentMapping
from kpi_pipeline.storage import StoragePath

TIMESTAMPS: tuple[str, ...] = INCIDENT_TIMESTAMPS
TEXT_FIELDS: tuple[str, ...] = tuple(f for f in INCIDENT_FIELDS if f not in TIMESTAMPS)
SEVERITY_PATTERN = r"^(?:sev|p)?\s*-?\s*([1-4])$"


def normalise_severity(values: pd.Series) -> pd.Series:
    """``SEV1``…``SEV4`` from spellings like ``sev1``, ``1``, ``P1``; NA when not recognised."""
    level = values.str.strip().str.lower().str.extract(SEVERITY_PATTERN, expand=False)
    return ("SEV" + level).astype("string")


def normalise_workflows(values: pd.Series) -> pd.Series:
    """A list of workflow names → sorted, de-duplicated, ``;``-joined, blanks dropped.

    The list is ``;``-separated text (a JSON list arrives so from the reader), or a whole JSON
    list of strings written as text (a CSV cell holding ``["a", "b"]``). Names are trimmed of
    surrounding white space and otherwise kept as written: commas and quotes are part of a name.
    """
    text = values.fillna("").astype("string")
    listed = text.str.strip().str.fullmatch(r"(?s)\[.*\]").fillna(False).to_numpy(dtype=bool)
    if listed.any():
        text = text.copy()
        text[listed] = [_json_names(v) for v in text[listed]]
    names = text.str.split(";", regex=False).explode().str.strip()
    names = names[names.ne("").fillna(False)]
    names = names.rename("name").reset_index().drop_duplicates().sort_values(["index", "name"])
    joined = names.groupby("index")["name"].agg(";".join)
    return joined.reindex(values.index, fill_value="").astype("string")


def _json_names(value: str) -> str:
    """A JSON list of strings as ``;``-joined text; any other text unchanged (one name)."""
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if not all(isinstance(item, str) for item in items):
        return value
    return ";".join(items)


def validate_incidents(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split incident versions into (valid typed versions, rejected rows with ``reason``); a mapped
    source's own reasons (``_reason``) count by the contract's precedence.

    ``detected_at`` and ``resolved_at`` must not be before ``started_at``; text longer than
    ``MAX_TEXT_LENGTH`` is a bad value. Several bad values report the first in the contract's
    field order."""
    ts = {name: parse_timestamps(rows[name]) for name in TIMESTAMPS}
    severity = normalise_severity(rows["severity"])
    given = {name: ~is_blank(rows[name]) for name in INCIDENT_FIELDS}
    checks: list[tuple[pd.Series, str]] = [(~given[f], f"missing_field:{f}") for f in INCIDENT_REQUIRED]
    checks += [(given[name] & ts[name].isna(), BAD_TIMESTAMP) for name in TIMESTAMPS]
    bad = too_long(rows, TEXT_FIELDS)
    bad["severity"] |= severity.isna()
    bad["detected_at"] = (ts["detected_at"] < ts["started_at"]).fillna(False)
    bad["resolved_at"] = (ts["resolved_at"] < ts["started_at"]).fillna(False)
    checks += bad_value_checks(INCIDENT_FIELDS, bad)
    reason = with_mapping_reasons(first_reason(rows.index, checks), rows)
    keep = reason.isna().to_numpy(dtype=bool)

    valid = rows.loc[keep].copy()
    for name in TIMESTAMPS:
        valid[name] = ts[name][keep]
    valid["detected_at"] = valid["detected_at"].fillna(valid["started_at"])
    valid["severity"] = severity[keep]
    valid["affected_workflows"] = normalise_workflows(rows.loc[keep, "affected_workflows"])
    valid["source_file"] = valid[FILE]

    rejected = rows.loc[~keep, [FILE, LINE]].copy()
    rejected["reason"] = reason[~keep]
    return valid, rejected


def stage_incidents(data_root: StoragePath, mapping: IncidentMapping | None = None) -> StagedExports:
    """Read every incident export (under ``raw/incidents``, or where ``mapping`` says, mapped onto
    the contract); the latest version of each incident wins."""
    return stage_exports(
        data_root,
        "incidents",
        INCIDENT_EXTENSIONS,
        INCIDENT_FIELDS,
        "incident_id",
        validate_incidents,
        "stg_incidents",
        mapping,
    )
