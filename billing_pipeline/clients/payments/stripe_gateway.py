"""``StripeGateway``: the real payment gateway, Stripe through a ``stripe.StripeClient``."""

from __future__ import annotations

from billing_pipeline.clients.payments.charges import StripeCharges
from billing_pipeline.clients.payments.invoice_sync import StripeInvoiceSync
from billing_pipeline.clients.payments.lifecycle import StripeLifecycle


class StripeGateway(StripeInvoiceSync, StripeCharges, StripeLifecycle):
    """Stripe through a ``stripe.StripeClient``; build the client with ``stripe_client(api_key)``.

    * ``sync_invoice`` -- mirror a finalized invoice (``invoice_sync``);
    * ``charge_invoice``, ``find_charge``, ``payment_status``, ``invoices_paid_out_of_band`` -- collect
      it (``charges``);
    * ``void_invoice``, ``mark_uncollectible``, ``create_credit_note`` -- mirror its lifecycle (``lifecycle``).
    """
