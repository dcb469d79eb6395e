"""Credit note -> HTML -> PDF bytes, with the invoice's environment, fetcher and stylesheet.

Deterministic like the invoice: title = number, creation date = issue time, no PDF /ID, so the
same credit note always gives the same bytes (the document store is write-once).
"""

from __future__ import annotations

from billing_pipeline.domain import money
from billing_pipeline.domain.credit_notes import CreditNote
from billing_pipeline.domain.model import Organization
from billing_pipeline.rendering.context import environment, format_date
from billing_pipeline.rendering.pdf import html_to_pdf, w3c_date
from billing_pipeline.rendering.seller import Seller

__all__ = ["credit_note_view", "render_credit_note_html", "render_credit_note_pdf"]

CREDIT_NOTE_TEMPLATE = "credit_note.html.j2"


def credit_note_view(note: CreditNote, org: Organization, seller: Seller) -> dict:
    """Everything the template prints, formatted by ``domain.money``."""
    if not note.number or note.issued_at is None:
        raise ValueError("only an issued credit note (number and date) is rendered")
    cur = note.currency
    return {
        "seller": seller,
        "seller_lines": list(seller.address_lines) + ([f"Tax ID: {seller.tax_id}"] if seller.tax_id else []),
        "org": org,
        "number": note.number,
        "created": w3c_date(note.issued_at),
        "issued": format_date(note.issued_at),
        "invoice_number": note.invoice_number,
        "reason": note.reason,
        "lines": [
            {
                "description": line.description,
                "invoice_line": "" if line.invoice_line_number is None else str(line.invoice_line_number),
                "amount": money.format_amount(line.amount, cur),
            }
            for line in note.lines
        ],
        "subtotal": money.format_amount(note.subtotal, cur),
        "tax_rate": money.format_rate(note.tax_rate),
        "tax": money.format_amount(note.tax, cur),
        "total": money.format_amount(note.total, cur),
    }


def render_credit_note_html(note: CreditNote, org: Organization, seller: Seller) -> str:
    return environment().get_template(CREDIT_NOTE_TEMPLATE).render(**credit_note_view(note, org, seller))


def render_credit_note_pdf(note: CreditNote, org: Organization, seller: Seller) -> bytes:
    """PDF bytes of the credit note; identical input gives identical bytes."""
    return html_to_pdf(render_credit_note_html(note, org, seller))
