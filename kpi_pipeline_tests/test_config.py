"""kpi.yaml loading: defaults, the sample file, errors that name their key, and helpers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from kpi_pipeline.config import ConfigError, KpiConfig, load_config, parse_config

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "config" / "kpi.yaml"


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kpi.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_the_file_is_absent(tmp_path: Path) -> None:
    for config in (load_config(tmp_path / "missing.yaml"), load_config(None)):
        assert config == KpiConfig()
        assert config.currency == "USD"
        assert config.cost_per_ticket == 25.0
        assert config.loaded_hourly_cost == 60.0
        assert (config.windows.completion, config.windows.fallback_ticket, config.windows.deflection) == (
            24.0,
            24.0,
            72.0,
        )
        assert config.activation_days == 14.0
        assert config.scorecard.threshold == 0.05
        assert config.default_owner == "product-analytics"
        assert config.workflows == {}
        assert config.event_aliases == ()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write_yaml(tmp_path, "# nothing configured\n")) == KpiConfig()


def test_sample_config_loads() -> None:
    config = load_config(SAMPLE)
    assert list(config.workflows) == ["access_request", "invoice_download", "data_export", "user_onboarding"]
    access = config.workflows["access_request"]
    assert access.owner == "identity-team"
    assert access.steps == ("form_opened", "approver_selected", "submitted")
    assert access.topics == ("access", "permissions")
    assert access.minutes_saved_per_completion == 12.0
    assert config.topic_to_workflow() == {
        "access": "access_request",
        "permissions": "access_request",
        "billing": "invoice_download",
        "invoices": "invoice_download",
        "export": "data_export",
        "onboarding": "user_onboarding",
    }
    assert config.owner_for("reliability") == "sre-team"
    assert config.owner_for("data_quality") == "product-analytics"  # not set in the sample


def error_of(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "kpi.yaml")
    return str(info.value)


def test_unknown_top_level_key() -> None:
    message = error_of({"cost_per_tiket": 10})
    assert "kpi.yaml" in message
    assert "cost_per_tiket: unknown key" in message


def test_unknown_nested_key() -> None:
    assert "windows.completon: unknown key" in error_of({"windows": {"completon": 12}})
    assert "workflows.export.ownr: unknown key" in error_of({"workflows": {"export": {"ownr": "me"}}})


@pytest.mark.parametrize("key", ["cost_per_ticket", "loaded_hourly_cost"])
def test_negative_costs(key: str) -> None:
    message = error_of({key: -1})
    assert message.startswith("kpi.yaml: invalid configuration: ")
    assert f"{key}: Input should be greater than or equal to 0" in message


def test_topic_in_two_workflows() -> None:
    message = error_of(
        {
            "workflows": {
                "invoice_download": {"topics": ["billing", "invoices"]},
                "refunds": {"topics": ["refund", "billing"]},
            }
        }
    )
    assert "workflows.refunds.topics" in message
    assert "'billing'" in message
    assert "'invoice_download'" in message


def test_alias_without_to() -> None:
    assert "event_aliases.0.to: Field required" in error_of({"event_aliases": [{"from": "task_done"}]})


def test_alias_window_reversed() -> None:
    message = error_of(
        {
            "event_aliases": [
                {"from": "a", "to": "task_completed"},
                {
                    "from": "b",
                    "to": "task_completed",
                    "valid_from": "2026-02-09",
                    "valid_until": "2026-02-03",
                },
            ]
        }
    )
    assert "event_aliases.1: valid_until is before valid_from" in message


def test_alias_parses_dates() -> None:
    alias = parse_config(
        {"event_aliases": [{"from": "task_done", "to": "task_completed", "valid_from": "2026-02-03"}]}
    ).event_aliases[0]
    assert (alias.from_, alias.to, alias.valid_from, alias.valid_until) == (
        "task_done",
        "task_completed",
        dt.date(2026, 2, 3),
        None,
    )


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "workflows:\n  export: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_errors_from_a_file_name_the_file_and_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "windows:\n  completon: 12\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: invalid configuration: windows.completon: unknown key"


def test_top_level_must_be_a_mapping() -> None:
    assert error_of(["cost_per_ticket", 3]) == "kpi.yaml: the top level must be a mapping of keys, got list"


def test_workflow_owner_falls_back_to_default_owner() -> None:
    config = parse_config(
        {
            "default_owner": "analytics",
            "workflows": {"access_request": {"owner": "identity-team"}, "data_export": {}},
        }
    )
    assert config.workflow_owner("access_request") == "identity-team"
    assert config.workflow_owner("data_export") == "analytics"
    assert config.workflow_owner("not_configured") == "analytics"


def test_packaged_sample_config_is_the_repository_one() -> None:
    packaged = Path(__file__).parents[1] / "kpi_pipeline" / "sample_kpi.yaml"
    assert packaged.read_bytes() == (Path(__file__).parents[1] / "data" / "config" / "kpi.yaml").read_bytes()
