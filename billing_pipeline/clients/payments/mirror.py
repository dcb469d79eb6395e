"""``GatewayInvoiceMirror``: the lifecycle commands' ``InvoiceMirror`` on top of a ``LifecycleGateway``.

``services.lifecycle_mirror.InvoiceMirror`` (void, uncollectible, paid out of band, credit notes; the
key comes from its mirror ledger) is satisfied structurally: clients do not import services. Each
call returns the gateway's id of what it changed or created, ``None`` when nothing was mirrored
(``NullGateway``: "skipped"), and raises the gateway's errors (the ledger row is then ``failed`` and
the next command retries with the same key). Keys get ``idempotency_prefix`` in front when one is
set (the same prefix as the delivery's Stripe keys, so environments sharing a Stripe account do not
collide).
"""

from __future__ import annotations

from billing_pipeline.clients.payments.types import GatewayCreditNote, GatewayInvoice, LifecycleGateway
from billing_pipeline.domain.credit_notes import CreditNote
from billing_pipeline.domain.model import Invoice
from billing_pipeline.domain.money import to_minor


def _mirrored(result: GatewayInvoice | GatewayCreditNote) -> str | None:
    return None if result.status == "skipped" else result.external_id


class GatewayInvoiceMirror:
    def __init__(self, gateway: LifecycleGateway, *, idempotency_prefix: str = "") -> None:
        self.gateway = gateway
        self.idempotency_prefix = idempotency_prefix

    def _key(self, key: str) -> str:
        return f"{self.idempotency_prefix}-{key}" if self.idempotency_prefix else key

    def void_invoice(self, invoice: Invoice, *, idempotency_key: str) -> str | None:
        return _mirrored(self.gateway.void_invoice(invoice, idempotency_key=self._key(idempotency_key)))

    def mark_uncollectible(self, invoice: Invoice, *, idempotency_key: str) -> str | None:
        return _mirrored(self.gateway.mark_uncollectible(invoice, idempotency_key=self._key(idempotency_key)))

    def mark_paid_out_of_band(self, invoice: Invoice, *, idempotency_key: str) -> str | None:
        return _mirrored(self.gateway.mark_paid_out_of_band(invoice, idempotency_key=self._key(idempotency_key)))

    def create_credit_note(self, invoice: Invoice, credit_note: CreditNote, *, idempotency_key: str) -> str | None:
        if not credit_note.number:
            raise ValueError(f"credit note on {credit_note.invoice_number}: only an issued credit note is mirrored")
        note = self.gateway.create_credit_note(
            invoice,
            to_minor(credit_note.total, credit_note.currency),
            credit_note.number,
            idempotency_key=self._key(idempotency_key),
            memo=credit_note.reason,
        )
        return _mirrored(note)
