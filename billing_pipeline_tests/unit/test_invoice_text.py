"""What an invoice tells the customer to do: one payment text, and only links that work."""

from __future__ import annotations

import pytest

from billing_pipeline.rendering.pdf import render_invoice_pdf
from billing_pipeline_tests.unit.test_rendering import SELLER, build, make_invoice, make_org, parsed, pdftotext

AUTO = "charged automatically to the payment method on file"


def _bodies(msg) -> tuple[str, str]:
    m = parsed(msg)
    return m.get_body(preferencelist=("plain",)).get_content(), m.get_body(preferencelist=("html",)).get_content()


def test_auto_pay_pdf_says_only_the_automatic_charge():
    text = " ".join(pdftotext(render_invoice_pdf(make_invoice(), make_org(auto_pay=True), SELLER)).split())
    assert AUTO in text
    assert "Bank transfer" not in text and "IBAN" not in text and "Please quote" not in text


def test_other_pdfs_carry_the_seller_instructions_only():
    text = " ".join(pdftotext(render_invoice_pdf(make_invoice(), make_org(auto_pay=False), SELLER)).split())
    assert "Bank transfer to IBAN GB00 EXMP 0000 0000 0000 00" in text and "BIC EXMPGB2L" in text
    assert "Please quote INV-2026-000042 with your payment." in text
    assert "automatically" not in text


@pytest.mark.parametrize("auto_pay", [True, False])
def test_emails_say_the_same_as_the_pdf(auto_pay):
    for body in _bodies(build(org=make_org(auto_pay=auto_pay))):
        assert (AUTO in body) is auto_pay
        assert ("IBAN" in body) is not auto_pay


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
