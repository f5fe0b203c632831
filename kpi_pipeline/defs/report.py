"""``kpi_report``: the KPI tables as one self-contained HTML page under the data root.

Thin: the warehouse IO manager loads each KPI table it reads as a frame (a daily table whole,
every partition), :func:`kpi_pipeline.report.page.report_page` builds the page, and
:func:`kpi_pipeline.report.files.write_report` writes ``reports/kpi_report.html`` and the copy of
its as-of date atomically. It is unpartitioned and downstream of the KPI tables, so it is rebuilt
wherever they are: ``refresh_kpis_job`` (after every daily run, through ``kpi_followup_sensor``),
and the last run of ``kpi-pipeline materialize`` and ``kpi-pipeline demo``.
"""

import datetime as dt
import time

import dagster as dg
import pandas as pd

from kpi_pipeline.config import KpiConfig
from kpi_pipeline.defs.metadata import owner, root_path, workflow_owner_table
from kpi_pipeline.defs.resources import IO_RETRY, KpiData
from kpi_pipeline.report.files import REPORT_FILE, REPORTS_FOLDER, write_report

REPORT_GROUP = "reports"
# Each field of ReportData and the KPI table (asset) it is read from.
REPORT_INPUTS: dict[str, str] = {
    "scorecard": "kpi_scorecard",
    "completion": "kpi_task_completion_daily",
    "funnel": "kpi_funnel_daily",
    "deflection": "kpi_ticket_deflection_daily",
    "adoption": "kpi_feature_adoption_daily",
    "retention": "kpi_retention_weekly",
    "incidents": "kpi_incidents",
    "releases": "kpi_release_quality",
    "roi": "kpi_roi_daily",
    "latency": "kpi_step_latency_daily",
    "errors": "kpi_errors_daily",
    "retries": "kpi_retry_daily",
    "surveys": "kpi_survey_daily",
    "support": "kpi_support_daily",
    "uptime": "kpi_uptime_monthly",
}


def summary_markdown(as_of: dt.date | None, card: pd.DataFrame, headlines: tuple[str, ...]) -> str:
    """The materialization's summary: as-of date, each workflow's owner and status, the headlines."""
    lines = [f"**KPI report as of {as_of or 'no data yet'}**", ""]
    if len(card):
        lines += ["| workflow | owner | status |", "|---|---|---|"]
        lines += [f"| {r.workflow} | {r.owner} | {r.status} |" for r in card.itertuples(index=False)]
        lines.append("")
    lines += [f"- {line}" for line in headlines]
    return "\n".join(lines)


def report_assets(config: KpiConfig) -> list[dg.AssetsDefinition]:
    """``kpi_report`` for the kpi.yaml the definitions were built with (its currency and owners)."""

    @dg.asset(
        name="kpi_report",
        group_name=REPORT_GROUP,
        # The report is mostly the workflows' KPIs: owners.workflows, else default_owner; each
        # workflow's own owner is named on the page and in the metadata.
        owners=[owner(config.owner_for("workflows"))],
        kinds={"plotly", "html"},
        retry_policy=IO_RETRY,
        description=(
            f"One self-contained HTML page of the KPI tables, `{REPORTS_FOLDER}/{REPORT_FILE}` under the "
            f"data root (and `{REPORTS_FOLDER}/kpi_report_YYYY-MM-DD.html`, the copy of its as-of date): the "
            "scorecard per workflow and owner, then charts over time. Opens offline: plotly.js and the "
            "styles are inlined. See docs/assets.md, 'kpi_report'."
        ),
        metadata={"workflow_owners": workflow_owner_table(config)},
        ins={name: dg.AssetIn() for name in REPORT_INPUTS.values()},
    )
    def kpi_report(
        context: dg.AssetExecutionContext, kpi_data: KpiData, **tables: pd.DataFrame
    ) -> dg.MaterializeResult:
        # Imported here, not when the definitions load: plotly is only needed by this step.
        from kpi_pipeline.report.page import ReportData, report_page

        started = time.perf_counter()
        data = ReportData(**{field: tables[name] for field, name in REPORT_INPUTS.items()})
        report = report_page(data, config, dt.datetime.now(dt.UTC))
        day = report.as_of or dt.datetime.now(dt.UTC).date()
        latest, dated = write_report(kpi_data.root, report.html, day)
        size = len(report.html.encode("utf-8"))
        context.log.info(
            f"kpi_report: {size:,} bytes, {len(report.charts)} charts "
            f"(no data yet: {', '.join(report.empty) or 'none'}) in {time.perf_counter() - started:.1f}s"
        )
        card = data.scorecard
        return dg.MaterializeResult(
            metadata={
                "report": root_path(latest, kpi_data.root),
                "dated_copy": root_path(dated, kpi_data.root),
                "summary": dg.MetadataValue.md(summary_markdown(report.as_of, card, report.headlines)),
                "as_of": report.as_of.isoformat() if report.as_of else "no data yet",
                "charts": len(report.charts),
                "sections_without_data": ", ".join(report.empty) or "none",
                "workflows": len(card),
                "regressed": int((card["status"] != "ok").sum()) if len(card) else 0,
                "bytes": size,
            }
        )

    return [kpi_report]
