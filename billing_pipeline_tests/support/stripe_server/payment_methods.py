"""Payment methods: Stripe's test tokens, attach / detach / retrieve / list, and what a charge on each does.

Stripe's test tokens (``pm_card_visa``, ``pm_card_chargeDeclined``, ...) stand for a card; attaching one
to a customer creates a new ``pm_...`` object, as Stripe does. A token can also be used directly where a
payment method id is expected (``invoice_settings.default_payment_method=pm_card_visa``): the emulator
is lenient there. What a charge does is the method's *behaviour*:

* ``("succeed",)`` -- the charge succeeds at once (cards);
* ``("decline", code, decline_code, message)`` -- 402 ``card_error`` as Stripe's test cards document;
* ``("authenticate",)`` -- ``pm_card_authenticationRequired``: off-session the charge declines with
  ``authentication_required``; on-session the PaymentIntent waits in ``requires_action``;
* ``("processing",)`` -- ``pm_usBankAccount``: ACH debit, the PaymentIntent stays ``processing`` until
  ``StripeServer.settle`` (or ``processing_seconds`` of the server clock) settles it.

``StripeServer.decline_next(target, n, decline_code)`` queues scripted declines for a customer or a
payment method: the next *n* charges decline, then its own behaviour applies again.
"""

from __future__ import annotations

from ._common import _check_known, _rand_id, _str, invalid, missing

# decline_code -> (error code, decline_code, message), as Stripe's decline-code table answers them
DECLINE_CODES = {
    "generic_decline": ("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "fraudulent": ("card_declined", "fraudulent", "Your card was declined."),
    "lost_card": ("card_declined", "lost_card", "Your card was declined."),
    "stolen_card": ("card_declined", "stolen_card", "Your card was declined."),
    "do_not_honor": ("card_declined", "do_not_honor", "Your card was declined."),
    "try_again_later": ("card_declined", "try_again_later", "Your card was declined."),
    "expired_card": ("expired_card", "expired_card", "Your card has expired."),
    "incorrect_cvc": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "processing_error": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "authentication_required": (
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}

_VISA = ("card", {"brand": "visa", "last4": "4242", "funding": "credit"})
_TEST_TOKENS: dict[str, tuple[tuple, tuple]] = {
    "pm_card_visa": (_VISA, ("succeed",)),
    "pm_card_mastercard": (("card", {"brand": "mastercard", "last4": "4444", "funding": "credit"}), ("succeed",)),
    "pm_card_visa_debit": (("card", {"brand": "visa", "last4": "5556", "funding": "debit"}), ("succeed",)),
    "pm_card_chargeDeclined": (
        ("card", {"brand": "visa", "last4": "0002", "funding": "credit"}),
        ("decline", *DECLINE_CODES["generic_decline"]),
    ),
    "pm_card_chargeDeclinedInsufficientFunds": (
        ("card", {"brand": "visa", "last4": "9995", "funding": "credit"}),
        ("decline", *DECLINE_CODES["insufficient_funds"]),
    ),
    "pm_card_chargeDeclinedFraudulent": (
        ("card", {"brand": "visa", "last4": "0019", "funding": "credit"}),
        ("decline", *DECLINE_CODES["fraudulent"]),
    ),
    "pm_card_chargeDeclinedLostCard": (
        ("card", {"brand": "visa", "last4": "9987", "funding": "credit"}),
        ("decline", *DECLINE_CODES["lost_card"]),
    ),
    "pm_card_chargeDeclinedStolenCard": (
        ("card", {"brand": "visa", "last4": "9979", "funding": "credit"}),
        ("decline", *DECLINE_CODES["stolen_card"]),
    ),
    "pm_card_chargeDeclinedExpiredCard": (
        ("card", {"brand": "visa", "last4": "0069", "funding": "credit"}),
        ("decline", *DECLINE_CODES["expired_card"]),
    ),
    "pm_card_chargeDeclinedIncorrectCvc": (
        ("card", {"brand": "visa", "last4": "0127", "funding": "credit"}),
        ("decline", *DECLINE_CODES["incorrect_cvc"]),
    ),
    "pm_card_chargeDeclinedProcessingError": (
        ("card", {"brand": "visa", "last4": "0119", "funding": "credit"}),
        ("decline", *DECLINE_CODES["processing_error"]),
    ),
    "pm_card_authenticationRequired": (
        ("card", {"brand": "visa", "last4": "3184", "funding": "credit"}),
        ("authenticate",),
    ),
    "pm_usBankAccount": (
        ("us_bank_account", {"bank_name": "STRIPE TEST BANK", "last4": "6789", "account_type": "checking"}),
        ("processing",),
    ),
}
_TEST_TOKENS["pm_card_visa_chargeDeclined"] = _TEST_TOKENS["pm_card_chargeDeclined"]
_TEST_TOKENS["pm_card_visa_chargeDeclinedInsufficientFunds"] = _TEST_TOKENS["pm_card_chargeDeclinedInsufficientFunds"]
_TEST_TOKENS["pm_usBankAccount_success"] = _TEST_TOKENS["pm_usBankAccount"]

# Kept for callers of the old module-level table: token -> (code, decline_code, message).
DECLINES = {token: b[1:] for token, (_, b) in _TEST_TOKENS.items() if b[0] == "decline"}


class PaymentMethodsAPI:
    """Mixed into ``StripeServer``: ``/v1/payment_methods`` and a customer's payment methods."""

    def _new_payment_method(self, token: str, customer: str | None) -> dict:
        if token not in _TEST_TOKENS:
            raise missing("payment_method", token, "payment_method")
        (kind, details), behaviour = _TEST_TOKENS[token]
        details = dict(details)
        if kind == "card":
            details.update(exp_month=12, exp_year=2034, country="US")
        pm = self._new(
            {
                "id": _rand_id("pm_"),
                "object": "payment_method",
                "type": kind,
                kind: details,
                "billing_details": {"address": None, "email": None, "name": None, "phone": None},
                "created": self._now(),
                "customer": customer,
                "livemode": False,
                "metadata": {},
                "allow_redisplay": "unspecified",
                "_behaviour": behaviour,
            }
        )
        self.payment_methods[pm["id"]] = pm
        return pm

    def _attach(self, customer: dict, pm_ref: str) -> dict:
        """Attach a test token (a new method is created) or an existing, unattached method."""
        pm = self.payment_methods.get(pm_ref)
        if pm is None:
            pm = self._new_payment_method(pm_ref, customer["id"])
        elif pm["customer"] not in (None, customer["id"]):
            raise invalid(
                "The payment method you provided has already been attached to a customer.",
                param="payment_method",
                code="payment_method_unexpected_state",
            )
        pm["customer"] = customer["id"]
        if pm["id"] not in customer["_payment_methods"]:
            customer["_payment_methods"].append(pm["id"])
        return pm

    def _behaviour(self, pm_ref: str, customer_id: str | None) -> tuple:
        """What charging *pm_ref* does now: a scripted outcome first (method, then customer), else its own."""
        for target in (pm_ref, customer_id):
            queue = self._scripted.get(target or "")
            if queue:
                return queue.pop(0)
        pm = self.payment_methods.get(pm_ref)
        if pm is not None:
            return pm["_behaviour"]
        if pm_ref in _TEST_TOKENS:
            return _TEST_TOKENS[pm_ref][1]
        return ("succeed",)

    def _payment_method_summary(self, pm_ref: str) -> dict:
        pm = self.payment_methods.get(pm_ref)
        kind = pm["type"] if pm else (_TEST_TOKENS[pm_ref][0][0] if pm_ref in _TEST_TOKENS else "card")
        return {"id": pm_ref, "object": "payment_method", "type": kind}

    def _h_payment_method_attach(self, params: dict, id_: str) -> dict:
        _check_known(params, {"customer", "expand"})
        customer_id = _str(params, "customer")
        if not customer_id:
            raise invalid("Missing required param: customer.", param="customer")
        return self._public(self._attach(self._customer(customer_id, "customer"), id_))

    def _h_payment_method_detach(self, params: dict, id_: str) -> dict:
        _check_known(params, {"expand"})
        pm = self.payment_methods.get(id_)
        if pm is None:
            raise missing("payment_method", id_)
        if pm["customer"] is None:
            raise invalid("The payment method you provided is not attached to a customer so detachment is impossible.")
        customer = self.customers[pm["customer"]]
        customer["_payment_methods"].remove(id_)
        if customer["invoice_settings"].get("default_payment_method") == id_:
            customer["invoice_settings"]["default_payment_method"] = None
        pm["customer"] = None
        return self._public(pm)

    def _h_payment_method_retrieve(self, params: dict, id_: str) -> dict:
        pm = self.payment_methods.get(id_)
        if pm is None:
            raise missing("payment_method", id_)
        return self._public(pm)

    def _h_payment_method_list(self, params: dict) -> dict:
        _check_known(params, {"customer", "type", "limit", "starting_after", "ending_before", "expand"})
        objs = list(self.payment_methods.values())
        if "customer" in params:
            objs = [pm for pm in objs if pm["customer"] == params["customer"]]
        if "type" in params:
            objs = [pm for pm in objs if pm["type"] == params["type"]]
        return self._list("payment_methods", objs, params, "/v1/payment_methods")

    def _h_customer_payment_methods(self, params: dict, id_: str) -> dict:
        self._customer(id_)
        return self._h_payment_method_list({**params, "customer": id_})

    # ------------------------------------------------------------------ test control
    def decline_next(self, target: str, n: int = 1, decline_code: str = "generic_decline") -> None:
        """The next *n* charges of *target* (a customer id or a payment method id/token) decline with
        *decline_code* (a key of ``DECLINE_CODES``); then the method's own behaviour applies again."""
        if decline_code not in DECLINE_CODES:
            raise ValueError(f"unknown decline_code {decline_code!r}; one of {sorted(DECLINE_CODES)}")
        outcome = ("decline", *DECLINE_CODES[decline_code])
        if decline_code == "authentication_required":
            outcome = ("authenticate",)
        with self._lock:
            self._scripted.setdefault(target, []).extend([outcome] * n)

    def _h_test_decline_next(self, params: dict) -> dict:
        """``POST /_test/decline_next`` (target, count, decline_code): ``decline_next`` over HTTP."""
        _check_known(params, {"target", "count", "decline_code"})
        target = _str(params, "target")
        if not target:
            raise invalid("Missing required param: target.", param="target")
        code = _str(params, "decline_code") or "generic_decline"
        if code not in DECLINE_CODES:
            raise invalid(f"Unknown decline_code {code!r}.", param="decline_code")
        count = int(params.get("count") or 1)
        self.decline_next(target, count, code)
        return {"object": "test_control", "target": target, "queued": len(self._scripted[target])}
