"""``StripeGateway``: the real payment gateway, Stripe through a ``stripe.StripeClient``."""

from __future__ import annotations

from billing_pipeline.clients.payments.invoice_sync import StripeInvoiceSync


class StripeGateway(StripeInvoiceSync):
    """Stripe through a ``stripe.StripeClient`` (``client.v1.*`` services).

    Build the client with ``stripe_client(api_key)``. Invoice mirroring: ``sync_invoice``
    (see ``invoice_sync``).
    """
