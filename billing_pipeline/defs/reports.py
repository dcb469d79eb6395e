"""Finance report assets: ``ar_aging_report`` (weekly, Mondays), ``mrr_report`` (monthly),
``daily_analytics_report`` (daily) and ``weekly_bi_report`` (weekly, Sundays), and their schedules.

Thin: read the partition window, call ``services.finance_reports`` (read, compute, render, store,
e-mail once), return the numbers as metadata: a markdown table per currency and numeric values
per currency (``*_USD`` ...) that the UI plots across partitions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from billing_pipeline.defs.delivery_resources import DocumentStoreResource, MailerResource
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain import money
from billing_pipeline.domain.reports import AGING_BUCKETS, MOVEMENTS, AgingReport, DailyAnalytics, MrrReport, WeeklyBI
from billing_pipeline.rendering.reports import daily_rows
from billing_pipeline.services import finance_reports as reports

if TYPE_CHECKING:
    from sqlalchemy import Engine

GROUP = "reports"


def _as_number(value) -> dg.MetadataValue:
    return dg.MetadataValue.float(float(value))  # a plot point only; the tables print exact amounts


def aging_metadata(report: AgingReport, published: reports.Published) -> dict:
    head = "| currency | organization | " + " | ".join(AGING_BUCKETS) + " | total |\n"
    head += "|---" * (len(AGING_BUCKETS) + 3) + "|\n"
    lines = []
    meta: dict = {"as_of": report.as_of.isoformat(), "open_invoices": report.open_invoices}
    for c in report.currencies:
        fmt = lambda v, cur=c.currency: money.format_amount(v, cur)  # noqa: E731
        for r in c.rows:
            lines.append(f"| {c.currency} | {r.org_id} | " + " | ".join(fmt(r.buckets[b]) for b in AGING_BUCKETS)
                         + f" | {fmt(r.total)} |")  # fmt: skip
        lines.append(f"| **{c.currency}** | **total** | " + " | ".join(fmt(c.totals[b]) for b in AGING_BUCKETS)
                     + f" | **{fmt(c.total)}** |")  # fmt: skip
        meta[f"total_due_{c.currency}"] = _as_number(c.total)
        meta[f"past_due_{c.currency}"] = _as_number(c.past_due)
    meta["aging"] = dg.MetadataValue.md(head + "\n".join(lines) if lines else "No open receivables.")
    return meta | _published(published)


def mrr_metadata(report: MrrReport, published: reports.Published) -> dict:
    meta: dict = {"month": report.month}
    tables = []
    for c in report.currencies:
        fmt = lambda v, cur=c.currency: money.format_amount(v, cur)  # noqa: E731
        rows = [("start MRR", fmt(c.start_mrr)), *((m, fmt(c.movements[m])) for m in MOVEMENTS),
                ("end MRR", fmt(c.end_mrr)), ("ARR", fmt(c.arr)), ("customers", str(c.customers_end)),
                *((f"invoiced {k}", fmt(v)) for k, v in c.invoiced.items())]  # fmt: skip
        trend = " | ".join(f"{label}: {fmt(v)}" for label, v in c.trend)
        tables.append(f"**{c.currency}**\n\n| measure | value |\n|---|---|\n"
                      + "\n".join(f"| {k} | {v} |" for k, v in rows) + f"\n\n12-month end MRR: {trend}\n")  # fmt: skip
        meta[f"mrr_{c.currency}"] = _as_number(c.end_mrr)
        meta[f"arr_{c.currency}"] = _as_number(c.arr)
        meta[f"customers_{c.currency}"] = dg.MetadataValue.int(c.customers_end)
    meta["summary"] = dg.MetadataValue.md("\n".join(tables) or "No subscriptions and no invoices.")
    return meta | _published(published)


def daily_metadata(report: DailyAnalytics, published: reports.Published) -> dict:
    meta: dict = {"day": report.day.isoformat()}
    tables = []
    for cur, rows in daily_rows(report):
        tables.append(
            f"**{cur}**\n\n| measure | value |\n|---|---|\n" + "\n".join(f"| {m} | {v} |" for m, v, _ in rows)
        )
    for c in report.currencies:
        meta[f"invoiced_{c.currency}"] = _as_number(c.invoiced)
        meta[f"collected_{c.currency}"] = _as_number(c.collected)
        meta[f"overdue_{c.currency}"] = _as_number(c.overdue)
    meta["analytics"] = dg.MetadataValue.md("\n\n".join(tables) or "Nothing happened that day.")
    return meta | _published(published)


def weekly_metadata(report: WeeklyBI, published: reports.Published) -> dict:
    meta: dict = {"first_day": report.first_day.isoformat()}
    lines = ["| currency | day | invoiced | collected | overdue |", "|---|---|---|---|---|"]
    for cur in report.currencies:
        fmt = lambda v, cur=cur: money.format_amount(v, cur)  # noqa: E731
        inv, col, ovd = (report.series(cur, m) for m in ("invoiced", "collected", "overdue"))
        for (day, i), (_, c), (_, o) in zip(inv, col, ovd, strict=True):
            lines.append(f"| {cur} | {day} | {fmt(i)} | {fmt(c)} | {fmt(o)} |")
        meta[f"invoiced_{cur}"] = _as_number(report.total(cur, "invoiced"))
        meta[f"collected_{cur}"] = _as_number(report.total(cur, "collected"))
    meta["week"] = dg.MetadataValue.md("\n".join(lines) if report.currencies else "Nothing happened that week.")
    return meta | _published(published)


def _published(p: reports.Published) -> dict:
    out: dict = {"email": p.email}
    for d in p.documents:
        out[d.key.rsplit(".", 1)[-1]] = dg.MetadataValue.path(d.url_or_path)
        out[f"{d.key.rsplit('.', 1)[-1]}_sha256"] = d.sha256_hex
    if p.message_id:
        out["message_id"] = p.message_id
    return out


def _publish(files, billing_db, document_store, mailer, recipients, sender, sent: dt.date) -> reports.Published:
    try:
        return reports.publish(billing_db.engine(), document_store.store(), mailer.mailer(), files,
                               recipients=recipients, sender=sender, sent=sent)  # fmt: skip
    except reports.ReportMailFailed as exc:
        raise dg.Failure(description=str(exc)) from exc


@dataclass(frozen=True)
class _Report:
    """What differs between the report assets: the date their window gives, how they are built,
    rendered and described."""

    name: str
    description: str
    at_window_end: bool  # the report's date is the window's end (AR aging's as-of), else its start
    build: Callable[[Engine, dt.date], Any]
    files: Callable[[Any], reports.ReportFiles]
    metadata: Callable[[Any, reports.Published], dict]


def _report_asset(
    kind: _Report, partitions_def: dg.PartitionsDefinition, recipients: Sequence[str], sender: str
) -> dg.AssetsDefinition:
    @dg.asset(name=kind.name, partitions_def=partitions_def, group_name=GROUP, kinds={"pdf", "csv"},
              description=kind.description)  # fmt: skip
    def _asset(
        context,
        billing_db: BillingDatabaseResource,
        document_store: DocumentStoreResource,
        mailer: MailerResource,
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        day = (window.end if kind.at_window_end else window.start).astimezone(dt.UTC).date()
        report = kind.build(billing_db.engine(), day)
        files = kind.files(report)
        # the e-mail's Date: when the report is due (the window's end), the same on every attempt
        published = _publish(files, billing_db, document_store, mailer, recipients, sender, window.end.date())
        return dg.MaterializeResult(metadata=kind.metadata(report, published))

    return _asset


AR_AGING = _Report("ar_aging_report", "Accounts receivable aging as of the Monday that ends the partition's week.",
                   True, reports.build_aging, reports.aging_files, aging_metadata)  # fmt: skip
MRR = _Report("mrr_report", "MRR/ARR summary of the partition's calendar month, with 12-month trend charts.",
              False, reports.build_mrr, reports.mrr_files, mrr_metadata)  # fmt: skip
DAILY = _Report("daily_analytics_report", "Invoiced revenue, collected cash, customers, conversion, overdue: one day.",
                False, reports.build_daily, reports.daily_files, daily_metadata)  # fmt: skip
WEEKLY = _Report("weekly_bi_report", "The week (Sunday to Saturday, UTC): daily analytics per currency, charts.",
                 False, reports.build_weekly, reports.weekly_files, weekly_metadata)  # fmt: skip


def ar_aging_report_asset(partitions_def, *, recipients: Sequence[str], sender: str) -> dg.AssetsDefinition:
    return _report_asset(AR_AGING, partitions_def, recipients, sender)


def mrr_report_asset(partitions_def, *, recipients: Sequence[str], sender: str) -> dg.AssetsDefinition:
    return _report_asset(MRR, partitions_def, recipients, sender)


def daily_analytics_report_asset(partitions_def, *, recipients: Sequence[str], sender: str) -> dg.AssetsDefinition:
    return _report_asset(DAILY, partitions_def, recipients, sender)


def weekly_bi_report_asset(partitions_def, *, recipients: Sequence[str], sender: str) -> dg.AssetsDefinition:
    return _report_asset(WEEKLY, partitions_def, recipients, sender)


def report_schedule(
    *, name: str, job: dg.UnresolvedAssetJobDefinition, partitions_def: dg.TimeWindowPartitionsDefinition,
    cron: str, running: bool,
) -> dg.ScheduleDefinition:  # fmt: skip
    """Each tick requests the job's last closed partition at the tick's time, once (a run of this
    schedule for that partition on the instance: a second tick in the same week or month launches nothing). What
    ``build_schedule_from_partitioned_job`` does, with the cron a setting (the e2e suite ticks it
    every minute); the default crons are the partitions' own (Monday 07:00, 1st 08:00 UTC)."""

    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        keys = partitions_def.get_partition_keys(current_time=context.scheduled_execution_time)
        if not keys:
            return dg.SkipReason(f"no closed {partitions_def.cron_schedule!r} partition before the first one ends")
        # Dagster dedupes a run key within one tick only: a later tick in the same week or month
        # would launch the partition again, so the instance is asked (as the invoice schedules do)
        launched = context.instance.get_runs(
            dg.RunsFilter(tags={"dagster/schedule_name": name, "dagster/partition": keys[-1]}), limit=1
        )
        if launched:
            return dg.SkipReason(f"{keys[-1]} was already launched (run {launched[0].run_id[:8]})")
        return dg.RunRequest(run_key=keys[-1], partition_key=keys[-1])

    return _schedule
