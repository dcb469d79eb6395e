"""``NullGateway``: no payment provider configured (local runs, the demo)."""

from __future__ import annotations

from billing_pipeline.clients.payments.types import GatewayInvoice
from billing_pipeline.domain.model import Invoice, Organization
from billing_pipeline.domain.money import to_minor


class NullGateway:
    """No payment provider: records nothing, every call reports ``skipped``."""

    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice:
        return GatewayInvoice(
            external_id=None,
            number=invoice.number,
            status="skipped",
            total_minor=to_minor(invoice.total, invoice.currency),
            currency=invoice.currency,
            hosted_url=None,
        )
