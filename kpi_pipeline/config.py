"""Load and validate ``kpi.yaml`` (workflows, ROI assumptions, aliases, source mappings).

Every key is declared here with its default; an unknown key, a wrong type, a
number out of its range or a topic claimed by two workflows fails at load with
a one-line message that names the file and the key. Numbers are strict (a
boolean or a quoted number is not a number; an integer is fine where a decimal
is wanted), finite and bounded, so the windows and costs cannot overflow the
date and money arithmetic; dates are ``YYYY-MM-DD`` calendar dates.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import holidays
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from upath import UPath

from kpi_pipeline.contract import EVENT_TYPES, TICKET_PRIORITIES
from kpi_pipeline.sources.model import Sources
from kpi_pipeline.storage import URL_SCHEME, location

# Upper bounds of the numeric keys: far above any sensible setting, low enough that no window,
# horizon or money amount can overflow timestamp or float arithmetic.
MAX_WINDOW_HOURS = 8_760.0  # one year: windows and freshness limits
MAX_DAYS = 3_660.0  # ten years: activation_days
MAX_AMOUNT = 1e9  # a money amount per ticket or per hour, in any currency
MAX_MINUTES = 525_600.0  # one year of minutes: minutes_saved_per_completion
MAX_RATIO = 100.0  # thresholds and tolerances given as shares (100 = 10,000 %)
MAX_PARTITIONS = 366  # volume_window: the trailing partitions a check reads
FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2200, 12, 31)  # inside pandas' timestamp range


def number(default: float, *, gt: float | None = None, ge: float | None = None, le: float) -> Any:
    """A strict, finite number field: an int or float (not a bool, not text) within the bounds."""
    return Field(default, strict=True, allow_inf_nan=False, gt=gt, ge=ge, le=le)


def _calendar_date(value: Any) -> Any:
    """A ``YYYY-MM-DD`` text (the loader keeps YAML dates as text) → a date in the supported range."""
    if value is None or isinstance(value, dt.date):
        date = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            date = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a calendar date ({exc})") from None
    else:
        raise ValueError(f"expected a date like 2025-01-31, got {_render(value)}")
    if date is not None and not FIRST_DATE <= date <= LAST_DATE:
        raise ValueError(f"{date.isoformat()} is outside {FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()}")
    return date


CalendarDate = Annotated[dt.date | None, BeforeValidator(_calendar_date)]


class ConfigError(ValueError):
    """kpi.yaml cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Windows(_Strict):
    """Attribution windows in hours (both ends included)."""

    completion: float = number(24.0, gt=0, le=MAX_WINDOW_HOURS)
    fallback_ticket: float = number(24.0, ge=0, le=MAX_WINDOW_HOURS)
    deflection: float = number(72.0, ge=0, le=MAX_WINDOW_HOURS)
    retry: float = number(24.0, gt=0, le=MAX_WINDOW_HOURS)  # failed attempt's start -> its retry's start


class Workflow(_Strict):
    owner: str | None = None  # None → default_owner
    description: str = ""
    steps: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    minutes_saved_per_completion: float = number(0.0, ge=0, le=MAX_MINUTES)
    # A task_step slower than this is slow (kpi_step_latency_daily); None: no budget, slow columns NULL.
    latency_budget_ms: float | None = Field(
        None, strict=True, allow_inf_nan=False, ge=0, le=MAX_WINDOW_HOURS * 3_600_000
    )


class EventAlias(_Strict):
    """Rename ``from`` to ``to`` for events whose UTC date is in the window."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    valid_from: CalendarDate = None
    valid_until: CalendarDate = None

    @field_validator("to")
    @classmethod
    def _canonical(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"{value!r} is not a canonical event type; one of {', '.join(EVENT_TYPES)}")
        return value

    @model_validator(mode="after")
    def _window_ordered(self) -> EventAlias:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class Scorecard(_Strict):
    threshold: float = number(0.05, ge=0, le=MAX_RATIO)
    # A rate is flagged only when its p-value is below this; 1.0 flags on the threshold alone.
    alpha: float = number(0.05, gt=0, le=1)


Share = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1)]
Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
DEFAULT_OUTAGE_WEIGHT: dict[str, float] = {"SEV1": 1.0, "SEV2": 1.0, "SEV3": 0.3, "SEV4": 0.0}


class Reliability(_Strict):
    """Uptime and error budget (kpi_uptime_monthly): the SLO, and how much of an outage each
    incident severity counts as. Severities left out of ``outage_weight`` keep their default
    weight; a weight is a share in [0, 1], so uptime stays in [0, 1]."""

    slo: float = number(0.999, ge=0, le=1)
    outage_weight: dict[Severity, Share] = DEFAULT_OUTAGE_WEIGHT

    @field_validator("outage_weight")
    @classmethod
    def _with_defaults(cls, weights: dict[str, float]) -> dict[str, float]:
        return {**DEFAULT_OUTAGE_WEIGHT, **weights}


Score = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e9, le=1e9)]


class Survey(_Strict):
    """An in-product survey (kpi_survey_daily): its kind, the scale a score must lie on, and the
    boxes — inclusive ranges of the scale — whose shares are top_box_rate and bottom_box_rate."""

    kind: Literal["csat", "ces", "nps", "other"]
    scale: tuple[Score, Score]
    top_box: tuple[Score, Score]
    bottom_box: tuple[Score, Score]

    @model_validator(mode="after")
    def _boxes_inside_the_scale(self) -> Survey:
        low, high = self.scale
        if low > high:
            raise ValueError(f"scale [{low:g}, {high:g}]: its low end is above its high end")
        for name in ("top_box", "bottom_box"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} [{lo:g}, {hi:g}]: its low end is above its high end")
            if lo < low or hi > high:
                raise ValueError(f"{name} [{lo:g}, {hi:g}] is not inside scale [{low:g}, {high:g}]")
        return self


BUILTIN_SURVEYS: dict[str, Survey] = {
    "csat": Survey(kind="csat", scale=(1, 5), top_box=(4, 5), bottom_box=(1, 2)),
    "ces": Survey(kind="ces", scale=(1, 7), top_box=(5, 7), bottom_box=(1, 3)),
    "nps": Survey(kind="nps", scale=(0, 10), top_box=(9, 10), bottom_box=(0, 6)),
}


WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Amount = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_AMOUNT)]
SlaMinutes = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=MAX_WINDOW_HOURS * 60)]


def _clock_minute(value: Any) -> Any:
    """A local wall-clock time ``HH:MM`` (``24:00`` = the end of the day) → minutes after midnight."""
    match = re.fullmatch(r"([0-9]{2}):([0-9]{2})", value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'expected a time like "09:00" (quoted), got {_render(value)}')
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{value!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


ClockMinute = Annotated[int, BeforeValidator(_clock_minute)]


class BusinessHours(_Strict):
    """When support works (the ``*_business_*`` columns of kpi_support_daily): on the listed
    weekdays, from ``start`` (included) to ``end`` (excluded) local time in ``timezone``, except
    on the listed holidays and, with ``country`` (``DE``, ``US``, ``DE-BY`` …), that country's
    public holidays from the ``holidays`` package. Times are stored as minutes after midnight."""

    timezone: str
    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: ClockMinute
    end: ClockMinute
    holidays: tuple[CalendarDate, ...] = ()
    country: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return name

    @field_validator("country")
    @classmethod
    def _known_country(cls, code: str | None) -> str | None:
        if code is not None:
            country, _, subdivision = code.partition("-")
            try:
                holidays.country_holidays(country, subdiv=subdivision or None)
            except NotImplementedError as exc:
                raise ValueError(f"{code!r}: {exc}") from None
        return code

    @model_validator(mode="after")
    def _start_before_end(self) -> BusinessHours:
        if self.start >= self.end:
            raise ValueError("start is not before end (hours past midnight are not supported)")
        if not self.days:
            raise ValueError("days is empty: list at least one weekday")
        return self


def _known_priorities(targets: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(targets) - set(TICKET_PRIORITIES))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a ticket priority ({', '.join(TICKET_PRIORITIES)})")
    return targets


class Sla(_Strict):
    """Targets in minutes by ticket priority (business minutes when business_hours is set)."""

    first_reply: Annotated[dict[str, SlaMinutes], AfterValidator(_known_priorities)] = {}
    resolution: Annotated[dict[str, SlaMinutes], AfterValidator(_known_priorities)] = {}


class Support(_Strict):
    """Support service (kpi_support_daily): cost per ticket by channel, business hours, SLAs."""

    cost_per_ticket_by_channel: dict[str, Amount] = {}
    business_hours: BusinessHours | None = None
    sla: Sla = Sla()


class Quality(_Strict):
    """Thresholds of the data-quality checks."""

    quarantine_rate_error: float = number(0.05, ge=0, le=1)  # blocks downstream KPIs above this
    quarantine_rate_warn: float = number(0.005, ge=0, le=1)  # warns above this
    volume_tolerance: float = number(0.5, ge=0, le=MAX_RATIO)  # ± share of the trailing median of staged rows
    volume_window: int = Field(7, strict=True, ge=1, le=MAX_PARTITIONS)  # partitions in that trailing median
    telemetry_max_age_hours: float = number(48.0, gt=0, le=MAX_WINDOW_HOURS)  # newest partition's max age
    tickets_max_age_hours: float = number(48.0, gt=0, le=MAX_WINDOW_HOURS)  # newest export's max age
    unknown_requester_share: float = number(
        0.2, ge=0, le=1
    )  # warns when more tickets' requesters are unknown

    @model_validator(mode="after")
    def _warn_below_error(self) -> Quality:
        if self.quarantine_rate_warn > self.quarantine_rate_error:
            raise ValueError("quarantine_rate_warn is above quarantine_rate_error")
        return self


class Automation(_Strict):
    """When the daily schedule runs."""

    daily_hour_utc: int = Field(
        6, strict=True, ge=0, le=23
    )  # hour of the day (UTC) the daily KPI schedule runs


class Owners(_Strict):
    """Owners of the tables that are not tied to one workflow."""

    workflows: str | None = None  # the tables with a row per workflow; each workflow's owner is in its rows
    engagement: str | None = None
    support: str | None = None
    reliability: str | None = None
    releases: str | None = None  # kpi_release_quality: the product owner who decides on releases
    data_quality: str | None = None


class KpiConfig(_Strict):
    start_date: CalendarDate = (
        None  # first daily partition (KPI_START_DATE wins; default: the data's first day)
    )
    currency: str = "USD"
    cost_per_ticket: float = number(25.0, ge=0, le=MAX_AMOUNT)
    loaded_hourly_cost: float = number(60.0, ge=0, le=MAX_AMOUNT)
    windows: Windows = Windows()
    activation_days: float = number(14.0, gt=0, le=MAX_DAYS)
    default_owner: str = "product-analytics"
    owners: Owners = Owners()
    scorecard: Scorecard = Scorecard()
    reliability: Reliability = Reliability()
    support: Support = Support()
    # Known surveys by name (matched as written): the built-in csat, ces and nps unless redefined.
    surveys: dict[str, Survey] = BUILTIN_SURVEYS
    quality: Quality = Quality()
    automation: Automation = Automation()
    workflows: dict[str, Workflow] = {}
    event_aliases: tuple[EventAlias, ...] = ()
    sources: Sources = Sources()  # how each source's export maps onto the contract (none: native)

    @field_validator("surveys")
    @classmethod
    def _with_builtin_surveys(cls, surveys: dict[str, Survey]) -> dict[str, Survey]:
        return {**BUILTIN_SURVEYS, **surveys}

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

    def retry_days(self) -> int:
        """Days after a failed attempt's start that its retry can start on (1 for a 24 h window)."""
        return math.ceil(self.windows.retry / 24)

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


def _render(value: Any) -> str:
    """A value as the YAML that gave it (``true``, ``.inf``, ``'25'``), shortened to one line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    elif isinstance(value, int) and abs(value) >= 10**40:
        text = f"a {len(str(abs(value)))}-digit number"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_SCALARS = (str, int, float, bool, dt.date)


def _problem(err: Any) -> str:
    """One validation error as ``key: why`` (with the offending value where it helps)."""
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error" and isinstance(err.get("input"), _SCALARS):
            msg += f", got {_render(err['input'])}"
            if err["type"] in ("float_type", "int_type") and isinstance(err["input"], str):
                msg += " (write numbers without quotes)"
    return f"{_key_path(err['loc'])}: {msg}" if err["loc"] else msg


def parse_config(raw: Any, source: str = "kpi.yaml") -> KpiConfig:
    """Validate an already-parsed YAML document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    try:
        return KpiConfig.model_validate(raw)
    except ValidationError as exc:
        problems = " ".join("; ".join(_problem(err) for err in exc.errors()).split())
        raise ConfigError(f"{source}: invalid configuration: {problems}") from None


class ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader, except that dates and times stay text (pydantic checks them, naming the
    key, instead of PyYAML raising on ``2025-02-30``) and a repeated key is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


LOG = logging.getLogger("kpi_pipeline.config")


@functools.lru_cache(maxsize=16)
def _say_defaults(path: str) -> None:
    """Say once per process that the default kpi.yaml is absent, so the built-in defaults (no
    workflows, no topics) are never a silent surprise."""
    LOG.warning(f"no kpi.yaml at {path}: using the built-in defaults (set KPI_CONFIG to require a file)")


def load_config(path: str | Path | UPath | None, required: bool = False) -> KpiConfig:
    """Load kpi.yaml from ``path`` (a local path or an object-store ``UPath``); built-in defaults
    when ``path`` is None, or absent and not ``required`` (the default location may be absent; a
    path the user named must exist)."""
    if path is None:
        return KpiConfig()
    if isinstance(path, str):
        path = location(path) if URL_SCHEME.match(path) else Path(path)
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: configuration file not found (named by KPI_CONFIG)")
        _say_defaults(str(path))
        return KpiConfig()
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return _parsed(str(path), content)


@functools.lru_cache(maxsize=16)
def _parsed(path: str, content: bytes) -> KpiConfig:
    """kpi.yaml's ``content`` parsed and validated, once per distinct content: every asset and
    check of a run asks for the config, and parsing it each time cost ~1 s of a 21-day run.
    KpiConfig is frozen, so one instance is safely shared."""
    try:
        raw = yaml.load(content.decode("utf-8"), Loader=ConfigLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_error(exc)}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an explicit `!!int abc` tag
        raise ConfigError(
            f"{path}: not valid YAML: {' '.join(str(exc).split()) or type(exc).__name__}"
        ) from None
    return parse_config(raw, str(path))
