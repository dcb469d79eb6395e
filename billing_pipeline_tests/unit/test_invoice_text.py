"""What an invoice tells the customer to do: one payment text, and only links that work."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from billing_pipeline.domain.model import InvoiceLine, InvoiceStatus
from billing_pipeline.rendering.email import build_invoice_email
from billing_pipeline.rendering.pdf import render_invoice_pdf
from billing_pipeline_tests.unit.test_rendering import SELLER, build, make_invoice, make_org, parsed, pdftotext

AUTO = "charged automatically to the payment method on file"
NOTHING = "Nothing to pay"
CHARGING_SELLER = replace(SELLER, charges_automatically=True)  # PAYMENT_GATEWAY=stripe, channel enabled


def _bodies(msg) -> tuple[str, str]:
    m = parsed(msg)
    return m.get_body(preferencelist=("plain",)).get_content(), m.get_body(preferencelist=("html",)).get_content()


def zero_invoice(status=InvoiceStatus.PAID):
    line = InvoiceLine("api", "API requests", "api_calls", D("0"), D("0.001"), D("0.00"))
    return replace(make_invoice(status), lines=(line,), subtotal=D("0.00"), tax=D("0.00"), total=D("0.00"))


def _email(invoice, org, seller):
    return build_invoice_email(
        invoice, org, seller, pdf=b"%PDF-1.7", pdf_url=None, from_addr="billing@example.com", message_id_domain="x.test"
    )


def _pdf_text(invoice, org, seller) -> str:
    return " ".join(pdftotext(render_invoice_pdf(invoice, org, seller)).split())


# (auto_pay, seller charges automatically, zero total) -> what every document says
CASES = [
    pytest.param(True, True, False, "auto", id="auto-pay+gateway"),
    pytest.param(True, False, False, "transfer", id="auto-pay+no-gateway"),
    pytest.param(False, True, False, "transfer", id="no-auto-pay+gateway"),
    pytest.param(False, False, False, "transfer", id="no-auto-pay+no-gateway"),
    pytest.param(True, True, True, "nothing", id="zero+auto-pay+gateway"),
    pytest.param(True, False, True, "nothing", id="zero+auto-pay+no-gateway"),
    pytest.param(False, True, True, "nothing", id="zero+no-auto-pay+gateway"),
    pytest.param(False, False, True, "nothing", id="zero+no-auto-pay+no-gateway"),
]


def _says(text: str, expected: str) -> None:
    if expected == "auto":
        assert f"{AUTO} on 2026-12-01" in text
    else:
        assert AUTO not in text and "automatically" not in text
    assert ("IBAN" in text) is (expected == "transfer")
    assert (NOTHING in text) is (expected == "nothing")


@pytest.mark.parametrize(("auto_pay", "charges", "zero", "expected"), CASES)
def test_pdf_and_emails_say_one_payment_text(auto_pay, charges, zero, expected):
    invoice = zero_invoice() if zero else make_invoice()
    org, seller = make_org(auto_pay=auto_pay), CHARGING_SELLER if charges else SELLER
    pdf = _pdf_text(invoice, org, seller)
    _says(pdf, expected)
    assert ("Please quote INV-2026-000042 with your payment." in pdf) is (expected == "transfer")
    msg = _email(invoice, org, seller)
    for body in _bodies(msg):
        _says(body, expected)
    if expected == "nothing":
        assert "0.00 USD, nothing to pay" in str(parsed(msg)["Subject"])
        assert "Nothing to pay: the total of this invoice is 0.00 USD and is marked paid." in pdf


def test_auto_pay_email_intro_names_the_charge_date():
    text, _ = _bodies(build(org=make_org(auto_pay=True)))
    assert "1,362.60 USD, will be charged automatically" not in text  # the seller here has no gateway
    msg = _email(make_invoice(), make_org(auto_pay=True), CHARGING_SELLER)
    text, _ = _bodies(msg)
    assert (
        "The amount due, 1,362.60 USD, will be charged automatically to the payment method on file on 2026-12-01."
        in text
    )
    assert "Payment instructions" not in text


def test_local_mode_email_has_no_file_link_and_attaches_the_pdf():
    local = "file:///srv/billing/documents/invoices/2026/10/org_42/INV-2026-000042.pdf"
    msg = build(pdf_url=local)
    for body in _bodies(msg):
        assert "file://" not in body and "Download the invoice" not in body
        assert "attached as INV-2026-000042.pdf" in body
    assert [a.get_filename() for a in parsed(msg).iter_attachments()] == ["INV-2026-000042.pdf"]


def test_presigned_https_link_is_kept():
    text, html = _bodies(build(pdf_url="https://s3.example.com/inv.pdf?X-Amz-Signature=abc"))
    assert "https://s3.example.com/inv.pdf?X-Amz-Signature=abc" in text and "Download the invoice" in html


def test_other_schemes_are_refused():
    with pytest.raises(ValueError):
        build(pdf_url="javascript:alert(1)")
