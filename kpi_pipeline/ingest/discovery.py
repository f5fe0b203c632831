"""Find the raw files of a source: readable ones in path order, the rest reported."""

from __future__ import annotations

import datetime as dt

from kpi_pipeline.storage import StoragePath, list_tree

IN_PROGRESS_SUFFIXES: tuple[str, ...] = (".tmp", ".part")


def list_files(
    folder: StoragePath, extensions: tuple[str, ...], recursive: bool
) -> tuple[list[StoragePath], list[StoragePath]]:
    """(files to read, files ignored) under ``folder``, both sorted by path.

    Only files ending in one of ``extensions`` are read; anything else (including
    files still being written, ``*.tmp``/``*.part``, hidden files, and files in
    subfolders when not ``recursive``) is ignored and reported.
    """
    candidates = [f.path for f in list_tree(folder)]
    readable, ignored = [], []
    for path in candidates:
        nested = path.parent != folder and not recursive
        if nested or path.name.startswith(".") or not path.name.lower().endswith(extensions):
            ignored.append(path)
        else:
            readable.append(path)
    return readable, ignored


def raw_telemetry_days(data_root: StoragePath) -> list[dt.date]:
    """The dates of the ``raw/telemetry/date=YYYY-MM-DD`` folders under the data root, sorted."""
    days = []
    for folder in (data_root / "raw" / "telemetry").glob("date=*"):
        try:
            days.append(dt.date.fromisoformat(folder.name.removeprefix("date=")))
        except ValueError:
            continue
    return sorted(days)
