"""How an invoice gets settled: the zero-total policy and the one payment text.

**Zero-total invoices** (``ZERO_TOTAL_INVOICES``, ``zero_total_status``):

* ``finalize_paid`` (default, as Stripe): numbered and finalized like any invoice, then
  ``paid`` in the same transaction. No payment row is written (there is no money movement)
  and nothing is sent to the payment gateway (``gateway_skip_reason``): Stripe itself marks a
  zero invoice paid when it is finalized and attempts no charge, so mirroring it would cost
  API calls and create customers for nothing. The PDF and e-mail still go out, saying
  "nothing to pay": an issued invoice is a document the customer receives.
* ``finalize``: numbered and finalized (``finalized``), sent to the gateway like any other.
* ``skip`` (as Lago's ``finalize_zero_amount_invoice: skip``): not numbered; the draft is
  kept as the period's record and finalization reports the organization *skipped* with
  ``ZERO_TOTAL_SKIP_REASON``. Nothing is delivered. Should the draft stop being zero (late
  usage, re-drafted), the next finalization numbers it as usual.

A total that is not zero is always finalized. Negative totals are not zero: they finalize.

**Payment text** (``payment_text``): what the PDF and the e-mail say about paying, decided
here once so that they can never disagree:

* nothing to pay (zero total, or paid, or void): "Nothing to pay ...";
* auto-pay organization and a seller that charges automatically (a payment gateway
  configured and enabled): "will be charged automatically to the payment method on file on
  <due date>";
* otherwise (no auto-pay, or auto-pay with no gateway: nothing would charge it): the
  seller's payment instructions (bank transfer), never an automatic-charge claim.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from decimal import Decimal

from . import money
from .model import Invoice, InvoiceStatus, Organization

logger = logging.getLogger(__name__)

__all__ = [
    "ZERO_TOTAL_SKIP_REASON",
    "PaymentKind",
    "PaymentText",
    "ZeroTotalPolicy",
    "gateway_skip_reason",
    "payment_text",
    "zero_total_status",
]


class ZeroTotalPolicy(str, enum.Enum):
    FINALIZE_PAID = "finalize_paid"
    FINALIZE = "finalize"
    SKIP = "skip"


#: Why finalization leaves a zero draft unnumbered under ``ZERO_TOTAL_INVOICES=skip``.
ZERO_TOTAL_SKIP_REASON = "total is zero: not invoiced (ZERO_TOTAL_INVOICES=skip)"


def zero_total_status(total: Decimal, policy: ZeroTotalPolicy) -> InvoiceStatus | None:
    """The status a draft of ``total`` gets when it is finalized; ``None``: it is not (skip)."""
    policy = ZeroTotalPolicy(policy)
    if total != 0:
        return InvoiceStatus.FINALIZED
    if policy is ZeroTotalPolicy.FINALIZE_PAID:
        return InvoiceStatus.PAID
    if policy is ZeroTotalPolicy.FINALIZE:
        return InvoiceStatus.FINALIZED
    return None


def gateway_skip_reason(invoice: Invoice) -> str | None:
    """Why ``invoice`` is not sent to the payment gateway; ``None`` when it is.

    A paid or void invoice has nothing left to collect (a zero total marked paid at
    finalization is the common case).
    """
    if invoice.status is InvoiceStatus.PAID:
        if invoice.total == 0:
            return "zero total: paid at finalization (ZERO_TOTAL_INVOICES=finalize_paid), nothing to collect"
        return "invoice is paid: nothing to collect"
    if invoice.status is InvoiceStatus.VOID:
        return "invoice is void: nothing to collect"
    return None


class PaymentKind(str, enum.Enum):
    AUTOMATIC_CHARGE = "automatic_charge"
    INSTRUCTIONS = "instructions"  # the seller's payment instructions (bank transfer)
    NOTHING_TO_PAY = "nothing_to_pay"


@dataclass(frozen=True)
class PaymentText:
    """``lines`` for the payment block of the PDF and e-mail; ``summary`` is one sentence for
    the e-mail's introduction; ``subject`` the amount part of the e-mail subject."""

    kind: PaymentKind
    lines: tuple[str, ...]
    summary: str
    subject: str

    @property
    def asks_for_payment(self) -> bool:
        """The customer is asked to act (pay by the instructions), not told what happens."""
        return self.kind is PaymentKind.INSTRUCTIONS


def _date(value) -> str | None:
    return value.date().isoformat() if value is not None else None


def payment_text(invoice: Invoice, org: Organization, *, charges_automatically: bool, instructions: str) -> PaymentText:
    """The one payment text of ``invoice`` (see the module docstring for the rule).

    ``charges_automatically``: the seller has a payment gateway that will charge auto-pay
    organizations (``PAYMENT_GATEWAY=stripe`` with the Stripe channel enabled).
    ``instructions``: the seller's payment instructions, one line per line.
    """
    total = money.format_amount(invoice.total, invoice.currency)
    due = _date(invoice.due_at)
    if invoice.status is InvoiceStatus.VOID:
        void = "This invoice is void: nothing to pay."
        return PaymentText(PaymentKind.NOTHING_TO_PAY, (void,), void, f"{total}, void")
    if invoice.total == 0:
        paid = " and is marked paid" if invoice.status is InvoiceStatus.PAID else ""
        line = f"Nothing to pay: the total of this invoice is {total}{paid}."
        return PaymentText(PaymentKind.NOTHING_TO_PAY, (line,), line, f"{total}, nothing to pay")
    if invoice.status is InvoiceStatus.PAID:
        line = f"Nothing to pay: this invoice of {total} has been paid."
        return PaymentText(PaymentKind.NOTHING_TO_PAY, (line,), line, f"{total}, paid")
    amount_due = f"{total} due {due}" if due else total
    if org.auto_pay and charges_automatically:
        when = f"on {due}" if due else "when it is due"
        line = f"This invoice will be charged automatically to the payment method on file {when}."
        summary = f"The amount due, {total}, will be charged automatically to the payment method on file {when}."
        return PaymentText(PaymentKind.AUTOMATIC_CHARGE, (line,), summary, amount_due)
    if org.auto_pay:
        logger.debug("org %s is on auto-pay but nothing charges automatically: instructions printed", org.id)
    lines = tuple(line for line in instructions.splitlines() if line.strip())
    summary = f"The amount due is {total}, payable {f'by {due}' if due else 'on receipt'}."
    return PaymentText(PaymentKind.INSTRUCTIONS, lines, summary, amount_due)
