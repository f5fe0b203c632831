"""The ``sources:`` section of kpi.yaml: presets, overrides, and errors that name their key."""

from __future__ import annotations

from typing import Any

import pytest

from kpi_pipeline.config import ConfigError, KpiConfig, parse_config
from kpi_pipeline.sources.model import FieldSpec, IncidentMapping, TicketMapping
from kpi_pipeline.sources.presets import preset_names, preset_sources

MINIMAL_TICKETS: dict[str, Any] = {
    "fields": {
        "ticket_id": "Id",
        "created_at": "Created",
        "updated_at": "Updated",
        "status": "State",
        "topic": "Topic",
    }
}


def error_of(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def test_no_sources_section_is_the_native_contract() -> None:
    config = parse_config({})
    assert (config.sources.telemetry, config.sources.tickets, config.sources.incidents) == (None, None, None)
    assert config == KpiConfig()


def test_every_shipped_preset_loads_for_every_source_it_maps() -> None:
    assert preset_names() == (
        "posthog_survey_events",
        "purchases",
        "servicenow_incident_log",
        "statuspage_incidents",
        "zendesk_tickets",
    )
    expected = {
        "posthog_survey_events": ("telemetry",),
        "purchases": ("telemetry",),
        "servicenow_incident_log": ("tickets", "incidents"),
        "statuspage_incidents": ("incidents",),
        "zendesk_tickets": ("tickets",),
    }
    for name in preset_names():
        assert preset_sources(name) == expected[name]
        for source in preset_sources(name):
            mapping = getattr(parse_config({"sources": {source: {"preset": name}}}).sources, source)
            assert mapping.preset == name


def test_a_preset_name_alone_is_short_for_the_preset() -> None:
    short = parse_config({"sources": {"tickets": "zendesk_tickets"}}).sources.tickets
    long = parse_config({"sources": {"tickets": {"preset": "zendesk_tickets"}}}).sources.tickets
    assert short == long
    assert short is not None and short.fields["ticket_id"] == FieldSpec(column="Id")


def test_keys_beside_a_preset_override_it_and_fields_merge_by_name() -> None:
    mapping = parse_config(
        {
            "sources": {
                "incidents": {
                    "preset": "servicenow_incident_log",
                    "path": "exports/sn.zip",
                    "timezone": "Europe/Amsterdam",
                    "fields": {"service": "assignment_group", "title": None},
                    "constants": {"root_cause": "unknown"},
                }
            }
        }
    ).sources.incidents
    assert isinstance(mapping, IncidentMapping)
    assert (mapping.path, mapping.timezone) == ("exports/sn.zip", "Europe/Amsterdam")
    assert mapping.fields["service"] == FieldSpec(column="assignment_group")  # replaced
    assert "title" not in mapping.fields  # removed by null
    assert mapping.fields["incident_id"] == FieldSpec(column="number")  # kept from the preset
    assert mapping.timestamp_format == "%d/%m/%Y %H:%M"  # kept from the preset
    assert mapping.constants == {"root_cause": "unknown"}


def test_explicit_mapping_with_shorthand_columns_and_numeric_map_keys() -> None:
    mapping = parse_config(
        {
            "sources": {
                "tickets": {
                    **MINIMAL_TICKETS,
                    "format": "csv",
                    "delimiter": ";",
                    "missing": ["NULL"],
                    "fields": {
                        **MINIMAL_TICKETS["fields"],
                        "priority": {"column": "Prio", "values": {1: "urgent", 2: "high"}},
                    },
                }
            }
        }
    ).sources.tickets
    assert isinstance(mapping, TicketMapping)
    assert mapping.delimiter == ";"
    assert mapping.fields["topic"] == FieldSpec(column="Topic")
    assert mapping.fields["priority"].values == {"1": "urgent", "2": "high"}


def test_unknown_key_is_named() -> None:
    assert "sources.tickets.fieldz: unknown key" in error_of({"sources": {"tickets": {"fieldz": {}}}})
    assert "sources.ticketz: unknown key" in error_of({"sources": {"ticketz": {}}})
    message = error_of(
        {"sources": {"tickets": {**MINIMAL_TICKETS, "fields": {"ticket_id": {"colum": "Id"}}}}}
    )
    assert "sources.tickets.fields.ticket_id.colum: unknown key" in message


def test_unknown_preset_is_named_with_the_known_ones() -> None:
    message = error_of({"sources": {"tickets": {"preset": "freshdesk"}}})
    assert (
        "sources.tickets: preset 'freshdesk' is unknown; presets: posthog_survey_events, purchases, "
        "servicenow_incident_log, statuspage_incidents, zendesk_tickets"
    ) in message


def test_preset_without_a_mapping_for_the_source() -> None:
    message = error_of({"sources": {"tickets": "statuspage_incidents"}})
    assert (
        "sources.tickets: preset 'statuspage_incidents' has no tickets mapping (it maps: incidents)"
        in message
    )


def test_mapping_to_an_unknown_contract_field() -> None:
    message = error_of(
        {"sources": {"tickets": {"fields": {**MINIMAL_TICKETS["fields"], "assignee": "Owner"}}}}
    )
    assert "sources.tickets.fields: 'assignee': not a tickets field of the data contract" in message
    constant = error_of({"sources": {"tickets": {**MINIMAL_TICKETS, "constants": {"severity": "SEV1"}}}})
    assert "sources.tickets.constants: 'severity': not a tickets field of the data contract" in constant


def test_bad_timezone() -> None:
    message = error_of({"sources": {"tickets": {**MINIMAL_TICKETS, "timezone": "Mars/Olympus_Mons"}}})
    assert "sources.tickets.timezone: unknown time zone 'Mars/Olympus_Mons'" in message


def test_bad_timestamp_format() -> None:
    message = error_of({"sources": {"tickets": {**MINIMAL_TICKETS, "timestamp_format": "dd/mm/yyyy"}}})
    assert "sources.tickets.timestamp_format: 'dd/mm/yyyy' is not a timestamp format" in message


def test_required_field_neither_mapped_nor_constant() -> None:
    message = error_of({"sources": {"tickets": {"fields": {"ticket_id": "Id"}}}})
    assert (
        "sources.tickets: fields: required tickets field(s) created_at, updated_at, status, topic "
        "neither mapped nor constant"
    ) in message


def test_field_both_mapped_and_constant() -> None:
    message = error_of({"sources": {"tickets": {**MINIMAL_TICKETS, "constants": {"topic": "billing"}}}})
    assert "fields.topic and constants.topic: a field is either mapped or a constant" in message


def test_split_only_on_list_fields_and_format_only_on_timestamps() -> None:
    fields = {**MINIMAL_TICKETS["fields"], "topic": {"column": "Topic", "split": "|"}}
    assert "fields.topic.split: only list fields split (here: none)" in error_of(
        {"sources": {"tickets": {"fields": fields}}}
    )
    fields = {**MINIMAL_TICKETS["fields"], "status": {"column": "State", "format": "%Y"}}
    assert "fields.status.format: only timestamp fields" in error_of(
        {"sources": {"tickets": {"fields": fields}}}
    )


def test_unknown_dollar_name_and_column_xor_columns() -> None:
    fields = {**MINIMAL_TICKETS["fields"], "ticket_id": {"columns": ["$file", "$row"]}}
    message = error_of({"sources": {"tickets": {"fields": fields}}})
    assert (
        "sources.tickets.fields.ticket_id: '$row' is not a column; the only $-names are $file, $line"
        in message
    )
    both = {**MINIMAL_TICKETS["fields"], "ticket_id": {"column": "Id", "columns": ["A", "B"]}}
    assert "give either column (one source column) or columns" in error_of(
        {"sources": {"tickets": {"fields": both}}}
    )


def test_value_map_keys_that_differ_only_in_case_clash() -> None:
    fields = {
        **MINIMAL_TICKETS["fields"],
        "status": {"column": "State", "values": {"Open": "open", "OPEN": "new"}},
    }
    assert "values: keys ['open'] differ only in case or surrounding spaces" in error_of(
        {"sources": {"tickets": {"fields": fields}}}
    )


def test_telemetry_has_no_path_it_is_imported_into_daily_folders() -> None:
    message = error_of({"sources": {"telemetry": {"preset": "purchases", "path": "orders.csv"}}})
    assert "sources.telemetry: path: telemetry is read from raw/telemetry/date=YYYY-MM-DD/" in message
    assert "kpi-pipeline import --source telemetry FILE" in message
    versioned = error_of({"sources": {"telemetry": {"preset": "purchases", "version": {"column": "date"}}}})
    assert "sources.telemetry: version: telemetry has no versions of a record" in versioned


def test_bad_format_and_delimiter() -> None:
    assert "sources.tickets.format: Input should be 'csv', 'whitespace' or 'jsonl'" in error_of(
        {"sources": {"tickets": {**MINIMAL_TICKETS, "format": "xlsx"}}}
    )
    assert "sources.tickets.delimiter: String should have at most 1 character" in error_of(
        {"sources": {"tickets": {**MINIMAL_TICKETS, "delimiter": ";;"}}}
    )


def test_minutes_after_counts_from_a_mapped_timestamp_field() -> None:
    fields = {
        **MINIMAL_TICKETS["fields"],
        "first_reply_at": {"column": "Reply mins", "minutes_after": "created_at"},
    }
    mapping = parse_config({"sources": {"tickets": {"fields": fields}}}).sources.tickets
    assert mapping is not None
    assert mapping.fields["first_reply_at"] == FieldSpec(column="Reply mins", minutes_after="created_at")
    assert mapping.minutes_fields() == {"first_reply_at": "created_at"}
    assert "Reply mins" not in mapping.text_columns()  # minutes are numbers, not timestamp text
    assert "Reply mins" in mapping.read_columns()


def test_minutes_after_only_on_timestamp_fields_and_from_one() -> None:
    def message(**extra: Any) -> str:
        return error_of({"sources": {"tickets": {"fields": {**MINIMAL_TICKETS["fields"], **extra}}}})

    assert (
        "sources.tickets: fields.status.minutes_after: only timestamp fields (created_at, updated_at, "
        "first_reply_at, solved_at) are given as minutes after another"
    ) in message(status={"column": "State", "minutes_after": "created_at"})
    assert (
        "fields.first_reply_at.minutes_after: 'topic' is not a tickets timestamp field (created_at, "
        "updated_at, first_reply_at, solved_at)"
    ) in message(first_reply_at={"column": "Mins", "minutes_after": "topic"})
    assert "fields.first_reply_at.minutes_after: 'createdAt' is not a tickets timestamp field" in message(
        first_reply_at={"column": "Mins", "minutes_after": "createdAt"}
    )


def test_minutes_after_a_field_the_mapping_does_not_read_from_a_column() -> None:
    def message(**extra: Any) -> str:
        return error_of({"sources": {"tickets": {"fields": {**MINIMAL_TICKETS["fields"], **extra}}}})

    assert "fields.first_reply_at.minutes_after: solved_at is not mapped; map fields.solved_at" in message(
        first_reply_at={"column": "Mins", "minutes_after": "solved_at"}
    )
    assert "fields.first_reply_at.minutes_after: a field cannot be minutes after itself" in message(
        first_reply_at={"column": "Mins", "minutes_after": "first_reply_at"}
    )
    chained = message(
        solved_at={"column": "Solve mins", "minutes_after": "created_at"},
        first_reply_at={"column": "Mins", "minutes_after": "solved_at"},
    )
    assert (
        "fields.first_reply_at.minutes_after: solved_at is itself minutes after created_at; the field it "
        "counts from must be read from a timestamp column"
    ) in chained
    assert "fields.solved_at.minutes_after" not in chained  # solved_at itself is fine
    cycle = message(
        solved_at={"column": "Solve mins", "minutes_after": "first_reply_at"},
        first_reply_at={"column": "Mins", "minutes_after": "solved_at"},
    )
    assert "fields.first_reply_at.minutes_after: solved_at is itself minutes after first_reply_at" in cycle
    assert "fields.solved_at.minutes_after: first_reply_at is itself minutes after solved_at" in cycle


def test_minutes_after_is_not_a_timestamp_format_and_names_a_field() -> None:
    fields = {
        **MINIMAL_TICKETS["fields"],
        "first_reply_at": {"column": "Mins", "minutes_after": "created_at", "format": "%d/%m/%Y"},
    }
    assert (
        "sources.tickets.fields.first_reply_at: format and minutes_after: a column holds "
        "either timestamps (format) or minutes after another timestamp field (minutes_after), not both"
    ) in error_of({"sources": {"tickets": {"fields": fields}}})
    empty = {**MINIMAL_TICKETS["fields"], "first_reply_at": {"column": "Mins", "minutes_after": ""}}
    assert "sources.tickets.fields.first_reply_at.minutes_after: String should have at least 1 character" in (
        error_of({"sources": {"tickets": {"fields": empty}}})
    )


def test_zendesk_first_reply_is_minutes_after_creation_and_can_be_overridden() -> None:
    preset = parse_config({"sources": {"tickets": "zendesk_tickets"}}).sources.tickets
    assert preset is not None
    assert preset.fields["first_reply_at"] == FieldSpec(
        column="First reply time in minutes", minutes_after="created_at"
    )
    own = parse_config(
        {
            "sources": {
                "tickets": {"preset": "zendesk_tickets", "fields": {"first_reply_at": "First reply at"}}
            }
        }
    ).sources.tickets
    assert own is not None and own.fields["first_reply_at"] == FieldSpec(column="First reply at")
    dropped = parse_config(
        {"sources": {"tickets": {"preset": "zendesk_tickets", "fields": {"first_reply_at": None}}}}
    ).sources.tickets
    assert dropped is not None and "first_reply_at" not in dropped.fields
    # removing the field it counts from is an error naming both keys
    message = error_of(
        {"sources": {"tickets": {"preset": "zendesk_tickets", "fields": {"created_at": None}}}}
    )
    assert "fields.first_reply_at.minutes_after: created_at is not mapped" in message
