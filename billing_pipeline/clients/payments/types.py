"""The payment gateway's interface: the ``PaymentGateway`` Protocol and the values it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from billing_pipeline.domain.model import Invoice, Organization


@dataclass(frozen=True)
class GatewayInvoice:
    external_id: str | None
    number: str | None  # the gateway's own number (Stripe assigns one at finalization)
    status: str  # Stripe's status ("open", "paid", ...) or "skipped"
    total_minor: int
    currency: str  # upper-case ISO 4217
    hosted_url: str | None


@runtime_checkable
class PaymentGateway(Protocol):
    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice: ...
