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
* payment_methods: Stripe's test tokens (``pm_card_visa``, ``pm_card_chargeDeclined*``,
  ``pm_card_authenticationRequired``, ``pm_usBankAccount``), attach / detach / retrieve / list,
  ``customers/:id/payment_methods`` (``payment_methods.py``)
* payment_intents: create (``confirm``, ``off_session``) / confirm / cancel / retrieve / list /
  search; ``pay`` creates one per attempt; ``processing`` until settled (``payments.py``)
* credit_notes: create (pre-payment lowers ``amount_due``; post-payment to the balance or out of
  band) / retrieve / list (``credit_notes.py``)
* test control (not Stripe's): ``decline_next`` (``POST /_test/decline_next``), ``settle``
  (``POST /_test/payment_intents/:id/settle``), ``processing_seconds``
* Idempotency-Key semantics as documented by Stripe (replay with ``Idempotent-Replayed: true``,
  ``idempotency_error`` on reuse with other parameters or another endpoint, 409 while in flight;
  validation errors are not saved; 402s and 500s are).
* auth (Bearer or Basic, unknown key -> 401), unknown parameters -> 400 ``parameter_unknown``.
* fault injection: ``fail_next``, ``down``/``up``, ``latency``; a request log and ``count()``.

Simplifications (documented, deliberate):

* No time passes on its own: ``auto_advance`` never finalizes or charges anything; call
  ``finalize``/``pay`` explicitly (like a test clock that never advances).
* Payment: the payment method is taken from ``pay(payment_method=...)``, the invoice's
  ``default_payment_method``, the customer's ``invoice_settings.default_payment_method``, a
  customer metadata value that is a Stripe test token (``metadata[test_payment_method]``), or
  (leniently) any method attached to the customer. Test tokens may be used where a method id is
  expected. A customer without any payment method is charged successfully unless the server was
  created with ``require_payment_method=True`` (then 400).
* ``quantity x unit_amount_decimal`` is rounded half-up to an integer amount (``ROUNDING``).
* Finalizing an invoice whose total is 0 marks it ``paid`` (as Stripe does).  Paying or sending a
  draft finalizes it first.  No taxes, discounts, refunds, events or webhooks; a customer's
  balance is kept (credit notes) but not applied to invoices.
* Search is read-after-write consistent unless ``search_delay`` seconds is set (real Stripe
  search lags by up to a minute).
"""

from ._common import DEFAULT_API_VERSION
from .server import StripeServer

__all__ = ["StripeServer", "DEFAULT_API_VERSION"]
