"""Mirroring our invoice lifecycle into Stripe: void, uncollectible, credit notes.

Each is safe to repeat: the invoice's state is read first (already ``void`` -> returned as is), and
the write carries the caller's idempotency key, derived from our ids and recorded in its ledger
first (the lifecycle's mirror ledger uses ``void-{number}``, ``uncollectible-{number}``,
``paid-{number}``, ``credit-note-{cn_number}``; ``mirror.GatewayInvoiceMirror`` passes them on). A
credit note is also found by ``metadata['credit_note_id']`` among the invoice's credit notes before
it is created, so a repeat after Stripe forgot the key (24 h) creates nothing.

Stripe's rules apply: only ``open`` or ``uncollectible`` invoices can be voided or paid out of band,
only ``open`` ones marked uncollectible (else ``PermanentGatewayError``). A credit note on an ``open`` invoice lowers
what is due; on a ``paid`` one it is recorded as ``out_of_band_amount`` (Stripe moves no money:
a refund or a balance credit is our ledger's decision, not a side effect of the mirror).
"""

from __future__ import annotations

from typing import Any

from billing_pipeline.clients.payments.charges import invoice_number
from billing_pipeline.clients.payments.stripe_api import StripeAPI, _get, _iterate, _path, _stripe_errors
from billing_pipeline.clients.payments.types import GatewayCreditNote, GatewayInvoice
from billing_pipeline.domain.model import Invoice


def _as_gateway_invoice(stripe_invoice: Any) -> GatewayInvoice:
    return GatewayInvoice(
        external_id=stripe_invoice["id"],
        number=_get(stripe_invoice, "number"),
        status=_get(stripe_invoice, "status", ""),
        total_minor=int(_get(stripe_invoice, "total", 0)),
        currency=str(_get(stripe_invoice, "currency", "")).upper(),
        hosted_url=_get(stripe_invoice, "hosted_invoice_url"),
    )


class StripeLifecycle(StripeAPI):
    """The lifecycle half of ``StripeGateway``."""

    def void_invoice(self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None) -> GatewayInvoice:
        return self._transition(invoice, "void", "void", {}, idempotency_key, external_id)

    def mark_uncollectible(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice:
        return self._transition(invoice, "mark_uncollectible", "uncollectible", {}, idempotency_key, external_id)

    def mark_paid_out_of_band(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice:
        """Paid outside Stripe (bank transfer, cash, a credit note): ``pay`` with ``paid_out_of_band``;
        Stripe records it for the whole amount remaining, moving no money."""
        params = {"paid_out_of_band": True}
        return self._transition(invoice, "pay", "paid", params, idempotency_key, external_id)

    def _transition(
        self, invoice: Invoice, action: str, target: str, params: dict, key: str, external_id: str | None
    ) -> GatewayInvoice:
        number = invoice_number(invoice)
        with _stripe_errors():
            current = self._our_invoice(number, external_id)
            if _get(current, "status") == target:
                return _as_gateway_invoice(current)
            done = self._api("post", _path("invoices", current["id"], action), params, key=key)
            return _as_gateway_invoice(done)

    def create_credit_note(
        self,
        invoice: Invoice,
        amount_minor: int,
        number: str,
        *,
        idempotency_key: str,
        external_id: str | None = None,
        memo: str | None = None,
    ) -> GatewayCreditNote:
        """Credit note *number* (ours, from its own series) of *amount_minor* on *invoice* in Stripe."""
        if amount_minor <= 0:
            raise ValueError(f"credit note {number}: amount must be positive, got {amount_minor}")
        inv_number = invoice_number(invoice)
        with _stripe_errors():
            current = self._our_invoice(inv_number, external_id)
            existing = self._find_credit_note(current["id"], number)
            if existing is not None:
                return existing
            params: dict[str, Any] = {
                "invoice": current["id"],
                "lines": [
                    {
                        "type": "custom_line_item",
                        "description": (memo or f"Credit note {number}")[:500],
                        "quantity": 1,
                        "unit_amount": amount_minor,
                    }
                ],
                "metadata": {"credit_note_id": number, "invoice_id": inv_number},
            }
            if memo:
                params["memo"] = memo[:500]
            if _get(current, "status") == "paid":
                params["out_of_band_amount"] = amount_minor
            created = self._api("post", _path("credit_notes"), params, key=idempotency_key)
            return self._as_credit_note(created, number)

    def _find_credit_note(self, stripe_invoice_id: str, number: str) -> GatewayCreditNote | None:
        params: dict[str, Any] = {"invoice": stripe_invoice_id, "limit": 100}
        while True:
            page = self._api("get", _path("credit_notes"), params)
            items = list(_iterate(page))
            for cn in items:
                if _get(_get(cn, "metadata"), "credit_note_id") == number:
                    return self._as_credit_note(cn, number)
            if not _get(page, "has_more", False) or not items:
                return None
            params["starting_after"] = items[-1]["id"]

    @staticmethod
    def _as_credit_note(cn: Any, number: str) -> GatewayCreditNote:
        return GatewayCreditNote(
            external_id=cn["id"],
            number=number,
            amount_minor=int(_get(cn, "total", _get(cn, "amount", 0))),
            currency=str(_get(cn, "currency", "")).upper(),
            status=str(_get(cn, "status", "")),
        )
