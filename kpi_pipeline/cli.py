"""``kpi-pipeline``: generate sample data, materialize date ranges, run the demo."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from kpi_pipeline.config import ConfigError
from kpi_pipeline.runner import StepResult, UsageError, execute, partition_days, plan
from kpi_pipeline.settings import Settings


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _instance() -> dg.DagsterInstance:
    """The persistent instance under ``$DAGSTER_HOME`` (so the UI shows the runs), else ephemeral."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def raw_telemetry_days(data_dir: Path) -> list[dt.date]:
    """The dates of the ``raw/telemetry/date=YYYY-MM-DD`` folders under the data root."""
    days = []
    for folder in (data_dir / "raw" / "telemetry").glob("date=*"):
        try:
            days.append(dt.date.fromisoformat(folder.name.removeprefix("date=")))
        except ValueError:
            continue
    return sorted(days)


def cmd_generate(args: argparse.Namespace) -> int:
    from kpi_pipeline.sample_data import generate_dataset

    summary = generate_dataset(
        Path(args.out), days=args.days, seed=args.seed, start=args.start, users=args.users, log=print
    )
    print(
        f"wrote {summary.telemetry_rows:,} telemetry rows ({summary.start} … {summary.end}), "
        f"{summary.ticket_rows:,} ticket rows and {summary.incident_rows:,} incident rows under {args.out}"
    )
    return 0


def _print_step(result: StepResult, number: int, total: int) -> None:
    """One progress line per run, plus the reconciliation of staging runs."""
    step = result.step
    assets = ", ".join(step.assets) if len(step.assets) < 4 else f"{len(step.assets)} assets"
    status = "SKIPPED" if result.skipped else "ok" if result.success else "FAILED"
    checks = f"; {result.check_summary()}" if result.checks else ""
    where = step.partition or "unpartitioned"
    print(f"[{number}/{total}] {where} {assets}: {status} ({result.seconds:.1f}s){checks}")
    for name, meta in result.metadata.items():
        if "raw_rows" in meta:
            older = f" + {meta['superseded_versions']} older versions" if meta["superseded_versions"] else ""
            print(
                f"    {name}: {meta['raw_rows']} raw = {meta['staged_rows']} staged{older}"
                f" + {meta['quarantined_rows']} quarantined"
            )
    if not result.success:
        print(f"    {result.message}")
    sys.stdout.flush()


def materialize_range(
    settings: Settings, start: dt.date | None, end: dt.date | None, select: Sequence[str] | None
) -> int:
    """Materialize the range and print progress; the exit status is 1 when any run failed."""
    from kpi_pipeline.definitions import build_definitions

    found = raw_telemetry_days(settings.data_dir)
    if start is None or end is None:
        if not found:
            print(f"no telemetry under {settings.data_dir / 'raw' / 'telemetry'}; pass --start and --end")
            return 2
        start, end = start or found[0], end or found[-1]
    days = partition_days(start, end)
    defs = build_definitions(settings)
    steps = plan(defs, days, select)
    print(
        f"materializing {len(days)} day(s) {start} … {end} in {len(steps)} runs into {settings.warehouse_url}"
    )
    results = execute(defs, steps, _instance(), progress=_print_step)
    failed = [r for r in results if not r.success]
    skipped = sum(r.skipped for r in results)
    succeeded = len(results) - len(failed)
    print(f"done: {succeeded} runs succeeded, {len(failed) - skipped} failed, {skipped} skipped")
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
            start=settings.start_date,
            users=args.users,
        )
        cmd_generate(generate)
    status = materialize_range(settings, None, None, None)
    print_summary(settings)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpi-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a sample data set in the contract's layout")
    gen.add_argument("--out", default=os.environ.get("KPI_DATA_DIR", "data"), help="data root to write")
    gen.add_argument("--days", type=int, default=28)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--start", type=_date, default=Settings.from_env().start_date, help="first day (UTC)")
    gen.add_argument("--users", type=int, default=800, help="users in the data set (events scale with it)")
    gen.set_defaults(func=cmd_generate)

    mat = sub.add_parser("materialize", help="materialize every asset for a date range, in dependency order")
    mat.add_argument("--start", type=_date, help="first day (default: first raw telemetry day)")
    mat.add_argument("--end", type=_date, help="last day, inclusive (default: last raw telemetry day)")
    mat.add_argument("--select", nargs="+", metavar="ASSET", help="only these assets")
    mat.set_defaults(func=cmd_materialize)

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
    except (ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
