"""Finance reports -> HTML -> PDF bytes (the invoice's environment, fetcher and stylesheet), and CSV.

Deterministic: the PDF's dates are the report's ``as_of``, no /ID, the charts byte-stable
(``charts``), so re-rendering a partition gives the same bytes (write-once document keys).
Every amount is formatted by ``domain.money`` in its own currency; one table per currency.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import hashlib
import io
from collections.abc import Sequence
from email.message import EmailMessage

from markupsafe import Markup

from billing_pipeline.domain import money
from billing_pipeline.domain.reports import AGING_BUCKETS, MOVEMENTS, AgingReport, DailyAnalytics, MrrReport, WeeklyBI
from billing_pipeline.rendering.charts import trend_svg
from billing_pipeline.rendering.context import environment

__all__ = [
    "build_report_email",
    "daily_csv",
    "daily_rows",
    "render_daily_pdf",
    "render_weekly_pdf",
    "weekly_csv",
    "weekly_view",
    "aging_csv",
    "aging_view",
    "mrr_csv",
    "mrr_view",
    "render_aging_html",
    "render_aging_pdf",
    "render_mrr_html",
    "render_mrr_pdf",
]

AGING_TEMPLATE = "report_ar_aging.html.j2"
DAILY_TEMPLATE = "report_daily.html.j2"
WEEKLY_TEMPLATE = "report_weekly_bi.html.j2"
#: The weekly table's columns: (heading, CurrencyDay attribute, money or count).
WEEKLY_COLUMNS = (("Invoiced", "invoiced", True), ("Collected", "collected", True), ("Overdue", "overdue", True))
MRR_TEMPLATE = "report_mrr.html.j2"


def html_to_pdf(html: str) -> bytes:
    """``rendering.pdf.html_to_pdf``, imported on first use: WeasyPrint (~3 s) stays out of loading
    the definitions."""
    from billing_pipeline.rendering.pdf import html_to_pdf as render

    return render(html)


def _created(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def aging_view(report: AgingReport) -> dict:
    fmt = money.format_amount
    return {
        "as_of": report.as_of.isoformat(),
        "created": _created(report.as_of),
        "buckets": AGING_BUCKETS,
        "open_invoices": report.open_invoices,
        "currencies": [
            {
                "code": c.currency,
                "rows": [
                    {
                        "org_id": r.org_id,
                        "org_name": r.org_name,
                        "invoices": r.invoices,
                        "buckets": [fmt(r.buckets[b], c.currency) for b in AGING_BUCKETS],
                        "total": fmt(r.total, c.currency),
                    }
                    for r in c.rows
                ],  # fmt: skip
                "totals": [fmt(c.totals[b], c.currency) for b in AGING_BUCKETS],
                "total": fmt(c.total, c.currency),
                "past_due": fmt(c.past_due, c.currency),
                "uncollectible": fmt(c.uncollectible, c.currency),
                "oldest": [
                    {
                        "number": o.number,
                        "org_id": o.org_id,
                        "due": o.due.isoformat(),
                        "days": o.days_past_due,
                        "bucket": o.bucket,
                        "total": fmt(o.total, c.currency),
                        "amount_due": fmt(o.amount_due, c.currency),
                    }
                    for o in c.oldest
                ],  # fmt: skip
            }
            for c in report.currencies
        ],
    }


def render_aging_html(report: AgingReport) -> str:
    return environment().get_template(AGING_TEMPLATE).render(**aging_view(report))


def render_aging_pdf(report: AgingReport) -> bytes:
    return html_to_pdf(render_aging_html(report))


def aging_csv(report: AgingReport) -> bytes:
    """One row per organization and currency: amount due per bucket (plain decimals), then totals."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["as_of", "currency", "org_id", "org_name", "invoices", *AGING_BUCKETS, "total"])
    for c in report.currencies:
        for r in c.rows:
            w.writerow([report.as_of, c.currency, r.org_id, r.org_name, r.invoices,
                        *(r.buckets[b] for b in AGING_BUCKETS), r.total])  # fmt: skip
        w.writerow([report.as_of, c.currency, "TOTAL", "", sum(r.invoices for r in c.rows),
                    *(c.totals[b] for b in AGING_BUCKETS), c.total])  # fmt: skip
    return out.getvalue().encode()


def mrr_view(report: MrrReport, *, charts: bool = True) -> dict:
    fmt = money.format_amount
    currencies = []
    for c in report.currencies:
        cur = c.currency
        currencies.append(
            {
                "code": cur,
                "start": fmt(c.start_mrr, cur),
                "end": fmt(c.end_mrr, cur),
                "arr": fmt(c.arr, cur),
                "net": fmt(c.net_change, cur),
                "movements": [(m, fmt(c.movements[m], cur)) for m in MOVEMENTS],
                "customers_start": c.customers_start,
                "customers_end": c.customers_end,
                "customer_moves": c.customer_moves,
                "invoiced": [(k, fmt(v, cur)) for k, v in c.invoiced.items()],
                "trend": [(label, fmt(v, cur)) for label, v in c.trend],
                "chart": Markup(trend_svg(c.trend, title=f"Committed MRR, {cur}", currency=cur)) if charts else "",
            }
        )
    return {"month": report.month, "as_of": report.as_of.isoformat(), "created": _created(report.as_of),
            "currencies": currencies}  # fmt: skip


def render_mrr_html(report: MrrReport) -> str:
    return environment().get_template(MRR_TEMPLATE).render(**mrr_view(report))


def render_mrr_pdf(report: MrrReport) -> bytes:
    return html_to_pdf(render_mrr_html(report))


def mrr_csv(report: MrrReport) -> bytes:
    """Long format: one row per (currency, measure), plain decimals; the trend as ``mrr_end:YYYY-MM``."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["month", "currency", "measure", "value"])
    for c in report.currencies:
        rows = [("committed_mrr_start", c.start_mrr), *((f"movement:{m}", c.movements[m]) for m in MOVEMENTS),
                ("committed_mrr_end", c.end_mrr), ("arr", c.arr), ("customers_start", c.customers_start),
                ("customers_end", c.customers_end), *((f"customers:{k}", v) for k, v in c.customer_moves.items()),
                *((f"invoiced:{k}", v) for k, v in c.invoiced.items()),
                *((f"mrr_end:{label}", v) for label, v in c.trend)]  # fmt: skip
        for measure, value in rows:
            w.writerow([report.month, c.currency, measure, value])
    return out.getvalue().encode()


def daily_rows(report: DailyAnalytics) -> list[tuple[str, list[tuple[str, str, object]]]]:
    """Per currency: (measure, formatted, plain value) rows, shared by the PDF, the CSV and metadata."""
    out = []
    for c in report.currencies:
        cur = c.currency
        conv = (
            "n/a"
            if c.conversion is None
            else f"{c.conversion * 100:.2f}% ({c.conversion_paid} of {c.conversion_issued})"
        )
        out.append((cur, [
            ("invoiced revenue", money.format_amount(c.invoiced, cur), c.invoiced),
            ("invoices issued", str(c.invoices_issued), c.invoices_issued),
            ("collected cash", money.format_amount(c.collected, cur), c.collected),
            ("payments", str(c.payments), c.payments),
            *((f"{k} customers", str(v), v) for k, v in c.customers.items()),
            ("draft-to-paid conversion (30 days)", conv, "" if c.conversion is None else c.conversion),
            ("overdue amount", money.format_amount(c.overdue, cur), c.overdue),
        ]))  # fmt: skip
    return out


def render_daily_pdf(report: DailyAnalytics) -> bytes:
    day = report.day.isoformat()
    html = (
        environment()
        .get_template(DAILY_TEMPLATE)
        .render(day=day, created=_created(report.day), currencies=daily_rows(report))
    )
    return html_to_pdf(html)


def daily_csv(report: DailyAnalytics) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["day", "currency", "measure", "value"])
    for cur, rows in daily_rows(report):
        for measure, _, value in rows:
            w.writerow([report.day, cur, measure, value])
    return out.getvalue().encode()


def weekly_view(report: WeeklyBI) -> dict:
    currencies = []
    for cur in report.currencies:
        fmt = lambda v, cur=cur: money.format_amount(v, cur)  # noqa: E731
        series = {attr: report.series(cur, attr) for _, attr, _ in WEEKLY_COLUMNS}
        days = [
            {"day": day, "cells": [fmt(series[attr][i][1]) for _, attr, _ in WEEKLY_COLUMNS]}
            for i, (day, _) in enumerate(series["invoiced"])
        ]
        chart = trend_svg(
            series["invoiced"], title=f"Invoiced revenue per day, {cur}", currency=cur, measure="Invoiced"
        )
        currencies.append({
            "code": cur,
            "days": days,
            "totals": [fmt(report.total(cur, "invoiced")), fmt(report.total(cur, "collected")), ""],
            "customers": {k: report.customers(cur, k) for k in ("new", "reactivated", "churned")},
            "chart": Markup(chart),
        })  # fmt: skip
    last = report.days[-1].day.isoformat()
    return {"first": report.first_day.isoformat(), "last": last, "created": _created(report.first_day),
            "columns": [c for c, _, _ in WEEKLY_COLUMNS], "currencies": currencies}  # fmt: skip


def render_weekly_pdf(report: WeeklyBI) -> bytes:
    return html_to_pdf(environment().get_template(WEEKLY_TEMPLATE).render(**weekly_view(report)))


def weekly_csv(report: WeeklyBI) -> bytes:
    """The seven days' rows of ``daily_csv``, one after the other."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["day", "currency", "measure", "value"])
    for day in report.days:
        for cur, rows in daily_rows(day):
            for measure, _, value in rows:
                w.writerow([day.day, cur, measure, value])
    return out.getvalue().encode()


def build_report_email(
    *,
    subject: str,
    body: str,
    sender: str,
    recipients: Sequence[str],
    message_id: str,
    attachments: Sequence[tuple[str, bytes, str]],
    sent: dt.date,
) -> EmailMessage:
    """One message to every recipient, the report's files attached ((filename, bytes, mime type)).

    ``message_id`` and the ``Date`` (the report's ``as_of``) are deterministic: a re-built message
    is byte-identical, and the outbox dedupes by Message-ID.
    """
    msg = EmailMessage()
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = email.utils.format_datetime(dt.datetime(sent.year, sent.month, sent.day, tzinfo=dt.UTC))
    msg["Message-ID"] = message_id
    msg.set_content(body)
    for filename, data, mime in attachments:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    if attachments:  # a boundary from the Message-ID, not a random one: the same bytes every time
        msg.set_boundary("=_report_" + hashlib.sha256(message_id.encode()).hexdigest()[:32])
    return msg
