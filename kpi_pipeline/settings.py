"""Where things are: the environment variables every entry point reads."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from kpi_pipeline.config import FIRST_DATE, LAST_DATE, ConfigError
from kpi_pipeline.ingest.engine import GLOB_CHARACTERS
from kpi_pipeline.storage import StorageError, StoragePath, is_remote, location

DEFAULT_DAYS_PER_RUN = 31
MAX_DAYS_PER_RUN_LIMIT = 366


@dataclass(frozen=True)
class Settings:
    """``KPI_DATA_DIR``, ``KPI_WAREHOUSE_URL``, ``KPI_CONFIG``, ``KPI_START_DATE`` and
    ``KPI_MAX_DAYS_PER_RUN``, resolved.

    ``config_required`` is True when ``KPI_CONFIG`` names the file: that file must exist, while
    the default ``<KPI_DATA_DIR>/config/kpi.yaml`` may be absent (built-in defaults).
    ``start_date`` is None when ``KPI_START_DATE`` is unset: the partitions then start where
    kpi.yaml or the data says (``defs.partitions.first_partition_day``). ``max_days_per_run`` is the
    most days one ranged run covers (a backfill of N days takes ceil(N / it) runs per asset group):
    fewer days per run let a queue run more of them at once.
    """

    data_dir: StoragePath
    warehouse_url: str
    config_path: StoragePath
    start_date: dt.date | None = None
    config_required: bool = False
    max_days_per_run: int = DEFAULT_DAYS_PER_RUN
    from_environment: frozenset[str] = frozenset()  # the KPI_* variables that were set

    @property
    def staging_dir(self) -> StoragePath:
        return self.data_dir / "staging"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw_dir = env.get("KPI_DATA_DIR") or "data"
        data_dir = _location("KPI_DATA_DIR", raw_dir)
        if GLOB_CHARACTERS & set(str(data_dir)):
            raise ConfigError(
                f"KPI_DATA_DIR must not contain *, ? or [ (DuckDB reads the staged files' paths as "
                f"patterns), got {str(data_dir)!r}"
            )
        if is_remote(data_dir) and not env.get("KPI_WAREHOUSE_URL"):
            raise ConfigError(
                f"KPI_DATA_DIR is in object storage ({raw_dir!r}): set KPI_WAREHOUSE_URL too (the "
                "default SQLite warehouse is a file under a local data folder)"
            )
        url = env.get("KPI_WAREHOUSE_URL") or f"sqlite:///{data_dir / 'warehouse' / 'kpi.db'}"
        named = env.get("KPI_CONFIG") or ""
        config = _location("KPI_CONFIG", named) if named else data_dir / "config" / "kpi.yaml"
        raw_start = env.get("KPI_START_DATE") or ""
        raw_days = env.get("KPI_MAX_DAYS_PER_RUN") or ""
        return cls(
            data_dir=data_dir,
            warehouse_url=url,
            config_path=config,
            start_date=_start_date(raw_start) if raw_start else None,
            config_required=bool(named),
            max_days_per_run=_days_per_run(raw_days) if raw_days else DEFAULT_DAYS_PER_RUN,
            from_environment=frozenset(
                name for name in ("KPI_DATA_DIR", "KPI_WAREHOUSE_URL") if env.get(name)
            ),
        )


def _location(variable: str, text: str) -> StoragePath:
    """A local path or an object-store URL from a variable, or a ConfigError naming it."""
    try:
        return location(text)
    except StorageError as exc:
        raise ConfigError(f"{variable}: {exc}") from None


def _start_date(text: str) -> dt.date:
    """``KPI_START_DATE`` as a date in the supported range, or a ConfigError that quotes it."""
    try:
        start = dt.date.fromisoformat(text)
    except ValueError:
        start = None
    if start is None or not FIRST_DATE <= start <= LAST_DATE:
        raise ConfigError(
            f"KPI_START_DATE must be a date from {FIRST_DATE} to {LAST_DATE} like 2025-01-01, got {text!r}"
        )
    return start


def _days_per_run(text: str) -> int:
    """``KPI_MAX_DAYS_PER_RUN`` as a whole number of days, or a ConfigError that quotes it."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= MAX_DAYS_PER_RUN_LIMIT:
        raise ConfigError(
            f"KPI_MAX_DAYS_PER_RUN must be a whole number of days from 1 to {MAX_DAYS_PER_RUN_LIMIT}, "
            f"got {text!r}"
        )
    return int(digits)
