"""Credit notes: a numbered document that takes part (or all) of a finalized invoice back.

Rules (``build_credit_note``):

* only a ``finalized`` invoice is credited. A draft is edited instead; a ``paid`` one would need
  money sent back (a refund or a customer balance, neither of which this project keeps); an
  ``uncollectible`` one is settled by a payment or a void; a ``void`` one owes nothing;
* a credit note never takes more than the amount due (``domain.receivables.amount_due``: total
  minus succeeded payments minus earlier credit notes), so the amount due never goes negative.
  ``--full`` credits exactly the amount due;
* the credited amount includes tax. When it is the whole invoice (nothing paid or credited
  before), the credit note repeats the invoice's lines and tax exactly. Otherwise it has one
  line: net = amount / (1 + tax rate) rounded once, half-up, to the minor unit
  (``money.quantize_ratio``), and tax = amount - net, so net + tax is the amount exactly;
* numbers come from their own gapless series, ``CN-{year}-{sequence:06d}``, by issue year.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from decimal import Decimal

from . import money
from .model import Invoice, InvoiceStatus

CREDIT_NOTE_PREFIX = "CN"
MAX_REASON = 500


class CreditNoteRefused(ValueError):
    """A credit note that cannot be issued (nothing was written)."""


@dataclass(frozen=True)
class CreditNoteLine:
    description: str
    amount: Decimal  # net of tax, in the invoice's currency
    invoice_line_number: int | None = None  # the invoice line it takes back, if one


@dataclass(frozen=True)
class CreditNote:
    invoice_number: str
    organization_id: str
    currency: str
    lines: tuple[CreditNoteLine, ...]
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal  # what it takes off the invoice's amount due
    reason: str
    number: str | None = None  # set when issued
    issued_at: dt.datetime | None = None


def check_reason(reason: str, *, field: str = "--reason") -> str:
    """The reason as stored: stripped, one to ``MAX_REASON`` characters."""
    text = " ".join(reason.split())
    if not text:
        raise CreditNoteRefused(f"{field}: say why (it is printed and kept in the audit trail)")
    if len(text) > MAX_REASON:
        raise CreditNoteRefused(f"{field}: at most {MAX_REASON} characters, got {len(text)}")
    return text


def build_credit_note(invoice: Invoice, *, amount: Decimal | None, due: Decimal, reason: str) -> CreditNote:
    """The credit note for ``amount`` (``None``: the whole amount due) of ``invoice`` owing ``due``."""
    number = invoice.number or "(draft)"
    cur = invoice.currency
    if invoice.status is not InvoiceStatus.FINALIZED:
        raise CreditNoteRefused(
            f"invoice {number} is {invoice.status.value}: only a finalized invoice is credited "
            '(see README "Invoice lifecycle, payments and credit notes")'
        )
    reason = check_reason(reason)
    if due <= 0:
        raise CreditNoteRefused(f"invoice {number} has nothing left to credit (amount due 0)")
    credited = due if amount is None else money.to_decimal(amount)
    if money.quantize(credited, cur) != credited or credited <= 0:
        raise CreditNoteRefused(f"credit amount {credited} is not a positive amount in {cur}'s decimals")
    if credited > due:
        raise CreditNoteRefused(
            f"invoice {number}: {money.format_amount(credited, cur)} is more than what remains creditable "
            f"({money.format_amount(due, cur)}, the amount due)"
        )
    if credited == invoice.total:  # the whole invoice, nothing paid or credited before
        lines = tuple(CreditNoteLine(line.description, line.amount, i) for i, line in enumerate(invoice.lines, start=1))
        subtotal, tax = invoice.subtotal, invoice.tax
    else:
        subtotal = money.quantize_ratio(credited, 1 + invoice.tax_rate, cur)
        tax = credited - subtotal
        lines = (CreditNoteLine(f"Credit on invoice {number}: {reason}", subtotal),)
    return CreditNote(number, invoice.organization_id, cur, lines, subtotal, invoice.tax_rate, tax, credited, reason)


def request_key(invoice_number: str, amount: Decimal | None, currency: str, reason: str) -> str:
    """One credit note per (invoice, amount or full, reason): a re-run finds the one it made."""
    what = "full" if amount is None else str(money.to_minor(amount, currency))
    return hashlib.sha256(f"{invoice_number}|{what}|{check_reason(reason)}".encode()).hexdigest()


def credit_note_pdf_key(note: CreditNote) -> str:
    """``credit-notes/{YYYY}/{MM}/{org_id}/{number}.pdf`` by issue month (UTC)."""
    if not note.number or note.issued_at is None:
        raise ValueError("a credit note has a document key once it is issued")
    issued = note.issued_at.astimezone(dt.UTC)
    return f"credit-notes/{issued:%Y}/{issued:%m}/{note.organization_id}/{note.number}.pdf"


__all__ = [
    "CREDIT_NOTE_PREFIX",
    "CreditNote",
    "CreditNoteLine",
    "CreditNoteRefused",
    "build_credit_note",
    "check_reason",
    "credit_note_pdf_key",
    "request_key",
]
