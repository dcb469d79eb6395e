"""The one jinja2 Environment and the view model shared by the PDF and e-mail templates.

Templates never format money themselves: every amount reaches them as a string produced by
``domain.money`` so the PDF, the e-mail and the subject line can never disagree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import jinja2

from billing_pipeline.domain import money
from billing_pipeline.domain.model import Invoice, InvoiceStatus, Organization
from billing_pipeline.domain.settlement import PaymentText, payment_text
from billing_pipeline.rendering.seller import Seller

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
ASSETS_DIR = PACKAGE_DIR / "assets"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Shared Environment: autoescape for *.html / *.html.j2, never for *.txt.j2; StrictUndefined."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "xml.j2"),
            disabled_extensions=("txt", "txt.j2"),
            default_for_string=True,
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    return env


def one_line(value: object) -> str:
    """Collapse every line break / control whitespace to single spaces (header- and subject-safe)."""
    text = str(value)
    # str.splitlines() knows every Unicode line boundary (\r, \n, \v, \f, \x1c-\x1e, \x85, \u2028...).
    return " ".join(" ".join(text.splitlines()).split()) if text else ""


def format_date(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        value = value.date()
    return value.isoformat()


def invoice_reference(invoice: Invoice) -> str:
    """The invoice number, or a stable stand-in for a draft that has none yet."""
    if invoice.number:
        return invoice.number
    return f"{invoice.organization_id}-{invoice.period_start:%Y%m%d}"


@dataclass(frozen=True)
class TierRow:
    label: str
    quantity: str
    unit_price: str
    flat_fee: str | None
    amount: str


@dataclass(frozen=True)
class LineRow:
    description: str
    quantity: str
    unit_price: str
    amount: str
    tiers: tuple[TierRow, ...]


def _tier_label(first: Decimal, last: Decimal | None) -> str:
    if last is None:
        return f"{money.format_quantity(first)} and above"
    return f"{money.format_quantity(first)} – {money.format_quantity(last)}"


def invoice_view(invoice: Invoice, org: Organization, seller: Seller) -> dict:
    """Everything a template may print, already formatted as strings."""
    cur = invoice.currency
    period_last_day = (invoice.period_end - dt.timedelta(microseconds=1)) if invoice.period_end else None
    lines = []
    for line in invoice.lines:
        tiers = tuple(
            TierRow(
                label=_tier_label(t.first_unit, t.last_unit),
                quantity=money.format_quantity(t.quantity),
                unit_price=money.format_unit_price(t.unit_price, cur),
                flat_fee=money.format_unit_price(t.flat_fee, cur) if t.flat_fee else None,
                amount=money.format_unit_price(t.amount, cur),
            )
            for t in line.tiers
        )
        lines.append(
            LineRow(
                description=line.description,
                quantity=money.format_quantity(line.quantity),
                unit_price=(money.format_unit_price(line.unit_price, cur) if line.unit_price is not None else ""),
                amount=money.format_amount(line.amount, cur),
                tiers=tiers,
            )
        )
    settled = invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID)
    amount_due = Decimal(0) if settled else invoice.total
    payment = invoice_payment_text(invoice, org, seller)
    return {
        "seller": seller,
        "org": org,
        "invoice": invoice,
        "reference": invoice_reference(invoice),
        "number": invoice.number or "DRAFT",
        "status": invoice.status.value,
        "is_draft": invoice.status is InvoiceStatus.DRAFT,
        "issued": format_date(invoice.issued_at),
        "due": format_date(invoice.due_at),
        "period_start": format_date(invoice.period_start),
        "period_end": format_date(period_last_day),
        "currency": cur,
        "lines": lines,
        "subtotal": money.format_amount(invoice.subtotal, cur),
        "tax_rate": money.format_rate(invoice.tax_rate),
        "tax": money.format_amount(invoice.tax, cur),
        "total": money.format_amount(invoice.total, cur),
        "amount_due": money.format_amount(amount_due, cur),
        # The payment block (PDF and e-mail), from the one rule in domain.settlement.
        # ``auto_charge`` (the templates' name): the lines state what happens (an automatic
        # charge, or nothing to pay) rather than ask for a payment by the seller's instructions.
        "payment_kind": payment.kind.value,
        "auto_charge": not payment.asks_for_payment,
        "payment_lines": payment.lines,
        "payment_summary": payment.summary,
        "payment_subject": payment.subject,
    }


def invoice_payment_text(invoice: Invoice, org: Organization, seller: Seller) -> PaymentText:
    """The one payment text of an invoice (``domain.settlement.payment_text``): an automatic
    charge only when the organization is on auto-pay *and* the seller's gateway charges, never
    together with bank-transfer instructions (an auto-pay customer told to pay by transfer
    may pay twice); "nothing to pay" for a zero, paid or void invoice."""
    return payment_text(
        invoice,
        org,
        charges_automatically=seller.charges_automatically,
        instructions=seller.payment_instructions,
    )
