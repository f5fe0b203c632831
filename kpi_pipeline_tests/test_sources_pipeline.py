"""Sources are independent: a data root with only some sources runs what those feed, skips the rest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kpi_pipeline.cli import main
from kpi_pipeline.config import parse_config
from kpi_pipeline.sample_data import generate_dataset
from kpi_pipeline.sources.files import export_files
from kpi_pipeline.warehouse import Warehouse
from kpi_pipeline_tests.support import START, cli_on


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cli_on(tmp_path, monkeypatch)
    return tmp_path


def _warehouse(root: Path) -> Warehouse:
    return Warehouse(f"sqlite:///{root / 'warehouse' / 'kpi.db'}")


def test_incidents_only_materializes_incident_tables_and_skips_the_rest(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {
            "incident_id": "I1",
            "started_at": "2025-01-06T10:00:00Z",
            "resolved_at": "2025-01-06T11:30:00Z",
            "severity": "sev2",
            "service": "api",
            "affected_workflows": ["data_export"],
        },
        {
            "incident_id": "I2",
            "started_at": "2025-01-08T09:00:00Z",
            "detected_at": "2025-01-08T09:20:00Z",
            "severity": "P1",
            "service": "web",
        },
    ]
    folder = cli_env / "raw" / "incidents"
    folder.mkdir(parents=True)
    (folder / "export.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["materialize"]) == 0
    out = capsys.readouterr().out
    assert "skipping telemetry_events: no telemetry data" in out
    assert "skipping support_tickets: no tickets data" in out
    assert "materializing no daily partitions in 2 runs" in out
    warehouse = _warehouse(cli_env)
    incidents = warehouse.read("kpi_incidents").set_index("incident_id")
    # I1 resolved after 90 minutes; I2 is open (no telemetry: its window is empty) and took 20 min to detect.
    assert incidents.loc["I1", "minutes_to_resolve"] == 90.0
    assert incidents.loc["I2", "minutes_to_detect"] == 20.0
    assert incidents["attempts_during"].tolist() == [0, 0]
    weekly = warehouse.read("kpi_reliability_weekly")
    assert sorted(zip(weekly["week"], weekly["severity"], weekly["incidents"], strict=True)) == [
        ("2025-01-06", "SEV1", 1),
        ("2025-01-06", "SEV2", 1),
    ]
    assert warehouse.count("kpi_engagement_daily") == 0


def test_telemetry_only_materializes_engagement_and_retention(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_dataset(cli_env, days=3, seed=4, start=START, users=30)
    shutil.rmtree(cli_env / "raw" / "tickets")
    shutil.rmtree(cli_env / "raw" / "incidents")
    assert main(["materialize"]) == 0
    out = capsys.readouterr().out
    assert "skipping incidents: no incidents data" in out and "skipping kpi_incidents" in out
    warehouse = _warehouse(cli_env)
    assert warehouse.count("kpi_engagement_daily") == 3
    assert warehouse.count("kpi_retention_weekly") > 0
    assert warehouse.count("kpi_incidents") == 0


def test_a_data_root_with_glob_characters_still_finds_its_exports(tmp_path: Path) -> None:
    root = tmp_path / "team [a]"
    (root / "raw" / "tickets").mkdir(parents=True)
    (root / "raw" / "tickets" / "t.csv").write_text("ticket_id\n1\n")
    (root / "exports").mkdir()
    (root / "exports" / "z-1.csv").write_text("Id\n1\n")
    mapped = parse_config({"sources": {"tickets": {"preset": "zendesk_tickets", "path": "exports/z-*.csv"}}})
    assert export_files(root, "tickets", None) == [root / "raw" / "tickets" / "t.csv"]
    assert export_files(root, "tickets", mapped.sources.tickets) == [root / "exports" / "z-1.csv"]
