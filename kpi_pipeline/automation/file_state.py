"""File states for the sensors: which raw files are new or changed, and settled.

A file's state is its size and modification time (and, in an object store, its ETag: an overwrite
within the store's one-second modification times still changes the state). A sensor acts on a state
once (the cursor remembers it); a file still being written waits: it must
keep the same state for two ticks, or not have changed for ``settle_seconds``.
Files named ``*.tmp`` / ``*.part`` are never read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from kpi_pipeline.config import EventAlias
from kpi_pipeline.ingest.discovery import IN_PROGRESS_SUFFIXES
from kpi_pipeline.storage import FileInfo, StoragePath, info, list_tree, relative_name

COMPRESSION = {".gz": "gzip", ".zip": "zip"}  # by file suffix, as pandas infers it from a path


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    version: str = ""  # an object store's ETag

    @property
    def key(self) -> str:
        base = f"{self.size}:{self.mtime_ns}"
        return f"{base}:{self.version}" if self.version else base


def states(paths: Iterable[StoragePath], root: StoragePath) -> dict[str, FileState]:
    """File → state for given files, named relative to ``root`` (absolute when outside it)."""
    return _named((info(path) for path in paths), root)


def _named(files: Iterable[FileInfo], root: StoragePath) -> dict[str, FileState]:
    return {
        relative_name(file.path, root): FileState(file.size, file.mtime_ns, file.version) for file in files
    }


def scan(folder: StoragePath, root: StoragePath) -> dict[str, FileState]:
    """Every file under ``folder`` (path relative to ``root`` → state), except in-progress and hidden ones."""
    return _named(
        (
            f
            for f in list_tree(folder)
            if not f.path.name.startswith(".") and not f.path.name.endswith(IN_PROGRESS_SUFFIXES)
        ),
        root,
    )


@dataclass
class FileCursor:
    """What a sensor keeps between ticks, small however many files there are: ``requested``: files
    whose run was requested and whose data was not staged since (dropped once it is); ``pending``:
    files seen changed last tick, not settled yet; ``digest`` and ``files``: the state of every file
    at the tick (a reader of the cursor sees at once whether anything changed)."""

    requested: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    files: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "digest": self.digest,
                "files": self.files,
                "requested": self.requested,
                "pending": self.pending,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> FileCursor:
        """A stored cursor; one of an earlier release (every file under ``seen``) reads as requested,
        and its staged files drop out at the next tick."""
        if not text:
            return cls()
        data = json.loads(text)
        requested = data.get("requested", data.get("seen", {}))
        return cls(
            dict(requested),
            dict(data.get("pending", {})),
            str(data.get("digest", "")),
            int(data.get("files", 0)),
        )


def settled_changes(
    cursor: FileCursor,
    current: Mapping[str, FileState],
    now_ns: int,
    settle_seconds: float,
    processed_ns: Mapping[str, int] | None = None,
) -> tuple[dict[str, str], FileCursor]:
    """(files whose new state is settled → state key, the cursor to store).

    A file needs a run when a run was requested for an earlier state of it (it changed since,
    even while that run was staging it), or when the cursor does not know it and its data was not
    staged after its last change (``processed_ns``: path → when its partition or export was last
    staged). Its state is settled when it equals the state seen on the previous tick, or when the
    file has not been modified for ``settle_seconds``. A file requested in its current state leaves
    the cursor once its data is staged after that change, so the cursor holds only what is in
    flight. A deleted file is forgotten: put back, it triggers again unless its data was staged
    after its modification time (a restore that keeps an old time needs a ``touch``).
    """
    processed = processed_ns or {}
    ready: dict[str, str] = {}
    pending: dict[str, str] = {}
    requested: dict[str, str] = {}
    for path, state in current.items():
        staged_since = processed.get(path, -1) >= state.mtime_ns
        asked = cursor.requested.get(path)
        if asked == state.key:
            if not staged_since:
                requested[path] = state.key
            continue
        if asked is None and staged_since:
            continue
        quiet = (now_ns - state.mtime_ns) / 1e9 >= settle_seconds
        if cursor.pending.get(path) == state.key or quiet:
            ready[path] = state.key
        else:
            pending[path] = state.key
    digest = state_hash((path, state.key) for path, state in current.items())
    return ready, FileCursor({**requested, **ready}, pending, digest, len(current))


def telemetry_day(path: str) -> dt.date | None:
    """The partition date of ``raw/telemetry/date=YYYY-MM-DD/<file>``, else None."""
    parts = path.split("/")
    folder = next((p for p in parts if p.startswith("date=")), None)
    if folder is None:
        return None
    try:
        return dt.date.fromisoformat(folder.removeprefix("date="))
    except ValueError:
        return None


def state_hash(items: Iterable[tuple[str, str]]) -> str:
    """A short, order-independent hash of (path, state) pairs: the identity of a run request."""
    digest = hashlib.sha256()
    for path, key in sorted(items):
        digest.update(f"{path}\0{key}\n".encode())
    return digest.hexdigest()[:16]


def aliases_for_day(aliases: Sequence[EventAlias], day: dt.date) -> list[dict[str, str]]:
    """The aliases that apply to events of ``day`` (their window contains it)."""
    return [
        a.model_dump(mode="json", by_alias=True)
        for a in aliases
        if (a.valid_from is None or a.valid_from <= day) and (a.valid_until is None or day <= a.valid_until)
    ]


def telemetry_data_versions(
    current: Mapping[str, FileState], aliases: Sequence[EventAlias], mapping: str = "", surveys: str = ""
) -> dict[str, str]:
    """Data version of each telemetry partition: its files' states, the aliases that apply to it,
    the telemetry source mapping (``mapping``: its JSON, empty for the native contract) and the
    kpi.yaml surveys a survey_response must name (``surveys``: their JSON, empty for the built-ins;
    left out of the hash then, so versions from before surveys existed stay the same).

    An alias change moves exactly the versions of the days inside the alias window,
    so Dagster marks exactly those partitions (and what reads them) stale.
    """
    by_day: dict[dt.date, list[tuple[str, str]]] = {}
    for path, state in current.items():
        day = telemetry_day(path)
        if day is not None:
            by_day.setdefault(day, []).append((path, state.key))
    return {
        day.isoformat(): state_hash(
            [
                *files,
                ("aliases", json.dumps(aliases_for_day(aliases, day), sort_keys=True)),
                ("mapping", mapping),
                *([("surveys", surveys)] if surveys else []),
            ]
        )
        for day, files in by_day.items()
    }


def created_dates(paths: Iterable[StoragePath]) -> tuple[dt.date, dt.date] | None:
    """First and last UTC ``created_at`` date in native ticket exports (CSV, optionally gzip).

    The follow-up sensor recomputes the KPI days whose windows can see those tickets.
    None when no file has a readable ``created_at`` column (e.g. a mapped source).
    """
    stamps = []
    for path in paths:
        try:
            with path.open("rb") as handle:
                column = pd.read_csv(
                    handle,
                    usecols=["created_at"],
                    dtype=str,
                    on_bad_lines="skip",
                    compression=COMPRESSION.get(path.suffix.lower()),
                )["created_at"]
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError):
            continue
        stamps.append(pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce").dropna())
    if not stamps or not any(len(s) for s in stamps):
        return None
    joined = pd.concat(stamps)
    return joined.min().date(), joined.max().date()


def frame_version(*frames: pd.DataFrame) -> str:
    """A data version of staged frames from their content (columns and every value): staging the
    same exports again gives the same version, so what reads them does not count as outdated."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(json.dumps(list(map(str, frame.columns))).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
