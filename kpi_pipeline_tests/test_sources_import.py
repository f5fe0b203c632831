"""``kpi-pipeline import --source telemetry FILE``: a many-day export split into daily folders."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpi_pipeline.cli import main
from kpi_pipeline.config import parse_config
from kpi_pipeline.ingest.telemetry import stage_telemetry_partition
from kpi_pipeline.sources.importer import TelemetryImportError, import_name, import_telemetry

ORDERS_CSV = """order,customer,placed
o1,c1,2026-03-01 23:30
o2,c2,2026-03-02 00:15
o3,c1,not a date
o4,c3,2026-03-02 10:00
"""

ORDERS_CONFIG = """
sources:
  telemetry:
    preset: purchases
    format: csv
    timestamp_format: "%Y-%m-%d %H:%M"
    timezone: America/New_York
    fields:
      event_id: order
      occurred_at: placed
      user_id: customer
      account_id: customer
"""


def orders_mapping() -> dict[str, Any]:
    return yaml.safe_load(ORDERS_CONFIG)["sources"]["telemetry"]


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    (root / "config").mkdir(parents=True)
    (root / "config" / "kpi.yaml").write_text(ORDERS_CONFIG, encoding="utf-8")
    monkeypatch.setenv("KPI_DATA_DIR", str(root))
    monkeypatch.delenv("KPI_CONFIG", raising=False)
    return root


def day_files(root: Path) -> dict[str, str]:
    """Every file under raw/telemetry (relative path → text)."""
    base = root / "raw" / "telemetry"
    return {p.relative_to(base).as_posix(): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


def test_split_by_utc_date_keeps_header_and_original_lines(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(ORDERS_CSV, encoding="utf-8")
    assert main(["import", "--source", "telemetry", str(export)]) == 1  # one row has no date
    # New York is UTC-5 in early March: 23:30 on 1 March is 04:30 UTC on 2 March
    assert day_files(data_root) == {
        "date=2026-03-02/orders.csv": (
            "order,customer,placed\no1,c1,2026-03-01 23:30\no2,c2,2026-03-02 00:15\no4,c3,2026-03-02 10:00\n"
        ),
    }
    captured = capsys.readouterr()
    assert (
        "imported 3 rows" in captured.out and "as orders.csv into 1 day folder(s) 2026-03-02" in captured.out
    )
    assert "1 row(s) have no parseable occurred_at and were not imported: lines 4" in captured.err

    mapping = parse_config({"sources": {"telemetry": orders_mapping()}}).sources.telemetry
    staged = stage_telemetry_partition(data_root, dt.date(2026, 3, 2), (), mapping)
    assert staged.events["event_id"].tolist() == ["o1", "o2", "o4"]
    assert staged.events["feature"].tolist() == ["purchase"] * 3


def test_reimport_replaces_its_files_and_removes_days_it_no_longer_has(
    data_root: Path, tmp_path: Path
) -> None:
    mapping = parse_config({"sources": {"telemetry": orders_mapping()}}).sources.telemetry
    export = tmp_path / "orders.csv"
    export.write_text(ORDERS_CSV.replace("2026-03-02 10:00", "2026-03-05 10:00"), encoding="utf-8")
    first = import_telemetry(export, data_root, mapping)
    assert first.rows_by_day == {"2026-03-02": 2, "2026-03-05": 1}
    (data_root / "raw" / "telemetry" / "date=2026-03-05" / "other.csv").write_text("kept\n")

    export.write_text(
        ORDERS_CSV.replace("o2,c2,2026-03-02 00:15", "o2,c2,2026-03-03 00:15"), encoding="utf-8"
    )
    second = import_telemetry(export, data_root, mapping)
    assert second.rows_by_day == {"2026-03-02": 2, "2026-03-03": 1}
    assert [p.relative_to(data_root).as_posix() for p in second.removed] == [
        "raw/telemetry/date=2026-03-05/orders.csv"
    ]
    files = day_files(data_root)
    assert sorted(files) == [
        "date=2026-03-02/orders.csv",
        "date=2026-03-03/orders.csv",
        "date=2026-03-05/other.csv",  # another import's file is left alone
    ]
    assert files["date=2026-03-02/orders.csv"].splitlines() == [
        "order,customer,placed",
        "o1,c1,2026-03-01 23:30",
        "o4,c3,2026-03-02 10:00",
    ]
    assert second.unplaced_lines == [4]


def test_name_option_and_native_jsonl_without_a_mapping(tmp_path: Path) -> None:
    export = tmp_path / "dump.jsonl.gz"
    events = [
        {"event_id": "e1", "occurred_at": "2026-03-01T10:00:00Z"},
        {"event_id": "e2", "occurred_at": "2026-03-02T01:00:00+02:00"},  # 23:00 UTC on 1 March
        {"event_id": "e3", "occurred_at": "2026-03-02T09:00:00"},  # naive = UTC
    ]
    export.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode()))
    assert import_name(export) == "dump"
    result = import_telemetry(export, tmp_path, None, name="backfill")
    assert result.name == "backfill.jsonl"
    assert result.rows_by_day == {"2026-03-01": 2, "2026-03-02": 1}
    lines = (tmp_path / "raw" / "telemetry" / "date=2026-03-01" / "backfill.jsonl").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == ["e1", "e2"]


def test_nothing_placeable_writes_nothing(tmp_path: Path) -> None:
    export = tmp_path / "bad.jsonl"
    export.write_text('{"event_id": "e1", "occurred_at": "yesterday"}\nnot json\n')
    with pytest.raises(TelemetryImportError, match="no row has a parseable occurred_at, nothing imported"):
        import_telemetry(export, tmp_path, None)
    assert not (tmp_path / "raw").exists()


def test_cli_refuses_exports_that_need_no_import_and_odd_names(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(ORDERS_CSV, encoding="utf-8")
    assert main(["import", "--source", "tickets", str(export)]) == 2
    assert "tickets exports need no import: set sources.tickets.path in kpi.yaml" in capsys.readouterr().err
    assert main(["import", "--source", "telemetry", str(export), "--name", "../escape"]) == 2
    assert "give a plain file name" in capsys.readouterr().err
    assert main(["import", "--source", "telemetry", str(tmp_path / "missing.csv")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert not (data_root / "raw").exists()


def test_check_source_prints_the_reconciliation_of_a_mapped_day(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(ORDERS_CSV, encoding="utf-8")
    main(["import", "--source", "telemetry", str(export)])
    capsys.readouterr()
    assert main(["check-source", "telemetry", "--date", "2026-03-02", "--rows", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == "telemetry read as its kpi.yaml mapping from 1 file(s): raw/telemetry/date=2026-03-02/orders.csv"
    )
    assert out[1] == (
        "3 raw rows = 3 staged + 0 older versions + 0 quarantined (0 more left out by the mapping's filters)"
    )
    assert out[3].split()[:3] == ["o1", "2026-03-02", "04:30:00+00:00"]  # the first staged row
    assert main(["check-source", "tickets"]) == 0
    assert capsys.readouterr().out.startswith(
        "tickets read as the native contract from 0 file(s): "
        f"none (relative paths resolve against {data_root})"
    )
    assert main(["check-source", "telemetry"]) == 2
    assert "pass --date YYYY-MM-DD" in capsys.readouterr().err
