"""The lean invoice layout: the PDF text shows exactly the stored totals, the columns line up, and
blocks placed beside each other by negative margins never overlap whatever their length.

Positions come from ``pdftotext -bbox`` (poppler-utils): one box per word, in PDF points.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal as D

import pytest

from billing_pipeline.domain import money
from billing_pipeline.rendering import Seller
from billing_pipeline.rendering.pdf import render_invoice_pdf
from billing_pipeline_tests.unit.test_rendering import SELLER, make_invoice, make_org, pdftotext


@dataclass(frozen=True)
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float


def words(pdf: bytes) -> list[Word]:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    out = subprocess.run(["pdftotext", "-bbox", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    return [Word(t, float(a), float(b), float(c), float(d)) for a, b, c, d, t in re.findall(pattern, out)]


def first(ws: list[Word], text: str, after: float = -1.0) -> Word:
    """The first word ``text`` below ``after`` (a y in points)."""
    return next(w for w in ws if w.text == text and w.y0 > after)


def test_pdf_text_shows_exactly_the_stored_totals_beside_their_labels():
    invoice = make_invoice()
    text = pdftotext(render_invoice_pdf(invoice, make_org(), SELLER))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    stored = {
        "Subtotal": money.format_amount(invoice.subtotal, "USD"),
        "Tax (20%)": money.format_amount(invoice.tax, "USD"),
        "Total": money.format_amount(invoice.total, "USD"),
        "Amount due": money.format_amount(invoice.total, "USD"),
    }
    assert stored["Total"] == "1,362.60 USD"
    for label, amount in stored.items():
        assert any(line.endswith(f"{label} {amount}") for line in lines), (label, amount, lines)
    for line in invoice.lines:  # every line's amount, as the money rule rounds it
        assert money.format_amount(line.amount, "USD") in text


def test_pdf_metadata_is_set_on_the_document():
    if shutil.which("pdfinfo") is None:
        pytest.skip("pdfinfo (poppler-utils) not installed")
    pdf = render_invoice_pdf(make_invoice(), make_org(), SELLER)
    info = subprocess.run(["pdfinfo", "-isodates", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    assert "Author:          Example Metering Ltd" in info
    assert "Subject:         Invoice INV-2026-000042 for Acme Corp" in info
    assert "Creator:         billing_pipeline" in info
    assert "ModDate:         2026-11-01T06:00:00" in info


def test_amount_columns_are_right_aligned():
    ws = words(render_invoice_pdf(make_invoice(), make_org(), SELLER))
    usd = [w for w in ws if w.text == "USD"]
    amount_edge = max(w.x1 for w in usd)
    # the lines' amounts, the tiers' amounts and the totals all end at the same x
    right = [w for w in usd if abs(w.x1 - amount_edge) < 0.5]
    assert len(right) >= 3 + 2 + 4
    unit_edge = first(ws, "UNIT").x0  # the unit prices end under their heading's right end
    price_heading_end = first(ws, "PRICE").x1
    units = [w for w in usd if unit_edge < w.x1 < amount_edge - 20]
    assert len(units) == 4 and all(abs(w.x1 - price_heading_end) < 1.0 for w in units), units


def test_long_seller_address_and_name_push_what_follows_down():
    seller = Seller(
        name="Example Metering International Holdings Limited",
        address_lines=tuple(f"Address line {i}" for i in range(1, 9)),
        tax_id="GB123456789",
        email="billing@example.com",
        payment_instructions="Bank transfer",
    )
    org = make_org(name="A Very Long Organization Name International Holdings GmbH & Co. KG Europe Division")
    ws = words(render_invoice_pdf(make_invoice(), org, seller))
    last_seller_line = first(ws, "billing@example.com")
    bill_to = first(ws, "TO")  # "BILL TO" (letter-spaced: pdftotext may split "BILL")
    assert bill_to.y0 > last_seller_line.y1  # the seller block is taller than the facts: bill-to moves down
    due_box = first(ws, "AMOUNT")
    assert 0 < due_box.y0 - bill_to.y0 < 12  # the amount due box (its label inset by 3 mm) stays beside bill-to
    org_last = first(ws, "Division")
    heading = first(ws, "DESCRIPTION")
    assert heading.y0 > org_last.y1 and heading.y0 > first(ws, "2026-12-01", after=due_box.y0).y1


@pytest.mark.parametrize("count", [1, 40])
def test_many_lines_still_show_every_amount_and_the_total(count):
    invoice = make_invoice()
    lines = tuple(
        type(invoice.lines[0])(f"c{i}", f"Charge {i}", None, D("1"), D("1.00"), D("1.00")) for i in range(count)
    )
    total = D(count) * D("1.00")
    big = type(invoice)(**{**invoice.__dict__, "lines": lines, "subtotal": total, "tax": D("0"), "total": total})
    text = pdftotext(render_invoice_pdf(big, make_org(), SELLER))
    assert all(f"Charge {i}" in text for i in range(count))
    assert " ".join(f"Total {money.format_amount(total, 'USD')}".split()) in " ".join(text.split())
