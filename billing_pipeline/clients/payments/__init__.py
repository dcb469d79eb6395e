"""Payment gateway: the ``PaymentGateway`` Protocol, ``StripeGateway`` (real) and ``NullGateway`` (none).

* ``types``          -- the Protocols (``PaymentGateway`` = ``InvoiceSyncGateway`` + ``ChargeGateway`` +
  ``LifecycleGateway``) and their values (``GatewayInvoice``, ``ChargeResult``, ``PaymentStatus``, ...)
* ``declines``       -- ``classify_decline``: hard / soft / needs the customer
* ``transport``      -- ``stripe_client``: a ``StripeClient`` on a lean kept-alive HTTP transport
* ``stripe_api``     -- error translation (``translate_stripe_error``), the raw API call, invoice lookup
* ``customers``      -- Stripe customers of our organizations
* ``invoice_sync``   -- mirroring a finalized invoice into Stripe (``sync_invoice``)
* ``charges``        -- ``charge_invoice``, ``find_charge``, ``payment_status``, ``invoices_paid_out_of_band``
* ``lifecycle``      -- ``void_invoice``, ``mark_uncollectible``, ``mark_paid_out_of_band``, ``create_credit_note``
* ``mirror``         -- ``GatewayInvoiceMirror``: the lifecycle commands' ``InvoiceMirror`` on a gateway
* ``stripe_gateway`` -- ``StripeGateway``, all of the above
* ``null``           -- ``NullGateway``
"""

from billing_pipeline.clients.payments.charges import charge_key
from billing_pipeline.clients.payments.declines import DeclineKind, classify_decline
from billing_pipeline.clients.payments.mirror import GatewayInvoiceMirror
from billing_pipeline.clients.payments.null import NullGateway
from billing_pipeline.clients.payments.stripe_api import translate_stripe_error
from billing_pipeline.clients.payments.stripe_gateway import StripeGateway
from billing_pipeline.clients.payments.transport import stripe_client
from billing_pipeline.clients.payments.types import (
    ChargeGateway,
    ChargeResult,
    ChargeStatus,
    GatewayCreditNote,
    GatewayInvoice,
    InvoiceSyncGateway,
    LifecycleGateway,
    PaidInvoice,
    PaymentGateway,
    PaymentStatus,
)

__all__ = [
    "stripe_client",
    "GatewayInvoice",
    "GatewayCreditNote",
    "ChargeResult",
    "ChargeStatus",
    "PaymentStatus",
    "PaidInvoice",
    "PaymentGateway",
    "InvoiceSyncGateway",
    "ChargeGateway",
    "LifecycleGateway",
    "NullGateway",
    "GatewayInvoiceMirror",
    "StripeGateway",
    "DeclineKind",
    "classify_decline",
    "charge_key",
    "translate_stripe_error",
]
