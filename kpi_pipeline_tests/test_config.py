"""kpi.yaml loading: defaults, the sample file, errors that name their key, and helpers."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kpi_pipeline.config import ConfigError, KpiConfig, Workflow, load_config, parse_config
from kpi_pipeline.settings import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "config" / "kpi.yaml"


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kpi.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_absent_default_kpi_yaml_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "config" / "kpi.yaml"
    with caplog.at_level("WARNING", logger="kpi_pipeline.config"):
        assert load_config(missing) == load_config(missing) == KpiConfig()
    assert caplog.messages == [
        f"no kpi.yaml at {missing}: using the built-in defaults (set KPI_CONFIG to require a file)"
    ]


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


# --- strict numbers, bounds and dates (issue 9) -------------------------------------------------

# Every numeric key of the config tree: (key path, "float" or "int", lower bound, inclusive?, upper bound).
NUMERIC_KEYS: list[tuple[str, str, float, bool, float]] = [
    ("cost_per_ticket", "float", 0, True, 1e9),
    ("loaded_hourly_cost", "float", 0, True, 1e9),
    ("windows.completion", "float", 0, False, 8760),
    ("windows.fallback_ticket", "float", 0, True, 8760),
    ("windows.deflection", "float", 0, True, 8760),
    ("windows.retry", "float", 0, False, 8760),
    ("activation_days", "float", 0, False, 3660),
    ("scorecard.threshold", "float", 0, True, 100),
    ("scorecard.alpha", "float", 0, False, 1),
    ("reliability.slo", "float", 0, True, 1),
    ("quality.quarantine_rate_error", "float", 0, True, 1),
    ("quality.quarantine_rate_warn", "float", 0, True, 1),
    ("quality.volume_tolerance", "float", 0, True, 100),
    ("quality.volume_window", "int", 1, True, 366),
    ("quality.telemetry_max_age_hours", "float", 0, False, 8760),
    ("quality.tickets_max_age_hours", "float", 0, False, 8760),
    ("quality.unknown_requester_share", "float", 0, True, 1),
    ("automation.daily_hour_utc", "int", 0, True, 23),
    ("workflows.w.minutes_saved_per_completion", "float", 0, True, 525600),
    ("workflows.w.latency_budget_ms", "float", 0, True, 31536000000),
]


def nested_yaml(key: str, value: str) -> str:
    """YAML setting the dotted ``key`` to the YAML scalar ``value``."""
    parts = key.split(".")
    return "".join(f"{'  ' * depth}{part}:\n" for depth, part in enumerate(parts[:-1])) + (
        f"{'  ' * (len(parts) - 1)}{parts[-1]}: {value}\n"
    )


def numeric_fields(model: type, prefix: str = "") -> set[str]:
    """Dotted paths of every int/float field under ``model`` (workflows as ``workflows.w``)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if path == "workflows":
            out |= numeric_fields(Workflow, f"{path}.w.")
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out |= numeric_fields(info.annotation, f"{path}.")
        elif info.annotation in (int, float, "int", "float", float | None):
            out.add(path)
    return out


def test_the_strictness_table_covers_every_numeric_key() -> None:
    assert numeric_fields(KpiConfig) == {key for key, *_ in NUMERIC_KEYS}


def bad_number_cases() -> list[tuple[str, str, str]]:
    """(key, YAML value, expected reason) for every numeric key and every kind of bad value."""
    cases = []
    for key, kind, low, inclusive, high in NUMERIC_KEYS:
        noun = "a valid number" if kind == "float" else "a valid integer"
        cases += [
            (key, "true", f"Input should be {noun}, got true"),
            (key, "'25'", f"Input should be {noun}, got '25' (write numbers without quotes)"),
            (key, "1e400", f"Input should be {noun}, got '1e400' (write numbers without quotes)"),
            (key, "1" + "0" * 30, f"Input should be less than or equal to {high:.0f}, got 1{'0' * 30}"),
            (key, "-1", f"Input should be greater than {'or equal to ' if inclusive else ''}{low:g}, got -1"),
        ]
        if kind == "float":
            cases += [
                (key, "1.0e+300", f"Input should be less than or equal to {high:.0f}, got 1e+300"),
                (key, ".inf", "Input should be a finite number, got .inf"),
                (key, "-.inf", "Input should be a finite number, got -.inf"),
                (key, ".nan", "Input should be a finite number, got .nan"),
            ]
        else:
            cases += [
                (key, "1.0e+300", "Input should be a valid integer, got 1e+300"),
                (key, ".inf", "Input should be a valid integer, got .inf"),
                (key, ".nan", "Input should be a valid integer, got .nan"),
                (key, "7.0", "Input should be a valid integer, got 7.0"),
            ]
    return cases


@pytest.mark.parametrize(("key", "value", "why"), bad_number_cases())
def test_every_numeric_key_is_strict_finite_and_bounded(
    tmp_path: Path, key: str, value: str, why: str
) -> None:
    path = write_yaml(tmp_path, nested_yaml(key, value))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: invalid configuration: {key}: {why}"


def value_at(config: KpiConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


@pytest.mark.parametrize(("key", "kind", "low", "inclusive", "high"), NUMERIC_KEYS)
def test_numeric_keys_accept_their_bounds_and_ints_for_floats(
    tmp_path: Path, key: str, kind: str, low: float, inclusive: bool, high: float
) -> None:
    accepted = ([low] if inclusive else []) + [int(high)]
    if key == "quality.quarantine_rate_warn":  # may not exceed quarantine_rate_error (0.05)
        accepted = [0, 0.05]
    if key == "quality.quarantine_rate_error":  # may not be below quarantine_rate_warn (0.005)
        accepted = [0.005, 1]
    for given in accepted:
        config = load_config(write_yaml(tmp_path, nested_yaml(key, str(given))))
        assert value_at(config, key) == given
        assert type(value_at(config, key)) is (float if kind == "float" else int)


def test_the_issue_reproductions_fail_naming_the_key(tmp_path: Path) -> None:
    cases = {
        "event_aliases:\n  - {from: task_done, to: task_completed, valid_from: 2025-02-30}\n": (
            "event_aliases.0.valid_from: '2025-02-30' is not a calendar date (day is out of range for month)"
        ),
        "windows: {completion: .inf}\n": "windows.completion: Input should be a finite number, got .inf",
        "windows: {completion: 1.0e+300}\n": (
            "windows.completion: Input should be less than or equal to 8760, got 1e+300"
        ),
        "cost_per_ticket: true\n": "cost_per_ticket: Input should be a valid number, got true",
        "cost_per_ticket: '25'\n": (
            "cost_per_ticket: Input should be a valid number, got '25' (write numbers without quotes)"
        ),
        "activation_days: 99999999999999999999999999999999999999999999999999\n": (
            "activation_days: Input should be less than or equal to 3660, got a 50-digit number"
        ),
    }
    for text, problem in cases.items():
        path = write_yaml(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == f"{path}: invalid configuration: {problem}"


@pytest.mark.parametrize("key", ["valid_from", "valid_until"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2025-02-30", "'2025-02-30' is not a calendar date (day is out of range for month)"),
        ("'2025-02-30'", "'2025-02-30' is not a calendar date (day is out of range for month)"),
        ("2025-13-01", "'2025-13-01' is not a calendar date (month must be in 1..12)"),
        ("20250203", "expected a date like 2025-01-31, got 20250203"),
        ("true", "expected a date like 2025-01-31, got true"),
        (".inf", "expected a date like 2025-01-31, got .inf"),
        ("2025-2-3", "expected a date like 2025-01-31, got '2025-2-3'"),
        ("2025-02-03T10:00:00Z", "expected a date like 2025-01-31, got '2025-02-03T10:00:00Z'"),
        ("0001-01-01", "0001-01-01 is outside 1900-01-01 to 2200-12-31"),
        ("9999-12-31", "9999-12-31 is outside 1900-01-01 to 2200-12-31"),
    ],
)
def test_alias_dates_are_calendar_dates_in_range(tmp_path: Path, key: str, value: str, why: str) -> None:
    path = write_yaml(
        tmp_path, f"event_aliases:\n  - from: task_done\n    to: task_completed\n    {key}: {value}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: invalid configuration: event_aliases.0.{key}: {why}"


def test_unquoted_and_quoted_alias_dates_load_alike(tmp_path: Path) -> None:
    for text in ("valid_from: 2026-02-03\n    valid_until: 2026-02-09", "valid_from: '2026-02-03'"):
        config = load_config(
            write_yaml(tmp_path, f"event_aliases:\n  - from: a\n    to: task_completed\n    {text}\n")
        )
        assert config.event_aliases[0].valid_from == dt.date(2026, 2, 3)
    assert config.event_aliases[0].valid_until is None
    assert load_config(
        write_yaml(tmp_path, "event_aliases:\n  - {from: a, to: task_completed, valid_until: 2200-12-31}\n")
    ).event_aliases[0].valid_until == dt.date(2200, 12, 31)


def test_yaml_dates_in_text_keys_stay_text(tmp_path: Path) -> None:
    # A bare date is text wherever text is wanted (a workflow topic, a mapping constant).
    text = (
        "workflows:\n  w:\n    topics: [2025-01-01]\n    description: 2025-02-30\n"
        "sources:\n  tickets:\n"
        "    fields: {ticket_id: Id, created_at: Created, updated_at: Updated, status: State}\n"
        "    constants: {topic: 2025-02-30}\n"
    )
    config = load_config(write_yaml(tmp_path, text))
    assert config.workflows["w"].topics == ("2025-01-01",)
    assert config.workflows["w"].description == "2025-02-30"
    assert config.sources.tickets is not None and config.sources.tickets.constants == {"topic": "2025-02-30"}


def test_alias_target_must_be_a_canonical_event_type() -> None:
    message = error_of({"event_aliases": [{"from": "task_done", "to": "task_complete"}]})
    assert message == (
        "kpi.yaml: invalid configuration: event_aliases.0.to: 'task_complete' is not a canonical event type; "
        "one of task_started, task_step, task_completed, task_error, task_fallback, feature_used, "
        "help_viewed, survey_response"
    )


def test_several_problems_are_one_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "cost_per_ticket: true\nwindows:\n  completion: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: invalid configuration: cost_per_ticket: Input should be a valid number, got true; "
        "windows.completion: Input should be greater than 0, got -1"
    )


def test_yaml_errors_are_one_line_with_their_position(tmp_path: Path) -> None:
    cases = {
        "workflows:\n  export: [unclosed\n": "line 3, column 1: expected ',' or ']', but got '<stream end>'",
        "windows:\n  completion: 12\nwindows:\n  deflection: 5\n": (
            "line 3, column 1: key 'windows' appears twice in one mapping"
        ),
        "cost_per_ticket: !!int abc\n": "invalid literal for int() with base 10: 'abc'",
    }
    for text, problem in cases.items():
        path = write_yaml(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == f"{path}: not valid YAML: {problem}"


def test_a_yaml_merge_is_not_a_repeated_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "windows: {<<: {completion: 12, deflection: 5}, deflection: 6}\n")
    windows = load_config(path).windows
    assert (windows.completion, windows.deflection) == (12.0, 6.0)


# --- KPI_CONFIG must exist when it is set ---------------------------------------------------------


def test_a_required_config_that_is_missing_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kpi.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, required=True)
    assert str(info.value) == f"{missing}: configuration file not found (named by KPI_CONFIG)"
    assert load_config(missing) == KpiConfig()  # the default location may be absent


def test_a_config_path_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be read: Is a directory$") as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: ")


def test_settings_require_the_config_only_when_kpi_config_names_it(tmp_path: Path) -> None:
    default = Settings.from_env({"KPI_DATA_DIR": str(tmp_path)})
    assert (default.config_path, default.config_required) == (
        tmp_path.resolve() / "config" / "kpi.yaml",
        False,
    )
    empty = Settings.from_env({"KPI_DATA_DIR": str(tmp_path), "KPI_CONFIG": ""})
    assert empty.config_required is False
    named = Settings.from_env({"KPI_DATA_DIR": str(tmp_path), "KPI_CONFIG": str(tmp_path / "other.yaml")})
    assert (named.config_path, named.config_required) == (tmp_path / "other.yaml", True)
    with pytest.raises(ConfigError, match="other.yaml: configuration file not found"):
        load_config(named.config_path, required=named.config_required)


def settings_error(environ: dict[str, str]) -> str:
    """The one-line ConfigError that reading these environment variables raises."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environ)
    return str(info.value)


@pytest.mark.parametrize("value", ["bogus", "2025-02-30", "0001-01-01"])
def test_a_bad_start_date_is_a_config_error(tmp_path: Path, value: str) -> None:
    assert settings_error({"KPI_DATA_DIR": str(tmp_path), "KPI_START_DATE": value}) == (
        f"KPI_START_DATE must be a date from 1900-01-01 to 2200-12-31 like 2025-01-01, got {value!r}"
    )


@pytest.mark.parametrize("folder", ["kpi[prod]", "kpi*", "kpi?"])
def test_a_data_dir_duckdb_would_read_as_a_pattern_is_a_config_error(tmp_path: Path, folder: str) -> None:
    assert settings_error({"KPI_DATA_DIR": str(tmp_path / folder)}) == (
        "KPI_DATA_DIR must not contain *, ? or [ (DuckDB reads the staged files' paths as patterns), "
        f"got {str(tmp_path / folder)!r}"
    )


def test_an_edited_config_is_read_again_even_with_the_same_size_and_time(tmp_path: Path) -> None:
    """Parsed configs are cached by content: an edit is seen at once, whatever the file's clock says."""
    path = tmp_path / "kpi.yaml"
    path.write_text("cost_per_ticket: 25\n", encoding="utf-8")
    stamp = path.stat().st_mtime_ns
    assert load_config(path).cost_per_ticket == 25.0
    path.write_text("cost_per_ticket: 31\n", encoding="utf-8")  # same size
    os.utime(path, ns=(stamp, stamp))  # and the same modification time
    assert load_config(path).cost_per_ticket == 31.0
    assert load_config(path) is load_config(path)  # unchanged content: parsed once


@pytest.mark.parametrize("value", ["0", "-3", "ten", "367", "2.5", "²"])
def test_a_bad_days_per_run_is_a_config_error(tmp_path: Path, value: str) -> None:
    assert settings_error({"KPI_DATA_DIR": str(tmp_path), "KPI_MAX_DAYS_PER_RUN": value}) == (
        f"KPI_MAX_DAYS_PER_RUN must be a whole number of days from 1 to 366, got {value!r}"
    )


WAREHOUSE = {"KPI_WAREHOUSE_URL": "postgresql+psycopg://kpi@db.example/kpi"}


def test_an_object_storage_data_dir_needs_its_warehouse_named() -> None:
    assert settings_error({"KPI_DATA_DIR": "s3://kpi-bucket/data"}) == (
        "KPI_DATA_DIR is in object storage ('s3://kpi-bucket/data'): set KPI_WAREHOUSE_URL too (the "
        "default SQLite warehouse is a file under a local data folder)"
    )


def test_an_object_storage_data_dir_is_a_url_path_and_kpi_yaml_lies_in_it() -> None:
    settings = Settings.from_env({"KPI_DATA_DIR": "s3://kpi-bucket/data/", **WAREHOUSE})
    assert (str(settings.data_dir), str(settings.config_path), str(settings.staging_dir)) == (
        "s3://kpi-bucket/data",
        "s3://kpi-bucket/data/config/kpi.yaml",
        "s3://kpi-bucket/data/staging",
    )
    assert not isinstance(settings.data_dir, Path)


def test_a_file_url_is_a_local_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"KPI_DATA_DIR": f"file://{tmp_path}"})
    assert settings.data_dir == tmp_path.resolve()
    assert settings.warehouse_url == f"sqlite:///{tmp_path.resolve() / 'warehouse' / 'kpi.db'}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example/kpi", "unsupported storage ftp:// (a local folder, or s3://, gs://, az://)"),
        ("s3://", "name a bucket (or container), e.g. s3://my-bucket/kpi"),
    ],
)
def test_an_unusable_storage_url_is_a_config_error(url: str, message: str) -> None:
    assert settings_error({"KPI_DATA_DIR": url, **WAREHOUSE}) == f"KPI_DATA_DIR: {url!r}: {message}"


def test_a_store_whose_package_is_missing_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    assert settings_error({"KPI_DATA_DIR": "gs://kpi/data", **WAREHOUSE}) == (
        "KPI_DATA_DIR: 'gs://kpi/data': gs:// needs the gcsfs package (pip install 'kpi_pipeline[gcs]')"
    )
    assert settings_error({"KPI_DATA_DIR": "/tmp", "KPI_CONFIG": "gs://kpi/kpi.yaml"}) == (
        "KPI_CONFIG: 'gs://kpi/kpi.yaml': gs:// needs the gcsfs package (pip install 'kpi_pipeline[gcs]')"
    )


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        (
            "{SEV5: 1}",
            "reliability.outage_weight.SEV5.[key]: Input should be 'SEV1', 'SEV2', 'SEV3' or 'SEV4', "
            "got 'SEV5'",
        ),
        ("{SEV1: 1.5}", "reliability.outage_weight.SEV1: Input should be less than or equal to 1, got 1.5"),
        (
            "{SEV2: -0.1}",
            "reliability.outage_weight.SEV2: Input should be greater than or equal to 0, got -0.1",
        ),
        (
            "{SEV3: '0.3'}",
            "reliability.outage_weight.SEV3: Input should be a valid number, got '0.3' "
            "(write numbers without quotes)",
        ),
    ],
)
def test_outage_weights_are_shares_of_known_severities(tmp_path: Path, weights: str, reason: str) -> None:
    path = tmp_path / "kpi.yaml"
    path.write_text(f"reliability:\n  outage_weight: {weights}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: invalid configuration: {reason}"


# --- support and scorecard.alpha (issue 15) ----------------------------------------------------


def test_support_keys_load_with_times_as_minutes_and_defaults() -> None:
    config = parse_config(
        {
            "support": {
                "cost_per_ticket_by_channel": {"phone": 40, "chat": 12.5},
                "business_hours": {
                    "timezone": "Europe/Berlin",
                    "start": "09:00",
                    "end": "24:00",
                    "holidays": ["2026-12-24"],
                    "country": "DE-BY",
                },
                "sla": {"first_reply": {"urgent": 60}, "resolution": {"low": 5760}},
            }
        }
    )
    hours = config.support.business_hours
    assert hours is not None
    assert (hours.start, hours.end, hours.days) == (540, 1440, ("mon", "tue", "wed", "thu", "fri"))
    assert hours.holidays == (dt.date(2026, 12, 24),) and hours.country == "DE-BY"
    assert config.support.cost_per_ticket_by_channel == {"phone": 40.0, "chat": 12.5}
    assert config.support.sla.first_reply == {"urgent": 60.0} and config.support.sla.resolution == {
        "low": 5760.0
    }
    default = parse_config({})
    assert default.support.business_hours is None and default.support.sla.first_reply == {}
    assert default.scorecard.alpha == 0.05


@pytest.mark.parametrize(
    ("support", "message"),
    [
        (
            {"business_hours": {"timezone": "Europe/Berln", "start": "09:00", "end": "17:00"}},
            "support.business_hours.timezone: 'Europe/Berln' is not an IANA time zone",
        ),
        (
            {"business_hours": {"timezone": "UTC", "start": 540, "end": "17:00"}},
            'support.business_hours.start: expected a time like "09:00" (quoted), got 540',
        ),
        (
            {"business_hours": {"timezone": "UTC", "start": "09:60", "end": "17:00"}},
            "support.business_hours.start: '09:60' is not a time of day",
        ),
        (
            {"business_hours": {"timezone": "UTC", "start": "17:00", "end": "09:00"}},
            "support.business_hours: start is not before end",
        ),
        (
            {"business_hours": {"timezone": "UTC", "start": "09:00", "end": "17:00", "days": ["monday"]}},
            "support.business_hours.days.0",
        ),
        (
            {"business_hours": {"timezone": "UTC", "start": "09:00", "end": "17:00", "country": "XX"}},
            "support.business_hours.country: 'XX'",
        ),
        (
            {"business_hours": {"timezone": "UTC", "start": "09:00", "end": "17:00", "holidays": ["24.12."]}},
            "support.business_hours.holidays.0",
        ),
        (
            {"sla": {"first_reply": {"Urgent": 60}}},
            "support.sla.first_reply: 'Urgent' is not a ticket priority",
        ),
        ({"sla": {"resolution": {"low": 0}}}, "support.sla.resolution.low"),
        ({"cost_per_ticket_by_channel": {"phone": -1}}, "support.cost_per_ticket_by_channel.phone"),
        ({"business_hour": {}}, "support.business_hour"),
    ],
)
def test_bad_support_keys_fail_at_load_naming_the_key(support: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"support": support})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
