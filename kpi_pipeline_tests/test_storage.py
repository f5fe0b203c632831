"""The data root's location rules (no store needed): which text is a local folder and which a URL,
how names in the quarantine map back to files, and where a mapping's glob is taken literally."""

from __future__ import annotations

from pathlib import Path

import pytest
from upath import UPath

from kpi_pipeline.sources.files import split_pattern
from kpi_pipeline.storage import glob_files, list_tree, location, named


def test_a_local_folder_stays_a_pathlib_path_and_a_url_becomes_a_url_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert location("data") == tmp_path / "data"
    assert type(location("data")) is type(tmp_path)
    remote = location("s3://bucket/kpi/")
    assert isinstance(remote, UPath) and not isinstance(remote, Path)
    assert (str(remote), remote.protocol) == ("s3://bucket/kpi", "s3")


def test_names_map_back_to_files_inside_and_outside_the_data_root() -> None:
    root = location("s3://bucket/kpi")
    assert str(named(root, "raw/tickets/a.csv")) == "s3://bucket/kpi/raw/tickets/a.csv"
    assert str(named(root, "s3://other/exports/b.csv")) == "s3://other/exports/b.csv"
    assert named(root, "/srv/exports/c.csv") == Path("/srv/exports/c.csv")
    assert named(Path("/data"), "raw/tickets/a.csv") == Path("/data/raw/tickets/a.csv")


def test_a_mapping_path_is_literal_up_to_its_first_folder_with_a_pattern() -> None:
    root = Path("/data")
    assert split_pattern(root, "raw/x/*.csv") == (root, "raw/x/*.csv")
    assert split_pattern(root, "/srv/[ab]/exports/*/y.csv") == (Path("/srv"), "[ab]/exports/*/y.csv")
    assert split_pattern(root, "/srv/exports/f.csv") == (Path("/srv/exports/f.csv"), "")
    base, rest = split_pattern(root, "s3://bucket/exports/**/*.csv")
    assert (str(base), rest) == ("s3://bucket/exports", "**/*.csv")
    base, rest = split_pattern(root, "s3://bucket/*.csv")
    assert (str(base), rest) == ("s3://bucket/", "*.csv")  # a bucket's root ends in /


def test_listing_a_local_tree_and_a_glob_take_the_root_literally(tmp_path: Path) -> None:
    root = tmp_path / "data[1]"
    for name in ("a/x.csv", "a/b/y.csv", "a/b/.hidden.csv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("n\n1\n")
    assert [f.path.relative_to(root).as_posix() for f in list_tree(root / "a")] == [
        "a/b/.hidden.csv",
        "a/b/y.csv",
        "a/x.csv",
    ]
    assert {f.size for f in list_tree(root)} == {4}
    assert list_tree(root / "absent") == []
    assert [p.relative_to(root).as_posix() for p in glob_files(root, "a/**/*.csv")] == [
        "a/b/y.csv",
        "a/x.csv",
    ]
