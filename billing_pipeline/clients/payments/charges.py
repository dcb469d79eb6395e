"""Charging invoices in Stripe and reading payments back.

``charge_invoice(invoice, attempt)`` pays the Stripe invoice off-session with the customer's default
payment method (or the one given): ``POST /v1/invoices/:id/pay`` with ``off_session=true`` and the
idempotency key ``{prefix}-charge-{invoice_number}-{attempt}``. Same attempt -> same key -> same
parameters: a retried call (5xx, timeout, a re-executed run) replays Stripe's saved answer, it never
charges twice. A new attempt (a retry after a decline) takes the next attempt number; a different
payment method for the same attempt number is refused by Stripe (``idempotency_error``).

Before paying, the invoice is read: already ``paid`` (an earlier attempt whose answer was lost, the
hosted page) -> ``SUCCEEDED`` with ``already_paid``; a payment still ``processing`` -> that payment;
``void``/``draft`` -> ``PermanentGatewayError``. Stripe keeps idempotency keys 24 h; the invoice's own
state is what makes a later replay safe (an invoice is paid once).

Results: ``ChargeResult`` with ``SUCCEEDED`` | ``PROCESSING`` (bank debits; poll ``payment_status``)
| ``REQUIRES_ACTION`` (3-D Secure: the customer pays on the hosted page) | ``DECLINED`` (402
``card_error``: ``decline_code``, ``hard_decline`` from ``declines.classify_decline``; no default
payment method -> ``no_payment_method``, hard). Network errors, 429 and 5xx raise
``TransientGatewayError`` (retry the same attempt); anything else ``PermanentGatewayError``.

``find_charge`` answers, without charging, whether the invoice has a payment in Stripe (paid or
processing): after a crash between the charge and our ledger write, the next run records it once.
Stripe allows one successful payment per invoice and a decline moves no money, so the invoice's
payments are the authoritative answer, also after the 24 h key expiry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import stripe

from billing_pipeline.clients.errors import GatewayTotalMismatch, PermanentGatewayError
from billing_pipeline.clients.payments.declines import DeclineKind, classify_decline
from billing_pipeline.clients.payments.stripe_api import StripeAPI, _get, _iterate, _Obj, _path, _stripe_errors
from billing_pipeline.clients.payments.types import ChargeResult, ChargeStatus, PaidInvoice, PaymentStatus
from billing_pipeline.clients.redaction import redact
from billing_pipeline.domain.model import Invoice


def invoice_number(invoice: Invoice) -> str:
    if not invoice.number:
        raise ValueError("only finalized invoices (with a number) have a gateway counterpart")
    return invoice.number


def charge_key(number: str, attempt: int, prefix: str = "") -> str:
    """The idempotency key of one charge attempt: ``{prefix}-charge-{number}-{attempt}``."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return StripeAPI._key(prefix, f"charge-{number}-{attempt}")


def _payment_intent_id(payment: Any) -> str | None:
    pi = _get(_get(payment, "payment"), "payment_intent")
    return _get(pi, "id") if isinstance(pi, dict) else pi


def _payments(stripe_invoice: Any) -> list[Any]:
    return list(_iterate(_get(stripe_invoice, "payments")))


def _about(stripe_invoice: Any, key: str) -> dict[str, Any]:
    """The fields every ``ChargeResult`` of this invoice and attempt shares."""
    return {
        "currency": str(_get(stripe_invoice, "currency", "")).upper(),
        "idempotency_key": key,
        "gateway_invoice_id": stripe_invoice["id"],
        "hosted_url": _get(stripe_invoice, "hosted_invoice_url"),
    }


def _declined(exc: stripe.CardError, stripe_invoice: Any, key: str, amount: int) -> ChargeResult:
    """A 402 ``card_error``: declined (hard or soft) or, for authentication, ``REQUIRES_ACTION``."""
    error = (exc.json_body or {}).get("error") or {}
    code = error.get("decline_code") or error.get("code") or exc.code
    kind = classify_decline(code, error.get("advice_code"))
    return ChargeResult(
        ChargeStatus.REQUIRES_ACTION if kind is DeclineKind.NEEDS_CUSTOMER else ChargeStatus.DECLINED,
        amount,
        gateway_payment_id=_get(error.get("payment_intent"), "id"),
        decline_code=code,
        hard_decline=kind is DeclineKind.HARD,
        message=redact(str(error.get("message") or exc.user_message or "declined")),
        **_about(stripe_invoice, key),
    )


class StripeCharges(StripeAPI):
    """The charging half of ``StripeGateway``."""

    def charge_invoice(
        self,
        invoice: Invoice,
        attempt: int,
        *,
        idempotency_prefix: str,
        payment_method: str | None = None,
        amount_minor: int | None = None,
        external_id: str | None = None,
    ) -> ChargeResult:
        """Charge attempt *attempt* (1, 2, ...) of *invoice*; see the module docstring.

        ``amount_minor``: what we expect to collect; when Stripe's ``amount_remaining`` differs,
        ``GatewayTotalMismatch`` is raised and nothing is charged. ``external_id``: the Stripe invoice
        id (from ``sync_invoice``); without it the invoice is found by metadata search.
        """
        number = invoice_number(invoice)
        key = charge_key(number, attempt, idempotency_prefix)
        with _stripe_errors():
            current = self._our_invoice(number, external_id)
            done = self._payable_or_result(current, key)
            if done is not None:
                return done
            remaining = int(_get(current, "amount_remaining", 0))
            if amount_minor is not None and amount_minor != remaining:
                raise GatewayTotalMismatch(number, amount_minor, remaining, str(_get(current, "currency")).upper())
            if payment_method is None and not self._has_default_payment_method(current):
                return ChargeResult(
                    ChargeStatus.DECLINED,
                    remaining,
                    decline_code="no_payment_method",
                    hard_decline=True,
                    message="the customer has no default payment method",
                    **_about(current, key),
                )
            params: dict[str, Any] = {"off_session": True, "expand": ["payments"]}
            if payment_method:
                params["payment_method"] = payment_method
            try:
                paid = self._api("post", _path("invoices", current["id"], "pay"), params, key=key)
            except stripe.CardError as exc:
                return _declined(exc, current, key, remaining)
            except stripe.InvalidRequestError:
                # Paid or being paid by another attempt meanwhile: the invoice says so; else re-raise.
                done = self._payable_or_result(self._our_invoice(number, current["id"]), key)
                if done is not None:
                    return done
                raise
            return self._outcome(paid, key)

    def find_charge(
        self, invoice: Invoice, attempt: int, *, idempotency_prefix: str, external_id: str | None = None
    ) -> ChargeResult | None:
        """The payment of *invoice* in Stripe (succeeded or processing), or None; never charges."""
        number = invoice_number(invoice)
        key = charge_key(number, attempt, idempotency_prefix)
        with _stripe_errors():
            return self._existing_payment(self._our_invoice(number, external_id), key)

    def payment_status(self, gateway_payment_id: str) -> PaymentStatus:
        """The PaymentIntent as Stripe has it now (for the payment sync)."""
        with _stripe_errors():
            pi = self._api("get", _path("payment_intents", gateway_payment_id))
        status = str(_get(pi, "status", ""))
        error = _get(pi, "last_payment_error")
        return PaymentStatus(
            gateway_payment_id=pi["id"],
            status=status,
            amount_minor=int(_get(pi, "amount_received", 0) if status == "succeeded" else _get(pi, "amount", 0)),
            currency=str(_get(pi, "currency", "")).upper(),
            decline_code=(_get(error, "decline_code") or _get(error, "code")) if error else None,
        )

    def invoices_paid_out_of_band(
        self, since: dt.datetime, *, created_after: dt.datetime | None = None
    ) -> list[PaidInvoice]:
        """Our invoices that Stripe marks paid at or after *since*: on the hosted page, ``paid_out_of_band``
        in the dashboard, or by our own charges (the caller skips payment ids it has recorded).

        Stripe lists invoices by creation time only: invoices created from *created_after* (default
        120 days before *since*) are read, page by page, and filtered by ``status_transitions.paid_at``.
        """
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        created_from = created_after or since - dt.timedelta(days=120)
        params: dict[str, Any] = {
            "status": "paid",
            "created": {"gte": int(created_from.timestamp())},
            "limit": 100,
            "expand": ["data.payments"],
        }
        found: list[PaidInvoice] = []
        with _stripe_errors():
            while True:
                page = self._api("get", _path("invoices"), params)
                items = list(_iterate(page))
                found += [p for p in map(self._paid_invoice, items) if p is not None and p.paid_at >= since]
                if not _get(page, "has_more", False) or not items:
                    break
                params["starting_after"] = items[-1]["id"]
        return sorted(found, key=lambda p: (p.paid_at, p.number))

    # helpers ---------------------------------------------------------------------------
    def _payable_or_result(self, stripe_invoice: Any, key: str) -> ChargeResult | None:
        status = _get(stripe_invoice, "status")
        if status in ("void", "draft"):
            raise PermanentGatewayError(
                f"Stripe invoice {stripe_invoice['id']} is {status}: it cannot be charged", code="invoice_not_payable"
            )
        return self._existing_payment(stripe_invoice, key)

    @staticmethod
    def _existing_payment(stripe_invoice: Any, key: str) -> ChargeResult | None:
        payments = _payments(stripe_invoice)
        if _get(stripe_invoice, "status") == "paid":
            paid = [p for p in payments if _get(p, "status") == "paid"]
            return ChargeResult(
                ChargeStatus.SUCCEEDED,
                int(_get(stripe_invoice, "amount_paid", 0)),
                gateway_payment_id=_payment_intent_id(paid[-1]) if paid else None,
                already_paid=True,
                **_about(stripe_invoice, key),
            )
        processing = [p for p in payments if _get(p, "status") == "open"]
        if processing:
            return ChargeResult(
                ChargeStatus.PROCESSING,
                int(_get(processing[-1], "amount_requested", 0)),
                gateway_payment_id=_payment_intent_id(processing[-1]),
                **_about(stripe_invoice, key),
            )
        return None

    def _has_default_payment_method(self, stripe_invoice: Any) -> bool:
        if _get(stripe_invoice, "default_payment_method") or _get(stripe_invoice, "default_source"):
            return True
        customer = _get(stripe_invoice, "customer")
        if not isinstance(customer, dict):  # not expanded
            customer = self._api("get", _path("customers", str(customer)))
        return bool(
            _get(_get(customer, "invoice_settings"), "default_payment_method") or _get(customer, "default_source")
        )

    def _outcome(self, paid: _Obj, key: str) -> ChargeResult:
        result = self._existing_payment(paid, key)
        if result is None:
            raise PermanentGatewayError(
                f"Stripe answered the payment of {paid['id']} with status {_get(paid, 'status')!r} and no payment",
                code="unexpected_status",
            )
        # The answer to our own request: paid now (or replayed), not before this call.
        return dataclasses.replace(result, already_paid=False)

    @staticmethod
    def _paid_invoice(stripe_invoice: Any) -> PaidInvoice | None:
        number = _get(_get(stripe_invoice, "metadata"), "invoice_id")
        paid_at = _get(_get(stripe_invoice, "status_transitions"), "paid_at")
        if not number or paid_at is None:
            return None
        payments = [p for p in _payments(stripe_invoice) if _get(p, "status") == "paid"]
        return PaidInvoice(
            number=number,
            gateway_invoice_id=stripe_invoice["id"],
            amount_paid_minor=int(_get(stripe_invoice, "amount_paid", 0)),
            currency=str(_get(stripe_invoice, "currency", "")).upper(),
            paid_at=dt.datetime.fromtimestamp(int(paid_at), tz=dt.UTC),
            paid_out_of_band=bool(_get(stripe_invoice, "paid_out_of_band", False))
            or int(_get(stripe_invoice, "amount_paid_off_stripe", 0)) > 0,
            gateway_payment_ids=tuple(i for i in map(_payment_intent_id, payments) if i),
        )
