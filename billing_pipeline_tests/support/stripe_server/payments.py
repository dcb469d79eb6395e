"""Payments: invoice ``pay`` and PaymentIntents (create / confirm / retrieve / list / search / cancel).

A charge follows the payment method's behaviour (``payment_methods``): it succeeds, declines with
402 ``card_error`` (``code``, ``decline_code``, the PaymentIntent in ``requires_payment_method``; the
response is saved under its Idempotency-Key, as Stripe saves 402s), asks for authentication, or stays
``processing`` until ``settle(pi_id, "succeeded" | "failed")`` (Python or ``POST
/_test/payment_intents/:id/settle``) or, when ``processing_seconds`` is set, until that much server
clock has passed. An invoice paid by a processing payment stays ``open`` with an ``open`` invoice
payment until it settles, as Stripe's invoices do.
"""

from __future__ import annotations

import copy

from ._common import (
    StripeHTTPError,
    _apply_metadata,
    _bool,
    _check_known,
    _enum,
    _int,
    _rand_id,
    _str,
    invalid,
    missing,
)

_PAY_PARAMS = {"expand", "forgive", "mandate", "off_session", "paid_out_of_band", "payment_method", "source"}
_PI_PARAMS = {
    "amount",
    "automatic_payment_methods",
    "capture_method",
    "confirm",
    "currency",
    "customer",
    "description",
    "expand",
    "metadata",
    "off_session",
    "payment_method",
    "payment_method_types",
    "receipt_email",
    "setup_future_usage",
    "statement_descriptor",
}


def _card_error(pi: dict, code: str, decline_code: str | None, message: str, pm_summary: dict) -> StripeHTTPError:
    err = {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": message,
        "charge": pi["latest_charge"],
        "payment_method": pm_summary,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
    }
    pi["last_payment_error"] = err
    pi["status"] = "requires_payment_method"
    extra = {"decline_code": decline_code} if decline_code else {}
    public = {k: copy.deepcopy(v) for k, v in pi.items() if not k.startswith("_")}
    return StripeHTTPError(
        402, "card_error", message, code=code, saved=True, charge=pi["latest_charge"], payment_intent=public, **extra
    )


class PaymentsAPI:
    """Mixed into ``StripeServer``."""

    # ------------------------------------------------------------------ charging
    def _new_payment_intent(self, amount: int, currency: str, customer: str | None, params: dict) -> dict:
        pi = self._new(
            {
                "id": _rand_id("pi_"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": 0,
                "currency": currency,
                "customer": customer,
                "created": self._now(),
                "livemode": False,
                "metadata": _apply_metadata({}, params.get("metadata")),
                "payment_method": None,
                "description": _str(params, "description"),
                "status": "requires_payment_method",
                "last_payment_error": None,
                "latest_charge": None,
                "next_action": None,
                "canceled_at": None,
                "cancellation_reason": None,
                "capture_method": "automatic",
                "confirmation_method": "automatic",
                "payment_method_types": ["card"],
                "_invoice": None,
                "_processing_since": None,
            }
        )
        self.payment_intents[pi["id"]] = pi
        return pi

    def _confirm(self, pi: dict, pm: str, *, off_session: bool) -> None:
        """Attempt the charge of *pi* with *pm*: succeeded, processing, requires_action, or a 402 raised."""
        pi["payment_method"] = pm
        pi["latest_charge"] = _rand_id("ch_")
        pi["last_payment_error"] = None
        summary = self._payment_method_summary(pm)
        pi["payment_method_types"] = [summary["type"]]
        behaviour = self._behaviour(pm, pi["customer"])
        if behaviour[0] == "decline":
            raise _card_error(pi, behaviour[1], behaviour[2], behaviour[3], summary)
        if behaviour[0] == "authenticate":
            if off_session:
                raise _card_error(
                    pi,
                    "authentication_required",
                    "authentication_required",
                    "Your card was declined. This transaction requires authentication.",
                    summary,
                )
            pi["status"] = "requires_action"
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
            return
        if behaviour[0] == "processing":
            pi["status"] = "processing"
            pi["_processing_since"] = self.clock()
            return
        pi["status"] = "succeeded"
        pi["amount_received"] = pi["amount"]

    def settle(self, pi_id: str, outcome: str = "succeeded", decline_code: str = "insufficient_funds") -> dict:
        """Settle a ``processing`` PaymentIntent (``outcome`` ``succeeded`` or ``failed``); its invoice follows."""
        with self._lock:
            pi = self.payment_intents.get(pi_id)
            if pi is None:
                raise KeyError(pi_id)
            if pi["status"] != "processing":
                raise ValueError(f"{pi_id} is {pi['status']}, not processing")
            self._settle(pi, outcome, decline_code)
            return self._public(pi)

    def _settle(self, pi: dict, outcome: str, decline_code: str) -> None:
        now = self._now()
        pi["_processing_since"] = None
        if outcome == "succeeded":
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
        elif outcome == "failed":
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = {
                "type": "card_error",
                "code": "payment_intent_payment_attempt_failed",
                "decline_code": decline_code,
                "message": "The payment failed.",
                "payment_method": self._payment_method_summary(pi["payment_method"]),
            }
        else:
            raise ValueError("outcome must be 'succeeded' or 'failed'")
        inv = self.invoices.get(pi["_invoice"] or "")
        if inv is None:
            return
        for payment in inv["payments"]:
            if payment["payment"]["payment_intent"] == pi["id"] and payment["status"] == "open":
                if outcome == "succeeded":
                    self._invoice_paid(inv, payment, now)
                else:
                    payment["status"] = "canceled"
                    payment["status_transitions"]["canceled_at"] = now

    def _settle_due(self) -> None:
        """With ``processing_seconds`` set: settle (succeed) what has been processing that long."""
        if self.processing_seconds is None:
            return
        cutoff = self.clock() - self.processing_seconds
        for pi in self.payment_intents.values():
            if (
                pi["status"] == "processing"
                and pi["_processing_since"] is not None
                and pi["_processing_since"] <= cutoff
            ):
                self._settle(pi, "succeeded", "")

    def _h_test_settle(self, params: dict, id_: str) -> dict:
        """``POST /_test/payment_intents/:id/settle`` (outcome, decline_code): ``settle`` over HTTP."""
        _check_known(params, {"outcome", "decline_code"})
        outcome = _enum(params, "outcome", ("succeeded", "failed"), "succeeded")
        pi = self.payment_intents.get(id_)
        if pi is None:
            raise missing("payment_intent", id_)
        if pi["status"] != "processing":
            raise invalid(f"This PaymentIntent is {pi['status']}, not processing.")
        self._settle(pi, outcome, _str(params, "decline_code") or "insufficient_funds")
        return self._public(pi)

    # ------------------------------------------------------------------ invoices
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

    def _invoice_paid(self, inv: dict, payment: dict, now: int) -> None:
        payment["status"] = "paid"
        payment["amount_paid"] = payment["amount_requested"]
        payment["status_transitions"]["paid_at"] = now
        inv["amount_paid"] += payment["amount_requested"]
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = now

    @staticmethod
    def _new_invoice_payment(inv: dict, pi_id: str, amount: int, now: int) -> dict:
        return {
            "id": _rand_id("inpay_"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": amount,
            "created": now,
            "currency": inv["currency"],
            "invoice": inv["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": pi_id},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }

    def _payable(self, inv: dict) -> None:
        if inv["status"] == "paid":
            raise invalid("Invoice is already paid.", code="invoice_already_paid")
        if inv["status"] == "void":
            raise invalid("This invoice can no longer be paid because it has been voided.")
        if any(p["status"] == "open" for p in inv["payments"]):
            raise invalid(
                "This invoice has a payment that is still processing; wait for it to succeed or fail.",
                code="invoice_payment_intent_processing",
            )

    def _h_invoice_pay(self, params: dict, id_: str) -> dict:
        _check_known(params, _PAY_PARAMS)
        inv = self._invoice(id_)
        if inv["status"] == "draft":
            self._finalize(inv, {})
            if inv["status"] == "paid":
                return self._render_invoice(inv)
        self._payable(inv)
        now = self._now()
        amount = self._render_invoice(inv)["amount_remaining"]
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
        inv["attempt_count"] += 1
        inv["attempted"] = True
        pi = self._new_payment_intent(amount, inv["currency"], inv["customer"], {})
        pi["description"] = f"Payment for Invoice {inv['number']}"
        pi["_invoice"] = inv["id"]
        self._confirm(pi, pm or "pm_card_visa", off_session=_bool(params, "off_session", True))
        if pi["status"] == "requires_action":
            raise StripeHTTPError(
                402,
                "card_error",
                "This payment requires additional user action before it can be completed successfully.",
                code="invoice_payment_intent_requires_action",
                saved=True,
                payment_intent=self._public(pi),
            )
        payment = self._new_invoice_payment(inv, pi["id"], amount, now)
        inv["payments"].append(payment)
        if pi["status"] == "succeeded":
            self._invoice_paid(inv, payment, now)
        return self._render_invoice(inv)

    # ------------------------------------------------------------------ payment intents
    def _h_payment_intent_create(self, params: dict) -> dict:
        _check_known(params, _PI_PARAMS)
        amount = _int(params, "amount", minimum=1)
        currency = (_str(params, "currency") or "").lower()
        if amount is None:
            raise invalid("Missing required param: amount.", param="amount")
        if not currency:
            raise invalid("Missing required param: currency.", param="currency")
        customer = _str(params, "customer")
        if customer:
            self._customer(customer, "customer")
        off_session = _bool(params, "off_session", False)
        if off_session and not _bool(params, "confirm", False):
            raise invalid("You can only pass `off_session` when `confirm=true`.", param="off_session")
        pi = self._new_payment_intent(amount, currency, customer, params)
        pm = _str(params, "payment_method")
        if pm:
            pi["payment_method"] = pm
            pi["status"] = "requires_confirmation"
        if _bool(params, "confirm", False):
            if not pm:
                raise invalid("You must provide a payment method to confirm.", param="payment_method")
            self._confirm(pi, pm, off_session=off_session)
        return self._public(pi)

    def _h_payment_intent_confirm(self, params: dict, id_: str) -> dict:
        _check_known(params, {"payment_method", "off_session", "expand", "return_url", "mandate"})
        pi = self._payment_intent(id_)
        if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise invalid(
                f"This PaymentIntent's status is {pi['status']}; it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        pm = _str(params, "payment_method") or pi["payment_method"]
        if not pm:
            raise invalid("You must provide a payment method to confirm.", param="payment_method")
        self._confirm(pi, pm, off_session=_bool(params, "off_session", False))
        return self._public(pi)

    def _h_payment_intent_cancel(self, params: dict, id_: str) -> dict:
        _check_known(params, {"cancellation_reason", "expand"})
        pi = self._payment_intent(id_)
        if pi["status"] in ("succeeded", "canceled", "processing"):
            raise invalid(
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
                "PaymentIntent with one of the following statuses may be canceled: requires_payment_method, "
                "requires_capture, requires_confirmation, requires_action.",
                code="payment_intent_unexpected_state",
            )
        pi["status"] = "canceled"
        pi["canceled_at"] = self._now()
        pi["cancellation_reason"] = _str(params, "cancellation_reason") or "requested_by_customer"
        return self._public(pi)

    def _payment_intent(self, id_: str) -> dict:
        pi = self.payment_intents.get(id_)
        if pi is None:
            raise missing("payment_intent", id_)
        return pi

    def _h_payment_intent_retrieve(self, params: dict, id_: str) -> dict:
        return self._public(self._payment_intent(id_))

    def _h_payment_intent_list(self, params: dict) -> dict:
        _check_known(params, {"customer", "limit", "starting_after", "ending_before", "created", "expand"})
        objs = list(self.payment_intents.values())
        if "customer" in params:
            objs = [pi for pi in objs if pi["customer"] == params["customer"]]
        return self._list("payment_intents", objs, params, "/v1/payment_intents")

    def _h_payment_intent_search(self, params: dict) -> dict:
        fields = {"amount", "created", "currency", "customer", "metadata", "status"}
        return self._search("payment_intents", params, fields, "/v1/payment_intents/search")
