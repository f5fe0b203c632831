"""The docs stay true: each table's column reference in docs/tables.md is the one tables.py
generates, the BI grant names every public KPI table, and every relative link resolves.

After changing tables.py, ``python -m kpi_pipeline_tests.test_docs`` rewrites the generated
blocks of docs/tables.md (a new table needs its pair of markers added by hand first).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import pytest

from kpi_pipeline.tables import TABLES, reference_markdown

REPO = Path(__file__).parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
TABLES_DOC = DOCS / "tables.md"
MARKER = re.compile(
    r"<!-- table-reference:([a-z0-9_]+):start -->\n(.*?)<!-- table-reference:\1:end -->", re.S
)


def generated_blocks() -> dict[str, str]:
    """The generator's reference cut at each table's heading: table name → its block."""
    text = reference_markdown()
    blocks = {}
    for chunk in re.split(r"(?m)^(?=#### `)", text):
        if chunk.strip():
            name = re.match(r"#### `([^`]+)`", chunk).group(1)  # type: ignore[union-attr]
            blocks[name] = chunk.strip("\n") + "\n"
    assert "\n".join(blocks.values()) == text, "the reference cut into blocks must join back whole"
    return blocks


def synced(text: str) -> str:
    """``text`` with every table's block between its markers replaced by the generator's."""
    blocks = generated_blocks()

    def block(m: re.Match[str]) -> str:
        name = m.group(1)
        body = blocks.get(name, m.group(2))
        return f"<!-- table-reference:{name}:start -->\n{body}<!-- table-reference:{name}:end -->"

    return MARKER.sub(block, text)


def test_each_table_in_docs_has_the_generated_column_reference() -> None:
    text = TABLES_DOC.read_text(encoding="utf-8")
    shown = {m.group(1): m.group(2) for m in MARKER.finditer(text)}
    blocks = generated_blocks()
    assert sorted(shown) == sorted(blocks), (
        "docs/tables.md must hold one <!-- table-reference:<table>:start/end --> pair per table of "
        f"tables.py; missing: {sorted(set(blocks) - set(shown))}, unknown: {sorted(set(shown) - set(blocks))}"
    )
    stale = [name for name, block in blocks.items() if shown[name] != block]
    assert not stale, (
        f"docs/tables.md: the column reference of {', '.join(stale)} differs from tables.py; "
        "run `python -m kpi_pipeline_tests.test_docs` to rewrite it"
    )


def test_docs_list_every_warehouse_table_with_its_grain() -> None:
    text = TABLES_DOC.read_text(encoding="utf-8")
    for name, spec in TABLES.items():
        assert f"#### `{name}` — grain ({', '.join(spec.grain)})" in text


def test_the_bi_grant_names_every_public_kpi_table_and_no_private_one() -> None:
    text = (DOCS / "warehouse.md").read_text(encoding="utf-8")
    grant = re.search(r"GRANT SELECT ON (kpi\..*?)\s+TO kpi_bi;", text, re.S)
    assert grant is not None
    granted = set(re.findall(r"kpi\.([a-z0-9_]+)", grant.group(1)))
    assert granted == {name for name, spec in TABLES.items() if not spec.private}


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of ``path``'s headings (outside code blocks), numbered as GitHub numbers repeats."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    """The relative link targets of ``path`` (outside code blocks and code spans)."""
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


DOC_FILES = [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in links(doc):
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(REPO.resolve())}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


if __name__ == "__main__":
    before = TABLES_DOC.read_text(encoding="utf-8")
    after = synced(before)
    TABLES_DOC.write_text(after, encoding="utf-8")
    print(f"{TABLES_DOC.relative_to(REPO)}: {'rewritten' if after != before else 'already current'}")
    sys.exit(0)
