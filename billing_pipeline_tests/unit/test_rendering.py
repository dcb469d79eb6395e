"""Rendering: invoice PDF text, HTML escaping, the safe fetcher, e-mail headers."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import shutil
import subprocess
from decimal import Decimal as D

import pytest

from billing_pipeline.domain.model import (
    BillingInterval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Organization,
    OrganizationStatus,
    TierLine,
)
from billing_pipeline.rendering import Seller
from billing_pipeline.rendering.email import build_invoice_email, invoice_message_id, invoice_subject
from billing_pipeline.rendering.pdf import (
    AssetRefused,
    SafeAssetFetcher,
    html_to_pdf,
    render_invoice_html,
    render_invoice_pdf,
    safe_fetcher,
)

UTC = dt.UTC
SELLER = Seller(
    name="Example Metering Ltd",
    address_lines=("1 Main Street", "London EC1A 1AA", "United Kingdom"),
    tax_id="GB123456789",
    email="billing@example.com",
    payment_instructions="Bank transfer to IBAN GB00 EXMP 0000 0000 0000 00\nBIC EXMPGB2L",
)


def make_org(name: str = "Acme Corp", **kw) -> Organization:
    values = dict(
        id="org_42",
        name=name,
        billing_email="ap@acme.example",
        status=OrganizationStatus.ACTIVE,
        currency="USD",
        tax_rate=D("0.20"),
        billing_interval=BillingInterval.MONTHLY,
        auto_pay=False,
        payment_terms_days=30,
    )
    values.update(kw)
    return Organization(**values)


def make_invoice(status=InvoiceStatus.FINALIZED, number: str | None = "INV-2026-000042") -> Invoice:
    lines = (
        InvoiceLine("base", "Platform fee", None, D("1"), D("99.00"), D("99.00")),
        InvoiceLine(
            "api",
            "API requests",
            "api_calls",
            D("1250000"),
            None,
            D("1035.50"),
            tiers=(
                TierLine(D("1"), D("1000000"), D("1000000"), D("0.001"), D("0"), D("1000.000")),
                TierLine(D("1000001"), None, D("250000"), D("0.000142"), D("0"), D("35.500")),
            ),
        ),
        InvoiceLine("storage", "Storage (GB-month)", "storage", D("12.5"), D("0.08"), D("1.00")),
    )
    return Invoice(
        organization_id="org_42",
        period_start=dt.datetime(2026, 10, 1, tzinfo=UTC),
        period_end=dt.datetime(2026, 11, 1, tzinfo=UTC),
        interval=BillingInterval.MONTHLY,
        currency="USD",
        lines=lines,
        subtotal=D("1135.50"),
        tax_rate=D("0.20"),
        tax=D("227.10"),
        total=D("1362.60"),
        status=status,
        number=number,
        issued_at=dt.datetime(2026, 11, 1, 6, 0, tzinfo=UTC) if number else None,
        due_at=dt.datetime(2026, 12, 1, tzinfo=UTC),
    )


def pdftotext(pdf: bytes) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    out = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return out.stdout.decode()


class SpyFetcher(SafeAssetFetcher):
    def __init__(self) -> None:
        super().__init__()
        self.requested: list[str] = []
        self.refused: list[str] = []

    def fetch(self, url, headers=None):
        self.requested.append(url)
        try:
            return super().fetch(url, headers)
        except AssetRefused:
            self.refused.append(url)
            raise


# --- PDF -------------------------------------------------------------------------------
def test_pdf_contains_number_line_amounts_and_total():
    pdf = render_invoice_pdf(make_invoice(), make_org(), SELLER)
    assert pdf.startswith(b"%PDF-")
    text = pdftotext(pdf)
    assert "INV-2026-000042" in text
    for amount in ("99.00 USD", "1,035.50 USD", "1.00 USD"):
        assert amount in text
    assert "1,135.50 USD" in text  # subtotal
    assert "227.10 USD" in text and "Tax (20%)" in text
    assert "1,362.60 USD" in text  # total, exact string
    assert "2026-10-01 – 2026-10-31" in text  # service period, end inclusive
    assert "1,000,001 and above" in text  # tier row
    assert "DRAFT" not in text


def test_pdf_is_byte_identical_across_renders_and_has_metadata():
    a = render_invoice_pdf(make_invoice(), make_org(), SELLER)
    b = render_invoice_pdf(make_invoice(), make_org(), SELLER)
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    if shutil.which("pdfinfo") is None:
        pytest.skip("pdfinfo (poppler-utils) not installed")
    info = subprocess.run(["pdfinfo", "-isodates", "-"], input=a, capture_output=True, check=True).stdout.decode()
    assert "Title:           INV-2026-000042" in info
    assert "CreationDate:    2026-11-01T06:00:00" in info


def test_jpy_amounts_have_no_decimals():
    inv = make_invoice()
    jpy = Invoice(
        **{
            **inv.__dict__,
            "currency": "JPY",
            "lines": (InvoiceLine("base", "Platform fee", None, D("1"), D("1235"), D("1235")),),
            "subtotal": D("1235"),
            "tax": D("0"),
            "tax_rate": D("0"),
            "total": D("1235"),
        }
    )
    text = pdftotext(render_invoice_pdf(jpy, make_org(currency="JPY"), SELLER))
    assert "1,235 JPY" in text and "1,235.00" not in text


def test_draft_has_watermark():
    text = pdftotext(render_invoice_pdf(make_invoice(InvoiceStatus.DRAFT, None), make_org(), SELLER))
    assert "DRAFT" in text


def test_hostile_org_name_is_literal_text_and_fetches_nothing_outside_assets():
    evil = '<img src="file:///etc/passwd"><link rel=stylesheet href="http://127.0.0.1:9/x.css">'
    html = render_invoice_html(make_invoice(), make_org(name=evil), SELLER)
    assert "<img" not in html and "&lt;img" in html
    spy = SpyFetcher()
    pdf = render_invoice_pdf(make_invoice(), make_org(name=evil), SELLER, url_fetcher=spy)
    text = pdftotext(pdf)
    assert '<img src="file:///etc/passwd">' in " ".join(text.split())
    assert spy.requested == []  # nothing was even asked for
    assert b"/Subtype /Image" not in pdf


def test_safe_fetcher_refuses_everything_outside_assets(caplog):
    for url in (
        "file:///etc/passwd",
        "http://example.com/x.png",
        "https://example.com/x.css",
        "data:image/png;base64,iVBORw0KGgo=",
        "ftp://example.com/x",
        safe_fetcher.root.as_uri() + "/../../../../etc/passwd",
        "file://evil.example.com" + str(safe_fetcher.root / "invoice.css"),
    ):
        with pytest.raises(AssetRefused):
            safe_fetcher.fetch(url)
    ok = safe_fetcher.fetch((safe_fetcher.root / "invoice.css").as_uri())
    assert b"@page" in ok.read()


def test_safe_fetcher_refuses_symlink_out_of_assets(tmp_path):
    root = tmp_path / "assets"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (root / "link.css").symlink_to(secret)
    with pytest.raises(AssetRefused):
        SafeAssetFetcher(root).fetch((root / "link.css").as_uri())


def test_css_url_to_passwd_or_http_is_refused_and_render_continues():
    spy = SpyFetcher()
    html = """<html><head><style>
      body { background: url(file:///etc/passwd); }
      h1 { background-image: url("http://127.0.0.1:9/track.png"); }
      @import url("https://127.0.0.1:9/evil.css");
      </style></head><body><h1>Hello</h1><img src="file:///etc/passwd"></body></html>"""
    pdf = html_to_pdf(html, url_fetcher=spy)
    assert "Hello" in pdftotext(pdf)
    assert "file:///etc/passwd" in spy.refused
    assert "http://127.0.0.1:9/track.png" in spy.refused
    assert set(spy.refused) == set(spy.requested)  # nothing outside assets was served
    assert b"root:" not in pdf


# --- e-mail ----------------------------------------------------------------------------
def build(org=None, **kw):
    params = dict(
        pdf=b"%PDF-1.7 fake",
        pdf_url="https://files.example.com/inv.pdf?sig=a&exp=1",
        from_addr="billing@example.com",
        message_id_domain="mail.example.com",
        date=dt.datetime(2026, 11, 1, 7, 0, tzinfo=UTC),
    )
    params.update(kw)
    return build_invoice_email(make_invoice(), org or make_org(), SELLER, **params)


def test_email_structure_subject_and_attachment():
    msg = build()
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == ("Invoice INV-2026-000042 from Example Metering Ltd — 1,362.60 USD due 2026-12-01")
    assert parsed["Message-ID"] == "<invoice-INV-2026-000042.invoice@mail.example.com>"
    assert parsed["To"].addresses[0].addr_spec == "ap@acme.example"
    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert "1,362.60 USD" in body and "1,362.60 USD" in html
    assert "https://files.example.com/inv.pdf?sig=a&exp=1" in body
    assert "sig=a&amp;exp=1" in html
    [att] = list(parsed.iter_attachments())
    assert att.get_content_type() == "application/pdf"
    assert att.get_filename() == "INV-2026-000042.pdf"
    assert att.get_content() == b"%PDF-1.7 fake"


@pytest.mark.parametrize(
    "name",
    [
        "Evil\r\nBcc: victim@example.org",
        "Evil\nBcc: victim@example.org",
        "Evil\rBcc: v@e.org",
        "Evil\u2028Bcc: v@e.org",
        "Evil\r\n\r\n<html>body",
    ],
)
def test_crlf_in_org_name_cannot_add_headers(name):
    msg = build(org=make_org(name=name))
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert [k for k in parsed.keys()] == [
        "From",
        "To",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
    ]
    assert parsed["To"].addresses[0].addr_spec == "ap@acme.example"
    assert "\n" not in str(parsed["To"]) and "\r" not in str(parsed["To"])


def test_crlf_in_billing_email_is_refused_not_injected():
    with pytest.raises(ValueError):
        build(org=make_org(billing_email="ap@acme.example\r\nBcc: victim@example.org"))


def parsed(msg):
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


def test_html_body_is_escaped():
    msg = parsed(build(org=make_org(name="<script>alert(1)</script>")))
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "<script>alert(1)</script>" in text  # plain text is not HTML-escaped


def test_message_id_is_deterministic_and_kind_specific():
    inv = make_invoice()
    a = invoice_message_id(inv, "invoice", domain="mail.example.com")
    assert a == invoice_message_id(inv, "invoice", domain="mail.example.com")
    assert a == "<invoice-INV-2026-000042.invoice@mail.example.com>"
    assert invoice_message_id(inv, "reminder-1", domain="mail.example.com") != a
    assert build()["Message-ID"] == build()["Message-ID"]
    draft = make_invoice(InvoiceStatus.DRAFT, None)
    assert invoice_message_id(draft, domain="x.example") == "<invoice-org_42-20261001.invoice@x.example>"
    with pytest.raises(ValueError):
        invoice_message_id(inv, "invoice", domain="evil.com>\r\nBcc: x@y")
    with pytest.raises(ValueError):
        invoice_message_id(inv, "hello", domain="mail.example.com")


def test_reminder_subject():
    assert invoice_subject(make_invoice(), make_org(), SELLER, "reminder-2").startswith(
        "Reminder: invoice INV-2026-000042 from Example Metering Ltd"
    )


def test_no_pdf_no_attachment():
    msg = parsed(build(pdf=None, pdf_url=None))
    assert msg.get_content_type() == "multipart/alternative"
    assert list(msg.iter_attachments()) == []
