"""The credit note's HTML: every amount formatted by domain.money, operator text escaped."""

import datetime as dt
from decimal import Decimal

import pytest

from billing_pipeline.domain.credit_notes import CreditNote, CreditNoteLine
from billing_pipeline.rendering.credit_note import render_credit_note_html
from billing_pipeline.rendering.seller import Seller
from billing_pipeline_tests.builders import org

SELLER = Seller("Example Cloud Ltd", ("1 Example Street", "London"), "GB123", "billing@example.com", "Pay.")


def note(**changes) -> CreditNote:
    values = dict(
        invoice_number="INV-2026-000004",
        organization_id="souq",
        currency="KWD",
        lines=(CreditNoteLine("Platform <b>fee</b>", Decimal("1.250"), 1), CreditNoteLine("API", Decimal("0.005"), 2)),
        subtotal=Decimal("1.255"),
        tax_rate=Decimal("0.05"),
        tax=Decimal("0.063"),
        total=Decimal("1.318"),
        reason='<img src="file:///etc/passwd"> refund',
        number="CN-2026-000009",
        issued_at=dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC),
    )
    values.update(changes)
    return CreditNote(**values)


def test_amounts_in_the_currency_decimals_and_text_escaped():
    html = render_credit_note_html(note(), org("souq", currency="KWD"), SELLER)
    expected = ["CN-2026-000009", "INV-2026-000004", "1.250 KWD", "0.005 KWD", "1.255 KWD", "0.063 KWD", "1.318 KWD"]
    expected += ["Tax (5%)", "2026-12-03", "Tax ID: GB123", 'content="2026-12-03T09:30:00Z"']
    for text in expected:
        assert text in html
    assert "<img" not in html and "&lt;img src=&#34;file:///etc/passwd&#34;&gt; refund" in html
    assert "Platform &lt;b&gt;fee&lt;/b&gt;" in html


def test_only_an_issued_credit_note_is_rendered():
    with pytest.raises(ValueError, match="only an issued credit note"):
        render_credit_note_html(note(number=None), org("souq"), SELLER)
