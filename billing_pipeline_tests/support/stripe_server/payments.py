"""Payments: invoice ``pay`` and PaymentIntents, with Stripe's test payment methods."""

from __future__ import annotations

from ._common import (
    StripeHTTPError,
    _bool,
    _check_known,
    _rand_id,
    invalid,
    missing,
)

# --------------------------------------------------------------------------- test cards
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_visa_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedFraudulent": ("card_declined", "fraudulent", "Your card was declined."),
    "pm_card_chargeDeclinedLostCard": ("card_declined", "lost_card", "Your card was declined."),
    "pm_card_chargeDeclinedStolenCard": ("card_declined", "stolen_card", "Your card was declined."),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "pm_card_chargeDeclinedProcessingError": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}


class PaymentsAPI:
    def _payment_method_for(self, inv: dict, params: dict) -> str | None:
        cust = self.customers[inv["customer"]]
        candidates = [
            params.get("payment_method"),
            params.get("source"),
            inv["default_payment_method"],
            inv["default_source"],
            cust["invoice_settings"].get("default_payment_method"),
            cust["default_source"],
            cust["metadata"].get("test_payment_method"),
        ]
        candidates += [v for v in cust["metadata"].values() if str(v).startswith("pm_card_")]
        candidates += cust["_payment_methods"]
        for c in candidates:
            if c:
                return c
        return None

    def _h_invoice_pay(self, params: dict, id_: str) -> dict:
        _check_known(params, {"forgive", "mandate", "off_session", "paid_out_of_band", "payment_method", "source"})
        inv = self._invoice(id_)
        if inv["status"] == "draft":
            self._finalize(inv, {})
            if inv["status"] == "paid":
                return self._render_invoice(inv)
        if inv["status"] == "paid":
            raise invalid("Invoice is already paid.")
        if inv["status"] == "void":
            raise invalid("This invoice can no longer be paid because it has been voided.")
        now = self._now()
        view = self._render_invoice(inv)
        amount = view["amount_remaining"]
        if _bool(params, "paid_out_of_band", False):
            inv["paid_out_of_band"] = True
            inv["amount_paid"] += amount
            inv["status"] = "paid"
            inv["status_transitions"]["paid_at"] = now
            return self._render_invoice(inv)
        pm = self._payment_method_for(inv, params)
        if pm is None and self.require_payment_method:
            raise StripeHTTPError(
                400,
                "invalid_request_error",
                "This customer has no attached payment source or default payment method. Please consider adding a "
                "default payment method.",
                saved=True,
            )
        pm = pm or "pm_card_visa"
        inv["attempt_count"] += 1
        inv["attempted"] = True
        pi = self._new(
            {
                "id": _rand_id("pi_"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": 0,
                "currency": inv["currency"],
                "customer": inv["customer"],
                "created": now,
                "livemode": False,
                "metadata": {},
                "payment_method": pm,
                "description": f"Payment for Invoice {inv['number']}",
                "status": "requires_payment_method",
                "last_payment_error": None,
                "latest_charge": _rand_id("ch_"),
                "capture_method": "automatic",
                "confirmation_method": "automatic",
                "payment_method_types": ["card"],
            }
        )
        self.payment_intents[pi["id"]] = pi
        decline = DECLINES.get(pm)
        if decline:
            code, decline_code, message = decline
            err = {
                "type": "card_error",
                "code": code,
                "decline_code": decline_code,
                "message": message,
                "charge": pi["latest_charge"],
                "payment_method": {"id": pm, "object": "payment_method", "type": "card"},
                "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            }
            pi["last_payment_error"] = dict(err)
            error = StripeHTTPError(
                402,
                "card_error",
                message,
                code=code,
                saved=True,
                decline_code=decline_code,
                charge=pi["latest_charge"],
                payment_intent=self._public(pi),
            )
            raise error
        pi["status"] = "succeeded"
        pi["amount_received"] = amount
        inv["payments"].append(
            {
                "id": _rand_id("inpay_"),
                "object": "invoice_payment",
                "amount_paid": amount,
                "amount_requested": amount,
                "created": now,
                "currency": inv["currency"],
                "invoice": inv["id"],
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": now},
            }
        )
        inv["amount_paid"] += amount
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = now
        return self._render_invoice(inv)

    def _h_payment_intent_retrieve(self, params: dict, id_: str) -> dict:
        pi = self.payment_intents.get(id_)
        if pi is None:
            raise missing("payment_intent", id_)
        return self._public(pi)
