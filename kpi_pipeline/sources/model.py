"""The ``sources:`` section of kpi.yaml: how each source's export maps onto the data contract.

A source with no entry is read as the native contract. Otherwise its entry is
a named preset (a mapping file shipped in ``presets/``; keys given beside
``preset`` override the preset's) or an explicit mapping. Everything is
checked at load, and an error names the key.
"""

from __future__ import annotations

import zoneinfo
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kpi_pipeline.contract import (
    INCIDENT_FIELDS,
    INCIDENT_REQUIRED,
    TELEMETRY_FIELDS,
    TELEMETRY_REQUIRED,
    TICKET_FIELDS,
    TICKET_REQUIRED,
)
from kpi_pipeline.sources.presets import preset_mapping

TELEMETRY_TIMESTAMPS: tuple[str, ...] = ("occurred_at",)
TICKET_TIMESTAMPS: tuple[str, ...] = ("created_at", "updated_at", "first_reply_at", "solved_at")
INCIDENT_TIMESTAMPS: tuple[str, ...] = ("started_at", "detected_at", "resolved_at", "updated_at")

FILE_COLUMN = "$file"  # the file a row comes from, as the quarantine names it (relative to the data root)
LINE_COLUMN = "$line"  # the row's 1-based line number in that file
PSEUDO_COLUMNS: tuple[str, ...] = (FILE_COLUMN, LINE_COLUMN)
ISO8601 = "ISO8601"

# File names a mapped source reads in a folder, by format; each may end in .gz or .zip.
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".tsv", ".txt"),
    "whitespace": (".txt", ".dat"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
}
COMPRESSIONS: tuple[str, ...] = ("", ".gz", ".zip")
# Keys of a preset that an entry beside ``preset`` extends name by name instead of replacing.
MERGED_KEYS: tuple[str, ...] = ("fields", "constants", "include", "exclude")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def _timestamp_format(value: str) -> str:
    """``ISO8601`` or a strftime pattern (it must hold a ``%`` code)."""
    if value != ISO8601 and "%" not in value:
        raise ValueError(
            f"{value!r} is not a timestamp format: use ISO8601 or strftime codes such as '%d/%m/%Y %H:%M'"
        )
    return value


def fold(value: str) -> str:
    """How source values are compared in value maps and filters: trimmed, case-insensitive."""
    return value.strip().casefold()


class FieldSpec(_Model):
    """Where one contract field comes from: a source column (or several, joined), translated.

    A timestamp field may be given as ``minutes_after`` another timestamp field of the
    source: its column then holds a number of minutes (a duration such as Zendesk's
    "First reply time in minutes"), and the field is that field's time plus those minutes.
    """

    column: str | None = None
    columns: tuple[str, ...] = ()
    join: str = ":"
    values: dict[str, str] = {}
    unmapped: Literal["reject", "keep"] = "reject"
    default: str | None = None
    split: str | None = Field(None, min_length=1)
    format: str | None = None
    minutes_after: str | None = Field(None, min_length=1)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        return None if value is None else _timestamp_format(value)

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if (self.column is None) == (not self.columns):
            raise ValueError("give either column (one source column) or columns (several, joined)")
        odd = [n for n in self.names if n.startswith("$") and n not in PSEUDO_COLUMNS]
        if odd:
            raise ValueError(f"{odd[0]!r} is not a column; the only $-names are {', '.join(PSEUDO_COLUMNS)}")
        folded = [fold(k) for k in self.values]
        clashes = sorted({k for k in folded if folded.count(k) > 1})
        if clashes:
            raise ValueError(f"values: keys {clashes} differ only in case or surrounding spaces")
        if self.minutes_after is not None and self.format is not None:
            raise ValueError(
                "format and minutes_after: a column holds either timestamps (format) or minutes "
                "after another timestamp field (minutes_after), not both"
            )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """The source columns (or $-names) the field is built from."""
        return (self.column,) if self.column is not None else self.columns

    def folded_values(self) -> dict[str, str]:
        """The value map keyed by folded source value."""
        return {fold(k): v for k, v in self.values.items()}


class Version(_Model):
    """The source column that orders versions of a record (exports with one row per update)."""

    column: str
    type: Literal["number", "timestamp"] = "number"

    @field_validator("column")
    @classmethod
    def _real_column(cls, value: str) -> str:
        if value.startswith("$"):
            raise ValueError("versions are ordered by a source column, not by a $-name")
        return value


class SourceMapping(_Model):
    """How one source's files map onto its contract fields."""

    SOURCE: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[str, ...]] = ()
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    TIMESTAMPS: ClassVar[tuple[str, ...]] = ()
    LISTS: ClassVar[tuple[str, ...]] = ()

    preset: str | None = None
    path: str | None = None
    format: Literal["csv", "whitespace", "jsonl"] = "csv"
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: tuple[str, ...] = ()
    timestamp_format: str = ISO8601
    timezone: str = "UTC"
    missing: tuple[str, ...] = ()
    version: Version | None = None
    include: dict[str, tuple[str, ...]] = {}
    exclude: dict[str, tuple[str, ...]] = {}
    constants: dict[str, str] = {}
    fields: dict[str, FieldSpec] = {}

    @field_validator("fields", mode="before")
    @classmethod
    def _column_shorthand(cls, value: Any) -> Any:
        """``field: column`` is short for ``field: {column: column}``."""
        if isinstance(value, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("fields", "constants")
    @classmethod
    def _contract_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = [repr(k) for k in value if k not in cls.FIELDS]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not a {cls.SOURCE} field of the data contract; "
                f"the {cls.SOURCE} fields are {', '.join(cls.FIELDS)}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Amsterdam"
            ) from None
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _timestamp_format(value)

    @model_validator(mode="after")
    def _consistent(self) -> SourceMapping:
        problems = [
            f"fields.{name} and constants.{name}: a field is either mapped or a constant"
            for name in self.fields
            if name in self.constants
        ]
        absent = [f for f in self.REQUIRED if f not in self.fields and f not in self.constants]
        if absent:
            problems.append(
                f"fields: required {self.SOURCE} field(s) {', '.join(absent)} neither mapped nor constant"
            )
        for name, spec in self.fields.items():
            if spec.split is not None and name not in self.LISTS:
                lists = ", ".join(self.LISTS) or "none"
                problems.append(f"fields.{name}.split: only list fields split (here: {lists})")
            if spec.format is not None and name not in self.TIMESTAMPS:
                problems.append(f"fields.{name}.format: only timestamp fields ({', '.join(self.TIMESTAMPS)})")
            problems += self._minutes_after_problems(name, spec)
        if self.columns and self.format == "jsonl":
            problems.append("columns: JSON lines name their own fields; columns is for csv and whitespace")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _minutes_after_problems(self, name: str, spec: FieldSpec) -> list[str]:
        """What is wrong with a field's ``minutes_after``: it must be a timestamp field given as
        minutes after another timestamp field that this mapping reads from a column (no chains)."""
        base = spec.minutes_after
        if base is None:
            return []
        key = f"fields.{name}.minutes_after"
        timestamps = ", ".join(self.TIMESTAMPS)
        if name not in self.TIMESTAMPS:
            return [f"{key}: only timestamp fields ({timestamps}) are given as minutes after another"]
        if base == name:
            return [f"{key}: a field cannot be minutes after itself"]
        if base not in self.TIMESTAMPS:
            return [f"{key}: {base!r} is not a {self.SOURCE} timestamp field ({timestamps})"]
        if base not in self.fields:
            return [f"{key}: {base} is not mapped; map fields.{base} to a timestamp column"]
        further = self.fields[base].minutes_after
        if further is not None:
            return [
                f"{key}: {base} is itself minutes after {further}; the field it counts from "
                "must be read from a timestamp column"
            ]
        return []

    def minutes_fields(self) -> dict[str, str]:
        """Timestamp fields given as minutes after another: field → the field it counts from."""
        return {n: s.minutes_after for n, s in self.fields.items() if s.minutes_after is not None}

    def format_of(self, field: str) -> str:
        """The timestamp format of a timestamp field."""
        spec = self.fields.get(field)
        return spec.format if spec is not None and spec.format is not None else self.timestamp_format

    def read_columns(self) -> tuple[str, ...]:
        """Every source column the mapping reads (fields, version, filters), in first-use order."""
        names = [n for spec in self.fields.values() for n in spec.names]
        names += [self.version.column] if self.version else []
        names += [*self.include, *self.exclude]
        return tuple(dict.fromkeys(n for n in names if n not in PSEUDO_COLUMNS))

    def header_columns(self) -> tuple[str, ...]:
        """Source columns a header must name: those of required fields, the version and the filters."""
        names = [n for f in self.REQUIRED if f in self.fields for n in self.fields[f].names]
        names += [self.version.column] if self.version else []
        names += [*self.include, *self.exclude]
        return tuple(dict.fromkeys(n for n in names if n not in PSEUDO_COLUMNS))

    def text_columns(self) -> tuple[str, ...]:
        """Source columns holding timestamps, kept as raw text when JSON is parsed (a column of
        minutes is a number, not one of them)."""
        timestamps = [f for f in self.TIMESTAMPS if f in self.fields and f not in self.minutes_fields()]
        names = [n for f in timestamps for n in self.fields[f].names]
        names += [self.version.column] if self.version and self.version.type == "timestamp" else []
        return tuple(dict.fromkeys(n for n in names if n not in PSEUDO_COLUMNS))

    def extensions(self) -> tuple[str, ...]:
        """File-name endings read from a folder: the format's extensions, plain, gzip or zip."""
        return tuple(ext + comp for ext in FORMAT_EXTENSIONS[self.format] for comp in COMPRESSIONS)


class TelemetryMapping(SourceMapping):
    SOURCE: ClassVar[str] = "telemetry"
    FIELDS: ClassVar[tuple[str, ...]] = TELEMETRY_FIELDS
    REQUIRED: ClassVar[tuple[str, ...]] = TELEMETRY_REQUIRED
    TIMESTAMPS: ClassVar[tuple[str, ...]] = TELEMETRY_TIMESTAMPS

    @model_validator(mode="after")
    def _daily_folders(self) -> TelemetryMapping:
        if self.version is not None:
            raise ValueError(
                "version: telemetry has no versions of a record (a repeated event_id is quarantined); "
                "version is for tickets and incidents"
            )
        if self.path is not None:
            raise ValueError(
                "path: telemetry is read from raw/telemetry/date=YYYY-MM-DD/ under the data root; split "
                "a many-day export into those folders with `kpi-pipeline import --source telemetry FILE`"
            )
        return self


class TicketMapping(SourceMapping):
    SOURCE: ClassVar[str] = "tickets"
    FIELDS: ClassVar[tuple[str, ...]] = TICKET_FIELDS
    REQUIRED: ClassVar[tuple[str, ...]] = TICKET_REQUIRED
    TIMESTAMPS: ClassVar[tuple[str, ...]] = TICKET_TIMESTAMPS


class IncidentMapping(SourceMapping):
    SOURCE: ClassVar[str] = "incidents"
    FIELDS: ClassVar[tuple[str, ...]] = INCIDENT_FIELDS
    REQUIRED: ClassVar[tuple[str, ...]] = INCIDENT_REQUIRED
    TIMESTAMPS: ClassVar[tuple[str, ...]] = INCIDENT_TIMESTAMPS
    LISTS: ClassVar[tuple[str, ...]] = ("affected_workflows",)


def with_preset(name: str, source: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Preset ``name``'s mapping for ``source`` with the entry's other keys laid over it.

    ``fields``, ``constants``, ``include`` and ``exclude`` are extended name by
    name (a name set to null is removed); any other key replaces the preset's.
    """
    merged = preset_mapping(name, source)
    for key, value in entry.items():
        if key in MERGED_KEYS and isinstance(value, dict):
            entries = dict(merged.get(key) or {})
            for item, setting in value.items():
                if setting is None:
                    entries.pop(item, None)
                else:
                    entries[item] = setting
            merged[key] = entries
        else:
            merged[key] = value
    return merged


class Sources(_Model):
    """One optional mapping per source; a source without one is read as the native contract."""

    telemetry: TelemetryMapping | None = None
    tickets: TicketMapping | None = None
    incidents: IncidentMapping | None = None

    @field_validator("telemetry", "tickets", "incidents", mode="before")
    @classmethod
    def _expand_preset(cls, value: Any, info: ValidationInfo) -> Any:
        """``source: name`` is short for ``source: {preset: name}``; a preset becomes its mapping."""
        if isinstance(value, str):
            value = {"preset": value}
        if isinstance(value, dict) and value.get("preset") is not None:
            return with_preset(str(value["preset"]), str(info.field_name), value)
        return value
