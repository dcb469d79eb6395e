"""``FakeGateway``: an in-memory ``PaymentGateway`` for unit and orchestration tests (no HTTP).

It keeps the semantics that jobs rely on, as ``StripeGateway`` has them against Stripe:

* ``charge_invoice`` answers per idempotency key: the same key with the same parameters replays the
  first answer, with other parameters raises ``PermanentGatewayError(code="idempotency_error")``;
* a paid invoice answers ``SUCCEEDED`` with ``already_paid``; a processing payment is reported, not
  charged again; a void invoice cannot be charged;
* outcomes are scripted per invoice number: ``script("INV-1", "insufficient_funds", "succeeded")``
  (each charge takes the next; then ``default``); an outcome is ``"succeeded"``, ``"processing"``,
  ``"requires_action"``, or a decline code (hard/soft by ``classify_decline``);
* faults: ``fail_next`` (exceptions raised before anything happens) and ``lose_next_answer`` (the
  charge happens, then ``TransientGatewayError``: the crash-between-charge-and-ledger case);
* ``settle(payment_id, "succeeded" | "failed")`` ends a processing payment; ``pay_outside(number)``
  is the hosted page / ``paid_out_of_band``.

Amounts are the invoice total (minus ``credit_note`` amounts) in minor units.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field, replace

from billing_pipeline.clients.errors import GatewayTotalMismatch, PermanentGatewayError, TransientGatewayError
from billing_pipeline.clients.payments import (
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    GatewayCreditNote,
    GatewayInvoice,
    PaidInvoice,
    PaymentStatus,
    charge_key,
    classify_decline,
)
from billing_pipeline.domain.model import Invoice, Organization
from billing_pipeline.domain.money import to_minor

UTC = dt.UTC


@dataclass
class _Invoice:
    number: str
    total: int
    currency: str
    status: str = "open"
    credited: int = 0
    paid: int = 0
    paid_at: dt.datetime | None = None
    out_of_band: bool = False
    payments: list[str] = field(default_factory=list)  # payment ids, in order
    credit_notes: dict[str, GatewayCreditNote] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return max(self.total - self.credited - self.paid, 0)


class FakeGateway:
    def __init__(self, *, now: dt.datetime = dt.datetime(2026, 11, 15, tzinfo=UTC), default: str = "succeeded"):
        self.now = now  # the time payments are stamped with; tests move it
        self.default = default
        self.invoices: dict[str, _Invoice] = {}
        self.payments: dict[str, PaymentStatus] = {}
        self.outcomes: dict[str, list[str]] = {}
        self.fail_next: list[BaseException] = []
        self.lose_next_answer = False
        self.calls: list[tuple[str, str]] = []  # (method, invoice number or payment id)
        self._answers: dict[str, tuple[tuple, ChargeResult]] = {}
        self._ids = itertools.count(1)

    # scripting ---------------------------------------------------------------------------
    def script(self, number: str, *outcomes: str) -> None:
        self.outcomes.setdefault(number, []).extend(outcomes)

    def settle(self, payment_id: str, outcome: str = "succeeded") -> None:
        pay = self.payments[payment_id]
        inv = next(i for i in self.invoices.values() if payment_id in i.payments)
        if outcome == "succeeded":
            self.payments[payment_id] = replace(pay, status="succeeded")
            self._mark_paid(inv, pay.amount_minor)
        else:
            self.payments[payment_id] = replace(
                pay, status="requires_payment_method", decline_code="insufficient_funds"
            )

    def pay_outside(self, number: str, *, out_of_band: bool = True) -> None:
        inv = self.invoices[number]
        if not out_of_band:
            inv.payments.append(self._new_payment(inv.remaining, inv.currency, "succeeded"))
        inv.out_of_band = out_of_band
        self._mark_paid(inv, inv.remaining)

    # PaymentGateway ------------------------------------------------------------------------
    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice:
        self._enter("sync_invoice", invoice.number or "")
        inv = self._invoice(invoice)
        return self._gateway_invoice(inv)

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
        number = invoice.number or ""
        key = charge_key(number, attempt, idempotency_prefix)
        self._enter("charge_invoice", number)
        inv = self._invoice(invoice)
        if inv.status == "void":
            raise PermanentGatewayError(f"{number} is void", code="invoice_not_payable")
        existing = self._existing(inv, key)
        if existing is not None:
            return existing
        if amount_minor is not None and amount_minor != inv.remaining:
            raise GatewayTotalMismatch(number, amount_minor, inv.remaining, inv.currency)
        params = (payment_method,)
        if key in self._answers:
            saved_params, answer = self._answers[key]
            if saved_params != params:
                raise PermanentGatewayError(f"key {key} reused with other parameters", code="idempotency_error")
            return answer
        answer = self._charge(inv, key)
        self._answers[key] = (params, answer)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise TransientGatewayError("the answer was lost (FakeGateway.lose_next_answer)", status=500)
        return answer

    def find_charge(
        self, invoice: Invoice, attempt: int, *, idempotency_prefix: str, external_id: str | None = None
    ) -> ChargeResult | None:
        number = invoice.number or ""
        self._enter("find_charge", number)
        return self._existing(self._invoice(invoice), charge_key(number, attempt, idempotency_prefix))

    def payment_status(self, gateway_payment_id: str) -> PaymentStatus:
        self._enter("payment_status", gateway_payment_id)
        if gateway_payment_id not in self.payments:
            raise PermanentGatewayError(f"no such payment {gateway_payment_id}", code="resource_missing")
        return self.payments[gateway_payment_id]

    def invoices_paid_out_of_band(
        self, since: dt.datetime, *, created_after: dt.datetime | None = None
    ) -> list[PaidInvoice]:
        self._enter("invoices_paid_out_of_band", since.isoformat())
        return [
            PaidInvoice(
                i.number,
                f"in_{i.number}",
                i.paid,
                i.currency,
                i.paid_at,
                i.out_of_band,
                tuple(p for p in i.payments if self.payments[p].succeeded),
            )
            for i in self.invoices.values()
            if i.status == "paid" and i.paid_at is not None and i.paid_at >= since
        ]

    def void_invoice(self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None) -> GatewayInvoice:
        return self._transition(invoice, "void", ("open", "uncollectible"))

    def mark_uncollectible(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice:
        return self._transition(invoice, "uncollectible", ("open",))

    def mark_paid_out_of_band(
        self, invoice: Invoice, *, idempotency_key: str, external_id: str | None = None
    ) -> GatewayInvoice:
        self._enter("mark_paid_out_of_band", invoice.number or "")
        inv = self._invoice(invoice)
        if inv.status in ("open", "uncollectible"):
            inv.out_of_band = True
            self._mark_paid(inv, inv.remaining)
        elif inv.status != "paid":
            raise PermanentGatewayError(f"{inv.number} is {inv.status}: cannot be paid", code="invalid_state")
        return self._gateway_invoice(inv)

    def create_credit_note(
        self,
        invoice: Invoice,
        amount_minor: int,
        number: str,
        *,
        idempotency_key: str,
        external_id: str | None = None,
        memo: str | None = None,
    ) -> GatewayCreditNote:
        self._enter("create_credit_note", number)
        inv = self._invoice(invoice)
        if number in inv.credit_notes:
            return inv.credit_notes[number]
        if amount_minor <= 0 or amount_minor + sum(c.amount_minor for c in inv.credit_notes.values()) > inv.total:
            raise PermanentGatewayError(f"credit note {number} exceeds invoice {inv.number}", code="invalid_amount")
        note = GatewayCreditNote(f"cn_{number}", number, amount_minor, inv.currency, "issued")
        inv.credit_notes[number] = note
        if inv.status == "open":
            inv.credited += amount_minor
            if inv.remaining == 0:
                self._mark_paid(inv, 0)
        return note

    # internals -----------------------------------------------------------------------------
    def _enter(self, method: str, ref: str) -> None:
        self.calls.append((method, ref))
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _invoice(self, invoice: Invoice) -> _Invoice:
        number = invoice.number or ""
        if number not in self.invoices:
            total = to_minor(invoice.total, invoice.currency)
            self.invoices[number] = _Invoice(number, total, invoice.currency)
        return self.invoices[number]

    @staticmethod
    def _gateway_invoice(inv: _Invoice) -> GatewayInvoice:
        return GatewayInvoice(f"in_{inv.number}", inv.number, inv.status, inv.total, inv.currency, None)

    def _new_payment(self, amount: int, currency: str, status: str, decline: str | None = None) -> str:
        pid = f"pi_fake_{next(self._ids)}"
        self.payments[pid] = PaymentStatus(pid, status, amount, currency, decline)
        return pid

    def _mark_paid(self, inv: _Invoice, amount: int) -> None:
        inv.paid += amount
        inv.status, inv.paid_at = "paid", self.now

    def _existing(self, inv: _Invoice, key: str) -> ChargeResult | None:
        succeeded = [p for p in inv.payments if self.payments[p].succeeded]
        if inv.status == "paid":
            pid = succeeded[-1] if succeeded else None
            return ChargeResult(
                ChargeStatus.SUCCEEDED, inv.paid, inv.currency, key, pid, f"in_{inv.number}", already_paid=True
            )
        processing = [p for p in inv.payments if self.payments[p].status == "processing"]
        if processing:
            pay = self.payments[processing[-1]]
            return ChargeResult(
                ChargeStatus.PROCESSING, pay.amount_minor, inv.currency, key, pay.gateway_payment_id, f"in_{inv.number}"
            )
        return None

    def _charge(self, inv: _Invoice, key: str) -> ChargeResult:
        queue = self.outcomes.get(inv.number) or []
        outcome = queue.pop(0) if queue else self.default
        amount, ref = inv.remaining, f"in_{inv.number}"
        if outcome in ("succeeded", "processing"):
            pid = self._new_payment(amount, inv.currency, outcome)
            inv.payments.append(pid)
            if outcome == "succeeded":
                self._mark_paid(inv, amount)
            status = ChargeStatus.SUCCEEDED if outcome == "succeeded" else ChargeStatus.PROCESSING
            return ChargeResult(status, amount, inv.currency, key, pid, ref)
        kind = classify_decline(outcome)
        pid = (
            None
            if outcome == "no_payment_method"
            else self._new_payment(amount, inv.currency, "requires_payment_method", outcome)
        )
        status = ChargeStatus.REQUIRES_ACTION if kind is DeclineKind.NEEDS_CUSTOMER else ChargeStatus.DECLINED
        return ChargeResult(
            status, amount, inv.currency, key, pid, ref, outcome, kind is DeclineKind.HARD, f"declined: {outcome}"
        )

    def _transition(self, invoice: Invoice, target: str, allowed: tuple[str, ...]) -> GatewayInvoice:
        self._enter(f"{target}_invoice", invoice.number or "")
        inv = self._invoice(invoice)
        if inv.status != target:
            if inv.status not in allowed:
                raise PermanentGatewayError(
                    f"{inv.number} is {inv.status}: cannot become {target}", code="invalid_state"
                )
            inv.status = target
        return self._gateway_invoice(inv)
