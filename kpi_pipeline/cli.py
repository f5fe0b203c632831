"""``kpi-pipeline``: generate sample data, import and check sources, materialize date ranges, run the demo."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sys
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from kpi_pipeline.config import ConfigError, KpiConfig, load_config
from kpi_pipeline.contract import INCIDENT_EXTENSIONS, SOURCES, TELEMETRY_EXTENSIONS, TICKET_EXTENSIONS
from kpi_pipeline.defs.partitions import days_per_run, partitions_of
from kpi_pipeline.defs.resources import KpiData
from kpi_pipeline.ingest.discovery import raw_telemetry_days
from kpi_pipeline.ingest.incidents import stage_incidents
from kpi_pipeline.ingest.raw_files import UnreadableFileError
from kpi_pipeline.ingest.telemetry import MissingPartitionError, stage_telemetry_partition
from kpi_pipeline.ingest.tickets import stage_tickets
from kpi_pipeline.report.files import report_path
from kpi_pipeline.run_history import InstanceLockTimeout, cli_instance
from kpi_pipeline.runner import (
    StepResult,
    UsageError,
    execute,
    not_recomputed,
    partition_days,
    plan,
    ranged,
    reads_ahead,
    staged_days,
    without_sources,
)
from kpi_pipeline.settings import Settings
from kpi_pipeline.sources.files import available_sources
from kpi_pipeline.sources.importer import TelemetryImportError, import_telemetry
from kpi_pipeline.storage import StorageError, location, named
from kpi_pipeline.warehouse import database_reason, engine_for


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


# Which asset stages which source, and which files of it staging reads.
STAGING_SOURCES = {"telemetry_events": "telemetry", "support_tickets": "tickets", "incidents": "incidents"}
NATIVE_EXTENSIONS = {
    "telemetry": TELEMETRY_EXTENSIONS,
    "tickets": TICKET_EXTENSIONS,
    "incidents": INCIDENT_EXTENSIONS,
}
SHOWN_FILES = 10


def warehouse_reachable(url: str) -> None:
    """Fail at once, in one line, when the warehouse cannot be reached (a missing database, a wrong
    host): otherwise every run, then every day of it, would fail the same way after its retries."""
    try:
        with engine_for(url).connect():
            pass
    except sa.exc.DBAPIError as exc:
        raise ConfigError(
            f"KPI_WAREHOUSE_URL {shown_url(url)}: cannot connect: {database_reason(exc)}"
        ) from None


def shown_url(url: str) -> str:
    """The warehouse URL as printed: its password masked."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def read_rule(source: str, config: KpiConfig) -> str:
    """Which files staging reads for ``source`` (native contract or its kpi.yaml mapping)."""
    mapping = getattr(config.sources, source)
    extensions = mapping.extensions() if mapping is not None else NATIVE_EXTENSIONS[source]
    where = " directly in the day folder" if source == "telemetry" else ""
    return f"only {'/'.join(extensions)} files{where} are read, never hidden or .tmp/.part ones"


def ignored_line(name: str, files: Sequence[str], rule: str) -> str:
    """``    telemetry_events: ignored 2 file(s) (only … are read): raw/…/notes.txt, …``."""
    shown = ", ".join(files[:SHOWN_FILES]) + (
        f", … ({len(files) - SHOWN_FILES} more)" if len(files) > SHOWN_FILES else ""
    )
    return f"    {name}: ignored {len(files)} file(s) ({rule}): {shown}"


def default_sample_start(settings: Settings, days: int) -> dt.date:
    """Where sample data starts unless ``--start`` says: ``KPI_START_DATE``, else kpi.yaml
    ``start_date``, else ``days`` before today, so that the data end yesterday (UTC)."""
    configured = (
        settings.start_date or load_config(settings.config_path, required=settings.config_required).start_date
    )
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return configured or yesterday - dt.timedelta(days=days - 1)


def cmd_generate(args: argparse.Namespace) -> int:
    from kpi_pipeline.sample_data import generate_dataset

    start = args.start or default_sample_start(Settings.from_env(), args.days)
    try:
        summary = generate_dataset(
            location(args.out), days=args.days, seed=args.seed, start=start, users=args.users, log=print
        )
    except (FileNotFoundError, PermissionError) as exc:  # e.g. an object store's missing bucket
        raise StorageError(f"--out {args.out}: {exc}") from None
    print(
        f"wrote {summary.telemetry_rows:,} telemetry rows ({summary.start} … {summary.end}), "
        f"{summary.ticket_rows:,} ticket rows and {summary.incident_rows:,} incident rows under {args.out}"
    )
    if summary.bug_events:
        first, last = summary.bug_week
        print(
            f"instrumentation bug: {summary.bug_events:,} {summary.bug_workflow} completions sent as "
            f"task_done on {first} … {last} (docs/automation.md, the repair walkthrough)"
        )
    return 0


def _print_step(result: StepResult, number: int, total: int, rules: Mapping[str, str] | None = None) -> None:
    """One progress line per run (saying why a day outside the range is recomputed), plus the
    reconciliation and the ignored files of staging runs, and the one-line cause of a failure."""
    step = result.step
    assets = ", ".join(step.assets) if len(step.assets) < 4 else f"{len(step.assets)} assets"
    status = (
        "SKIPPED"
        if result.skipped
        else "ok"
        if result.success
        else "FAILED, running its days one at a time"
        if result.split
        else "FAILED"
    )
    checks = f"; {result.check_summary()}" if result.checks else ""
    where = step.label
    extra = f" ({step.extra})" if step.extra else ""
    print(f"[{number}/{total}] {where} {assets}{extra}: {status} ({result.seconds:.1f}s){checks}")
    for name, meta in result.metadata.items():
        if "raw_rows" in meta:
            older = f" + {meta['superseded_versions']} older versions" if meta["superseded_versions"] else ""
            filtered = f" ({meta['filtered_rows']} left out by filters)" if meta.get("filtered_rows") else ""
            print(
                f"    {name}: {meta['raw_rows']} raw = {meta['staged_rows']} staged{older}"
                f" + {meta['quarantined_rows']} quarantined{filtered}"
            )
        ignored = meta.get("ignored_files") or []
        if ignored:
            rule = (rules or {}).get(name, "not a file staging reads")
            print(ignored_line(name, [str(f) for f in ignored], rule))
    if not result.success:
        print(f"    {result.message}")
    sys.stdout.flush()


def materialize_range(
    settings: Settings, start: dt.date | None, end: dt.date | None, select: Sequence[str] | None
) -> int:
    """Materialize the range and print progress; the exit status is 1 when any run failed."""
    from kpi_pipeline.definitions import build_definitions

    warehouse_reachable(settings.warehouse_url)
    config = load_config(settings.config_path, required=settings.config_required)
    defs = build_definitions(settings, config)
    available = available_sources(settings.data_dir, config.sources)
    skip = {} if select else without_sources(defs, available)
    for name, reason in sorted(skip.items()):
        print(f"skipping {name}: {reason} under {settings.data_dir}")
    found = raw_telemetry_days(settings.data_dir)
    if (start is None or end is None) and found:
        last_complete = dt.date.fromisoformat(
            partitions_of(defs).get_last_partition_key() or found[-1].isoformat()
        )
        start, end = start or found[0], end or min(found[-1], last_complete)
    days = partition_days(defs, start, end) if start and end else []
    if not days and "telemetry" in available:
        print("error: pass --start and --end")
        return 2
    instance = cli_instance()
    staged = staged_days(
        defs, instance, KpiData(data_dir=str(settings.data_dir), warehouse_url=settings.warehouse_url)
    )
    steps = ranged(plan(defs, days, select, skip, staged), days_per_run(defs))
    where = f"{len(days)} day(s) {start} … {end}" if days else "no daily partitions"
    print(f"materializing {where} in {len(steps)} runs into {shown_url(settings.warehouse_url)}")
    outside = sorted({day for s in steps if s.extra for day in s.days})  # a day may have two runs
    if outside:
        print(
            f"also recomputing the KPIs of {len(outside)} staged day(s) outside the range that read its "
            f"days: {', '.join(map(str, outside))}"
        )
    for line in not_recomputed(days, staged, steps):
        print(line)
    rules = {name: read_rule(source, config) for name, source in STAGING_SOURCES.items()}
    progress = functools.partial(_print_step, rules=rules)
    results = execute(defs, steps, instance, progress=progress, lookback_days=reads_ahead(defs))
    failed = [r for r in results if not (r.success or r.split)]
    skipped = sum(r.skipped for r in results)
    split = sum(r.split for r in results)
    succeeded = len(results) - len(failed) - split
    retried = f" ({split} ranged run(s) failed and ran again one day at a time)" if split else ""
    print(f"done: {succeeded} runs succeeded, {len(failed) - skipped} failed, {skipped} skipped{retried}")
    for result in results:
        written = result.metadata.get("kpi_report", {}).get("report")
        if result.success and written:
            print(f"report: {named(settings.data_dir, str(written))}")
    return 1 if failed else 0


def cmd_materialize(args: argparse.Namespace) -> int:
    return materialize_range(Settings.from_env(), args.start, args.end, args.select)


def cmd_demo(args: argparse.Namespace) -> int:
    from kpi_pipeline.summary import print_summary

    settings = Settings.from_env()
    if not raw_telemetry_days(settings.data_dir):
        generate = argparse.Namespace(
            out=str(settings.data_dir),
            days=args.days,
            seed=args.seed,
            start=default_sample_start(settings, args.days),
            users=args.users,
        )
        cmd_generate(generate)
    status = materialize_range(settings, None, None, None)
    print_summary(settings)
    report = report_path(settings.data_dir)
    if report.exists():
        print(f"open the KPI report in a browser (it works offline): {report}")
    return status


def cmd_import(args: argparse.Namespace) -> int:
    """Split a many-day telemetry export into raw/telemetry/date=…/ (exit 1 when rows had no day)."""
    if args.source != "telemetry":
        print(
            f"error: {args.source} exports need no import: set sources.{args.source}.path in kpi.yaml "
            "to where the files lie",
            file=sys.stderr,
        )
        return 2
    settings = Settings.from_env()
    mapping = load_config(settings.config_path, required=settings.config_required).sources.telemetry
    result = import_telemetry(location(args.file), settings.data_dir, mapping, args.name)
    days = sorted(result.rows_by_day)
    rows = sum(result.rows_by_day.values())
    print(
        f"imported {rows:,} rows of {args.file} as {result.name} into {len(days)} day folder(s) "
        f"{days[0]} … {days[-1]} under {settings.data_dir / 'raw' / 'telemetry'}"
    )
    if result.removed:
        print(f"removed {len(result.removed)} file(s) of an earlier import on days this export no longer has")
    if result.unplaced_lines:
        shown = ", ".join(map(str, result.unplaced_lines[:10]))
        more = " …" if len(result.unplaced_lines) > 10 else ""
        print(
            f"warning: {len(result.unplaced_lines)} row(s) have no parseable occurred_at and were not "
            f"imported: lines {shown}{more}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_check_source(args: argparse.Namespace) -> int:
    """Stage one source as kpi.yaml maps it and print the reconciliation, reasons and first rows."""
    settings = Settings.from_env()
    config = load_config(settings.config_path, required=settings.config_required)
    mapping = getattr(config.sources, args.source)
    if args.source == "telemetry":
        if args.date is None:
            print("error: telemetry is checked one day at a time: pass --date YYYY-MM-DD", file=sys.stderr)
            return 2
        staged = stage_telemetry_partition(
            settings.data_dir, args.date, config.event_aliases, mapping, surveys=config.surveys
        )
        report, rows = staged.report, staged.events
    else:
        stage = stage_tickets if args.source == "tickets" else stage_incidents
        exports = stage(settings.data_dir, mapping)
        report, rows = exports.report, exports.records
    how = "the native contract" if mapping is None else "its kpi.yaml mapping"
    files = ", ".join(report.files) or f"none (relative paths resolve against {settings.data_dir})"
    print(f"{args.source} read as {how} from {len(report.files)} file(s): {files}")
    print(
        f"{report.raw_rows:,} raw rows = {report.staged_rows:,} staged + {report.superseded_versions:,} "
        f"older versions + {report.quarantined_rows:,} quarantined ({report.filtered_rows:,} more left "
        "out by the mapping's filters)"
    )
    for reason, count in sorted(report.reasons.items(), key=lambda item: -item[1]):
        print(f"    {reason}: {count:,}")
    if report.ignored_files:
        print(ignored_line(args.source, report.ignored_files, read_rule(args.source, config)))
    if args.rows > 0 and len(rows):
        print(rows.head(args.rows).to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpi-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a sample data set in the contract's layout")
    gen.add_argument("--out", default=os.environ.get("KPI_DATA_DIR", "data"), help="data root to write")
    gen.add_argument("--days", type=int, default=28)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument(
        "--start",
        type=_date,
        help="first day (UTC; default: KPI_START_DATE, else so that the data end yesterday)",
    )
    gen.add_argument("--users", type=int, default=800, help="users in the data set (events scale with it)")
    gen.set_defaults(func=cmd_generate)

    mat = sub.add_parser("materialize", help="materialize every asset for a date range, in dependency order")
    mat.add_argument("--start", type=_date, help="first day (default: first raw telemetry day)")
    mat.add_argument("--end", type=_date, help="last day, inclusive (default: last raw telemetry day)")
    mat.add_argument("--select", nargs="+", metavar="ASSET", help="only these assets")
    mat.set_defaults(func=cmd_materialize)

    imp = sub.add_parser(
        "import", help="split a many-day telemetry export by UTC event date into raw/telemetry/date=…/"
    )
    imp.add_argument("--source", required=True, choices=SOURCES, help="only telemetry needs an import")
    imp.add_argument(
        "file", metavar="FILE", help="the export (read with kpi.yaml's sources.telemetry mapping)"
    )
    imp.add_argument(
        "--name", help="file name in each day folder (default: FILE's name); a re-import replaces it"
    )
    imp.set_defaults(func=cmd_import)

    check = sub.add_parser(
        "check-source", help="stage one source as kpi.yaml maps it and print what came out"
    )
    check.add_argument("source", choices=SOURCES)
    check.add_argument("--date", type=_date, help="the telemetry day to stage (telemetry only)")
    check.add_argument("--rows", type=int, default=5, help="staged rows to print")
    check.set_defaults(func=cmd_check_source)

    demo = sub.add_parser("demo", help="generate the sample data (if absent), materialize it, print KPIs")
    demo.add_argument("--days", type=int, default=28)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--users", type=int, default=800)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ConfigError,
        StorageError,
        UsageError,
        UnreadableFileError,
        MissingPartitionError,
        TelemetryImportError,
        InstanceLockTimeout,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError) as exc:  # e.g. an object store's missing bucket
        root = os.environ.get("KPI_DATA_DIR")
        place = f" (KPI_DATA_DIR {root})" if root and (exc.filename is None or root not in str(exc)) else ""
        print(f"error: {exc}{place}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
