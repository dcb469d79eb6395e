"""Finance reports on PostgreSQL with the SMTP test server: the numbers (hand-computed), the PDFs
looked at (pages as PNG in test-artifacts/, text extracted), the e-mail sent once per partition
on re-runs, a transient SMTP failure retried by the next run and then sent once."""

from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from billing_pipeline.clients.documents import LocalDocumentStore
from billing_pipeline.clients.mailer import SMTPMailer
from billing_pipeline.db import report_deliveries
from billing_pipeline.db.engine import get_engine
from billing_pipeline.services import finance_reports as reports
from billing_pipeline_tests import report_data
from billing_pipeline_tests.builders import setup_database

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
RECIPIENTS = ("finance@example.com",)


@pytest.fixture
def engine(billing_db_url):
    setup_database(billing_db_url)
    engine = get_engine(billing_db_url)
    report_data.seed(engine)
    return engine


def mailer(smtp) -> SMTPMailer:
    return SMTPMailer(smtp.host, smtp.port, smtp.username, smtp.password, "starttls", 10, ca_file=smtp.cert_path)


def pdf_text_and_pages(pdf: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob(f"{name}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(path), str(ARTIFACTS / name)], check=True)
    assert list(ARTIFACTS.glob(f"{name}-*.png"))
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (make setup installs it)")
def test_ar_aging_numbers_pdf_and_one_email(engine, smtp_server, tmp_path):
    report = reports.build_aging(engine, report_data.AS_OF)
    for c in report.currencies:
        assert {b: str(v) for b, v in c.totals.items()} == report_data.EXPECTED_AGING[c.currency]
    usd = next(c for c in report.currencies if c.currency == "USD")
    assert usd.uncollectible == Decimal("12.00")
    files = reports.aging_files(report)
    text = pdf_text_and_pages(files.files[0][1], tmp_path, "ar_aging_report")
    assert "As of 2026-11-30" in text
    for needle in ("15.00 USD", "80.00 USD", "95.00 USD", "200.00 EUR", "4,000 JPY", "12.00 USD"):
        assert needle in text, needle
    assert [" ".join(line.split()) for line in text.splitlines() if "Total USD" in line] == [
        "Total USD 0.00 USD 15.00 USD 80.00 USD 0.00 USD 0.00 USD 95.00 USD"
    ]
    store = LocalDocumentStore(tmp_path / "documents")
    for _ in range(3):
        reports.publish(engine, store, mailer(smtp_server), files, recipients=RECIPIENTS,
                        sender="billing@example.com", sent=report_data.AS_OF)  # fmt: skip
    assert [m.subject for m in smtp_server.messages] == ["AR aging as of 2026-11-30"]
    assert smtp_server.messages[0].rcpt_tos == list(RECIPIENTS)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (make setup installs it)")
def test_mrr_numbers_chart_text_and_byte_stable_pdf(engine, tmp_path):
    report = reports.build_mrr(engine, report_data.MONTH)
    for c in report.currencies:
        want = report_data.EXPECTED_MRR[c.currency]
        got = {"start": c.start_mrr, "end": c.end_mrr, "churn": c.movements["churn"], "arr": c.arr,
               "reactivation": c.movements["reactivation"], "new": c.movements["new"]}  # fmt: skip
        assert {k: str(v) for k, v in got.items()} == want, c.currency
    files = reports.mrr_files(report)
    again = reports.mrr_files(reports.build_mrr(engine, report_data.MONTH))
    assert files.files == again.files  # byte-stable: PDF (with its SVG charts) and CSV
    text = pdf_text_and_pages(files.files[0][1], tmp_path, "mrr_report")
    assert "MRR and ARR summary: 2026-11" in text
    assert "Committed MRR, USD" in text and "MRR (USD)" in text  # the chart's title and axis, as text
    assert "2026-11" in text and "1,188.00 EUR" in text and "-10.00 USD" in text
    csv_text = files.files[1][1].decode()
    assert "2026-11,USD,movement:churn,-10.00" in csv_text and "2026-11,EUR,arr,1188.00" in csv_text


def test_transient_smtp_failure_is_retried_by_the_next_run_then_sent_once(engine, smtp_server, tmp_path):
    files = reports.aging_files(reports.build_aging(engine, report_data.AS_OF))
    store = LocalDocumentStore(tmp_path / "documents")
    smtp_server.fail_next(1, code=451)
    args = {"recipients": RECIPIENTS, "sender": "billing@example.com", "sent": report_data.AS_OF}
    with pytest.raises(reports.ReportMailFailed, match="retried by the next run"):
        reports.publish(engine, store, mailer(smtp_server), files, **args)
    assert report_deliveries.get(engine, "ar_aging", "2026-11-30").status == "failed"
    assert reports.publish(engine, store, mailer(smtp_server), files, **args).email == "sent"
    assert reports.publish(engine, store, mailer(smtp_server), files, **args).email == "already sent"
    row = report_deliveries.get(engine, "ar_aging", "2026-11-30")
    assert (row.status, row.attempts) == ("succeeded", 2) and len(smtp_server.messages) == 1


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (make setup installs it)")
def test_daily_analytics_pdf_text(engine, tmp_path):
    import datetime as dt

    report = reports.build_daily(engine, dt.date(2026, 11, 5))
    eur = next(c for c in report.currencies if c.currency == "EUR")
    assert (eur.invoiced, eur.customers["new"], eur.conversion_issued) == (Decimal("200.00"), 1, 1)
    text = pdf_text_and_pages(reports.daily_files(report).files[0][1], tmp_path, "daily_analytics_report")
    assert "Daily analytics: 2026-11-05" in text
    lines = {" ".join(line.split()) for line in text.splitlines()}
    assert {"invoiced revenue 200.00 EUR", "new customers 1", "overdue amount 4,000 JPY"} <= lines
    assert "draft-to-paid conversion (30 days) 0.00% (0 of 1)" in lines


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (make setup installs it)")
def test_weekly_bi_pdf_text_and_chart(engine, tmp_path):
    import datetime as dt

    report = reports.build_weekly(engine, dt.date(2026, 11, 1))
    text = pdf_text_and_pages(reports.weekly_files(report).files[0][1], tmp_path, "weekly_bi_report")
    flat = " ".join(text.split())
    assert "Weekly business intelligence: 2026-11-01 to 2026-11-07" in flat
    assert "Invoiced revenue per day, EUR" in flat and "Invoiced (EUR)" in flat  # the chart, as text
    lines = {" ".join(line.split()) for line in text.splitlines()}
    assert "2026-11-05 200.00 EUR 0.00 EUR 0.00 EUR" in lines and "2026-11-02 0.00 USD 25.00 USD 95.00 USD" in lines
