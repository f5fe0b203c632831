"""Where the data root lives: a folder of this machine, or an object store (``s3://``, ``gs://``,
``az://``) through fsspec and universal-pathlib, with credentials from the environment.

A local data root stays a :class:`pathlib.Path` (everything behaves as before); a URL becomes a
:class:`upath.UPath`. The few operations that differ between the two — moving, deleting a
folder, listing a tree with its states, Parquet and DuckDB access — live here, so the rest of the
pipeline handles both with one code path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # s3://, gs://, az://, file://
# The fsspec package each object store needs, and the extra of this project that installs it.
STORES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
}

StoragePath: TypeAlias = Path | UPath
"""A file or folder of the data root: a local ``Path`` or an object store's ``UPath``."""


class StorageError(ValueError):
    """A data location that cannot be used; the message quotes it and says why."""


def location(text: str) -> StoragePath:
    """A data location from its text: a local folder (made absolute) or an object-store URL.

    ``file://`` URLs are local folders. An object store must name a bucket (or container), and its
    fsspec package must be installed; otherwise a :class:`StorageError` says which one. Its
    listings are never cached: other processes and machines write the same folders (a cached
    listing would hide a day another run staged).
    """
    if not URL_SCHEME.match(text):
        return Path(text).expanduser().resolve()
    protocol = text.split("://", 1)[0].lower()
    if protocol == "file":
        return Path(UPath(text).path).resolve()
    if protocol not in STORES:
        known = ", ".join(f"{p}://" for p in ("s3", "gs", "az"))
        raise StorageError(f"{text!r}: unsupported storage {protocol}:// (a local folder, or {known})")
    package, extra = STORES[protocol]
    try:
        root = UPath(text, use_listings_cache=False)
        root.fs  # noqa: B018 - builds the filesystem now, so a missing package fails here, not mid-run
    except ImportError:
        raise StorageError(
            f"{text!r}: {protocol}:// needs the {package} package (pip install 'kpi_pipeline[{extra}]')"
        ) from None
    except (ValueError, OSError) as exc:  # e.g. adlfs without an account name
        raise StorageError(
            f"{text!r}: {protocol}:// cannot be set up: {' '.join(str(exc).split())}"
        ) from None
    if not root.path.strip("/"):
        raise StorageError(f"{text!r}: name a bucket (or container), e.g. {protocol}://my-bucket/kpi")
    return root


def named(root: StoragePath, name: str) -> StoragePath:
    """The file a name relative to the data root stands for (as the quarantine and the sensors name
    files): under ``root``, or, for a file outside it, its own URL or absolute local path."""
    if URL_SCHEME.match(name):
        return location(name)
    return Path(name) if Path(name).is_absolute() else root.joinpath(*name.split("/"))


def relative_name(path: StoragePath, root: StoragePath) -> str:
    """``path`` as the quarantine, the sensors and the UI name it: relative to the data root when
    inside it, else its absolute path or URL (a mapping may read files of another store or of the
    local disk)."""
    if is_remote(path) == is_remote(root):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()  # a UPath's is its URL


def ensure_folder(folder: StoragePath) -> None:
    """Create a local folder (and its parents); nothing in an object store, which has no folders
    (s3fs's mkdir would check, even try to create, the bucket: a role scoped to a prefix may not)."""
    if not is_remote(folder):
        folder.mkdir(parents=True, exist_ok=True)


def is_remote(path: StoragePath) -> bool:
    """Whether ``path`` is in an object store (not a folder of this machine)."""
    return not isinstance(path, Path)


@dataclass(frozen=True)
class FileInfo:
    """A file and its state: size, modification time and, in an object store, its version tag
    (the ETag: an overwrite within the store's one-second modification times still changes it)."""

    path: StoragePath
    size: int
    mtime_ns: int
    version: str = ""


def _mtime_ns(entry: dict[str, Any]) -> int:
    """The modification time of an fsspec listing entry, in ns (s3fs, gcsfs and adlfs name it
    differently)."""
    for key in ("LastModified", "last_modified", "updated", "mtime", "modified"):
        value = entry.get(key)
        if isinstance(value, dt.datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, str) and value:
            return int(pd.Timestamp(value).timestamp() * 1e9)
        if isinstance(value, int | float):
            return int(value * 1e9)
    return 0


def _version(entry: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "generation", "version_id"):
        value = entry.get(key)
        if value:
            return str(value).strip('"')
    return ""


def info(path: StoragePath) -> FileInfo:
    """The state of one file."""
    if not is_remote(path):
        stat = path.stat()
        return FileInfo(path, stat.st_size, stat.st_mtime_ns)
    entry = path.fs.info(path.path)
    return FileInfo(path, int(entry.get("size") or 0), _mtime_ns(entry), _version(entry))


def list_tree(folder: StoragePath) -> list[FileInfo]:
    """Every file under ``folder`` (all depths) with its state, sorted by path; none when the
    folder is absent. An object store answers with one paginated listing, not a request per file."""
    if not is_remote(folder):
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.rglob("*")):
            try:
                if path.is_file():
                    out.append(info(path))
            except FileNotFoundError:  # renamed away since the listing (a commit's pending file)
                continue
        return out
    try:
        found = folder.fs.find(folder.path.rstrip("/"), detail=True)
    except FileNotFoundError:
        return []
    return [
        FileInfo(path, int(entry.get("size") or 0), _mtime_ns(entry), _version(entry))
        for path, entry in _files_under(folder, found)
    ]


def _files_under(root: UPath, entries: dict[str, dict[str, Any]]) -> list[tuple[UPath, dict[str, Any]]]:
    """The files among an fsspec listing's entries (key → details) that lie under ``root``, as paths
    of ``root`` (so they keep its storage options), sorted as pathlib sorts paths."""
    base = root.path.rstrip("/")
    return [
        (root.joinpath(*name[len(base) + 1 :].split("/")), entry)
        for name, entry in sorted(entries.items(), key=lambda item: item[0].split("/"))
        if entry.get("type") == "file" and name.startswith(base + "/")
    ]


def glob_files(root: StoragePath, pattern: str) -> list[StoragePath]:
    """The files under ``root`` matching the glob ``pattern`` (``**`` any depth), sorted by path;
    ``root`` itself is taken literally."""
    if not is_remote(root):
        found = glob.glob(os.path.join(glob.escape(str(root)), pattern), recursive=True)
        return sorted(Path(p) for p in found if os.path.isfile(p))
    entries = root.fs.glob(f"{root.path.rstrip('/')}/{pattern}", detail=True)
    return [path for path, _ in _files_under(root, entries)]


def local_copies(paths: list[StoragePath], folder: Path) -> dict[StoragePath, StoragePath]:
    """Each file with a local file of its bytes: itself on a local disk; an object downloaded into
    ``folder`` (one request each; the caller deletes the folder)."""
    copies: dict[StoragePath, StoragePath] = {}
    for index, path in enumerate(paths):
        if not is_remote(path):
            copies[path] = path
            continue
        target = folder / f"{index}" / path.name  # the name keeps its suffix (.jsonl.gz)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.fs.get_file(path.path, str(target))
        copies[path] = target
    return copies


def move(source: StoragePath, target: StoragePath, after_copy: Callable[[], None] | None = None) -> None:
    """Put the file ``source`` at ``target``, replacing it: one atomic rename on a local disk; in
    an object store a server-side copy (readers see the old object or the new one, never a part)
    and then the delete of ``source``, with ``after_copy`` called in between (a test's kill)."""
    if not is_remote(source):
        os.replace(source, target)
        return
    source.fs.copy(source.path, target.path)
    if after_copy is not None:
        after_copy()
    source.fs.rm_file(source.path)


def remove_tree(folder: StoragePath) -> None:
    """Delete ``folder`` and everything in it; nothing when absent."""
    if not is_remote(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        folder.fs.rm(folder.path, recursive=True)


def _arrow(path: StoragePath) -> tuple[str, Any]:
    """(where, filesystem) for pyarrow: the path itself locally, the object key and its fsspec
    filesystem in an object store."""
    return (str(path), None) if not is_remote(path) else (path.path, path.fs)


def write_parquet(table: pa.Table, path: StoragePath) -> None:
    """Write an Arrow table as a Parquet file."""
    where, filesystem = _arrow(path)
    pq.write_table(table, where, filesystem=filesystem)


def parquet_file(path: StoragePath) -> pq.ParquetFile:
    """A Parquet file opened for its footer and batches."""
    where, filesystem = _arrow(path)
    return pq.ParquetFile(where, filesystem=filesystem)


def parquet_metadata(path: StoragePath) -> pq.FileMetaData:
    """A Parquet file's footer (row count, schema, key-value metadata) without reading its data."""
    where, filesystem = _arrow(path)
    return pq.read_metadata(where, filesystem=filesystem)


def read_parquet(path: StoragePath, columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet file as a frame (only ``columns`` when given)."""
    where, filesystem = _arrow(path)
    return pd.read_parquet(where, columns=columns, filesystem=filesystem)


def duckdb_path(con: duckdb.DuckDBPyConnection, path: StoragePath) -> str:
    """``path`` as DuckDB reads or writes it on ``con``: an object store's fsspec filesystem is
    registered on the connection first (DuckDB then needs no extension of its own; its autoloading
    is switched off there, so a locally installed httpfs cannot take the URL with other credentials)."""
    if not is_remote(path):
        return str(path)
    fs = path.fs
    name = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    if not con.filesystem_is_registered(name):
        con.execute("SET autoload_known_extensions = false")
        con.register_filesystem(fs)
    return f"{name}://{path.path}"  # DuckDB knows the filesystem by its first protocol name only
