"""Find the raw files of a source: readable ones in path order, the rest reported."""

from __future__ import annotations

from pathlib import Path

from kpi_pipeline.ingest.raw_files import file_format

IN_PROGRESS_SUFFIXES: tuple[str, ...] = (".tmp", ".part")


def list_files(folder: Path, extensions: tuple[str, ...], recursive: bool) -> tuple[list[Path], list[Path]]:
    """(files to read, files ignored) under ``folder``, both sorted by path.

    Only the contract's extensions are read; anything else (including files
    still being written, ``*.tmp``/``*.part``, and files in subfolders when
    not ``recursive``) is ignored and reported.
    """
    if not folder.is_dir():
        return [], []
    candidates = sorted(p for p in folder.rglob("*") if p.is_file())
    readable, ignored = [], []
    for path in candidates:
        name = path.name.lower()
        nested = path.parent != folder and not recursive
        if nested or path.name.startswith(".") or file_format(path) is None or not name.endswith(extensions):
            ignored.append(path)
        else:
            readable.append(path)
    return readable, ignored
