"""Finance reports end to end, without Dagster: read (``db.reports``), compute (``domain.reports``),
render (``rendering.reports``), store write-once and e-mail once per partition (``db.report_deliveries``).

Document keys, one per report and partition, never overwritten (the store refuses different bytes
under an existing key: ``DocumentConflict``)::

    reports/ar_aging/{as_of}/ar_aging_{as_of}.pdf|.csv      as_of: the Monday, YYYY-MM-DD
    reports/mrr/{YYYY-MM}/mrr_{YYYY-MM}.pdf|.csv
    reports/daily_analytics/{day}/daily_analytics_{day}.pdf|.csv
    reports/weekly_bi/{sunday}/weekly_bi_{sunday}.pdf|.csv

The e-mail is claimed in the ledger before the SMTP call and marked sent right after it; see
``db.report_deliveries`` for what a re-run does with each ledger state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

from billing_pipeline.clients.documents import DocumentStore, StoredDocument
from billing_pipeline.clients.errors import AmbiguousMailError, MailError
from billing_pipeline.clients.mailer import Mailer
from billing_pipeline.db import report_deliveries as ledger
from billing_pipeline.db import reports as rows
from billing_pipeline.domain.reports import (
    AgingReport,
    DailyAnalytics,
    MrrReport,
    WeeklyBI,
    ar_aging,
    daily_analytics,
    mrr_report,
    weekly_bi,
)
from billing_pipeline.domain.reports.mrr import month_start, next_month
from billing_pipeline.rendering import reports as render

if TYPE_CHECKING:
    from sqlalchemy import Engine

AR_AGING, MRR, DAILY, WEEKLY = "ar_aging", "mrr", "daily_analytics", "weekly_bi"


class ReportMailFailed(RuntimeError):
    """The report's e-mail was not sent (the ledger says whether a later run retries it)."""


def build_aging(engine: Engine, as_of: dt.date) -> AgingReport:
    cutoff = dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.UTC)
    return ar_aging(rows.aging_invoices(engine, cutoff), as_of)


def build_mrr(engine: Engine, month: dt.date) -> MrrReport:
    start = month_start(month)
    end = next_month(start)
    return mrr_report(rows.all_subscriptions(engine, end), rows.plans_by_code(engine),
                      rows.invoiced_lines(engine, start, end), month)  # fmt: skip


def build_daily(engine: Engine, day: dt.date) -> DailyAnalytics:
    end = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    return daily_analytics(rows.aging_invoices(engine, end, rows.ISSUED), rows.all_subscriptions(engine, end),
                           rows.plans_by_code(engine), day)  # fmt: skip


def build_weekly(engine: Engine, first_day: dt.date) -> WeeklyBI:
    end = dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.UTC) + dt.timedelta(days=7)
    return weekly_bi(rows.aging_invoices(engine, end, rows.ISSUED), rows.all_subscriptions(engine, end),
                     rows.plans_by_code(engine), first_day)  # fmt: skip


@dataclass(frozen=True)
class ReportFiles:
    report: str
    partition_key: str  # as_of (AR aging) or YYYY-MM (MRR)
    subject: str
    body: str
    files: tuple[tuple[str, bytes, str], ...]  # (filename, bytes, mime type)

    def key(self, filename: str) -> str:
        return f"reports/{self.report}/{self.partition_key}/{filename}"


def _report_files(report: str, key: str, subject: str, lines: list[str], pdf: bytes, csv: bytes) -> ReportFiles:
    """``{report}_{key}.pdf`` and ``.csv``, and the e-mail's text: ``lines`` then a note on the attachments."""
    files = ((f"{report}_{key}.pdf", pdf, "application/pdf"), (f"{report}_{key}.csv", csv, "text/csv"))
    return ReportFiles(report, key, subject, "\n".join(lines) + "\n\nPDF and CSV attached.\n", files)


def aging_files(report: AgingReport) -> ReportFiles:
    day = report.as_of.isoformat()
    lines = [f"Accounts receivable aging as of {day} (00:00 UTC): {report.open_invoices} open invoice(s)."]
    lines += [f"  {c.currency}: {c.total} due, {c.past_due} past due, {c.uncollectible} uncollectible"
              for c in report.currencies]  # fmt: skip
    return _report_files(AR_AGING, day, f"AR aging as of {day}", lines, render.render_aging_pdf(report),
                         render.aging_csv(report))  # fmt: skip


def mrr_files(report: MrrReport) -> ReportFiles:
    lines = [f"MRR and ARR summary for {report.month} (end MRR at {report.as_of} 00:00 UTC)."]
    lines += [f"  {c.currency}: MRR {c.start_mrr} -> {c.end_mrr}, ARR {c.arr}, customers {c.customers_end}"
              for c in report.currencies]  # fmt: skip
    return _report_files(MRR, report.month, f"MRR/ARR summary {report.month}", lines, render.render_mrr_pdf(report),
                         render.mrr_csv(report))  # fmt: skip


def daily_files(report: DailyAnalytics) -> ReportFiles:
    day = report.day.isoformat()
    lines = [f"Daily analytics for {day} (UTC)."]
    lines += [f"  {c.currency}: invoiced {c.invoiced}, collected {c.collected}, overdue {c.overdue}"
              for c in report.currencies]  # fmt: skip
    return _report_files(DAILY, day, f"Daily analytics {day}", lines, render.render_daily_pdf(report),
                         render.daily_csv(report))  # fmt: skip


def weekly_files(report: WeeklyBI) -> ReportFiles:
    first = report.first_day.isoformat()
    lines = [f"Weekly business intelligence for {first} to {report.days[-1].day} (UTC)."]
    lines += [f"  {cur}: invoiced {report.total(cur, 'invoiced')}, collected {report.total(cur, 'collected')}"
              for cur in report.currencies]  # fmt: skip
    return _report_files(WEEKLY, first, f"Weekly BI {first}", lines, render.render_weekly_pdf(report),
                         render.weekly_csv(report))  # fmt: skip


def report_message_id(report: str, partition_key: str, sender: str) -> str:
    """``<report-ar_aging-2026-11-30@example.com>``: the same for every attempt of one partition."""
    return f"<report-{report}-{partition_key}@{sender.rsplit('@', 1)[-1]}>"


@dataclass(frozen=True)
class Published:
    documents: tuple[StoredDocument, ...]
    email: str  # sent | already sent | no recipients | left alone: <ledger status> | claimed by another run
    message_id: str | None


def store_files(store: DocumentStore, files: ReportFiles) -> tuple[StoredDocument, ...]:
    return tuple(store.put(files.key(name), data, mime) for name, data, mime in files.files)


def publish(
    engine: Engine, store: DocumentStore, mailer: Mailer, files: ReportFiles, *, recipients: Sequence[str],
    sender: str, sent: dt.date,
) -> Published:  # fmt: skip
    """Store the files (write-once), then e-mail them once per partition (the ledger decides)."""
    docs = store_files(store, files)
    if not recipients:
        return Published(docs, "no recipients", None)
    seen = ledger.get(engine, files.report, files.partition_key)
    if seen is not None and seen.status != "failed":
        note = "already sent" if seen.status == "succeeded" else f"left alone: {seen.status}"
        return Published(docs, note, seen.message_id)
    mid = report_message_id(files.report, files.partition_key, sender)
    msg = _message(files, recipients, sender, mid, sent)
    if not ledger.claim(engine, files.report, files.partition_key, seen, mid, ", ".join(recipients)):
        return Published(docs, "claimed by another run", mid)
    _send(engine, mailer, files, msg())
    ledger.mark_sent(engine, files.report, files.partition_key)
    return Published(docs, "sent", mid)


def _message(files: ReportFiles, recipients: Sequence[str], sender: str, mid: str, sent: dt.date):
    def build() -> EmailMessage:
        return render.build_report_email(subject=files.subject, body=files.body, sender=sender, recipients=recipients,
                                         message_id=mid, attachments=files.files, sent=sent)  # fmt: skip

    return build


def _send(engine: Engine, mailer: Mailer, files: ReportFiles, msg: EmailMessage) -> None:
    try:
        mailer.send(msg)
    except AmbiguousMailError as exc:
        ledger.mark_failed(engine, files.report, files.partition_key, str(exc), ambiguous=True)
        raise ReportMailFailed(f"{files.subject}: may have been sent (ambiguous, never resent): {exc}") from exc
    except MailError as exc:
        status = ledger.mark_failed(engine, files.report, files.partition_key, str(exc))
        then = "retried by the next run" if status == "failed" else "dead letter: not retried"
        raise ReportMailFailed(f"{files.subject}: e-mail failed ({then}): {exc}") from exc


__all__ = [
    "AR_AGING",
    "DAILY",
    "MRR",
    "WEEKLY",
    "Published",
    "ReportFiles",
    "ReportMailFailed",
    "aging_files",
    "build_aging",
    "build_daily",
    "build_mrr",
    "build_weekly",
    "daily_files",
    "mrr_files",
    "publish",
    "report_message_id",
    "weekly_files",
]
