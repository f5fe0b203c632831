"""Every warehouse table: grain, typed columns and what each column means.

This is ``shared/spec/kpis.md`` in code. The warehouse creates tables from it,
writes exactly these columns, and the Dagster assets publish it as their
column schema, so the contract, the database and the UI cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Logical column types: "string", "date" (ISO YYYY-MM-DD text), "timestamp" (UTC),
# "int", "float", "bool".
Column = tuple[str, str, str]  # (name, type, description)


@dataclass(frozen=True)
class TableSpec:
    name: str
    grain: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str
    partition_column: str | None = None  # the date column a daily partition replaces
    # Private tables hold raw records or user-level rows (quarantine, stg_*, pipeline state): they are
    # kept out of the BI readers' grants (see docs/warehouse.md).
    private: bool = False
    index: tuple[str, ...] = ()  # columns the warehouse indexes (lookups by key)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.columns)

    def dtypes(self) -> dict[str, str]:
        """pandas dtypes of the table's columns."""
        return {name: PANDAS_TYPES[kind] for name, kind, _ in self.columns}


PANDAS_TYPES: dict[str, str] = {
    "string": "string",
    "date": "string",
    "timestamp": "datetime64[us, UTC]",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
}

_ATTEMPT_RATES: tuple[Column, ...] = (
    ("attempts", "int", "attempts started on the date"),
    ("completions", "int", "completed attempts (task_completed within windows.completion hours)"),
    ("completion_rate", "float", "completions / attempts"),
    ("first_pass_completions", "int", "completed with no task_error or task_fallback before the completion"),
    ("first_pass_rate", "float", "first_pass_completions / attempts"),
    ("error_attempts", "int", "attempts with at least one task_error"),
    ("error_rate", "float", "error_attempts / attempts"),
    ("fallbacks", "int", "attempts with at least one task_fallback"),
    ("fallback_rate", "float", "fallbacks / attempts"),
    ("fallback_tickets", "int", "fallback attempts followed by a ticket on the workflow's topics"),
    ("fallback_to_ticket_rate", "float", "fallback_tickets / fallbacks"),
    ("median_seconds_to_complete", "float", "median of completion − start over completions"),
    ("p90_seconds_to_complete", "float", "90th percentile of completion − start"),
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "quarantine",
            ("source", "partition", "file", "line"),
            (
                ("source", "string", "telemetry, tickets or incidents"),
                ("partition", "string", "telemetry date partition; empty for exports"),
                ("file", "string", "raw file, relative to the data root"),
                ("line", "int", "1-based line in the decompressed file (CSV header = line 1)"),
                ("reason", "string", "first contract reason that applies"),
                ("raw", "string", "the original record as text"),
            ),
            "Every raw row that was not staged, with the reason.",
            private=True,
        ),
        TableSpec(
            "stg_support_tickets",
            ("ticket_id",),
            (
                ("ticket_id", "string", "ticket id"),
                ("created_at", "timestamp", "when the ticket was created"),
                ("updated_at", "timestamp", "timestamp of the winning (latest) version"),
                ("status", "string", "new, open, pending, solved or closed"),
                ("topic", "string", "support topic; joins to workflows via kpi.yaml"),
                ("channel", "string", "email, chat, web, phone, api …"),
                ("priority", "string", "low, normal, high or urgent"),
                ("requester_id", "string", "the user who asked; joins to telemetry user_id"),
                ("account_id", "string", "customer account"),
                ("first_reply_at", "timestamp", "first reply"),
                ("solved_at", "timestamp", "when solved"),
                ("agent_work_minutes", "float", "agent effort in minutes"),
                ("reopens", "int", "times reopened"),
                ("source_file", "string", "export file of the winning version"),
            ),
            "Support tickets, latest version of each ticket across all exports.",
            private=True,
        ),
        TableSpec(
            "stg_incidents",
            ("incident_id",),
            (
                ("incident_id", "string", "incident id"),
                ("started_at", "timestamp", "when user impact began"),
                ("severity", "string", "SEV1–SEV4"),
                ("service", "string", "affected service"),
                ("detected_at", "timestamp", "when detected (started_at when not exported)"),
                ("resolved_at", "timestamp", "when resolved; NULL while open"),
                ("affected_workflows", "string", "';'-joined, sorted workflow names"),
                ("title", "string", "title"),
                ("root_cause", "string", "root cause"),
                ("updated_at", "timestamp", "timestamp of the winning version"),
                ("source_file", "string", "export file of the winning version"),
            ),
            "Incidents, latest version of each incident across all exports.",
            private=True,
        ),
    )
}


def _rate(name: str, text: str) -> Column:
    return (name, "float", f"{text}; NULL when the denominator is 0")


SURVEY_DAILY = TableSpec(
    "kpi_survey_daily",
    ("date", "workflow", "survey"),
    (
        ("date", "date", "UTC date of the responses"),
        ("workflow", "string", "the response's workflow, else its attempt's, else 'none'"),
        ("survey", "string", "survey name as written (kpi.yaml surveys)"),
        ("responses", "int", "production survey_response events"),
        ("respondents", "int", "distinct users among them"),
        ("mean_score", "float", "mean score"),
        _rate("top_box_rate", "share of responses with a score in the survey's top_box"),
        _rate("bottom_box_rate", "share of responses with a score in the survey's bottom_box"),
        ("nps", "float", "100 × (top_box_rate − bottom_box_rate) for a survey of kind nps, else NULL"),
        (
            "paired_responses",
            "int",
            "responses paired with the attempt of their task_id, started on the date or the day before",
        ),
        ("mean_score_completed", "float", "mean score of paired responses whose attempt completed"),
        ("mean_score_failed", "float", "mean score of paired responses whose attempt failed"),
        ("unhappy_completions", "int", "paired responses in the bottom box whose attempt completed"),
        _rate("unhappy_completion_rate", "unhappy_completions / paired responses whose attempt completed"),
    ),
    "Perception beside behaviour: survey scores per workflow and day, joined to the attempt they rate "
    "(completed but unhappy).",
    partition_column="date",
)


KPI_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "kpi_task_completion_daily",
        ("date", "workflow", "persona", "channel"),
        (
            ("date", "date", "UTC date the attempts started"),
            ("workflow", "string", "workflow (user job)"),
            ("persona", "string", "persona of the start event; 'unknown' when missing"),
            ("channel", "string", "channel of the start event; 'unknown' when missing"),
            *(
                _rate(n, t) if k == "float" and n.endswith("rate") else (n, k, t)
                for n, k, t in _ATTEMPT_RATES
            ),
        ),
        "Task completion, first-pass, error and fallback rates of the attempts started on each date.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_funnel_daily",
        ("date", "workflow", "step_index"),
        (
            ("date", "date", "UTC date the attempts started"),
            ("workflow", "string", "workflow with configured steps"),
            ("step_index", "int", "0 = started, 1..n = configured steps, n+1 = completed"),
            ("step", "string", "step name (started, configured names, completed)"),
            ("reached", "int", "attempts of the date that reached the step (presence, not order)"),
            _rate("conversion_from_start", "reached / reached at step 0"),
            _rate("conversion_from_previous", "reached / reached at step k-1 (NULL at step 0)"),
            ("dropped_from_previous", "float", "reached at step k-1 − reached (NULL at step 0)"),
        ),
        "Funnel of each workflow's configured steps for the attempts started on each date.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_ticket_deflection_daily",
        ("date", "topic"),
        (
            ("date", "date", "UTC date"),
            ("topic", "string", "support topic with a help view or a created ticket on the date"),
            ("help_sessions", "int", "distinct users with help_viewed on the topic on the date"),
            ("deflected", "int", "of those, users with no ticket on the topic within windows.deflection h"),
            _rate("deflection_rate", "deflected / help_sessions"),
            ("tickets_created", "int", "tickets created on the date with the topic (any requester)"),
            _rate("self_service_ratio", "help_sessions / tickets_created"),
        ),
        "Self-service help views and the tickets they did (not) turn into, per topic and date.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_engagement_daily",
        ("date",),
        (
            ("date", "date", "UTC date with staged telemetry"),
            ("dau", "int", "distinct users with any event on the date"),
            ("wau", "int", "distinct users over the 7 days ending on the date"),
            ("mau", "int", "distinct users over the 28 days ending on the date"),
            _rate("stickiness", "dau / mau"),
            ("active_accounts", "int", "distinct accounts with any event on the date"),
            ("new_users", "int", "users whose first event in all staged history is on the date"),
        ),
        "Daily, weekly and monthly active users, stickiness, active accounts and new users.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_feature_adoption_daily",
        ("date", "feature"),
        (
            ("date", "date", "UTC date"),
            ("feature", "string", "feature used in the 28 days ending on the date"),
            ("users", "int", "distinct users with feature_used of the feature on the date"),
            ("accounts", "int", "distinct accounts of those users"),
            ("users_28d", "int", "distinct feature users over the 28 days ending on the date"),
            ("accounts_28d", "int", "distinct accounts of those"),
            _rate("adoption_rate_28d", "users_28d / mau of the date"),
            _rate("account_adoption_rate_28d", "accounts_28d / distinct active accounts over the 28 days"),
            ("median_users_per_account_28d", "float", "median over accounts_28d of their feature users"),
        ),
        "Feature adoption across users and accounts, on the date and over 28 days.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_roi_daily",
        ("date", "workflow"),
        (
            ("date", "date", "UTC date"),
            ("workflow", "string", "workflow"),
            ("attempts", "int", "attempts started on the date (from kpi_task_completion_daily)"),
            ("completions", "int", "completions from kpi_task_completion_daily, summed"),
            ("hours_saved", "float", "completions × minutes_saved_per_completion / 60"),
            ("labor_value", "float", "hours_saved × loaded_hourly_cost"),
            (
                "tickets_deflected",
                "int",
                "deflected of kpi_ticket_deflection_daily over the workflow's topics",
            ),
            ("support_cost_avoided", "float", "tickets_deflected × cost_per_ticket"),
            ("fallback_tickets", "int", "fallback tickets from kpi_task_completion_daily, summed"),
            ("fallback_ticket_cost", "float", "fallback_tickets × cost_per_ticket"),
            ("net_value", "float", "labor_value + support_cost_avoided − fallback_ticket_cost"),
            ("currency", "string", "currency from kpi.yaml"),
        ),
        "Value of each workflow per date: hours saved, tickets deflected, fallback tickets, in money.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_retention_weekly",
        ("cohort_week", "week_number"),
        (
            ("cohort_week", "date", "Monday of the week of the users' first event"),
            ("week_number", "int", "weeks since the cohort week (0 = the cohort week)"),
            ("cohort_users", "int", "users in the cohort"),
            ("retained_users", "int", "cohort users with any event in week cohort_week + week_number"),
            _rate("retention_rate", "retained_users / cohort_users"),
        ),
        "Weekly retention of first-event cohorts, up to the week of the last staged date.",
    ),
    TableSpec(
        "kpi_time_to_value_weekly",
        ("cohort_week",),
        (
            ("cohort_week", "date", "Monday of the week of the users' first event"),
            ("cohort_users", "int", "users in the cohort"),
            ("activated_users", "int", "cohort users with a completed attempt within activation_days"),
            _rate("activation_rate", "activated_users / cohort_users"),
            (
                "median_hours_to_first_completion",
                "float",
                "median hours from first event to first completion",
            ),
        ),
        "Activation of each weekly cohort: who completed a task soon after their first event, and how fast.",
    ),
    TableSpec(
        "kpi_incidents",
        ("incident_id",),
        (
            ("incident_id", "string", "incident id"),
            ("severity", "string", "SEV1–SEV4"),
            ("service", "string", "service"),
            ("started_at", "timestamp", "when user impact began"),
            ("detected_at", "timestamp", "when detected"),
            ("resolved_at", "timestamp", "when resolved; NULL while open"),
            ("affected_workflows", "string", "';'-joined, sorted"),
            ("minutes_to_detect", "float", "detected_at − started_at"),
            ("minutes_to_resolve", "float", "resolved_at − started_at (NULL while open)"),
            ("attempts_during", "int", "attempts of affected workflows started in [started_at, resolved_at)"),
            _rate("completion_rate_during", "completion rate of those attempts"),
            _rate("baseline_completion_rate", "completion rate in [started_at − 168 h, started_at)"),
            ("completion_rate_delta", "float", "completion_rate_during − baseline_completion_rate"),
            ("tickets_during", "int", "tickets on topics of affected workflows created in the window"),
            ("tickets_per_hour_during", "float", "tickets_during / window hours"),
            ("baseline_tickets_per_hour", "float", "such tickets in the baseline / 168"),
            ("window_end", "timestamp", "end of the window (latest telemetry while open)"),
            ("window_hours", "float", "length of the window in hours"),
            ("baseline_attempts", "int", "affected-workflow attempts started in the baseline"),
            ("baseline_tickets", "int", "affected-workflow tickets created in the baseline"),
        ),
        "What each incident cost in failed tasks and tickets, against the week before it.",
    ),
    TableSpec(
        "kpi_reliability_weekly",
        ("week", "severity"),
        (
            ("week", "date", "Monday of the week the incidents started"),
            ("severity", "string", "SEV1–SEV4"),
            ("incidents", "int", "incidents started in the week"),
            ("mean_minutes_to_detect", "float", "over those incidents"),
            ("mean_minutes_to_resolve", "float", "over those resolved"),
            ("open_incidents", "int", "those not resolved"),
        ),
        "Incident counts, detection and resolution times per week and severity.",
    ),
    TableSpec(
        "kpi_step_latency_daily",
        ("date", "workflow", "step"),
        (
            ("date", "date", "UTC date the attempts started"),
            ("workflow", "string", "workflow of the attempts"),
            ("step", "string", "task_step name as written (NULL for step events without one)"),
            ("events", "int", "task_step events with a duration_ms in the windows of those attempts"),
            ("attempts", "int", "distinct attempts among those events"),
            ("median_ms", "float", "median duration_ms (continuous)"),
            ("p95_ms", "float", "95th percentile of duration_ms (continuous)"),
            (
                "slow_events",
                "int",
                "events slower than the workflow's latency_budget_ms; NULL without a budget",
            ),
            ("slow_rate", "float", "slow_events / events; NULL without a budget"),
        ),
        "How long each step of a workflow takes, and how often it is slower than its latency budget.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_errors_daily",
        ("date", "workflow", "error_code"),
        (
            ("date", "date", "UTC date the attempts started"),
            ("workflow", "string", "workflow of the attempts"),
            ("error_code", "string", "error_code of the task_error; 'unknown' when missing"),
            ("error_attempts", "int", "attempts with a task_error of the code in their window"),
            ("error_events", "int", "task_error events of the code in those windows"),
            _rate("error_attempt_rate", "error_attempts / attempts of the (date, workflow)"),
            (
                "recovered_attempts",
                "int",
                "of error_attempts, those first completed strictly after their first error of the code",
            ),
            _rate("recovery_rate", "recovered_attempts / error_attempts"),
            ("fallback_attempts", "int", "of error_attempts, those with a task_fallback"),
        ),
        "Which errors users hit in each workflow, and whether they still completed afterwards.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_retry_daily",
        ("date", "workflow"),
        (
            ("date", "date", "UTC date the attempts started"),
            ("workflow", "string", "workflow of the attempts"),
            ("failed_attempts", "int", "attempts started on the date that did not complete"),
            (
                "retried",
                "int",
                "of those, retried: the same user started the workflow again within windows.retry hours",
            ),
            _rate("retry_rate", "retried / failed_attempts"),
            ("recovered", "int", "of those, whose retry completed"),
            _rate("recovery_rate", "recovered / failed_attempts"),
            ("fallback_without_retry", "int", "failed attempts with a task_fallback and no retry"),
        ),
        "Failure and recovery: how often a failed attempt is retried and the retry completes.",
        partition_column="date",
    ),
    TableSpec(
        "kpi_release_quality",
        ("workflow", "release"),
        (
            ("workflow", "string", "workflow"),
            ("release", "string", "release of the attempts' start events; 'unknown' when missing"),
            ("first_seen_at", "timestamp", "earliest start of the release's attempts of the workflow"),
            ("attempts", "int", "attempts of the release (all staged days)"),
            ("completions", "int", "of those, completed"),
            _rate("completion_rate", "completions / attempts"),
            _rate("first_pass_rate", "first-pass completions / attempts"),
            _rate("error_rate", "attempts with a task_error / attempts"),
            ("median_seconds_to_complete", "float", "median of completion − start over its completions"),
            (
                "p95_step_ms",
                "float",
                "95th percentile of duration_ms of task_step events in its attempts' windows",
            ),
            (
                "previous_release",
                "string",
                "the workflow's release first seen latest before this one; NULL for none",
            ),
            ("completion_rate_delta", "float", "completion_rate − the previous release's"),
            (
                "completion_p_value",
                "float",
                "two-sided pooled two-proportion z-test against the previous release; NULL when undefined",
            ),
        ),
        "Quality of each release per workflow, against the release before it: did a deployment make "
        "the user journey better or worse?",
    ),
    SURVEY_DAILY,
    TableSpec(
        "kpi_uptime_monthly",
        ("month", "service"),
        (
            ("month", "date", "first day of the UTC calendar month"),
            ("service", "string", "service named by the incidents"),
            ("minutes", "float", "minutes of the month, up to the as-of time in the last month"),
            ("incidents", "int", "incidents of the service active at some instant of the month"),
            (
                "outage_minutes",
                "float",
                "integral over the month of the largest outage_weight among the service's active incidents",
            ),
            ("uptime", "float", "1 − outage_minutes / minutes (NULL when the month has no minutes yet)"),
            ("slo", "float", "reliability.slo"),
            ("error_budget_minutes", "float", "(1 − slo) × minutes"),
            ("budget_used", "float", "outage_minutes / error_budget_minutes (NULL when the budget is 0)"),
        ),
        "Monthly uptime and error budget per service: each incident is an outage of its severity's weight "
        "from started_at until resolved_at (open ones until the as-of time).",
    ),
    TableSpec(
        "kpi_support_daily",
        ("date", "channel", "priority"),
        (
            ("date", "date", "UTC date the tickets were created"),
            ("channel", "string", "ticket channel ('unknown' when missing)"),
            ("priority", "string", "ticket priority ('unknown' when missing)"),
            ("tickets", "int", "tickets created on the date (latest version of each)"),
            ("solved", "int", "of those, with solved_at"),
            (
                "median_first_reply_minutes",
                "float",
                "median calendar minutes created_at → first_reply_at over tickets with a reply; "
                "NULL when none",
            ),
            (
                "median_first_reply_business_minutes",
                "float",
                "the same in business minutes; NULL without support.business_hours",
            ),
            (
                "median_resolution_minutes",
                "float",
                "median calendar minutes created_at → solved_at over solved tickets; NULL when none",
            ),
            (
                "median_resolution_business_minutes",
                "float",
                "the same in business minutes; NULL without support.business_hours",
            ),
            (
                "first_reply_breaches",
                "int",
                "tickets with a first_reply target whose time to reply (else to solved_at, else to the "
                "as-of time) exceeds it",
            ),
            _rate("first_reply_breach_rate", "first_reply_breaches / tickets with a first_reply target"),
            (
                "resolution_breaches",
                "int",
                "tickets with a resolution target whose time to solved_at (else to the as-of time) "
                "exceeds it",
            ),
            _rate("resolution_breach_rate", "resolution_breaches / tickets with a resolution target"),
            ("reopened", "int", "solved tickets with reopens > 0"),
            _rate("reopen_rate", "reopened / solved"),
            ("agent_minutes", "float", "sum of agent_work_minutes (0 when none)"),
            ("cost", "float", "tickets × support.cost_per_ticket_by_channel[channel], else cost_per_ticket"),
        ),
        "Support service per created date, channel and priority: replies, resolutions, SLA breaches, "
        "reopens, agent time and cost.",
    ),
    TableSpec(
        "kpi_lifecycle_weekly",
        ("week", "status"),
        (
            ("week", "date", "Monday of the UTC week"),
            ("status", "string", "new, returning, resurrecting or dormant"),
            ("users", "int", "users with that status in the week"),
            (
                "quick_ratio",
                "float",
                "(new + resurrecting) / dormant of the week, the same on its four rows; "
                "NULL when dormant is 0",
            ),
        ),
        "Growth accounting: each week's users by lifecycle status, and the quick ratio.",
    ),
    TableSpec(
        "kpi_cohort_retention",
        ("unit", "mode", "cohort_week", "week_number"),
        (
            ("unit", "string", "user or account"),
            ("mode", "string", "on (active in that week) or on_or_after (that week or any later one)"),
            ("cohort_week", "date", "Monday of the week of the unit's first production event"),
            ("week_number", "int", "weeks since the cohort week (0 = the cohort week)"),
            ("cohort_size", "int", "users (or accounts) in the cohort"),
            ("retained", "int", "of those, active as the mode says"),
            _rate("retention_rate", "retained / cohort_size"),
        ),
        "Weekly retention of first-event cohorts of users and of accounts, 'on' and 'on or after'.",
    ),
    TableSpec(
        "kpi_scorecard",
        ("workflow",),
        (
            ("workflow", "string", "workflow"),
            ("owner", "string", "owner from kpi.yaml"),
            ("primary_outcome", "string", "the workflow's description in kpi.yaml"),
            ("as_of", "date", "L: the last date with complete data"),
            *(
                col
                for metric, kind in (
                    ("completion_rate", "float"),
                    ("first_pass_rate", "float"),
                    ("fallback_to_ticket_rate", "float"),
                    ("deflection_rate", "float"),
                    ("csat_top_box_rate", "float"),
                    ("attempts", "int"),
                    ("net_value", "float"),
                )
                for col in (
                    (metric, kind, f"{metric} over the 7 days ending as_of"),
                    (f"{metric}_prev", kind, f"{metric} over the 7 days before those"),
                    *(
                        [
                            (
                                f"{metric}_p_value",
                                "float",
                                "two-sided pooled two-proportion z-test of the two periods; NULL when "
                                "either denominator is 0 or the pooled rate is 0 or 1",
                            )
                        ]
                        if kind == "float" and metric != "net_value"
                        else []
                    ),
                    *(
                        [
                            (
                                "completion_rate_ci_low",
                                "float",
                                "95 % Wilson interval of completion_rate: low end",
                            ),
                            (
                                "completion_rate_ci_high",
                                "float",
                                "95 % Wilson interval of completion_rate: high end",
                            ),
                        ]
                        if metric == "completion_rate"
                        else []
                    ),
                )
            ),
            (
                "status",
                "string",
                "'ok', or 'regressed: <metrics that moved the wrong way beyond the threshold (rates: "
                "and with p < alpha)>'",
            ),
        ),
        "One row per workflow: the last 7 days against the 7 before, and what regressed.",
    ),
)


TABLES.update({t.name: t for t in KPI_TABLES})

# Pipeline state kept in the warehouse (private: not for BI readers).
STATE_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "task_starts",
        ("date", "task_id"),
        (
            ("date", "date", "UTC date of the task_id's earliest production task_started that day"),
            ("task_id", "string", "a task_id with a production task_started on the date"),
            ("started_at", "timestamp", "its earliest task_started on the date"),
        ),
        "Every task_id started on each day (one row per task_id and day), so that a day's attempts "
        "know which task_ids already started earlier without reading all history.",
        partition_column="date",
        private=True,
        index=("task_id",),
    ),
    TableSpec(
        "user_days",
        ("date", "user_id"),
        (
            ("date", "date", "UTC date with production activity of the user"),
            ("user_id", "string", "a user with a production event on the date"),
            ("first_at", "timestamp", "the user's earliest production event on the date"),
        ),
        "Every user active on each day (one row per user and day), so that first-ever questions "
        "(new users, cohorts) are answered by key lookups and one narrow table, not by re-reading "
        "every day's activity.",
        partition_column="date",
        private=True,
        index=("user_id",),
    ),
    TableSpec(
        "user_weeks",
        ("date", "user_id"),
        (
            ("date", "date", "the user's first UTC date with production activity in its week (Monday first)"),
            ("user_id", "string", "a user active in the week"),
            ("first_at", "timestamp", "the user's earliest production event on the date"),
        ),
        "The user_days rows that open a user's week (one row per user and active week), so that the "
        "cohort tables read O(users × weeks) rows, not one per user and active day.",
        partition_column="date",
        private=True,
    ),
    TableSpec(
        "account_weeks",
        ("date", "account_id"),
        (
            (
                "date",
                "date",
                "the account's first UTC date with production activity in its week (Monday first)",
            ),
            ("account_id", "string", "an account active in the week"),
        ),
        "The first active day of each account in each week (one row per account and active week): "
        "what the account cohorts of kpi_cohort_retention read.",
        partition_column="date",
        private=True,
    ),
    TableSpec(
        "staging_commits",
        ("asset", "partition"),
        (
            ("asset", "string", "the Parquet-stored staging asset"),
            ("partition", "string", "its partition"),
            ("token", "string", "token of the committed Parquet file (in the file's metadata)"),
            ("rows", "int", "rows in the committed file"),
            ("quarantined_rows", "int", "quarantine rows committed with it"),
            ("committed_at", "timestamp", "when the version was committed"),
        ),
        "The version of each staged Parquet partition that the warehouse committed together with its "
        "quarantine rows; a write killed between the two stores is finished or discarded by this.",
        private=True,
    ),
)
TABLES.update({t.name: t for t in STATE_TABLES})

TELEMETRY_EVENTS = TableSpec(
    "telemetry_events",
    ("event_id",),
    (
        ("event_id", "string", "unique id of the event (first copy kept)"),
        ("occurred_at", "timestamp", "when it happened, UTC"),
        ("user_id", "string", "person who acted"),
        ("account_id", "string", "customer account of the user"),
        ("event_type", "string", "canonical event type, after aliases"),
        ("workflow", "string", "workflow of task_* events"),
        ("task_id", "string", "attempt id of task_* events"),
        ("step", "string", "milestone of task_step"),
        ("feature", "string", "feature of feature_used"),
        ("topic", "string", "support topic of help_viewed"),
        ("persona", "string", "role; 'unknown' when missing"),
        ("channel", "string", "web, mobile, api, cli …; 'unknown' when missing"),
        ("device", "string", "device"),
        ("environment", "string", "'production' when missing; only production counts in KPIs"),
        ("release", "string", "app version that emitted the event"),
        ("duration_ms", "float", "duration in ms, >= 0"),
        ("error_code", "string", "error of task_error"),
        ("survey", "string", "survey of survey_response (a kpi.yaml survey)"),
        ("score", "float", "score of survey_response, on its survey's scale"),
    ),
    "Staged telemetry of one UTC day (Parquet), one row per valid event.",
)


ATTEMPTS = TableSpec(
    "task_attempts",
    ("task_id",),
    (
        ("task_id", "string", "the attempt"),
        ("workflow", "string", "workflow of the earliest task_started"),
        ("user_id", "string", "user of the earliest task_started"),
        ("account_id", "string", "account of the earliest task_started"),
        ("persona", "string", "persona of the earliest task_started"),
        ("channel", "string", "channel of the earliest task_started"),
        ("date", "date", "UTC date of the start"),
        ("started_at", "timestamp", "earliest task_started"),
        ("release", "string", "release of the earliest task_started; 'unknown' when missing"),
        ("completed", "bool", "a task_completed within windows.completion hours (both ends included)"),
        ("completed_at", "timestamp", "first completion in the window"),
        ("seconds_to_complete", "float", "completed_at − started_at"),
        ("error", "bool", "a task_error in the window"),
        ("fallback", "bool", "a task_fallback in the window"),
        ("first_fallback_at", "timestamp", "first fallback in the window"),
        ("first_pass", "bool", "completed with no error or fallback before the first completion"),
        ("fallback_ticket", "bool", "fallback followed by the user's ticket on the workflow's topics"),
        ("steps_reached", "string", "';'-joined sorted task_step names in the window"),
    ),
    "One row per attempt (a task_id with a task_started), production events only (Parquet).",
)

ATTEMPT_EVENTS = TableSpec(
    "attempt_events",
    ("event_id",),
    (
        ("event_id", "string", "the event"),
        ("date", "date", "UTC date the attempt started"),
        ("task_id", "string", "the attempt"),
        ("workflow", "string", "workflow of the attempt"),
        ("release", "string", "release of the attempt"),
        ("event_type", "string", "task_step or task_error"),
        ("step", "string", "step of a task_step"),
        ("error_code", "string", "error_code of a task_error; 'unknown' when missing"),
        ("duration_ms", "float", "duration_ms of a task_step"),
        ("occurred_at", "timestamp", "when it happened"),
    ),
    "The task_step events with a duration_ms and the task_error events in the windows of each day's "
    "attempts, production only (Parquet). Feeds step latency, errors and release quality without "
    "re-reading telemetry.",
)

DAILY_ACTIVITY = TableSpec(
    "daily_activity",
    ("date", "user_id", "account_id", "feature"),
    (
        ("date", "date", "UTC date"),
        ("user_id", "string", "active user"),
        ("account_id", "string", "their account"),
        ("feature", "string", "feature used that day; NULL for the 'any event' row"),
        ("first_at", "timestamp", "the earliest such event of the day"),
    ),
    "Per-day rollup of production activity: who was active, in which account, using which feature "
    "(Parquet). Feeds the 7- and 28-day windows, retention and time to value.",
)


# The Parquet-stored assets, by name (their column schemas; empty frames for absent data).
PARQUET_TABLES: dict[str, TableSpec] = {
    t.name: t for t in (TELEMETRY_EVENTS, ATTEMPTS, ATTEMPT_EVENTS, DAILY_ACTIVITY)
}


def empty_frame(spec: TableSpec) -> pd.DataFrame:
    """A frame with the spec's columns and dtypes and no rows."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in spec.dtypes().items()})


def table(name: str) -> TableSpec:
    """The spec of a warehouse table; a clear error for unknown names."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown warehouse table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def conform(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Exactly the spec's columns, in order, with its dtypes (timestamps as UTC)."""
    missing = [c for c in spec.column_names if c not in frame.columns]
    if missing:
        raise KeyError(f"rows for table {spec.name} lack column(s) {', '.join(missing)}")
    data = frame[list(spec.column_names)].copy()
    for name, kind, _ in spec.columns:
        if kind == "timestamp":
            data[name] = pd.to_datetime(data[name], utc=True)
    return data.astype(spec.dtypes())


def reference_markdown() -> str:
    """docs/tables.md's table reference (grain and columns of every warehouse table), generated here."""
    parts = []
    for spec in TABLES.values():
        parts.append(f"#### `{spec.name}` — grain ({', '.join(spec.grain)})\n\n{spec.description}\n")
        parts.append("| column | type | meaning |\n|---|---|---|")
        parts += [f"| {name} | {kind} | {text} |" for name, kind, text in spec.columns]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
