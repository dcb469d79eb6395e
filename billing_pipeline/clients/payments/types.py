"""The payment gateway's interface: small Protocols and the values they return.

``PaymentGateway`` is all of them; code that needs one part types against that part
(``ChargeGateway`` for auto-charge and the payment sync, ``LifecycleGateway`` for void /
uncollectible / credit notes), so a unit-test fake implements only what it is used for.

Money is integer minor units of ``currency`` (upper-case ISO 4217), as ``domain.money.to_minor``
gives them. Every write carries an idempotency key derived from our own ids, so a re-executed run
sends the same key with the same parameters and the gateway does the work once: invoice sync and
charges take ``idempotency_prefix`` and derive the rest (``charge_key``:
``{prefix}-charge-{invoice_number}-{attempt}``); lifecycle writes take the caller's whole key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from billing_pipeline.domain.model import Invoice, Organization


@dataclass(frozen=True)
class GatewayInvoice:
    external_id: str | None
    number: str | None  # the gateway's own number (Stripe assigns one at finalization)
    status: str  # Stripe's status ("open", "paid", "void", "uncollectible", ...) or "skipped"
    total_minor: int
    currency: str  # upper-case ISO 4217
    hosted_url: str | None


class ChargeStatus(StrEnum):
    """What one charge attempt came to.

    ``SUCCEEDED``: the money is taken. ``PROCESSING``: accepted, not settled (bank debits take days;
    poll ``payment_status``). ``REQUIRES_ACTION``: the customer must authenticate (3-D Secure) on the
    hosted invoice page; retrying off-session cannot help. ``DECLINED``: refused, see ``decline_code``
    and ``hard_decline``.
    """

    SUCCEEDED = "succeeded"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    DECLINED = "declined"


@dataclass(frozen=True)
class ChargeResult:
    """One charge attempt of an invoice (``charge_invoice`` / ``find_charge``)."""

    status: ChargeStatus
    amount_minor: int  # charged, or attempted when declined
    currency: str
    idempotency_key: str  # the key of this attempt (our ledger can record it before the call)
    gateway_payment_id: str | None = None  # Stripe PaymentIntent id; None for a payment made out of band
    gateway_invoice_id: str | None = None
    decline_code: str | None = None  # Stripe's decline_code, else its error code; "no_payment_method"
    hard_decline: bool = False  # True: retrying the same payment method cannot succeed (classify_decline)
    message: str | None = None  # the gateway's text, for the failure notice / operator
    already_paid: bool = False  # the invoice was paid before this call (earlier attempt, hosted page, ...)
    hosted_url: str | None = None  # the invoice's payment page: where the customer pays or authenticates

    @property
    def retryable(self) -> bool:
        """A later attempt (new ``attempt`` number) of the same payment method may succeed."""
        return self.status is ChargeStatus.DECLINED and not self.hard_decline


@dataclass(frozen=True)
class PaymentStatus:
    """A payment as the gateway sees it now (``payment_status``)."""

    gateway_payment_id: str
    status: str  # Stripe PaymentIntent status: succeeded, processing, requires_payment_method, canceled, ...
    amount_minor: int  # received when succeeded, else requested
    currency: str
    decline_code: str | None = None  # why the last attempt failed, when it did

    @property
    def final(self) -> bool:
        """Only ``succeeded`` and ``canceled`` never change again."""
        return self.status in ("succeeded", "canceled")

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def failed(self) -> bool:
        """The payment will not complete: canceled, or it went back to ``requires_payment_method``."""
        return self.status == "canceled" or (self.status == "requires_payment_method" and self.decline_code is not None)


@dataclass(frozen=True)
class PaidInvoice:
    """An invoice of ours the gateway reports as paid (``invoices_paid_out_of_band``)."""

    number: str  # our invoice number (Stripe metadata ``invoice_id``)
    gateway_invoice_id: str
    amount_paid_minor: int
    currency: str
    paid_at: dt.datetime  # UTC
    paid_out_of_band: bool  # marked paid in Stripe without a Stripe payment
    gateway_payment_ids: tuple[str, ...]  # the PaymentIntents that paid it (hosted page, our charges)


@dataclass(frozen=True)
class GatewayCreditNote:
    external_id: str | None  # None: no gateway (NullGateway)
    number: str  # our credit-note number (Stripe metadata ``credit_note_id``)
    amount_minor: int
    currency: str
    status: str  # Stripe: issued | void; "skipped" without a gateway


@runtime_checkable
class InvoiceSyncGateway(Protocol):
    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice: ...


@runtime_checkable
class ChargeGateway(Protocol):
    def charge_invoice(
        self,
        invoice: Invoice,
        attempt: int,
        *,
        idempotency_prefix: str,
        payment_method: str | None = None,
        amount_minor: int | None = None,
        external_id: str | None = None,
    ) -> ChargeResult: ...

    def find_charge(
        self, invoice: Invoice, attempt: int, *, idempotency_prefix: str, external_id: str | None = None
    ) -> ChargeResult | None: ...

    def payment_status(self, gateway_payment_id: str) -> PaymentStatus: ...

    def invoices_paid_out_of_band(
        self, since: dt.datetime, *, created_after: dt.datetime | None = None
    ) -> list[PaidInvoice]: ...


@runtime_checkable
class LifecycleGateway(Protocol):
    """Writes take the caller's ``idempotency_key`` (its ledger's business key), not a prefix."""

    def void_invoice(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice: ...

    def mark_uncollectible(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice: ...

    def mark_paid_out_of_band(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice: ...

    def create_credit_note(
        self,
        invoice: Invoice,
        amount_minor: int,
        number: str,
        *,
        idempotency_key: str,
        external_id: str | None = None,
        memo: str | None = None,
    ) -> GatewayCreditNote: ...


@runtime_checkable
class PaymentGateway(InvoiceSyncGateway, ChargeGateway, LifecycleGateway, Protocol):
    """The whole gateway: ``StripeGateway`` (real) and ``NullGateway`` (none) implement all of it."""
