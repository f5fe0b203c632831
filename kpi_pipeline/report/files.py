"""Where the report lives under the data root, and its atomic write (local folder or object store).

``reports/kpi_report.html`` is always the latest report; ``reports/kpi_report_<as_of>.html`` is a
copy named after the date it reports on (the scorecard's as-of date, the last date with complete
data), so re-running on the same data replaces that day's copy instead of piling up one per run,
and a backfill that changes a past day's data rewrites the report of the day it now ends on. A
report without data yet (no as-of date) is named after the UTC date it was written.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

from kpi_pipeline.storage import StoragePath, ensure_folder, move

REPORTS_FOLDER = "reports"
REPORT_FILE = "kpi_report.html"


def report_path(root: StoragePath) -> StoragePath:
    """The latest report: ``<data root>/reports/kpi_report.html``."""
    return root / REPORTS_FOLDER / REPORT_FILE


def dated_report_path(root: StoragePath, day: dt.date) -> StoragePath:
    """The copy of the report on ``day``: ``<data root>/reports/kpi_report_<day>.html``."""
    return root / REPORTS_FOLDER / f"kpi_report_{day.isoformat()}.html"


def write_atomically(target: StoragePath, content: bytes) -> None:
    """Write ``content`` under a hidden temporary name beside ``target``, then move it into place:
    a reader sees the old file or the new one, never a part (an object store copies server-side)."""
    ensure_folder(target.parent)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
    try:
        temporary.write_bytes(content)
        move(temporary, target)
    except BaseException:
        if temporary.exists():
            temporary.unlink()
        raise


def write_report(root: StoragePath, page: str, day: dt.date) -> tuple[StoragePath, StoragePath]:
    """Write the page as the dated copy of ``day``, then as the latest report; returns both paths."""
    content = page.encode("utf-8")
    latest, dated = report_path(root), dated_report_path(root, day)
    write_atomically(dated, content)
    write_atomically(latest, content)
    return latest, dated
