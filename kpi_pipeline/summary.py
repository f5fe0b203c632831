"""The short KPI summary the demo prints: where the tables are and the headline numbers."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from kpi_pipeline.config import KpiConfig, load_config
from kpi_pipeline.contract import TICKET_PRIORITIES
from kpi_pipeline.kpis.scorecard import flagged_metrics, not_significant
from kpi_pipeline.settings import Settings
from kpi_pipeline.tables import TABLES
from kpi_pipeline.warehouse import Warehouse


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.1%}"


def completion_by_workflow(completion: pd.DataFrame) -> pd.DataFrame:
    """Attempts, completion and first-pass rates per workflow over every date."""
    sums = completion.groupby("workflow")[["attempts", "completions", "first_pass_completions"]].sum()
    sums["completion_rate"] = sums["completions"] / sums["attempts"].where(sums["attempts"] > 0)
    sums["first_pass_rate"] = sums["first_pass_completions"] / sums["attempts"].where(sums["attempts"] > 0)
    return sums.reset_index()


def uptime_line(uptime: pd.DataFrame) -> str:
    """The latest month's lowest uptime among the services, and its error budget used."""
    latest = uptime[uptime["month"] == uptime.loc[uptime["uptime"].notna(), "month"].max()]
    worst = latest.sort_values(["uptime", "service"]).iloc[0]
    used = "n/a" if pd.isna(worst["budget_used"]) else f"{worst['budget_used']:.0%}"
    return (
        f"uptime in {worst['month'][:7]}: lowest {worst['service']} {worst['uptime']:.3%} of "
        f"{len(latest)} service(s), error budget used {used} (SLO {worst['slo']:.3%})"
    )


def step_latency_line(latency: pd.DataFrame) -> str:
    """On the latest date, the step most often over its workflow's latency budget (the slowest by
    p95 where no workflow has a budget)."""
    latest = latency[latency["date"] == latency["date"].max()]
    budgeted = latest[latest["slow_rate"].notna()]
    if len(budgeted):
        row = budgeted.sort_values(["slow_rate", "p95_ms"], ascending=False).iloc[0]
        what = f"most often over its latency budget on {row['date']}: {_pct(row['slow_rate'])} of"
    else:
        row = latest.sort_values("p95_ms", ascending=False).iloc[0]
        what = f"slowest step on {row['date']} (no latency budgets):"
    step = "(unnamed step)" if pd.isna(row["step"]) else row["step"]
    return (
        f"{what} {row['workflow']} / {step}, median {row['median_ms'] / 1000:,.1f} s, "
        f"p95 {row['p95_ms'] / 1000:,.1f} s"
    )


def errors_line(errors: pd.DataFrame) -> str:
    """The error code with the most error attempts over every date, and how often users recovered."""
    sums = errors.groupby(["workflow", "error_code"])[["error_attempts", "recovered_attempts"]].sum()
    (workflow, code), top = next(iter(sums.sort_values("error_attempts", ascending=False).iterrows()))
    return (
        f"most frequent error over all dates: {code} in {workflow}, {int(top['error_attempts']):,} attempts, "
        f"{_pct(top['recovered_attempts'] / top['error_attempts'])} still completed"
    )


def retry_line(retries: pd.DataFrame) -> str:
    """How often failed attempts were retried and the retry completed, over every date."""
    failed = retries["failed_attempts"].sum()
    retried, recovered = (
        retries[c].sum() / failed if failed else float("nan") for c in ("retried", "recovered")
    )
    return (
        f"failed attempts over all dates: {int(failed):,}, retried {_pct(retried)}, "
        f"recovered by the retry {_pct(recovered)}"
    )


def release_line(releases: pd.DataFrame) -> str:
    """The release whose completion rate fell furthest against the release before it."""
    compared = releases.dropna(subset=["completion_rate_delta"])
    if compared.empty:
        return f"release quality: {len(releases)} release(s), none with a previous release to compare"
    worst = compared.sort_values(["completion_rate_delta", "workflow"]).iloc[0]
    p = worst["completion_p_value"]
    shown = "n/a" if pd.isna(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"
    return (
        f"largest completion change between releases: {worst['workflow']} {worst['release']} "
        f"{worst['completion_rate_delta'] * 100:+.1f} points against {worst['previous_release']} (p {shown})"
    )


def survey_lines(surveys: pd.DataFrame) -> list[str]:
    """CSAT per workflow over every date: its mean, top box, and the answers that were unhappy
    after a completed attempt."""
    csat = surveys[surveys["survey"] == "csat"].assign(
        score_sum=lambda f: f["mean_score"] * f["responses"], top=lambda f: f["top_box_rate"] * f["responses"]
    )
    if csat.empty:
        return []
    sums = csat.groupby("workflow")[["responses", "score_sum", "top", "unhappy_completions"]].sum()
    lines = ["CSAT over all dates (completed but unhappy: a bottom-box answer about a completed attempt):"]
    for workflow, row in sums.iterrows():
        n = row["responses"]
        lines.append(
            f"  {workflow:<20} {int(n):>6,} answers  mean {row['score_sum'] / n:.2f}  "
            f"top box {_pct(row['top'] / n):>6}  completed but unhappy {int(row['unhappy_completions']):,}"
        )
    return lines


def support_lines(support: pd.DataFrame) -> list[str]:
    """SLA breach rates per priority over every date. Every ticket of a priority with a target has
    it, so a priority's rate is its breaches over the tickets of its rows whose rate is set."""
    lines = ["SLA breaches by priority over all dates (first reply / resolution; tickets):"]
    order = {p: i for i, p in enumerate(TICKET_PRIORITIES[::-1])}  # urgent first
    ranked = support.assign(rank=support["priority"].map(order).fillna(len(order)))
    for (_, priority), rows in ranked.groupby(["rank", "priority"], sort=True):
        rates = []
        for kind in ("first_reply", "resolution"):
            with_target = rows[rows[f"{kind}_breach_rate"].notna()]
            total = with_target["tickets"].sum()
            rates.append(_pct(with_target[f"{kind}_breaches"].sum() / total) if total else "no target")
        lines.append(f"  {priority:<8} {rates[0]:>9} / {rates[1]:>9}  {int(rows['tickets'].sum()):>6,}")
    return lines if len(support) else []


def lifecycle_lines(lifecycle: pd.DataFrame) -> list[str]:
    """The last two weeks' users by status and quick ratio (the last one may still be running)."""
    lines = ["growth by week (quick ratio = (new + resurrecting) / dormant):"]
    for week, rows in list(lifecycle.groupby("week", sort=True))[-2:]:
        users = rows.set_index("status")["users"]
        quick = rows["quick_ratio"].iloc[0]
        ratio = "n/a" if pd.isna(quick) else f"{quick:.2f}"
        counts = "  ".join(f"{status} {int(users[status]):,}" for status in users.index)
        lines.append(f"  week of {week}: {counts}  quick ratio {ratio}")
    return lines if len(lifecycle) else []


# One summary line per observability table that has rows.
OBSERVABILITY_LINES: dict[str, Callable[[pd.DataFrame], str]] = {
    "kpi_step_latency_daily": step_latency_line,
    "kpi_errors_daily": errors_line,
    "kpi_retry_daily": retry_line,
    "kpi_release_quality": release_line,
}


def summary_lines(warehouse: Warehouse, settings: Settings) -> list[str]:
    """Human-readable lines: table locations and counts, then headline KPIs."""
    lines = [
        f"warehouse: {warehouse.url}",
        f"staged telemetry (Parquet): {settings.staging_dir / 'telemetry_events'}",
        "tables (rows):",
    ]
    lines += [f"  {name:<30} {warehouse.count(name):>9,}" for name in TABLES]
    quarantine = warehouse.read("quarantine")
    if len(quarantine):
        reasons = quarantine.groupby(["source", "reason"]).size().sort_values(ascending=False).head(8)
        lines.append("quarantined rows by reason (top 8):")
        lines += [f"  {src:<10} {reason:<32} {n:>7,}" for (src, reason), n in reasons.items()]
    completion = warehouse.read("kpi_task_completion_daily")
    if len(completion):
        lines.append("task completion over all dates:")
        for row in completion_by_workflow(completion).itertuples(index=False):
            lines.append(
                f"  {row.workflow:<20} attempts {row.attempts:>7,}  completion {_pct(row.completion_rate):>6}"
                f"  first pass {_pct(row.first_pass_rate):>6}"
            )
    engagement = warehouse.read("kpi_engagement_daily")
    if len(engagement):
        last = engagement.sort_values("date").iloc[-1]
        lines.append(
            f"engagement on {last['date']}: DAU {last['dau']:,}  WAU {last['wau']:,}  MAU {last['mau']:,}"
            f"  stickiness {_pct(last['stickiness'])}"
        )
    deflection = warehouse.read("kpi_ticket_deflection_daily")
    if len(deflection) and deflection["help_sessions"].sum():
        rate = deflection["deflected"].sum() / deflection["help_sessions"].sum()
        lines.append(f"ticket deflection over all dates: {_pct(rate)} of help sessions")
    roi = warehouse.read("kpi_roi_daily")
    if len(roi):
        currency = roi["currency"].iloc[0]
        lines.append(f"net value over all dates: {roi['net_value'].sum():,.0f} {currency}")
    for name, line in OBSERVABILITY_LINES.items():
        rows = warehouse.read(name)
        if len(rows):
            lines.append(line(rows))
    lines += survey_lines(warehouse.read("kpi_survey_daily"))
    lines += support_lines(warehouse.read("kpi_support_daily"))
    lines += lifecycle_lines(warehouse.read("kpi_lifecycle_weekly"))
    uptime = warehouse.read("kpi_uptime_monthly")
    if uptime["uptime"].notna().any():
        lines.append(uptime_line(uptime))
    card = warehouse.read("kpi_scorecard")
    if len(card):
        lines += scorecard_lines(card, load_config(settings.config_path, settings.config_required))
    return lines


def scorecard_lines(card: pd.DataFrame, config: KpiConfig) -> list[str]:
    """Each workflow's status with the p-value of every flagged rate, and the rates that moved
    beyond the threshold without being significant (not flagged)."""
    alpha = config.scorecard.alpha
    lines = [
        f"scorecard as of {card['as_of'].iloc[0]} (a rate is flagged only when significant, p < {alpha:g}):"
    ]
    quiet = not_significant(card, config)
    for i, row in card.iterrows():
        flagged = flagged_metrics(row["status"])
        shown = [f"{m} (p {_p(row.get(f'{m}_p_value'))})" if f"{m}_p_value" in row else m for m in flagged]
        status = "regressed: " + ", ".join(shown) if shown else "ok"
        held = [f"{m} (p {_p(row[f'{m}_p_value'])})" for m in quiet[i].split(", ") if m]
        note = f"; beyond the threshold, not significant: {', '.join(held)}" if held else ""
        lines.append(f"  {row['workflow']:<20} {status}{note}")
    return lines


def _p(value: float) -> str:
    if pd.isna(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def print_summary(settings: Settings) -> None:
    for line in summary_lines(Warehouse(settings.warehouse_url), settings):
        print(line)
