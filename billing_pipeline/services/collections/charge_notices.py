"""Receipts and failure notices of charges, through the one ``NotificationDispatcher``.

Dedupe keys are our ids: ``receipt:{gateway payment id}`` (one receipt per payment, whichever run
or job recorded it) and ``charge-failed:{invoice id}:{attempt}`` (one notice per declined
attempt). An attempt is marked ``notified`` once its notice is settled (sent, or dead: the
dispatcher then holds the dead letter), so every run sends what an earlier one left unsent.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing_pipeline.db import charges as ledger
from billing_pipeline.db import collections
from billing_pipeline.domain import money
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.notifications import Notification, NotificationDispatcher, Recipient

RECEIPT = ("succeeded", "settled")
FAILURE = ("declined", "failed", "requires_action")


@dataclass(frozen=True)
class NoticeSender:
    dispatcher: NotificationDispatcher
    seller: Seller
    channels: tuple[str, ...] = ("email",)


def notify_attempts(engine, notices: NoticeSender) -> int:
    """Send every receipt / failure notice not yet settled; returns how many were sent now."""
    rows = [r for r in ledger.attempt_rows(engine, status=RECEIPT + FAILURE, notified=False)]
    if not rows:
        return 0
    data = collections.load_receivables(engine, sorted({r.invoice_id for r in rows}))
    invoices = {inv.invoice_id: inv for inv in data.invoices}
    sent = 0
    with notices.dispatcher.session():
        for row in rows:
            invoice = invoices[row.invoice_id]
            org = data.organizations[invoice.org_id]
            if row.status in RECEIPT and row.gateway_payment_id is None:
                ledger.mark_notified(engine, row.invoice_id, row.attempt)  # paid elsewhere: the sync's receipt
                continue
            result = notices.dispatcher.send(_notice(notices, row, invoice, org))
            sent += sum(o.status == "sent" and o.changed for o in result.outcomes)
            if result.settled:
                ledger.mark_notified(engine, row.invoice_id, row.attempt)
    return sent


def receipt_key(gateway_payment_id: str) -> str:
    return f"receipt:{gateway_payment_id}"


def failure_key(invoice_id: int, attempt: int) -> str:
    return f"charge-failed:{invoice_id}:{attempt}"


def _notice(notices: NoticeSender, row: ledger.AttemptRow, invoice, org) -> Notification:
    amount = money.format_amount(money.from_minor(row.amount_minor, row.currency), row.currency)
    number = invoice.number
    if row.status in RECEIPT:
        assert row.gateway_payment_id is not None
        key, kind = receipt_key(row.gateway_payment_id), "receipt"
        subject = f"Receipt: {amount} paid for invoice {number}"
        text = (
            f"Hello {org.name},\n\nwe received your payment of {amount} for invoice {number} "
            f"(payment {row.gateway_payment_id}), charged to the payment method on file.\n\n"
            f"Thank you,\n{notices.seller.name}\n"
        )
    else:
        key, kind = failure_key(row.invoice_id, row.attempt), "payment_failed"
        why = (
            "your bank asks you to confirm it" if row.status == "requires_action" else (row.decline_code or "declined")
        )
        subject = f"Payment failed: invoice {number}, {amount}"
        text = (
            f"Hello {org.name},\n\nwe could not charge {amount} for invoice {number} to the payment method on "
            f"file ({why}). Please update your payment method or pay the invoice another way.\n\n"
            f"{notices.seller.payment_instructions or ''}\n\n{notices.seller.name}\n"
        )
    return Notification(
        dedupe_key=key,
        kind=kind,
        audience="customer",
        recipient=Recipient(org.billing_email, org.name),
        channels=notices.channels,
        subject=subject,
        text=text,
        metadata={"invoice_id": str(row.invoice_id), "attempt": str(row.attempt)},
    )
