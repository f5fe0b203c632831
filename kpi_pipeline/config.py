"""Load and validate ``kpi.yaml`` (workflows, ROI assumptions, aliases, source mappings).

Every key is declared here with its default; an unknown key, a wrong type, a
negative cost or a topic claimed by two workflows fails at load with a
message that names the file and the key.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kpi_pipeline.sources.model import Sources


class ConfigError(ValueError):
    """kpi.yaml cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Windows(_Strict):
    """Attribution windows in hours (both ends included)."""

    completion: float = Field(24.0, gt=0)
    fallback_ticket: float = Field(24.0, ge=0)
    deflection: float = Field(72.0, ge=0)


class Workflow(_Strict):
    owner: str | None = None  # None → default_owner
    description: str = ""
    steps: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    minutes_saved_per_completion: float = Field(0.0, ge=0)


class EventAlias(_Strict):
    """Rename ``from`` to ``to`` for events whose UTC date is in the window."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None

    @model_validator(mode="after")
    def _window_ordered(self) -> EventAlias:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class Scorecard(_Strict):
    threshold: float = Field(0.05, ge=0)


class Quality(_Strict):
    """Thresholds of the data-quality checks."""

    quarantine_rate_error: float = Field(0.05, ge=0, le=1)  # blocks downstream KPIs above this
    quarantine_rate_warn: float = Field(0.005, ge=0, le=1)  # warns above this
    volume_tolerance: float = Field(0.5, ge=0)  # ± share of the trailing median of staged rows
    volume_window: int = Field(7, ge=1)  # partitions in that trailing median
    telemetry_max_age_hours: float = Field(48.0, gt=0)  # newest telemetry partition may be this old
    tickets_max_age_hours: float = Field(48.0, gt=0)  # newest ticket export may be this old
    unknown_requester_share: float = Field(0.2, ge=0, le=1)  # warns when more tickets' requesters are unknown

    @model_validator(mode="after")
    def _warn_below_error(self) -> Quality:
        if self.quarantine_rate_warn > self.quarantine_rate_error:
            raise ValueError("quarantine_rate_warn is above quarantine_rate_error")
        return self


class Automation(_Strict):
    """When the daily schedule runs."""

    daily_hour_utc: int = Field(6, ge=0, le=23)  # hour of the day (UTC) the daily KPI schedule runs


class Owners(_Strict):
    """Owners of the tables that are not tied to one workflow."""

    engagement: str | None = None
    support: str | None = None
    reliability: str | None = None
    data_quality: str | None = None


class KpiConfig(_Strict):
    currency: str = "USD"
    cost_per_ticket: float = Field(25.0, ge=0)
    loaded_hourly_cost: float = Field(60.0, ge=0)
    windows: Windows = Windows()
    activation_days: float = Field(14.0, gt=0)
    default_owner: str = "product-analytics"
    owners: Owners = Owners()
    scorecard: Scorecard = Scorecard()
    quality: Quality = Quality()
    automation: Automation = Automation()
    workflows: dict[str, Workflow] = {}
    event_aliases: tuple[EventAlias, ...] = ()
    sources: Sources = Sources()  # how each source's export maps onto the contract (none: native)

    @model_validator(mode="after")
    def _topic_in_one_workflow(self) -> KpiConfig:
        seen: dict[str, str] = {}
        for name, wf in self.workflows.items():
            for topic in wf.topics:
                if topic in seen and seen[topic] != name:
                    raise ValueError(
                        f"workflows.{name}.topics: topic {topic!r} already belongs to workflow "
                        f"{seen[topic]!r}; a topic may belong to at most one workflow"
                    )
                seen[topic] = name
        return self

    def topic_to_workflow(self) -> dict[str, str]:
        """Map each configured support topic to its workflow."""
        return {t: name for name, wf in self.workflows.items() for t in wf.topics}

    def completion_days(self) -> int:
        """Days after its start that an attempt's events can arrive on (1 for a 24 h window)."""
        return math.ceil(self.windows.completion / 24)

    def ticket_reach_days(self) -> int:
        """Days before a ticket's creation whose KPIs it can change: deflection windows, and
        fallback tickets of attempts started up to completion + fallback_ticket hours earlier."""
        windows = self.windows
        return math.ceil(max(windows.deflection, windows.completion + windows.fallback_ticket) / 24)

    def workflow_owner(self, workflow: str) -> str:
        """Owner of a workflow's metrics: its own ``owner``, else ``default_owner``."""
        wf = self.workflows.get(workflow)
        return (wf.owner if wf else None) or self.default_owner

    def owner_for(self, area: str) -> str:
        """Owner of a non-workflow table family, falling back to ``default_owner``."""
        return getattr(self.owners, area, None) or self.default_owner


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_config(raw: Any, source: str = "kpi.yaml") -> KpiConfig:
    """Validate an already-parsed YAML document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    try:
        return KpiConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")
            problems.append(f"{_key_path(err['loc'])}: {msg}" if err["loc"] else msg)
        raise ConfigError(f"{source}: invalid configuration: " + "; ".join(problems)) from None


def load_config(path: str | Path | None) -> KpiConfig:
    """Load kpi.yaml from ``path``; built-in defaults when ``path`` is None or absent."""
    if path is None:
        return KpiConfig()
    path = Path(path)
    if not path.exists():
        return KpiConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, str(path))
