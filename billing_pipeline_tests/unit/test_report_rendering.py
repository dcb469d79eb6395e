"""Report rendering without a database: byte-stable charts with text kept as text, CSV in plain decimals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from billing_pipeline.domain.model import InvoiceStatus
from billing_pipeline.domain.reports import AgingInvoice, ar_aging
from billing_pipeline.rendering.charts import trend_svg
from billing_pipeline.rendering.reports import aging_csv, build_report_email, render_aging_html

POINTS = [(f"2026-{m:02d}", Decimal(m * 100)) for m in range(1, 13)]


def test_trend_svg_is_byte_stable_and_keeps_text():
    a = trend_svg(POINTS, title="Committed MRR, USD", currency="USD")
    assert a == trend_svg(POINTS, title="Committed MRR, USD", currency="USD")
    assert a.startswith("<svg") and "<text" in a and "Committed MRR, USD" in a and "2026-12" in a
    assert "dc:date" not in a


def test_aging_csv_and_html_escape_names():
    due = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    inv = AgingInvoice(1, "INV-1", "o1", "<b>Acme</b>", "JPY", InvoiceStatus.FINALIZED, due, due, Decimal("1200"))
    report = ar_aging([inv], dt.date(2026, 11, 30))
    assert aging_csv(report).decode().splitlines() == [
        "as_of,currency,org_id,org_name,invoices,current,1-30,31-60,61-90,90+,total",
        "2026-11-30,JPY,o1,<b>Acme</b>,1,0,1200,0,0,0,1200",
        "2026-11-30,JPY,TOTAL,,1,0,1200,0,0,0,1200",
    ]
    html = render_aging_html(report)
    assert "&lt;b&gt;Acme&lt;/b&gt;" in html and "1,200 JPY" in html


def test_report_email_is_deterministic():
    def build():
        files = [("r.csv", b"a,b\n", "text/csv")]
        return build_report_email(subject="AR aging\r\nBcc: x@y.z", body="hi", sender="billing@example.com",
                                  recipients=["a@example.com"], message_id="<report-x@example.com>",
                                  attachments=files, sent=dt.date(2026, 11, 30))  # fmt: skip

    msg = build()
    assert msg["Subject"] == "AR aging  Bcc: x@y.z" and msg["Bcc"] is None
    assert msg["Date"] == "Mon, 30 Nov 2026 00:00:00 +0000"
    assert msg.as_bytes() == build().as_bytes()
