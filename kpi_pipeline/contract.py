"""The input data contract (``shared/spec/data-contract.md``) as constants.

Field lists, canonical values and quarantine reasons live here once, so the
ingest code, the checks and the sample-data generator agree on them.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "task_started",
    "task_step",
    "task_completed",
    "task_error",
    "task_fallback",
    "feature_used",
    "help_viewed",
    "survey_response",
)
SURVEY_RESPONSE = "survey_response"

TELEMETRY_FIELDS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "user_id",
    "account_id",
    "event_type",
    "workflow",
    "task_id",
    "step",
    "feature",
    "topic",
    "persona",
    "channel",
    "device",
    "environment",
    "release",
    "duration_ms",
    "error_code",
    "survey",
    "score",
)
# Telemetry fields that hold JSON numbers (they reach validation as written); every other is text.
TELEMETRY_NUMBER_FIELDS: tuple[str, ...] = ("duration_ms", "score")
TELEMETRY_TEXT_FIELDS: tuple[str, ...] = tuple(
    f for f in TELEMETRY_FIELDS if f not in TELEMETRY_NUMBER_FIELDS
)
TELEMETRY_REQUIRED: tuple[str, ...] = ("event_id", "occurred_at", "user_id", "account_id", "event_type")
# Fields required only for some event types: field -> event types that need it.
TELEMETRY_REQUIRED_FOR: dict[str, tuple[str, ...]] = {
    "workflow": ("task_started", "task_step", "task_completed", "task_error", "task_fallback"),
    "task_id": ("task_started", "task_step", "task_completed", "task_error", "task_fallback"),
    "step": ("task_step",),
    "feature": ("feature_used",),
    "topic": ("help_viewed",),
}
# Fields a survey_response needs, checked (kpis-v2.md) after unknown_event_type, not with the others.
SURVEY_REQUIRED: tuple[str, ...] = ("survey", "score")
TELEMETRY_DEFAULTS: dict[str, str] = {
    "persona": "unknown",
    "channel": "unknown",
    "environment": "production",
}

TICKET_FIELDS: tuple[str, ...] = (
    "ticket_id",
    "created_at",
    "updated_at",
    "status",
    "topic",
    "channel",
    "priority",
    "requester_id",
    "account_id",
    "first_reply_at",
    "solved_at",
    "agent_work_minutes",
    "reopens",
)
TICKET_REQUIRED: tuple[str, ...] = ("ticket_id", "created_at", "updated_at", "status", "topic")
TICKET_STATUSES: tuple[str, ...] = ("new", "open", "pending", "solved", "closed")
TICKET_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")

INCIDENT_FIELDS: tuple[str, ...] = (
    "incident_id",
    "started_at",
    "severity",
    "service",
    "detected_at",
    "resolved_at",
    "affected_workflows",
    "title",
    "root_cause",
    "updated_at",
)
INCIDENT_REQUIRED: tuple[str, ...] = ("incident_id", "started_at", "severity", "service")
SEVERITIES: tuple[str, ...] = ("SEV1", "SEV2", "SEV3", "SEV4")

TELEMETRY_EXTENSIONS: tuple[str, ...] = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz")
TICKET_EXTENSIONS: tuple[str, ...] = (".csv", ".csv.gz")
INCIDENT_EXTENSIONS: tuple[str, ...] = (".jsonl", ".csv")

# Quarantine reasons, in the contract's order of precedence.
MALFORMED = "malformed_record"
MISSING_FIELD = "missing_field"  # reported as missing_field:<name>
BAD_TIMESTAMP = "bad_timestamp"
OUTSIDE_PARTITION = "outside_partition"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
BAD_VALUE = "bad_value"  # reported as bad_value:<name>
DUPLICATE_EVENT_ID = "duplicate_event_id"

SOURCES: tuple[str, ...] = ("telemetry", "tickets", "incidents")

# Longest text value (in characters) a staged text field may hold; a longer one is bad_value:<field>.
# Ids, names, codes and one-paragraph summaries are far shorter; a longer value is a blob (a whole
# document or file pasted into one field) that would otherwise become a 50 MB feature name or topic.
MAX_TEXT_LENGTH = 4_096
# Largest integer a count field (tickets' reopens) may hold: int64, the type of the warehouse column.
MAX_COUNT = 2**63 - 1
