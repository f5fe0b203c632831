"""A deterministic, realistic sample data set in the layout of the input data contract.

``generate_dataset`` simulates the users of a B2B product over a range of days and writes
telemetry partitions, support-ticket exports (answered and solved in support's business hours)
and incident exports under a data root, with the defects the pipeline has to explain: bad rows
of every quarantine reason, blank lines, schema drift, an instrumentation bug week
(``task_done``) and a SEV1 incident. Everything is built column-wise (numpy for the
simulation, pyarrow compute for the text), so a million events take seconds, and the same
arguments always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.resources
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import holidays
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from kpi_pipeline.config import WEEKDAYS, BusinessHours, KpiConfig, load_config, parse_config
from kpi_pipeline.contract import (
    BAD_TIMESTAMP,
    BAD_VALUE,
    DUPLICATE_EVENT_ID,
    EVENT_TYPES,
    INCIDENT_FIELDS,
    MALFORMED,
    MISSING_FIELD,
    OUTSIDE_PARTITION,
    SURVEY_REQUIRED,
    SURVEY_RESPONSE,
    TELEMETRY_FIELDS,
    TELEMETRY_REQUIRED,
    TELEMETRY_REQUIRED_FOR,
    TICKET_FIELDS,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    UNKNOWN_EVENT_TYPE,
)
from kpi_pipeline.storage import StoragePath, ensure_folder, location

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
NEVER = np.iinfo(np.int64).max
EPOCH = dt.date(1970, 1, 1)

DEFAULT_START = dt.date(2025, 1, 1)
BUG_WORKFLOW = "invoice_download"
BUG_EVENT_TYPE = "task_done"
BUG_RELEASE = "4.2.0"
RELEASES: tuple[str, ...] = ("4.1.2", "4.1.3", BUG_RELEASE, "4.2.1")
SEV1_DAY_INDEX = 9  # 0-based: day 10 of the data set
SEV1_WORKFLOW = "data_export"
DRIFT_FIELD = "session_id"
IGNORED_FILE = "notes.txt"
BAD_SHARE_PER_KIND = 0.003
BAD_KINDS = 7  # malformed, missing, timestamp, partition, event type, value, duplicate

PERSONAS: tuple[str, ...] = ("admin", "developer", "analyst", "manager")
CHANNELS: tuple[str, ...] = ("web", "mobile", "api", "cli")
DEVICES: tuple[str, ...] = ("desktop", "ios", "android", "server")
FEATURES: tuple[str, ...] = (
    "dashboards",
    "search",
    "reports",
    "filters",
    "sharing",
    "alerts",
    "comments",
    "api_keys",
    "audit_log",
    "integrations",
)
EXTRA_TOPICS: tuple[str, ...] = ("general", "api")
ERROR_CODES: tuple[str, ...] = (
    "E_TIMEOUT",
    "E_VALIDATION",
    "E_PERMISSION_DENIED",
    "E_RATE_LIMITED",
    "E_INTERNAL",
    "E_INTEGRATION_TIMEOUT",  # the SEV1 incident's error: it clusters while the incident is open
)
UNKNOWN_EVENT_NAMES: tuple[str, ...] = ("page_view", "session_start", "click")
BAD_TIMESTAMPS: tuple[str, ...] = ("not-a-timestamp", "2025-02-30T12:00:00Z", "T25:61:00Z", "yesterday")
NON_NUMERIC_DURATIONS: tuple[str, ...] = ("fast", "12ms", "about 3s")
TICKET_CHANNELS: tuple[str, ...] = ("email", "chat", "web", "phone", "api")

_EVENT_NAMES: tuple[str, ...] = (*EVENT_TYPES, BUG_EVENT_TYPE)
_STARTED = EVENT_TYPES.index("task_started")
_STEP = EVENT_TYPES.index("task_step")
_COMPLETED = EVENT_TYPES.index("task_completed")
_ERROR = EVENT_TYPES.index("task_error")
_FALLBACK = EVENT_TYPES.index("task_fallback")
_FEATURE = EVENT_TYPES.index("feature_used")
_HELP = EVENT_TYPES.index("help_viewed")
_DONE = len(EVENT_TYPES)
_PRODUCTION_OMITTED, _PRODUCTION, _STAGING = 0, 1, 2

# Per active user-day, before the user's intensity (tuned for ~10-20k events a day per 800 users).
_FEATURE_RATE = 46.0
_ATTEMPT_RATE = 5.2
_HELP_RATE = 0.45
_EVENTS_PER_USER_FIRST_DAY = 30.0  # valid events of a 1-day simulation per user (sizes telemetry_day_bytes)
_FEATURE_P = 1.0 / np.arange(1, len(FEATURES) + 1) ** 1.3
_FEATURE_P = _FEATURE_P / _FEATURE_P.sum()
_ERROR_P = np.array([0.3, 0.3, 0.15, 0.1, 0.15])
_PERSONA_EFFECT = np.array([1.03, 1.02, 1.0, 0.93, 0.97])  # admin … manager, unknown (index -1)
_CHANNEL_EFFECT = np.array([1.0, 0.9, 1.04, 1.02, 0.97])  # web … cli, unknown (index -1)

# The layouts of the telemetry partitions, by day index modulo 7: one file or a split in two.
_DAY_LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("jsonl",),
    ("jsonl.gz",),
    ("csv",),
    ("jsonl", "csv.gz"),
    ("jsonl",),
    ("jsonl",),
    ("jsonl", "jsonl"),
)
# The fields the generated event files carry (survey answers come in their own file, so their
# survey and score are left out rather than written as empty CSV columns).
_TELEMETRY_COLUMNS: tuple[str, ...] = (
    *(f for f in TELEMETRY_FIELDS if f not in SURVEY_REQUIRED),
    DRIFT_FIELD,
)
_TICKET_BAD_KINDS: tuple[str, ...] = (
    f"{MISSING_FIELD}:topic",
    BAD_TIMESTAMP,
    f"{BAD_VALUE}:agent_work_minutes",
    f"{BAD_VALUE}:status",
    f"{BAD_VALUE}:solved_at",
    MALFORMED,
)


def bug_week_for(start: dt.date) -> tuple[dt.date, dt.date]:
    """The instrumentation bug week: Monday..Sunday of the third week touched by ``start``."""
    first = start - dt.timedelta(days=start.weekday()) + dt.timedelta(days=14)
    return first, first + dt.timedelta(days=6)


BUG_WEEK: tuple[dt.date, dt.date] = bug_week_for(DEFAULT_START)


@dataclass(frozen=True)
class GenerationSummary:
    """What ``generate_dataset`` wrote, so a caller can check the pipeline's reconciliation.

    ``telemetry_rows``/``ticket_rows``/``incident_rows`` count raw rows written (bad ones
    included, blank lines and CSV headers not). ``bad_rows`` maps source -> quarantine
    reason -> rows deliberately injected; the ``task_done`` rows of the bug week are counted
    apart in ``bug_events`` (they are quarantined as unknown_event_type only without the alias).
    """

    start: dt.date
    end: dt.date
    telemetry_rows: int
    bad_rows: dict[str, dict[str, int]]
    ticket_rows: int
    incident_rows: int
    files: list[str]
    bug_week: tuple[dt.date, dt.date]
    bug_workflow: str
    bug_events: int
    tickets: int
    incidents: int


@dataclass(frozen=True)
class _WorkflowModel:
    """How attempts of one workflow behave."""

    completion: float  # base probability that an attempt completes
    error_if_failed: float  # probability of a task_error in an attempt that does not complete
    fallback_if_failed: float  # probability of a task_fallback in an attempt that does not complete
    step_seconds: float  # median time between milestones
    finish_seconds: float  # median time from the last step to the outcome
    weight: float  # relative share of attempts


# Steps much slower than the rest of their workflow (a factor on their duration), so the step
# latency table has a step that blows its budget: approvers are looked up in a slow directory.
_SLOW_STEPS: dict[tuple[str, str], float] = {("access_request", "approver_selected"): 6.0}

_KNOWN_MODELS: dict[str, _WorkflowModel] = {
    "access_request": _WorkflowModel(0.80, 0.35, 0.30, 40.0, 1800.0, 0.30),
    "invoice_download": _WorkflowModel(0.91, 0.30, 0.45, 15.0, 8.0, 0.30),
    "data_export": _WorkflowModel(0.74, 0.50, 0.35, 45.0, 120.0, 0.18),
    "user_onboarding": _WorkflowModel(0.63, 0.25, 0.25, 240.0, 300.0, 0.22),
}


@dataclass(frozen=True)
class _Incident:
    """One incident as it really happened (times in ms since the epoch)."""

    incident_id: str
    started: int
    detected: int | None
    resolved: int | None
    severity: int
    spellings: tuple[str, str]  # severity as written by the first / later exports
    service: str
    affected: tuple[str, ...]
    title: str
    root_cause: str


@dataclass(frozen=True)
class _IncidentPlan:
    """An incident of the sample data, placed relative to the data set's days."""

    incident_id: str
    day_index: int  # 0-based; negative counts from the end; clipped into the range
    minute: int  # UTC minute of the day user impact began
    detect_minutes: int | None  # None: detected_at not recorded
    resolve_minutes: int | None  # None: still open
    severity: int
    spellings: tuple[str, str]  # severity as written by the first / later exports
    service: str
    affected: tuple[str, ...]
    title: str
    root_cause: str


_INCIDENT_PLAN: tuple[_IncidentPlan, ...] = (
    _IncidentPlan(
        incident_id="INC-0001",
        day_index=2,
        minute=9 * 60 + 20,
        detect_minutes=6,
        resolve_minutes=50,
        severity=3,
        spellings=("sev3", "sev3"),
        service="auth-service",
        affected=("access_request",),
        title="Access approvals delayed",
        root_cause="Cache eviction storm",
    ),
    _IncidentPlan(
        incident_id="INC-0002",
        day_index=6,
        minute=16 * 60 + 5,
        detect_minutes=14,
        resolve_minutes=95,
        severity=2,
        spellings=("SEV2", "SEV2"),
        service="billing-api",
        affected=("invoice_download",),
        title="Invoice PDFs failing to render",
        root_cause="Expired signing certificate",
    ),
    _IncidentPlan(
        incident_id="INC-0003",
        day_index=SEV1_DAY_INDEX,
        minute=14 * 60,
        detect_minutes=9,
        resolve_minutes=180,
        severity=1,
        spellings=("P1", "1"),
        service="export-service",
        affected=(SEV1_WORKFLOW,),
        title="Data exports failing",
        root_cause="Storage quota exhausted on export workers",
    ),
    _IncidentPlan(  # overlaps INC-0003 on the same service: uptime counts the larger weight once
        incident_id="INC-0006",
        day_index=SEV1_DAY_INDEX,
        minute=13 * 60 + 30,
        detect_minutes=4,
        resolve_minutes=90,
        severity=3,
        spellings=("SEV3", "sev3"),
        service="export-service",
        affected=(),
        title="Export queue backlog",
        root_cause="Worker autoscaling lagged behind the queue",
    ),
    _IncidentPlan(
        incident_id="INC-0004",
        day_index=15,
        minute=11 * 60 + 30,
        detect_minutes=None,
        resolve_minutes=240,
        severity=4,
        spellings=("Sev4", "4"),
        service="notifications",
        affected=("user_onboarding",),
        title="Invite emails delayed",
        root_cause="Mail provider throttling",
    ),
    _IncidentPlan(
        incident_id="INC-0005",
        day_index=-2,
        minute=20 * 60 + 10,
        detect_minutes=22,
        resolve_minutes=None,
        severity=2,
        spellings=("SEV2", "sev2"),
        service="api-gateway",
        affected=(),
        title="Elevated API latency",
        root_cause="",
    ),
)


@dataclass(frozen=True)
class _World:
    """The fixed facts of one simulation: calendar, workflows, topics, incidents, bug."""

    start: dt.date
    days: int
    workflows: tuple[str, ...]
    completion: np.ndarray
    error_if_failed: np.ndarray
    fallback_if_failed: np.ndarray
    step_seconds: np.ndarray
    finish_seconds: np.ndarray
    weights: np.ndarray
    step_names: tuple[str, ...]
    step_table: np.ndarray  # (workflow, step index) -> step code, -1 padded
    step_slowdown: np.ndarray  # factor on each step's duration (_SLOW_STEPS), 1.0 for most
    topics: tuple[str, ...]
    topic_weights: np.ndarray
    topic_table: np.ndarray  # (workflow, topic index) -> topic code, -1 padded
    incidents: tuple[_Incident, ...]
    bug_window: tuple[int, int]  # [from, until) in ms
    bug_workflow: int  # workflow code, -1 when not configured
    business_hours: BusinessHours | None  # when support agents work (None: around the clock)

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY

    @property
    def general_topic(self) -> int:
        return self.topics.index("general")


@dataclass(frozen=True)
class _Population:
    """The users: one entry per user, codes index the vocabularies (-1 = field omitted)."""

    account: np.ndarray
    persona: np.ndarray
    channel: np.ndarray
    device: np.ndarray
    join_day: np.ndarray
    churn_day: np.ndarray
    engagement: np.ndarray
    intensity: np.ndarray
    laggard: np.ndarray
    user_ids: pa.Array
    account_ids: pa.Array


@dataclass(frozen=True)
class _DayRows:
    """The raw rows of one telemetry partition before they are split into files.

    Valid rows have keys 0..n-1 (time order); injected rows get random keys; a duplicate
    sits right after its original (key + 0.5), so it always lands in the same file.
    """

    cols: dict[str, pa.Array]
    keys: np.ndarray
    malformed: np.ndarray
    dup_of: np.ndarray
    dup_keys: np.ndarray
    blank_keys: np.ndarray
    bad: dict[str, int]
    n_valid: int

    @property
    def rows(self) -> int:
        return len(self.keys) + len(self.dup_of)


@dataclass(frozen=True)
class _Tickets:
    """Every ticket's life (ms; NEVER when a stage does not happen), sorted by creation."""

    created: np.ndarray
    requester: np.ndarray  # user index, -1 missing, -2 external requester
    external: np.ndarray
    topic: np.ndarray
    channel: np.ndarray
    priority: np.ndarray
    first_reply: np.ndarray
    pending: np.ndarray
    solved: np.ndarray
    closed: np.ndarray
    work_tenths: np.ndarray
    reopens: np.ndarray


# ----------------------------------------------------------------------------- small helpers


def _ms(day: dt.date) -> int:
    return (day - EPOCH).days * DAY


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _take(names: Sequence[str] | pa.Array, codes: np.ndarray) -> pa.Array:
    """Names for integer codes; a negative code gives null (the field is omitted)."""
    vocab = names if isinstance(names, pa.Array) else _strings(names)
    codes = np.asarray(codes, dtype=np.int64)
    return pc.take(vocab, pa.array(codes, type=pa.int64(), mask=codes < 0))


def _integers(values: np.ndarray) -> pa.Array:
    """Integers as text; negative means missing."""
    values = np.asarray(values, dtype=np.int64)
    return pa.array(values, type=pa.int64(), mask=values < 0).cast(pa.string())


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded number; negative numbers give null."""
    text = pc.utf8_lpad(_integers(numbers), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


def _text_array(values: np.ndarray) -> pa.Array:
    """A numpy text array as one arrow string array (large inputs convert in chunks)."""
    converted = pa.array(values, type=pa.string())
    return converted.combine_chunks() if isinstance(converted, pa.ChunkedArray) else converted


def _timestamps(ms: np.ndarray, unit: str, style: np.ndarray | None = None) -> pa.Array:
    """ISO-8601 text with ``Z``; style 1 writes the same instant as ``+02:00``, style 2 naive (UTC)."""
    ms = np.asarray(ms, dtype=np.int64)
    naive = _text_array(np.datetime_as_string(ms.astype("datetime64[ms]"), unit=unit))
    out = pc.binary_join_element_wise(naive, "Z", "")
    if style is not None and bool(np.any(style)):
        shifted = (ms + 2 * HOUR).astype("datetime64[ms]")
        local = _text_array(np.datetime_as_string(shifted, unit=unit))
        out = pc.if_else(pa.array(style == 1), pc.binary_join_element_wise(local, "+02:00", ""), out)
        out = pc.if_else(pa.array(style == 2), naive, out)
    return out


def _optional(values: pa.Array, show: np.ndarray) -> pa.Array:
    """``values`` where ``show``, null elsewhere."""
    return pc.if_else(pa.array(np.asarray(show, dtype=bool)), values, pa.scalar(None, pa.string()))


def _repeat(value: str, n: int) -> pa.Array:
    return pc.take(_strings([value]), pa.array(np.zeros(n, dtype=np.int64)))


def _choice(rng: np.random.Generator, names: Sequence[str], n: int) -> pa.Array:
    return _take(names, rng.integers(0, len(names), n))


def _empty_or_absent(rng: np.random.Generator, n: int) -> pa.Array:
    """A missing value: absent (null: the JSON key is left out) or an empty string, about half each."""
    return pa.array(np.full(n, ""), type=pa.string(), mask=rng.random(n) < 0.5)


def _take_cols(cols: dict[str, pa.Array], rows: np.ndarray) -> dict[str, pa.Array]:
    index = pa.array(np.asarray(rows, dtype=np.int64))
    return {name: pc.take(col, index) for name, col in cols.items()}


def _json_lines(
    cols: dict[str, pa.Array],
    fields: Sequence[str],
    raw_fields: frozenset[str] = frozenset(),
    numeric_fields: frozenset[str] = frozenset(),
) -> pa.Array:
    """One JSON object per row; null values leave their key out.

    Values are written verbatim (the generator's vocabularies need no escaping); ``raw_fields``
    hold JSON already, ``numeric_fields`` are bare numbers when they look numeric.
    """
    frags = []
    for name in fields:
        value = cols[name]
        if name in raw_fields:
            frags.append(pc.binary_join_element_wise(f',"{name}":', value, ""))
            continue
        quoted = pc.binary_join_element_wise(f',"{name}":"', value, '"', "")
        if name in numeric_fields:
            numeric = pc.match_substring_regex(value, r"^-?[0-9]+(\.[0-9]+)?$")
            quoted = pc.if_else(numeric, pc.binary_join_element_wise(f',"{name}":', value, ""), quoted)
        frags.append(quoted)
    body = pc.binary_join_element_wise(*frags, "", null_handling="replace", null_replacement="")
    return pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(body, 1), "}", "")


def _csv_lines(cols: dict[str, pa.Array], fields: Sequence[str]) -> pa.Array:
    """One CSV row per row (values need no quoting); null and empty both give an empty cell."""
    return pc.binary_join_element_wise(
        *(cols[name] for name in fields), ",", null_handling="replace", null_replacement=""
    )


def _text(lines: pa.Array, header: str | None = None) -> bytes:
    """Lines joined with newlines (and a trailing one), header first."""
    if header is not None:
        lines = pa.concat_arrays([_strings([header]), lines])
    if len(lines) == 0:
        return b""
    listed = pa.ListArray.from_arrays(pa.array([0, len(lines)], type=pa.int32()), lines)
    return pc.binary_join(listed, "\n")[0].as_buffer().to_pybytes() + b"\n"


def _ordered(lines: pa.Array, keys: np.ndarray) -> pa.Array:
    return lines.take(pa.array(np.argsort(keys, kind="stable")))


def _encode(data: bytes, name: str) -> bytes:
    """Gzip (without a timestamp, so the bytes are reproducible) when ``name`` ends in .gz."""
    return gzip.compress(data, compresslevel=6, mtime=0) if name.endswith(".gz") else data


def _write(out: StoragePath, relative: str, data: bytes, files: list[str]) -> None:
    path = out / relative
    ensure_folder(path.parent)
    path.write_bytes(data)
    files.append(relative)


def _packaged_config_bytes() -> bytes:
    """The sample kpi.yaml shipped with the package."""
    try:
        resource = importlib.resources.files("kpi_pipeline").joinpath("sample_kpi.yaml")
    except NotADirectoryError:  # an editable install of the package without __init__.py
        return Path(__file__).with_name("sample_kpi.yaml").read_bytes()
    return resource.read_bytes()


# ----------------------------------------------------------------------------- the world


def _random_model(rng: np.random.Generator) -> _WorkflowModel:
    """Plausible behaviour for a workflow the generator has no hand-made model for."""
    return _WorkflowModel(
        completion=float(rng.uniform(0.6, 0.9)),
        error_if_failed=float(rng.uniform(0.2, 0.45)),
        fallback_if_failed=float(rng.uniform(0.2, 0.4)),
        step_seconds=float(rng.uniform(15.0, 120.0)),
        finish_seconds=float(rng.uniform(10.0, 600.0)),
        weight=0.25,
    )


def _incidents(start: dt.date, days: int) -> tuple[_Incident, ...]:
    """The planned incidents, placed on the data set's days."""
    incidents = []
    for plan in _INCIDENT_PLAN:
        index = plan.day_index if plan.day_index >= 0 else days + plan.day_index
        started = _ms(start) + min(max(index, 0), days - 1) * DAY + plan.minute * MINUTE
        incidents.append(
            _Incident(
                incident_id=plan.incident_id,
                started=started,
                detected=None if plan.detect_minutes is None else started + plan.detect_minutes * MINUTE,
                resolved=None if plan.resolve_minutes is None else started + plan.resolve_minutes * MINUTE,
                severity=plan.severity,
                spellings=plan.spellings,
                service=plan.service,
                affected=plan.affected,
                title=plan.title,
                root_cause=plan.root_cause,
            )
        )
    return tuple(incidents)


def _check_names(names: Sequence[str], what: str) -> None:
    """Configured names are written verbatim into JSON and CSV, so they must not need quoting."""
    for name in names:
        if any(c in name for c in '",\\\n\r'):
            raise ValueError(
                f"{what} {name!r}: the sample data generator cannot write names containing "
                "quotes, commas, backslashes or line breaks"
            )


def _build_world(
    config: KpiConfig, start: dt.date, days: int, rng: np.random.Generator, with_incidents: bool
) -> _World:
    """Vocabularies and behaviour models of the configured workflows."""
    names = tuple(config.workflows)
    models = [_KNOWN_MODELS.get(name) or _random_model(rng) for name in names]
    step_names: list[str] = []
    topics: list[str] = []
    for wf in config.workflows.values():
        step_names += [s for s in wf.steps if s not in step_names]
        topics += [t for t in wf.topics if t not in topics]
    workflow_topic_count = len(topics)
    topics += [t for t in EXTRA_TOPICS if t not in topics]
    _check_names(names, "workflow")
    _check_names(step_names, "step")
    _check_names(topics, "topic")
    max_steps = max([len(wf.steps) for wf in config.workflows.values()] + [1])
    max_topics = max([len(wf.topics) for wf in config.workflows.values()] + [1])
    step_table = np.full((len(names), max_steps), -1, dtype=np.int64)
    step_slowdown = np.ones((len(names), max_steps))
    topic_table = np.full((len(names), max_topics), -1, dtype=np.int64)
    for i, wf in enumerate(config.workflows.values()):
        step_table[i, : len(wf.steps)] = [step_names.index(s) for s in wf.steps]
        step_slowdown[i, : len(wf.steps)] = [_SLOW_STEPS.get((names[i], s), 1.0) for s in wf.steps]
        topic_table[i, : len(wf.topics)] = [topics.index(t) for t in wf.topics]
    topic_weights = np.ones(len(topics))
    topic_weights[workflow_topic_count:] = [
        1.5 if t == "general" else 0.8 for t in topics[workflow_topic_count:]
    ]
    bug_from, bug_until = bug_week_for(start)
    return _World(
        start=start,
        days=days,
        workflows=names,
        completion=np.array([m.completion for m in models]),
        error_if_failed=np.array([m.error_if_failed for m in models]),
        fallback_if_failed=np.array([m.fallback_if_failed for m in models]),
        step_seconds=np.array([m.step_seconds for m in models]),
        finish_seconds=np.array([m.finish_seconds for m in models]),
        weights=np.array([m.weight for m in models]),
        step_names=tuple(step_names),
        step_table=step_table,
        step_slowdown=step_slowdown,
        topics=tuple(topics),
        topic_weights=topic_weights / topic_weights.sum(),
        topic_table=topic_table,
        incidents=_incidents(start, days) if with_incidents else (),
        bug_window=(_ms(bug_from), _ms(bug_until) + DAY),
        bug_workflow=names.index(BUG_WORKFLOW) if BUG_WORKFLOW in names else -1,
        business_hours=config.support.business_hours,
    )


def _population(rng: np.random.Generator, users: int, start: dt.date, days: int) -> _Population:
    """Users in ~60 accounts (per 800 users); 78% exist before day 1, the rest join in waves."""
    n_accounts = max(2, round(users * 60 / 800))
    account_p = 1.0 / np.arange(1, n_accounts + 1) ** 0.8
    account = rng.choice(n_accounts, users, p=account_p / account_p.sum())
    persona = rng.choice(len(PERSONAS), users, p=[0.2, 0.35, 0.3, 0.15])
    persona[rng.random(users) < 0.05] = -1
    channel = rng.choice(len(CHANNELS), users, p=[0.55, 0.2, 0.15, 0.1])
    channel[rng.random(users) < 0.05] = -1
    device = np.select(
        [channel == 1, channel == 2, channel < 0],
        [1 + (rng.random(users) < 0.5), 3, rng.integers(0, 3, users)],
        0,
    )
    device[rng.random(users) < 0.08] = -1
    existing = rng.random(users) < 0.78
    # Sign-ups spread over four weeks (or the whole range when longer); users who would sign up
    # after the last day never appear, so a short range is not crowded with sign-ups.
    d = np.arange(1, max(days, 28))
    weekday = (start.weekday() + d) % 7 < 5
    wave = 1.0 + 0.8 * ((d // 7) % 2 == 1)
    join_p = np.where(weekday, 1.0, 0.4) * wave
    joins = rng.choice(d, users, p=join_p / join_p.sum())
    join_day = np.where(existing, -rng.integers(1, 90, users), joins)
    churns = rng.random(users) < 0.25
    churn_day = np.where(churns, join_day + 1 + rng.geometric(0.12, users), np.iinfo(np.int64).max // 2)
    return _Population(
        account=account,
        persona=persona,
        channel=channel,
        device=device,
        join_day=join_day,
        churn_day=churn_day,
        engagement=rng.beta(3.0, 2.0, users),
        intensity=rng.lognormal(0.0, 0.6, users),
        laggard=rng.random(users) < 0.12,
        user_ids=_numbered("u", np.arange(1, users + 1), 5),
        account_ids=_numbered("acct_", np.arange(1, n_accounts + 1), 3),
    )


# ----------------------------------------------------------------------------- telemetry simulation

_EVENT_COLUMNS: tuple[str, ...] = (
    "ts",
    "user",
    "etype",
    "workflow",
    "task",
    "step",
    "feature",
    "topic",
    "env",
    "session",
    "duration",
    "error",
)


def _block(n: int, **cols: np.ndarray | int) -> dict[str, np.ndarray]:
    """An event block of ``n`` rows: given columns, -1 for the others."""
    out = {name: np.full(n, -1, dtype=np.int64) for name in _EVENT_COLUMNS}
    for name, values in cols.items():
        out[name] = np.broadcast_to(np.asarray(values, dtype=np.int64), (n,)).copy()
    return out


def _concat(blocks: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([b[name] for b in blocks]) for name in _EVENT_COLUMNS}


def _workflow_topics(rng: np.random.Generator, world: _World, wf: np.ndarray) -> np.ndarray:
    """A random support topic of each workflow ('general' when it has none)."""
    counts = (world.topic_table >= 0).sum(axis=1)[wf]
    pick = np.floor(rng.random(len(wf)) * np.maximum(counts, 1)).astype(np.int64)
    topic = world.topic_table[wf, pick]
    return np.where(counts > 0, topic, world.general_topic)


def _attempt_batch(
    rng: np.random.Generator, world: _World, pop: _Population, att: dict[str, np.ndarray], first_task: int
) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Events of a batch of attempts, and the retries they cause (new task ids, same user)."""
    user, wf, start, env, session = att["user"], att["workflow"], att["ts"], att["env"], att["session"]
    n = len(user)
    task = first_task + np.arange(n)
    p_complete = (
        world.completion[wf] * _PERSONA_EFFECT[pop.persona[user]] * _CHANNEL_EFFECT[pop.channel[user]]
    )
    p_error = world.error_if_failed[wf].copy()
    p_fallback = world.fallback_if_failed[wf].copy()
    severe = np.zeros(n, dtype=bool)
    for inc in world.incidents:
        codes = [world.workflows.index(w) for w in inc.affected if w in world.workflows]
        if not codes or inc.resolved is None:
            continue
        hit = np.isin(wf, codes) & (start >= inc.started) & (start < inc.resolved)
        if inc.severity == 1:
            p_complete = np.where(hit, p_complete * 0.25, p_complete)
            p_error = np.where(hit, 0.85, p_error)
            p_fallback = np.where(hit, 0.7, p_fallback)
            severe |= hit
        else:
            p_complete = np.where(hit, p_complete * 0.85, p_complete)
            p_error = np.where(hit, np.minimum(p_error + 0.2, 0.95), p_error)
    completed = rng.random(n) < np.clip(p_complete, 0.0, 0.98)
    n_steps = (world.step_table >= 0).sum(axis=1)[wf]
    reached = np.where(completed, n_steps, np.floor(rng.random(n) * (n_steps + 1)).astype(np.int64))
    width = world.step_table.shape[1]
    gaps = rng.lognormal(0.0, 0.6, (n, width)) * world.step_seconds[wf][:, None] * world.step_slowdown[wf]
    gaps = (gaps * SECOND).astype(np.int64)
    gaps += SECOND
    milestones = start[:, None] + np.cumsum(gaps, axis=1)
    rows = np.arange(n)
    steps_done = np.where(n_steps > 0, milestones[rows, np.maximum(n_steps - 1, 0)], start)
    last = np.where(reached > 0, milestones[rows, np.maximum(reached - 1, 0)], start)
    finish = (rng.lognormal(0.0, 0.7, n) * world.finish_seconds[wf] * SECOND).astype(np.int64) + SECOND
    evening = ((start % DAY) >= 20 * HOUR) & (rng.random(n) < 0.35)
    finish = np.where(evening, rng.integers(HOUR, 9 * HOUR, n), finish)
    late = rng.random(n) < 0.012
    finish = np.where(late, rng.integers(25 * HOUR, 40 * HOUR, n), finish)
    done = steps_done + finish
    span = (steps_done - start).astype(np.float64)
    has_error = rng.random(n) < np.where(completed, p_error * 0.15, p_error)
    t_error = np.where(
        completed,
        start + (rng.random(n) * span).astype(np.int64),
        last + rng.integers(5 * SECOND, 60 * SECOND, n),
    )
    fallback_p = np.where(
        completed, 0.02, np.where(has_error, np.minimum(p_fallback * 1.3, 0.95), p_fallback)
    )
    has_fallback = rng.random(n) < fallback_p
    t_fallback = np.where(
        completed,
        start + (rng.random(n) * span).astype(np.int64),
        np.where(has_error, np.maximum(t_error, last), last) + rng.integers(10 * SECOND, 120 * SECOND, n),
    )
    error_code = np.where(severe, len(ERROR_CODES) - 1, rng.choice(len(_ERROR_P), n, p=_ERROR_P))
    common = {"user": user, "workflow": wf, "task": task, "env": env, "session": session}

    def pick(mask: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[mask] for k, v in common.items()}

    a, j = np.nonzero(np.arange(width)[None, :] < reached[:, None])
    short = np.where(finish < HOUR, finish, -1)
    helped = has_error & ~completed & (rng.random(n) < 0.3)
    blocks = [
        _block(n, ts=start, etype=_STARTED, **common),
        _block(
            len(a),
            ts=milestones[a, j],
            etype=_STEP,
            step=world.step_table[wf[a], j],
            duration=gaps[a, j],
            **{k: v[a] for k, v in common.items()},
        ),
        _block(
            int(completed.sum()),
            ts=done[completed],
            etype=_COMPLETED,
            duration=short[completed],
            **pick(completed),
        ),
        _block(
            int(has_error.sum()),
            ts=t_error[has_error],
            etype=_ERROR,
            error=error_code[has_error],
            **pick(has_error),
        ),
        _block(int(has_fallback.sum()), ts=t_fallback[has_fallback], etype=_FALLBACK, **pick(has_fallback)),
        _block(
            int(helped.sum()),
            ts=t_error[helped] + rng.integers(10 * SECOND, 5 * MINUTE, int(helped.sum())),
            etype=_HELP,
            topic=_workflow_topics(rng, world, wf[helped]),
            duration=(rng.lognormal(np.log(40_000), 0.8, int(helped.sum()))).astype(np.int64),
            user=user[helped],
            env=env[helped],
            session=session[helped],
        ),
    ]
    retry = has_error & ~completed & (rng.random(n) < 0.45)
    resume = np.where(has_fallback, np.maximum(t_error, t_fallback), t_error)
    retries = {
        "user": user[retry],
        "workflow": wf[retry],
        "ts": resume[retry] + rng.integers(2 * MINUTE, 30 * MINUTE, int(retry.sum())),
        "env": env[retry],
        "session": session[retry],
    }
    return blocks, retries


def _simulate(
    rng: np.random.Generator, world: _World, users: int
) -> tuple[_Population, dict[str, np.ndarray]]:
    """Every valid event of the date range, sorted by time, with ids, releases and the bug applied."""
    pop = _population(rng, users, world.start, world.days)
    d = np.arange(world.days)
    age = d[None, :] - pop.join_day[:, None]
    alive = (age >= 0) & (d[None, :] < pop.churn_day[:, None])
    weekday = (world.start.weekday() + d) % 7 < 5
    p_active = (
        pop.engagement[:, None]
        * (0.6 + 0.4 * np.exp(-np.maximum(age, 0) / 6.0))
        * np.where(weekday, 1.0, 0.65)
    )
    active = alive & ((rng.random(age.shape) < p_active) | (age == 0))
    user, day = np.nonzero(active)
    n_pairs = len(user)
    hour = np.where(
        rng.random(n_pairs) < 0.8,
        np.clip(rng.normal(14.0, 3.5, n_pairs), 0.0, 23.99),
        24 * rng.random(n_pairs),
    )
    session_start = world.start_ms + day * DAY + (hour * HOUR).astype(np.int64)
    length = rng.integers(15 * MINUTE, 3 * HOUR, n_pairs)
    env = np.where(rng.random(n_pairs) < 0.02, _STAGING, _PRODUCTION)

    def spread(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pair = np.repeat(np.arange(n_pairs), counts)
        return pair, session_start[pair] + (rng.random(len(pair)) * length[pair]).astype(np.int64)

    pair, ts = spread(rng.poisson(_FEATURE_RATE * pop.intensity[user]))
    blocks = [
        _block(
            len(pair),
            ts=ts,
            user=user[pair],
            etype=_FEATURE,
            feature=rng.choice(len(FEATURES), len(pair), p=_FEATURE_P),
            env=env[pair],
            session=pair,
            duration=rng.lognormal(np.log(6_000), 0.9, len(pair)).astype(np.int64),
        )
    ]
    pair, ts = spread(rng.poisson(_HELP_RATE, n_pairs))
    blocks.append(
        _block(
            len(pair),
            ts=ts,
            user=user[pair],
            etype=_HELP,
            topic=rng.choice(len(world.topics), len(pair), p=world.topic_weights),
            env=env[pair],
            session=pair,
            duration=rng.lognormal(np.log(40_000), 0.8, len(pair)).astype(np.int64),
        )
    )
    if world.workflows:
        pair, ts = spread(rng.poisson(_ATTEMPT_RATE * np.sqrt(pop.intensity[user])))
        batch = {
            "user": user[pair],
            "workflow": rng.choice(len(world.workflows), len(pair), p=world.weights / world.weights.sum()),
            "ts": ts,
            "env": env[pair],
            "session": pair,
        }
        first_task = 0
        for _level in range(3):
            if len(batch["user"]) == 0:
                break
            more, batch = _attempt_batch(rng, world, pop, batch, first_task)
            first_task += len(more[0]["ts"])
            blocks += more
    ev = _concat(blocks)
    keep = (ev["ts"] >= world.start_ms) & (ev["ts"] < world.end_ms)
    order = np.argsort(ev["ts"][keep], kind="stable")
    ev = {name: col[keep][order] for name, col in ev.items()}
    n = len(ev["ts"])
    ev["id"] = np.arange(1, n + 1)
    started = ev["etype"] == _STARTED
    if started.any():
        renumber = np.full(int(ev["task"].max()) + 1, -1, dtype=np.int64)
        renumber[ev["task"][started]] = np.arange(1, int(started.sum()) + 1)
        ev["task"] = np.where(ev["task"] >= 0, renumber[np.maximum(ev["task"], 0)], -1)
    bug_from, bug_until = world.bug_window
    in_bug_week = (ev["ts"] >= bug_from) & (ev["ts"] < bug_until)
    bug = (ev["etype"] == _COMPLETED) & (ev["workflow"] == world.bug_workflow) & in_bug_week
    ev["etype"] = np.where(bug, _DONE, ev["etype"])
    ev["release"] = np.select(
        [ev["ts"] < bug_from, in_bug_week], [np.where(pop.laggard[ev["user"]], 0, 1), 2], 3
    )
    omitted = (ev["env"] == _PRODUCTION) & (rng.random(n) < 0.4)
    ev["env"] = np.where(omitted, _PRODUCTION_OMITTED, ev["env"])
    ev["duration"] = np.where(rng.random(n) < 0.04, -1, ev["duration"])
    return pop, ev


# ----------------------------------------------------------------------------- telemetry rendering


def _event_columns(
    rng: np.random.Generator, world: _World, pop: _Population, ev: dict[str, np.ndarray], drift: bool
) -> dict[str, pa.Array]:
    """The text of every field of the given events (null = field omitted)."""
    n = len(ev["ts"])
    user = ev["user"]
    session = np.where(drift & (rng.random(n) < 0.15), ev["session"], -1)
    return {
        "event_id": _numbered("evt_", ev["id"], 9),
        "occurred_at": _timestamps(ev["ts"], "ms", rng.choice(3, n, p=[0.99, 0.005, 0.005])),
        "user_id": pc.take(pop.user_ids, pa.array(user)),
        "account_id": pc.take(pop.account_ids, pa.array(pop.account[user])),
        "event_type": _take(_EVENT_NAMES, ev["etype"]),
        "workflow": _take(world.workflows, ev["workflow"]),
        "task_id": _numbered("task_", ev["task"], 7),
        "step": _take(world.step_names, ev["step"]),
        "feature": _take(FEATURES, ev["feature"]),
        "topic": _take(world.topics, ev["topic"]),
        "persona": _take(PERSONAS, pop.persona[user]),
        "channel": _take(CHANNELS, pop.channel[user]),
        "device": _take(DEVICES, pop.device[user]),
        "environment": _take(("production", "staging"), ev["env"] - 1),
        "release": _take(RELEASES, ev["release"]),
        "duration_ms": _integers(ev["duration"]),
        "error_code": _take(ERROR_CODES, ev["error"]),
        DRIFT_FIELD: _numbered("sess_", session, 7),
    }


def _day_rows(
    rng: np.random.Generator,
    cols: dict[str, pa.Array],
    ev: dict[str, np.ndarray],
    per_kind: float,
    non_numeric: bool,
    first_bad_id: int,
) -> _DayRows:
    """The valid rows of a partition plus the injected bad rows, duplicates and blank lines."""
    n = len(ev["ts"])
    etype = ev["etype"]
    pool = np.flatnonzero(etype != _DONE)  # bug rows would change reason once aliased
    k = max(1, round(per_kind * n)) if len(pool) else 0
    groups: list[dict[str, pa.Array]] = []
    malformed: list[np.ndarray] = []
    bad: dict[str, int] = {}

    def add(
        reason: str, rows: np.ndarray, overrides: dict[str, pa.Array], is_malformed: bool = False
    ) -> None:
        g = _take_cols(cols, rows)
        g["event_id"] = _numbered(
            "evt_b", first_bad_id + sum(len(x) for x in malformed) + np.arange(len(rows)), 7
        )
        g.update(overrides)
        groups.append(g)
        malformed.append(np.full(len(rows), is_malformed))
        bad[reason] = bad.get(reason, 0) + len(rows)

    def templates(candidates: np.ndarray, m: int) -> np.ndarray:
        return candidates[rng.integers(0, len(candidates), m)]

    if k:
        add(MALFORMED, templates(pool, k), {}, is_malformed=True)
        required = [(f, pool) for f in TELEMETRY_REQUIRED] + [
            (f, pool[np.isin(etype[pool], [EVENT_TYPES.index(t) for t in types])])
            for f, types in TELEMETRY_REQUIRED_FOR.items()
        ]
        required = [(f, c) for f, c in required if len(c)]
        counts = np.bincount(rng.integers(0, len(required), k), minlength=len(required))
        for (name, candidates), m in zip(required, counts, strict=True):
            if m:
                add(
                    f"{MISSING_FIELD}:{name}",
                    templates(candidates, int(m)),
                    {name: _empty_or_absent(rng, int(m))},
                )
        day = np.datetime_as_string(np.asarray(ev["ts"][0]).astype("datetime64[ms]"), unit="D")
        bad_ts = [f"{day}{s}" if s.startswith("T") else s for s in BAD_TIMESTAMPS]
        add(BAD_TIMESTAMP, templates(pool, k), {"occurred_at": _choice(rng, bad_ts, k)})
        rows = templates(pool, k)
        shift = np.array([-3, -2, -1, 1, 2])[rng.integers(0, 5, k)] * DAY
        add(OUTSIDE_PARTITION, rows, {"occurred_at": _timestamps(ev["ts"][rows] + shift, "ms")})
        add(UNKNOWN_EVENT_TYPE, templates(pool, k), {"event_type": _choice(rng, UNKNOWN_EVENT_NAMES, k)})
        negative = pc.binary_join_element_wise("-", _integers(rng.integers(1, 5_000, k)), "")
        words = _choice(rng, NON_NUMERIC_DURATIONS, k)
        duration = pc.if_else(pa.array(non_numeric & (rng.random(k) < 0.5)), words, negative)
        add(f"{BAD_VALUE}:duration_ms", templates(pool, k), {"duration_ms": duration})
    dup_of = rng.choice(pool, min(k, len(pool)), replace=False) if k else np.empty(0, dtype=np.int64)
    if len(dup_of):
        bad[DUPLICATE_EVENT_ID] = len(dup_of)
    n_bad = sum(len(m) for m in malformed)
    all_cols = {name: pa.concat_arrays([col] + [g[name] for g in groups]) for name, col in cols.items()}
    return _DayRows(
        cols=all_cols,
        keys=np.concatenate([np.arange(n, dtype=np.float64), rng.random(n_bad) * n]),
        malformed=np.concatenate([np.zeros(n, dtype=bool), *malformed]),
        dup_of=np.asarray(dup_of, dtype=np.int64),
        dup_keys=np.asarray(dup_of, dtype=np.float64) + 0.5,
        blank_keys=rng.random(max(1, round(0.001 * n))) * max(n, 1),
        bad=bad,
        n_valid=n,
    )


def _render_part(day_rows: _DayRows, fmt: str, low: float, high: float) -> bytes:
    """The (uncompressed) file holding the rows whose keys fall in [low, high)."""
    sel = np.flatnonzero((day_rows.keys >= low) & (day_rows.keys < high))
    dup = np.flatnonzero((day_rows.dup_keys >= low) & (day_rows.dup_keys < high))
    blank = np.flatnonzero((day_rows.blank_keys >= low) & (day_rows.blank_keys < high))
    rows = np.concatenate([sel, day_rows.dup_of[dup]])
    part = _take_cols(day_rows.cols, rows)
    broken = pa.array(day_rows.malformed[rows])
    if fmt.startswith("jsonl"):
        lines = _json_lines(part, _TELEMETRY_COLUMNS, numeric_fields=frozenset({"duration_ms"}))
        cut = pc.if_else(
            pa.array(rows % 2 == 0),
            pc.utf8_slice_codeunits(lines, 0, 45),
            pc.utf8_slice_codeunits(lines, 0, 70),
        )
        header = None
    else:
        lines = _csv_lines(part, _TELEMETRY_COLUMNS)
        cut = pc.binary_join_element_wise(lines, "oops,extra", ",")
        header = ",".join(_TELEMETRY_COLUMNS)
    lines = pc.if_else(broken, cut, lines)
    lines = pa.concat_arrays([lines, _repeat("", len(blank))])
    keys = np.concatenate([day_rows.keys[sel], day_rows.dup_keys[dup], day_rows.blank_keys[blank]])
    return _text(_ordered(lines, keys), header)


def _partition_files(day_rows: _DayRows, layout: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """(file name, bytes) of a partition: one file, or two split at the middle of the day's events."""
    if len(layout) == 1:
        parts = [(f"events.{layout[0]}", layout[0], -math.inf, math.inf)]
    else:
        middle = float(day_rows.n_valid // 2)
        parts = [
            (f"events-part-1.{layout[0]}", layout[0], -math.inf, middle),
            (f"events-part-2.{layout[1]}", layout[1], middle, math.inf),
        ]
    return [(name, _encode(_render_part(day_rows, fmt, lo, hi), name)) for name, fmt, lo, hi in parts]


# ----------------------------------------------------------------------------- survey responses

SURVEY_FILE = "surveys.jsonl"  # a survey tool's export beside each day's events
CES_WORKFLOW = "data_export"
_CSAT_SHARE = 0.18  # attempts followed by a CSAT prompt
_CES_SHARE = 0.35  # data_export attempts followed by a CES prompt
_NPS_SHARE = 0.25  # users asked for NPS in a week they are active
_CSAT_P = {  # score 1..5
    "completed": [0.03, 0.05, 0.12, 0.38, 0.42],
    "failed": [0.30, 0.30, 0.22, 0.12, 0.06],
}
_CES_P = {  # score 1..7
    "completed": [0.02, 0.04, 0.08, 0.14, 0.27, 0.28, 0.17],
    "failed": [0.22, 0.22, 0.2, 0.16, 0.1, 0.06, 0.04],
}
_NPS_P = [0.03, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.15, 0.2, 0.2, 0.15]  # score 0..10
# Each new survey quarantine kind and the (survey, score) of the bad answer that shows it.
SURVEY_BAD_ANSWERS: dict[str, tuple[str | None, str | None]] = {
    f"{MISSING_FIELD}:survey": (None, "4"),
    f"{MISSING_FIELD}:score": ("csat", None),
    f"{BAD_VALUE}:survey": ("csat_v2", "4"),
    f"{BAD_VALUE}:score": ("csat", "7"),
}


def _survey_responses(
    rng: np.random.Generator, world: _World, config: KpiConfig, ev: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Answers to in-product surveys, in time order: CSAT after a share of attempts (lower after a
    failure, and after a step slower than its budget), CES after data_export attempts, and NPS once
    in a share of each user's active weeks. ``survey``: 0 csat, 1 ces, 2 nps; ``task`` −1 for none."""
    started = ev["etype"] == _STARTED
    live = started & (ev["env"] != _STAGING)
    task, user, wf = ev["task"][live], ev["user"][live], ev["workflow"][live]
    has_task = ev["task"] >= 0
    last = np.zeros(int(ev["task"].max()) + 1 if has_task.any() else 1, dtype=np.int64)
    np.maximum.at(last, ev["task"][has_task], ev["ts"][has_task])
    completed = np.zeros_like(last, dtype=bool)
    completed[ev["task"][np.isin(ev["etype"], [_COMPLETED, _DONE])]] = True
    slow = np.zeros_like(last, dtype=bool)
    budget = {name: wf.latency_budget_ms for name, wf in config.workflows.items()}
    budgets = np.array([budget.get(w) or np.inf for w in world.workflows] + [np.inf])
    steps = (ev["etype"] == _STEP) & has_task
    slow[ev["task"][steps & (ev["duration"] > budgets[ev["workflow"]])]] = True
    done = completed[task]

    def scores(p: dict[str, list[float]], ok: np.ndarray, low: int) -> np.ndarray:
        good = rng.choice(len(p["completed"]), len(ok), p=p["completed"])
        bad = rng.choice(len(p["failed"]), len(ok), p=p["failed"])
        return np.where(ok, good, bad) + low

    csat = rng.random(len(task)) < _CSAT_SHARE
    csat_score = scores(_CSAT_P, done, 1)
    csat_score = np.where(
        slow[task] & (rng.random(len(task)) < 0.5), np.maximum(csat_score - 1, 1), csat_score
    )
    ces_wf = world.workflows.index(CES_WORKFLOW) if CES_WORKFLOW in world.workflows else -2
    ces = (wf == ces_wf) & (rng.random(len(task)) < _CES_SHARE)
    ces_score = scores(_CES_P, done, 1)
    answered = last[task] + rng.integers(5 * SECOND, 10 * MINUTE, len(task))
    # NPS: the first production event of a user's week, in a share of weeks.
    prod = ev["env"] != _STAGING
    week = (ev["ts"][prod] - world.start_ms) // (7 * DAY)
    key = ev["user"][prod].astype(np.int64) * 10_000 + week
    _, first = np.unique(key, return_index=True)
    first = first[rng.random(len(first)) < _NPS_SHARE]
    nps_user, nps_ts = (
        ev["user"][prod][first],
        ev["ts"][prod][first] + rng.integers(MINUTE, 30 * MINUTE, len(first)),
    )
    out = {
        "ts": np.concatenate([answered[csat], answered[ces], nps_ts]),
        "user": np.concatenate([user[csat], user[ces], nps_user]),
        "survey": np.concatenate(
            [np.zeros(csat.sum(), int), np.ones(ces.sum(), int), np.full(len(first), 2)]
        ),
        "score": np.concatenate([csat_score[csat], ces_score[ces], rng.choice(11, len(first), p=_NPS_P)]),
        "task": np.concatenate([task[csat], task[ces], np.full(len(first), -1)]),
    }
    keep = out["ts"] < world.end_ms
    order = np.argsort(out["ts"][keep], kind="stable")
    return {name: col[keep][order] for name, col in out.items()}


def _survey_file(
    rng: np.random.Generator, pop: _Population, answers: dict[str, np.ndarray], first_id: int
) -> tuple[bytes, dict[str, int]]:
    """One day's survey export (JSONL): its answers, then one bad answer of each new quarantine
    kind (when the day has answers to copy)."""
    n = len(answers["ts"])
    ids = np.arange(first_id, first_id + n)
    cols = {
        "event_id": _numbered("svy_", ids, 8),
        "occurred_at": _timestamps(answers["ts"], "ms"),
        "user_id": pc.take(pop.user_ids, pa.array(answers["user"])),
        "account_id": pc.take(pop.account_ids, pa.array(pop.account[answers["user"]])),
        "event_type": _repeat(SURVEY_RESPONSE, n),
        "survey": _take(("csat", "ces", "nps"), answers["survey"]),
        "score": _integers(answers["score"]),
        "task_id": _numbered("task_", answers["task"], 7),
    }
    bad: dict[str, int] = {}
    if n:
        picks = rng.integers(0, n, len(SURVEY_BAD_ANSWERS))
        broken = _take_cols(cols, picks)
        broken["event_id"] = _numbered("svy_bad_", ids[picks], 8)
        for name, values in zip(
            ("survey", "score"), zip(*SURVEY_BAD_ANSWERS.values(), strict=True), strict=True
        ):
            broken[name] = pa.array(values, type=pa.string())
        cols = {
            name: pa.concat_arrays([col.cast(pa.string()), broken[name].cast(pa.string())])
            for name, col in cols.items()
        }
        bad = dict.fromkeys(SURVEY_BAD_ANSWERS, 1)
    lines = _json_lines(cols, list(cols), numeric_fields=frozenset({"score"}))
    return _text(lines), bad


# ----------------------------------------------------------------------------- tickets

# Agents reply and solve only in support's business hours (kpi.yaml support.business_hours): the
# delays below are business time, so a ticket created on Friday evening is answered on Monday.
_REPLY_MEDIAN = 1.5 * HOUR  # business time to the first reply of a normal email ticket
_SOLVE_MEDIAN = 6 * HOUR  # business time from the first reply to the solve of a normal ticket
_REPLY_BY_PRIORITY = np.array([1.5, 1.0, 0.6, 0.25])  # factor on the reply time: low … urgent
_SOLVE_BY_PRIORITY = np.array([1.6, 1.0, 0.7, 0.45])  # factor on the solve time: low … urgent
_REPLY_BY_CHANNEL = {"chat": 0.3, "phone": 0.1}  # answered live; other channels 1.0
_NO_REPLY_SHARE = 0.02  # duplicates and spam, solved (merged) without a reply
_CLOCK_MARGIN_DAYS = 42  # the business-day table reaches this far past the data's end


@dataclass(frozen=True)
class _BusinessClock:
    """Support's opening intervals ``[opens, closes)`` (UTC ms, sorted) and the business time
    before and up to the end of each, so business time and instants convert both ways with a
    ``searchsorted`` per ticket. After ``tail`` (past the data's end) time runs with the calendar,
    so however long a delay, its instant is finite and later than the data."""

    opens: np.ndarray
    closes: np.ndarray
    ends: np.ndarray  # business ms up to the close of each interval (cumulative)
    tail: int

    @classmethod
    def build(cls, hours: BusinessHours, first_ms: int, last_ms: int) -> _BusinessClock:
        """The intervals of every local day from the day before ``first_ms`` to ``last_ms``: the
        listed weekdays that are neither listed holidays nor public ones of ``country``."""
        first = EPOCH + dt.timedelta(milliseconds=first_ms) - dt.timedelta(days=1)
        last = EPOCH + dt.timedelta(milliseconds=last_ms)
        days = pd.date_range(pd.Timestamp(first), pd.Timestamp(last), freq="D", unit="ms")
        closed = list(hours.holidays)
        if hours.country:
            country, _, subdivision = hours.country.partition("-")
            years = range(first.year, last.year + 1)
            closed += holidays.country_holidays(country, subdiv=subdivision or None, years=years).keys()
        open_day = np.isin(days.day_of_week, [WEEKDAYS.index(day) for day in hours.days]) & ~np.isin(
            days.to_numpy().astype("datetime64[D]"), np.array(closed, dtype="datetime64[D]")
        )
        days = days[open_day]
        opens = _utc_ms(days + pd.Timedelta(minutes=hours.start), hours.timezone)
        closes = _utc_ms(days + pd.Timedelta(minutes=hours.end), hours.timezone)
        keep = closes > opens  # hours inside a spring-forward gap are no hours
        opens, closes = opens[keep], closes[keep]
        tail = max(int(closes[-1]) if len(closes) else last_ms, last_ms)
        return cls(opens=opens, closes=closes, ends=np.cumsum(closes - opens), tail=tail)

    @property
    def total(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def position(self, at: np.ndarray) -> np.ndarray:
        """Business ms from the table's start to each instant."""
        after = self.total + np.maximum(at - self.tail, 0)
        if not len(self.opens):
            return after
        k = np.searchsorted(self.closes, at, side="right")  # the first interval that closes after ``at``
        i = np.minimum(k, len(self.opens) - 1)
        inside = self.ends[i] - (self.closes[i] - np.maximum(at, self.opens[i]))
        return np.where(k < len(self.opens), inside, after)

    def instant(self, position: np.ndarray) -> np.ndarray:
        """The instant at which each business time is reached (inside an interval, start included)."""
        after = self.tail + (position - self.total)
        if not len(self.opens):
            return after
        j = np.searchsorted(self.ends, position, side="right")  # the first interval ending after it
        i = np.minimum(j, len(self.opens) - 1)
        inside = self.closes[i] - (self.ends[i] - position)
        return np.where(j < len(self.opens), inside, after)

    def after(self, at: np.ndarray, delay: np.ndarray) -> np.ndarray:
        """The instant ``delay`` business ms after each instant ``at``."""
        return self.instant(self.position(at) + delay)


def _utc_ms(walls: pd.DatetimeIndex, zone: str) -> np.ndarray:
    """Naive local wall times → UTC ms: a time the zone repeats at its first occurrence, a time it
    skips at the end of the gap (as kpi_support_daily's business minutes place them)."""
    located = walls.tz_localize(zone, ambiguous=np.ones(len(walls), dtype=bool), nonexistent="shift_forward")
    return located.tz_convert(None).as_unit("ms").to_numpy().view(np.int64)


def _tickets(
    rng: np.random.Generator,
    trng: np.random.Generator,
    world: _World,
    pop: _Population,
    ev: dict[str, np.ndarray],
) -> _Tickets:
    """Tickets after fallbacks, after help views, during the SEV1, and in the background.

    ``rng`` draws what it always drew (so the tickets themselves, their priorities, channels and
    work are those of earlier versions, seed for seed); ``trng`` draws what business hours added.
    """
    users = len(pop.account)
    active_users = np.unique(ev["user"]) if len(ev["user"]) else np.arange(users)
    production = ev["env"] != _STAGING
    fallbacks = np.flatnonzero((ev["etype"] == _FALLBACK) & production)
    fallbacks = fallbacks[rng.random(len(fallbacks)) < 0.4]
    m = len(fallbacks)
    quick = np.clip(rng.lognormal(np.log(2 * HOUR), 1.0, m), 5 * MINUTE, 23 * HOUR).astype(np.int64)
    delay = np.where(rng.random(m) < 0.1, rng.integers(25 * HOUR, 60 * HOUR, m), quick)
    created = [ev["ts"][fallbacks] + delay]
    requester = [ev["user"][fallbacks]]
    topic = [_workflow_topics(rng, world, ev["workflow"][fallbacks])]
    urgent = [np.zeros(m, dtype=bool)]

    views = np.flatnonzero((ev["etype"] == _HELP) & production)
    views = views[rng.random(len(views)) < 0.06]
    m = len(views)
    delay = np.where(
        rng.random(m) < 0.85, rng.integers(10 * MINUTE, 70 * HOUR, m), rng.integers(73 * HOUR, 120 * HOUR, m)
    )
    created.append(ev["ts"][views] + delay)
    requester.append(ev["user"][views])
    topic.append(ev["topic"][views])
    urgent.append(np.zeros(m, dtype=bool))

    for inc in world.incidents:
        codes = [world.workflows.index(w) for w in inc.affected if w in world.workflows]
        if inc.severity != 1 or inc.resolved is None or not codes:
            continue
        m = max(3, users // 25)
        created.append(inc.started + rng.integers(0, inc.resolved - inc.started + HOUR, m))
        requester.append(rng.choice(active_users, m))
        topic.append(_workflow_topics(rng, world, rng.choice(codes, m)))
        urgent.append(np.ones(m, dtype=bool))

    m = rng.poisson(users / 50 * world.days)
    created.append(world.start_ms + rng.integers(0, world.days * DAY, m))
    who = rng.choice(3, m, p=[0.8, 0.12, 0.08])
    requester.append(np.select([who == 0, who == 1], [rng.choice(active_users, m), -2], -1))
    topic.append(rng.integers(0, len(world.topics), m))
    urgent.append(np.zeros(m, dtype=bool))

    created_all = np.concatenate(created)
    keep = np.flatnonzero(created_all < world.end_ms)
    order = keep[np.argsort(created_all[keep], kind="stable")]
    created_all = created_all[order]
    req = np.concatenate(requester)[order]
    is_urgent = np.concatenate(urgent)[order]
    n = len(order)
    priority = np.where(
        is_urgent, rng.integers(2, 4, n), rng.choice(len(TICKET_PRIORITIES), n, p=[0.2, 0.55, 0.2, 0.05])
    )
    reply_draw = rng.lognormal(np.log(_REPLY_MEDIAN), 0.8, n)
    solve_draw = rng.lognormal(np.log(_SOLVE_MEDIAN), 1.0, n)
    goes_pending = rng.random(n) < 0.25
    external = rng.integers(1, 500, n)
    channel = rng.choice(len(TICKET_CHANNELS), n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    work_tenths = np.maximum(10, rng.lognormal(np.log(150), 0.8, n).astype(np.int64))
    reopens = rng.choice(3, n, p=[0.92, 0.07, 0.01])

    by_channel = np.array([_REPLY_BY_CHANNEL.get(c, 1.0) for c in TICKET_CHANNELS])
    reply_delay = (reply_draw * _REPLY_BY_PRIORITY[priority] * by_channel[channel]).astype(np.int64)
    solve_delay = (solve_draw * _SOLVE_BY_PRIORITY[priority]).astype(np.int64)
    no_reply = trng.random(n) < _NO_REPLY_SHARE
    hours = world.business_hours
    if hours is None:  # support around the clock: business time is calendar time

        def business_after(at: np.ndarray, delay: np.ndarray) -> np.ndarray:
            return at + delay

    else:
        clock = _BusinessClock.build(hours, world.start_ms, world.end_ms + _CLOCK_MARGIN_DAYS * DAY)
        business_after = clock.after
    replied = business_after(created_all, reply_delay)  # a duplicate is merged when first looked at
    solved = np.where(no_reply, replied, business_after(replied, solve_delay))
    pending = np.where(goes_pending & ~no_reply, business_after(replied, solve_delay * 2 // 5), NEVER)
    return _Tickets(
        created=created_all,
        requester=req,
        external=external,
        topic=np.concatenate(topic)[order],
        channel=channel,
        priority=priority,
        first_reply=np.where(no_reply, NEVER, replied),
        pending=pending,
        solved=solved,
        closed=solved + 72 * HOUR,
        work_tenths=work_tenths,
        reopens=reopens,
    )


def _ticket_export_times(world: _World) -> list[int]:
    """Weekly exports (each Monday 00:00 after the start) and a final one at the end."""
    days = np.arange(1, world.days)
    mondays = days[(world.start.weekday() + days) % 7 == 0]
    times = [world.start_ms + int(d) * DAY for d in mondays] + [world.end_ms]
    if len(times) == 1 and world.days > 1:
        times.insert(0, world.start_ms + (world.days // 2) * DAY)
    return times


def _ticket_versions(
    rng: np.random.Generator, world: _World, pop: _Population, t: _Tickets, rows: np.ndarray, as_of: int
) -> dict[str, pa.Array]:
    """Each ticket of ``rows`` as the export at ``as_of`` shows it."""
    stages = np.stack(
        [t.created[rows], t.first_reply[rows], t.pending[rows], t.solved[rows], t.closed[rows]], axis=1
    )
    updated = np.where(stages <= as_of, stages, -1).max(axis=1)
    reached = stages <= as_of
    status = np.select([reached[:, 4], reached[:, 3], reached[:, 2], reached[:, 1]], [4, 3, 2, 1], 0)
    status_text = _take(TICKET_STATUSES, status)
    style = rng.choice(3, len(rows), p=[0.9, 0.06, 0.04])
    status_text = pc.if_else(pa.array(style == 1), pc.utf8_capitalize(status_text), status_text)
    status_text = pc.if_else(pa.array(style == 2), pc.utf8_upper(status_text), status_text)
    work = np.select([status >= 3, status >= 1], [t.work_tenths[rows], t.work_tenths[rows] * 2 // 5], -1)
    requester = t.requester[rows]
    known = _take(pop.user_ids, requester)
    external = _numbered("ext_", t.external[rows], 4)
    return {
        "ticket_id": _numbered("T", 100_001 + rows, 6),
        "created_at": _timestamps(t.created[rows], "s"),
        "updated_at": _timestamps(updated, "s"),
        "status": status_text,
        "topic": _take(world.topics, t.topic[rows]),
        "channel": _take(TICKET_CHANNELS, t.channel[rows]),
        "priority": _take(TICKET_PRIORITIES, t.priority[rows]),
        "requester_id": pc.if_else(pa.array(requester == -2), external, known),
        "account_id": _take(
            pop.account_ids, np.where(requester >= 0, pop.account[np.maximum(requester, 0)], -1)
        ),
        "first_reply_at": _optional(_timestamps(np.minimum(t.first_reply[rows], as_of), "s"), reached[:, 1]),
        "solved_at": _optional(_timestamps(np.minimum(t.solved[rows], as_of), "s"), status >= 3),
        "agent_work_minutes": pc.binary_join_element_wise(
            _integers(work // 10), _integers(np.where(work >= 0, work % 10, -1)), "."
        ),
        "reopens": _integers(np.where(status >= 3, t.reopens[rows], 0)),
    }


def _ticket_bad_rows(
    rng: np.random.Generator,
    cols: dict[str, pa.Array],
    created: np.ndarray,
    kinds: Sequence[str],
    per_kind: int,
    first_id: int,
) -> tuple[dict[str, pa.Array], np.ndarray, dict[str, int]]:
    """Bad versions of random tickets of one export: (columns, malformed flags, reason counts)."""
    groups = []
    flags = []
    bad: dict[str, int] = {}
    for kind in kinds:
        rows = rng.integers(0, len(created), per_kind)
        g = _take_cols(cols, rows)
        g["ticket_id"] = _numbered("TX", first_id + len(groups) * per_kind + np.arange(per_kind), 5)
        if kind == f"{MISSING_FIELD}:topic":
            g["topic"] = _repeat("", per_kind)
        elif kind == BAD_TIMESTAMP:
            g["created_at"] = _choice(rng, ("last tuesday", "2025-13-01T00:00:00Z"), per_kind)
        elif kind == f"{BAD_VALUE}:agent_work_minutes":
            g["agent_work_minutes"] = pc.binary_join_element_wise(
                "-", _integers(rng.integers(1, 90, per_kind)), ".5", ""
            )
        elif kind == f"{BAD_VALUE}:status":
            g["status"] = _repeat("escalated", per_kind)
        elif kind == f"{BAD_VALUE}:solved_at":
            g["status"] = _repeat("solved", per_kind)
            g["solved_at"] = _timestamps(created[rows] - 2 * HOUR, "s")
        groups.append(g)
        flags.append(np.full(per_kind, kind == MALFORMED))
        bad[kind] = per_kind
    if not groups:  # more weekly exports than kinds of bad rows: this export gets none
        empty = {name: pa.array([], type=cols[name].type) for name in TICKET_FIELDS}
        return empty, np.zeros(0, dtype=bool), bad
    merged = {name: pa.concat_arrays([g[name] for g in groups]) for name in TICKET_FIELDS}
    return merged, np.concatenate(flags), bad


def _write_tickets(
    rng: np.random.Generator, world: _World, pop: _Population, t: _Tickets, out: StoragePath, files: list[str]
) -> tuple[int, dict[str, int]]:
    """One CSV export per week (every other one gzipped), incremental: tickets changed since the last."""
    times = _ticket_export_times(world)
    stages = np.stack([t.created, t.first_reply, t.pending, t.solved, t.closed], axis=1)
    exports = []
    previous = -1
    for as_of in times:
        last_change = np.where(stages <= as_of, stages, -1).max(axis=1)
        exports.append(np.flatnonzero((t.created <= as_of) & (last_change > previous)))
        previous = as_of
    filled = [i for i, rows in enumerate(exports) if len(rows)] or [-1]
    per_kind = max(1, round(len(t.created) * 0.001))
    rows_written = 0
    bad: dict[str, int] = {}
    for i, (as_of, rows) in enumerate(zip(times, exports, strict=True)):
        if not len(rows):
            continue
        cols = _ticket_versions(rng, world, pop, t, rows, as_of)
        kinds = [k for j, k in enumerate(_TICKET_BAD_KINDS) if filled[j % len(filled)] == i]
        bad_cols, broken, counts = _ticket_bad_rows(
            rng, cols, t.created[rows], kinds, per_kind, 1 + sum(bad.values())
        )
        for reason, count in counts.items():
            bad[reason] = bad.get(reason, 0) + count
        lines = _csv_lines(
            {n: pa.concat_arrays([cols[n], bad_cols[n]]) for n in TICKET_FIELDS}, TICKET_FIELDS
        )
        flags = pa.array(np.concatenate([np.zeros(len(rows), dtype=bool), broken]))
        lines = pc.if_else(flags, pc.binary_join_element_wise(lines, "extra,columns", ","), lines)
        keys = np.concatenate([np.arange(len(rows), dtype=np.float64), rng.random(len(broken)) * len(rows)])
        day = (EPOCH + dt.timedelta(milliseconds=as_of)).isoformat()
        name = f"raw/tickets/tickets_{day}.csv" + (".gz" if i % 2 else "")
        _write(out, name, _encode(_text(_ordered(lines, keys), ",".join(TICKET_FIELDS)), name), files)
        rows_written += len(keys)
    return rows_written, bad


# ----------------------------------------------------------------------------- incidents


def _incident_version(inc: _Incident, as_of: int, later: bool) -> dict[str, str | None]:
    """One incident as an export at ``as_of`` shows it (affected workflows ';'-joined)."""
    resolved = inc.resolved if inc.resolved is not None and inc.resolved <= as_of else None
    stages = [inc.started, inc.detected or inc.started]
    if resolved is not None:
        stages += [resolved, resolved + 30 * MINUTE]
    return {
        "incident_id": inc.incident_id,
        "started_at": _iso(inc.started),
        "severity": inc.spellings[1 if later else 0],
        "service": inc.service,
        "detected_at": None if inc.detected is None else _iso(inc.detected),
        "resolved_at": None if resolved is None else _iso(resolved),
        "affected_workflows": ";".join(sorted(inc.affected)),
        "title": inc.title,
        "root_cause": inc.root_cause if resolved is not None else None,
        "updated_at": _iso(max(s for s in stages if s <= as_of)),
    }


def _iso(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_incidents(world: _World, out: StoragePath, files: list[str]) -> tuple[int, int, dict[str, int]]:
    """Two exports: JSONL while the SEV1 is open, CSV at the end; plus three bad records."""
    sev1 = next(inc for inc in world.incidents if inc.severity == 1)
    first_as_of = sev1.started + HOUR
    day_before = sev1.started - DAY
    bad_first = {
        "incident_id": "INC-0903",
        "started_at": _iso(day_before),
        "severity": "SEV3",
        "service": "search",
        "detected_at": _iso(day_before + 5 * MINUTE),
        "resolved_at": _iso(day_before - 2 * HOUR),
        "affected_workflows": "",
        "title": "Search index lagging",
        "root_cause": None,
        "updated_at": _iso(day_before + HOUR),
    }
    bad_later = [
        {**bad_first, "incident_id": "INC-0901", "service": "", "resolved_at": _iso(day_before + HOUR)},
        {**bad_first, "incident_id": "INC-0902", "started_at": "yesterday afternoon", "resolved_at": None},
    ]
    first = [_incident_version(i, first_as_of, False) for i in world.incidents if i.started <= first_as_of]
    later = [_incident_version(i, world.end_ms, True) for i in world.incidents if i.started <= world.end_ms]
    bad = {f"{BAD_VALUE}:resolved_at": 1, f"{MISSING_FIELD}:service": 1, BAD_TIMESTAMP: 1}

    def columns(records: list[dict[str, str | None]]) -> dict[str, pa.Array]:
        return {name: pa.array([r[name] for r in records], type=pa.string()) for name in INCIDENT_FIELDS}

    cols = columns([*first, bad_first])
    affected = pc.binary_join_element_wise(
        '["', pc.replace_substring(cols["affected_workflows"], ";", '","'), '"]', ""
    )
    cols["affected_workflows"] = pc.if_else(
        pc.equal(cols["affected_workflows"], ""), pa.scalar("[]"), affected
    )
    stamp = (EPOCH + dt.timedelta(milliseconds=first_as_of)).isoformat()
    name = f"raw/incidents/incidents_{stamp[:10]}T{first_as_of % DAY // HOUR:02d}00.jsonl"
    _write(
        out,
        name,
        _text(_json_lines(cols, INCIDENT_FIELDS, raw_fields=frozenset({"affected_workflows"}))),
        files,
    )
    end_day = (EPOCH + dt.timedelta(milliseconds=world.end_ms)).isoformat()
    name = f"raw/incidents/incidents_{end_day}T0000.csv"
    _write(
        out,
        name,
        _text(_csv_lines(columns([*later, *bad_later]), INCIDENT_FIELDS), ",".join(INCIDENT_FIELDS)),
        files,
    )
    return len(first) + 1 + len(later) + len(bad_later), len(world.incidents), bad


# ----------------------------------------------------------------------------- public API


def generate_dataset(
    out: StoragePath,
    days: int = 28,
    seed: int = 7,
    start: dt.date = DEFAULT_START,
    users: int = 800,
    log: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Write a realistic sample data set under ``out`` in the contract's layout.

    ``out/config/kpi.yaml`` is written from the packaged sample only when absent, then read,
    so the workflows (steps, topics) of an edited config are what the events exercise.
    The same arguments give byte-identical files.
    """
    if days < 1 or users < 1:
        raise ValueError(f"days and users must be at least 1 (got days={days}, users={users})")
    out = location(out) if isinstance(out, str) else out
    files: list[str] = []
    config_path = out / "config" / "kpi.yaml"
    if not config_path.exists():
        _write(out, "config/kpi.yaml", _packaged_config_bytes(), files)
    config = load_config(config_path)
    rng = np.random.default_rng(seed)
    world = _build_world(config, start, days, rng, with_incidents=True)
    pop, ev = _simulate(rng, world, users)
    bounds = np.searchsorted(ev["ts"], world.start_ms + np.arange(days + 1) * DAY)
    telemetry_rows = 0
    telemetry_bad: dict[str, int] = {}
    for i in range(days):
        day = start + dt.timedelta(days=i)
        part = {name: col[bounds[i] : bounds[i + 1]] for name, col in ev.items()}
        cols = _event_columns(rng, world, pop, part, drift=i % 4 == 2)
        day_rows = _day_rows(
            rng,
            cols,
            part,
            BAD_SHARE_PER_KIND,
            non_numeric=i % 10 == 1,
            first_bad_id=1 + sum(telemetry_bad.values()),
        )
        folder = f"raw/telemetry/date={day.isoformat()}"
        written = _partition_files(day_rows, _DAY_LAYOUTS[i % len(_DAY_LAYOUTS)])
        for name, data in written:
            _write(out, f"{folder}/{name}", data, files)
        if i == min(2, days - 1):
            note = f"Exporter notes for {day.isoformat()}: re-exported after a collector restart.\n"
            _write(out, f"{folder}/{IGNORED_FILE}", note.encode(), files)
        telemetry_rows += day_rows.rows
        for reason, count in day_rows.bad.items():
            telemetry_bad[reason] = telemetry_bad.get(reason, 0) + count
        if log is not None:
            bad_count = sum(day_rows.bad.values())
            log(f"{day}: {day_rows.rows:,} telemetry rows ({bad_count} bad) in {len(written)} file(s)")
    # Survey answers draw from their own generator, so the events above are those of a data set
    # without surveys, seed for seed.
    srng = np.random.default_rng([seed, 14])
    answers = _survey_responses(srng, world, config, ev)
    answer_bounds = np.searchsorted(answers["ts"], world.start_ms + np.arange(days + 1) * DAY)
    for i in range(days):
        part = {name: col[answer_bounds[i] : answer_bounds[i + 1]] for name, col in answers.items()}
        data, bad = _survey_file(srng, pop, part, 1 + int(answer_bounds[i]))
        _write(
            out, f"raw/telemetry/date={(start + dt.timedelta(days=i)).isoformat()}/{SURVEY_FILE}", data, files
        )
        telemetry_rows += len(part["ts"]) + sum(bad.values())
        for reason, count in bad.items():
            telemetry_bad[reason] = telemetry_bad.get(reason, 0) + count
    # What business hours added to the tickets draws from a generator of its own too, so rng's draws
    # (which tickets, their priorities, channels, work and reopens) are those of before, seed for seed.
    tickets = _tickets(rng, np.random.default_rng([seed, 15]), world, pop, ev)
    ticket_rows, ticket_bad = _write_tickets(rng, world, pop, tickets, out, files)
    incident_rows, incident_count, incident_bad = _write_incidents(world, out, files)
    return GenerationSummary(
        start=start,
        end=start + dt.timedelta(days=days - 1),
        telemetry_rows=telemetry_rows,
        bad_rows={"telemetry": telemetry_bad, "tickets": ticket_bad, "incidents": incident_bad},
        ticket_rows=ticket_rows,
        incident_rows=incident_rows,
        files=files,
        bug_week=bug_week_for(start),
        bug_workflow=BUG_WORKFLOW,
        bug_events=int((ev["etype"] == _DONE).sum()),
        tickets=len(tickets.created),
        incidents=incident_count,
    )


def telemetry_day_bytes(day: dt.date, n_events: int, seed: int, bad_share: float = 0.02) -> bytes:
    """One JSONL telemetry partition for ``day`` with ``n_events`` raw rows (give or take rounding).

    The events come from the same simulation as ``generate_dataset`` (sample config, no
    incidents); ``bad_share`` of the rows are bad, split evenly over the seven bad-row kinds,
    plus a few blank lines. Meant for benchmarks of the staging step.
    """
    if n_events < 1:
        raise ValueError(f"n_events must be at least 1 (got {n_events})")
    config = parse_config(yaml.safe_load(_packaged_config_bytes()), "sample_kpi.yaml")
    rng = np.random.default_rng(seed)
    world = _build_world(config, day, 1, rng, with_incidents=False)
    target = max(1, round(n_events / (1.0 + bad_share)))
    users = max(8, math.ceil(target / _EVENTS_PER_USER_FIRST_DAY * 1.15))
    pop, ev = _simulate(rng, world, users)
    while len(ev["ts"]) < target:
        users = math.ceil(users * 1.5)
        pop, ev = _simulate(rng, world, users)
    # Whole users in random order up to the target, then the first events of one more user.
    order = rng.permutation(users)
    taken = np.cumsum(np.bincount(ev["user"], minlength=users)[order])
    whole = int(np.searchsorted(taken, target, side="right"))
    chosen = np.zeros(users, dtype=bool)
    chosen[order[:whole]] = True
    keep = chosen[ev["user"]]
    remainder = target - (int(taken[whole - 1]) if whole else 0)
    if remainder:
        keep[np.flatnonzero(ev["user"] == order[whole])[:remainder]] = True
    part = {name: col[keep] for name, col in ev.items()}
    cols = _event_columns(rng, world, pop, part, drift=True)
    day_rows = _day_rows(rng, cols, part, bad_share / BAD_KINDS, non_numeric=True, first_bad_id=1)
    return _render_part(day_rows, "jsonl", -math.inf, math.inf)
