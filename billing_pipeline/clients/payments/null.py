"""``NullGateway``: no payment provider configured (local runs, the demo).

Nothing is recorded anywhere. Mirroring reports ``skipped``; a charge is a hard decline with
``decline_code="no_payment_gateway"`` (nothing is ever reported paid that was not paid), so an
auto-pay invoice falls back to reminders; nothing is found paid outside.
"""

from __future__ import annotations

import datetime as dt

from billing_pipeline.clients.errors import PermanentGatewayError
from billing_pipeline.clients.payments.charges import charge_key, invoice_number
from billing_pipeline.clients.payments.types import (
    ChargeResult,
    ChargeStatus,
    GatewayCreditNote,
    GatewayInvoice,
    PaidInvoice,
    PaymentStatus,
)
from billing_pipeline.domain.model import Invoice, Organization
from billing_pipeline.domain.money import to_minor


def _skipped(invoice: Invoice) -> GatewayInvoice:
    return GatewayInvoice(
        external_id=None,
        number=invoice.number,
        status="skipped",
        total_minor=to_minor(invoice.total, invoice.currency),
        currency=invoice.currency,
        hosted_url=None,
    )


class NullGateway:
    """No payment provider: records nothing; see the module docstring."""

    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice:
        return _skipped(invoice)

    def charge_invoice(
        self,
        invoice: Invoice,
        attempt: int,
        *,
        idempotency_prefix: str,
        payment_method: str | None = None,
        amount_minor: int | None = None,
        external_id: str | None = None,
    ) -> ChargeResult:
        key = charge_key(invoice_number(invoice), attempt, idempotency_prefix)
        return ChargeResult(
            ChargeStatus.DECLINED,
            to_minor(invoice.total, invoice.currency) if amount_minor is None else amount_minor,
            invoice.currency,
            key,
            decline_code="no_payment_gateway",
            hard_decline=True,
            message="no payment gateway is configured",
        )

    def find_charge(
        self, invoice: Invoice, attempt: int, *, idempotency_prefix: str, external_id: str | None = None
    ) -> ChargeResult | None:
        return None

    def payment_status(self, gateway_payment_id: str) -> PaymentStatus:
        raise PermanentGatewayError(
            f"no payment gateway is configured: payment {gateway_payment_id} cannot be read", code="no_payment_gateway"
        )

    def invoices_paid_out_of_band(
        self, since: dt.datetime, *, created_after: dt.datetime | None = None
    ) -> list[PaidInvoice]:
        return []

    def void_invoice(self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None) -> GatewayInvoice:
        return _skipped(invoice)

    def mark_uncollectible(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice:
        return _skipped(invoice)

    def mark_paid_out_of_band(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice:
        return _skipped(invoice)

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
        if amount_minor <= 0:
            raise ValueError(f"credit note {number}: amount must be positive, got {amount_minor}")
        return GatewayCreditNote(None, number, amount_minor, invoice.currency, "skipped")
