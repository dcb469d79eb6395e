"""A Stripe-compatible HTTP server for tests, driven by the official ``stripe`` library.

    with StripeServer() as srv:
        client = srv.client()                       # stripe.StripeClient pointed at srv
        cus = client.v1.customers.create(params={"email": "a@example.com"})
        # or the global style:  stripe.api_key = srv.api_key; stripe.api_base = srv.api_base

What it implements (API version agnostic, shapes follow the current API):

* customers: create / retrieve / update / list (email filter) / search / delete
* invoiceitems: create (``amount`` or ``quantity``/``quantity_decimal`` + ``unit_amount_decimal``
  or ``price_data``), retrieve / update / delete / list (customer, invoice, pending)
* invoices: create / retrieve / update / delete (drafts) / list / search,
  ``lines``, ``add_lines`` (all or none), ``finalize``, ``pay``, ``send``, ``void``, ``mark_uncollectible``
* payment_intents: retrieve (created by ``pay``)
* Idempotency-Key semantics as documented by Stripe (replay with ``Idempotent-Replayed: true``,
  ``idempotency_error`` on reuse with other parameters or another endpoint, 409 while in flight;
  validation errors are not saved; 402s and 500s are).
* auth (Bearer or Basic, unknown key -> 401), unknown parameters -> 400 ``parameter_unknown``.
* fault injection: ``fail_next``, ``down``/``up``, ``latency``; a request log and ``count()``.

Simplifications (documented, deliberate):

* No time passes on its own: ``auto_advance`` never finalizes or charges anything; call
  ``finalize``/``pay`` explicitly (like a test clock that never advances).
* Payment: the payment method is taken from ``pay(payment_method=...)``, the invoice's
  ``default_payment_method``, the customer's ``invoice_settings.default_payment_method``, or a
  customer metadata value that is a Stripe test token (``metadata[test_payment_method]``).
  Stripe test tokens ``pm_card_chargeDeclined*`` decline with 402 ``card_error``; any other
  token succeeds.  A customer without any payment method is charged successfully unless the
  server was created with ``require_payment_method=True`` (then 400).
* ``quantity x unit_amount_decimal`` is rounded half-up to an integer amount (``ROUNDING``).
* Finalizing an invoice whose total is 0 marks it ``paid`` (as Stripe does).  Paying or sending a
  draft finalizes it first.  No taxes, discounts, credit balance, events or webhooks.
* Search is read-after-write consistent unless ``search_delay`` seconds is set (real Stripe
  search lags by up to a minute).
"""

from ._common import DEFAULT_API_VERSION
from .server import StripeServer

__all__ = ["StripeServer", "DEFAULT_API_VERSION"]
