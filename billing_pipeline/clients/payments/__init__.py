"""Payment gateway: the ``PaymentGateway`` Protocol, ``StripeGateway`` (real) and ``NullGateway`` (none).

* ``types``          -- the Protocol and the values it returns (``GatewayInvoice``)
* ``transport``      -- ``stripe_client``: a ``StripeClient`` on a lean kept-alive HTTP transport
* ``stripe_api``     -- error translation (``translate_stripe_error``), the raw API call
* ``customers``      -- Stripe customers of our organizations
* ``invoice_sync``   -- mirroring a finalized invoice into Stripe (``sync_invoice``)
* ``stripe_gateway`` -- ``StripeGateway``, all of the above
* ``null``           -- ``NullGateway``
"""

from billing_pipeline.clients.payments.null import NullGateway
from billing_pipeline.clients.payments.stripe_api import translate_stripe_error
from billing_pipeline.clients.payments.stripe_gateway import StripeGateway
from billing_pipeline.clients.payments.transport import stripe_client
from billing_pipeline.clients.payments.types import GatewayInvoice, PaymentGateway

__all__ = [
    "stripe_client",
    "GatewayInvoice",
    "PaymentGateway",
    "NullGateway",
    "StripeGateway",
    "translate_stripe_error",
]
