"""The README stays true: its column reference is the one tables.py generates."""

from __future__ import annotations

import re
from pathlib import Path

from kpi_pipeline.tables import TABLES, reference_markdown

README = Path(__file__).parents[1] / "README.md"


def test_readme_column_reference_matches_tables() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- table-reference:start -->\n(.*)<!-- table-reference:end -->", text, re.S)
    assert block is not None
    assert block.group(1) == reference_markdown()


def test_readme_lists_every_warehouse_table_with_its_grain() -> None:
    text = README.read_text(encoding="utf-8")
    for name, spec in TABLES.items():
        assert f"#### `{name}` — grain ({', '.join(spec.grain)})" in text
