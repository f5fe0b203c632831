"""Find and read the files of a source that has a mapping in kpi.yaml."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kpi_pipeline.contract import INCIDENT_EXTENSIONS, TICKET_EXTENSIONS
from kpi_pipeline.ingest.discovery import IN_PROGRESS_SUFFIXES, list_files
from kpi_pipeline.ingest.engine import GLOB_CHARACTERS
from kpi_pipeline.ingest.raw_files import RawFile, read_table_file
from kpi_pipeline.sources.mapping import map_rows
from kpi_pipeline.sources.model import PSEUDO_COLUMNS, SourceMapping, Sources
from kpi_pipeline.storage import URL_SCHEME, StoragePath, glob_files, location


def source_files(
    data_root: StoragePath, source: str, mapping: SourceMapping
) -> tuple[list[StoragePath], list[StoragePath]]:
    """(files to read, files ignored) of a mapped export source, both sorted by path.

    The mapping's ``path`` is a file, a folder (read recursively; files with the
    format's extensions) or a glob; relative paths resolve against the data
    root (a local folder or an object store), absolute ones are local, and an
    object-store URL (``s3://…``) names files of its own. Without ``path`` the
    files are under ``raw/<source>/``. A path that does not exist yields no
    files.
    """
    pattern = mapping.path or f"raw/{source}"
    root, relative_pattern = split_pattern(data_root, pattern)
    target = root.joinpath(relative_pattern) if relative_pattern else root
    if any(c in relative_pattern for c in GLOB_CHARACTERS):
        # Only the configured path is a pattern; the data root is taken literally.
        matches = glob_files(root, relative_pattern)
        busy = [p for p in matches if p.name.startswith(".") or p.name.endswith(IN_PROGRESS_SUFFIXES)]
        return [p for p in matches if p not in busy], busy
    if target.is_file():
        return [target], []
    return list_files(target, mapping.extensions(), recursive=True)


def split_pattern(data_root: StoragePath, pattern: str) -> tuple[StoragePath, str]:
    """(the folder a mapping's ``path`` is taken literally from, the rest of it): the data root for a
    relative path; for an absolute path or a URL, its part before the first folder with a glob
    character (all of it when it has none)."""
    url = URL_SCHEME.match(pattern)
    if not url and not Path(pattern).expanduser().is_absolute():
        return data_root, Path(pattern).as_posix()
    parts = pattern.split("/") if url else list(Path(pattern).expanduser().parts)
    first = len(url.group(0).split("/")) if url else 1  # the scheme and bucket, or the "/", are literal
    fixed = next(
        (i for i, part in enumerate(parts) if i >= first and any(c in part for c in GLOB_CHARACTERS)),
        len(parts),
    )
    literal = "/".join(parts[:fixed]) if url else str(Path(*parts[:fixed]))
    return location(literal), "/".join(parts[fixed:])


def list_columns(mapping: SourceMapping) -> tuple[str, ...]:
    """Source columns that feed a list field (e.g. status-page ``components``): their JSON lists
    are lists (items ``;``-joined); a JSON list in any other column is its JSON text."""
    names = [n for f in mapping.LISTS if f in mapping.fields for n in mapping.fields[f].names]
    return tuple(dict.fromkeys(n for n in names if n not in PSEUDO_COLUMNS))


def read_source_file(path: StoragePath, mapping: SourceMapping) -> RawFile:
    """Read ``path`` in the mapping's format: the source's own columns (those the mapping reads)."""
    return read_table_file(
        path,
        mapping.format,
        mapping.header_columns(),
        delimiter=mapping.delimiter,
        names=mapping.columns,
        string_fields=mapping.text_columns(),
        keep=set(mapping.read_columns()),
        list_fields=list_columns(mapping),
    )


def read_mapped_file(path: StoragePath, mapping: SourceMapping, label: str) -> RawFile:
    """Read ``path`` as the mapping's format and map its rows onto the contract's fields.

    ``label`` is how the quarantine names the file (relative to the data root,
    or absolute); it is also the value of the ``$file`` column. The result's
    rows hold contract fields (plus ``_reason``/``_order``), while its lines,
    line numbers and malformed lines stay those of the source file, so
    quarantined rows point at the original line.
    """
    raw = read_source_file(path, mapping)
    mapped = map_rows(raw.rows, mapping, label)
    return replace(raw, rows=mapped.rows, columns=mapped.fields, filtered=mapped.filtered)


def export_files(data_root: StoragePath, source: str, mapping: SourceMapping | None) -> list[StoragePath]:
    """The files staging reads for an export source (tickets, incidents): its mapping's, or the
    contract's under ``raw/<source>/``."""
    if mapping is not None:
        return source_files(data_root, source, mapping)[0]
    extensions = TICKET_EXTENSIONS if source == "tickets" else INCIDENT_EXTENSIONS
    return list_files(data_root / "raw" / source, extensions, recursive=True)[0]


def available_sources(data_root: StoragePath, sources: Sources) -> set[str]:
    """Which sources have data under this data root (a run skips what needs the others)."""
    found = set()
    if any(p.is_file() for p in (data_root / "raw" / "telemetry").glob("date=*/*")):
        found.add("telemetry")
    for source in ("tickets", "incidents"):
        if export_files(data_root, source, getattr(sources, source)):
            found.add(source)
    return found
