"""Invoice lifecycle commands: void, mark uncollectible, mark paid, record a payment.

Each command is one transaction on the locked invoice row: the domain checks (transition table,
amount due, overpayment), the change, its audit row (``invoice_events``: who, why, when) and the
mirror ledger row of the gateway effect it implies. After the commit the gateway effects run once
each (``lifecycle_mirror.perform_effects``). A re-run of the same command changes nothing: the
invoice is already in the target status, or the payment's deterministic ``external_id`` is already
recorded; it only retries gateway effects that failed. Every status change away from ``finalized``
(and every amount due that reaches 0) stops dunning, which checks both at send time.

Rules beyond the transition table:

* ``void`` only an invoice nothing was paid or credited on (money received needs a credit note
  for the rest, not a void that hides it);
* ``mark-uncollectible`` only with something still due;
* ``mark-paid`` records an out-of-band payment of the whole amount due, then ``paid``;
* ``payments record`` on a ``finalized`` or ``uncollectible`` invoice, at most the amount due
  (overpayments are refused: there is no customer balance to keep them); when the amount due
  reaches 0 the invoice becomes ``paid``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from billing_pipeline.clock import utc_now
from billing_pipeline.db import lifecycle as rows
from billing_pipeline.db import mirror_effects
from billing_pipeline.domain import money
from billing_pipeline.domain.model import InvoiceStatus, TransitionRefused, check_transition
from billing_pipeline.domain.receivables import (
    AmountError,
    ManualMethod,
    manual_payment_id,
    overpayment_refusal,
    parse_amount,
)
from billing_pipeline.services.lifecycle_mirror import InvoiceMirror, NullMirror, effect_key, perform_effects

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = ["LifecycleError", "LifecycleResult", "LifecycleService", "check_actor"]

_MIRRORED = {
    InvoiceStatus.VOID: "void",
    InvoiceStatus.UNCOLLECTIBLE: "mark_uncollectible",
    InvoiceStatus.PAID: "mark_paid_out_of_band",
}


class LifecycleError(ValueError):
    """A command refused (nothing was changed); the message says why."""


@dataclass(frozen=True)
class LifecycleResult:
    number: str
    status: InvoiceStatus
    changed: bool  # False: a re-run, nothing was written
    message: str
    currency: str
    amount_due: Decimal
    mirror: list[mirror_effects.MirrorEffect] = field(default_factory=list)
    document: str | None = None  # a credit note's stored PDF

    @property
    def mirror_failed(self) -> list[mirror_effects.MirrorEffect]:
        return [e for e in self.mirror if e.status == "failed"]


def check_actor(actor: str) -> str:
    text = " ".join(actor.split())
    if not text or len(text) > 128:
        raise LifecycleError(f"--actor: 1 to 128 characters, got {actor!r}")
    return text


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise LifecycleError("--reason: say why (it is kept in the audit trail)")
    return text[:2000]


class LifecycleService:
    """``mirror``: the gateway effects (``NullMirror`` when there is no gateway); ``now``: the clock."""

    def __init__(
        self,
        engine: Engine,
        *,
        mirror: InvoiceMirror | None = None,
        secrets: Iterable[str | None] = (),
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.mirror = mirror or NullMirror()
        self.secrets = tuple(secrets)
        self.now = now

    # --- status changes ------------------------------------------------------------------------
    def void(self, number: str, *, actor: str, reason: str) -> LifecycleResult:
        return self._transition(number, InvoiceStatus.VOID, actor, reason, self._check_void)

    def mark_uncollectible(self, number: str, *, actor: str, reason: str) -> LifecycleResult:
        return self._transition(number, InvoiceStatus.UNCOLLECTIBLE, actor, reason, self._check_due)

    def mark_paid(
        self,
        number: str,
        *,
        actor: str,
        reason: str,
        method: ManualMethod = ManualMethod.OTHER,
        reference: str | None = None,
    ) -> LifecycleResult:
        """An out-of-band payment of the whole amount due, then ``paid``."""
        actor, reason = check_actor(actor), _reason(reason)
        with self.engine.begin() as conn:
            state = self._lock(conn, number)
            changed = state.status is not InvoiceStatus.PAID
            if changed:
                self._check(state.status, InvoiceStatus.PAID, number)
                due = rows.receivables(conn, [state.id])[state.id].amount_due
                at = self.now()
                if due > 0:
                    try:
                        external_id = manual_payment_id(
                            number, method, due, state.currency, reference=reference or "mark-paid", day=at.date()
                        )
                    except AmountError as exc:
                        raise LifecycleError(str(exc)) from None
                    self._pay(conn, state, due, method, external_id, at, actor, reason)
                self._settle(conn, state, actor, reason, at, {"method": method.value, "amount": str(due)})
        if not changed:
            return self._result(number, changed=False, message="already paid")
        recorded = money.format_amount(due, state.currency)
        return self._result(number, changed=True, message=f"paid ({recorded} recorded, {method.value})")

    def _transition(self, number: str, target: InvoiceStatus, actor: str, reason: str, check) -> LifecycleResult:
        actor, reason = check_actor(actor), _reason(reason)
        with self.engine.begin() as conn:
            state = self._lock(conn, number)
            changed = state.status is not target
            if changed:
                self._check(state.status, target, number)
                check(conn, state)
                rows.set_status(conn, state, target, actor=actor, reason=reason, at=self.now())
                mirror_effects.add_effect(conn, state.id, _MIRRORED[target], effect_key(_MIRRORED[target], number))
        return self._result(number, changed=changed, message=target.value if changed else f"already {target.value}")

    def _check_void(self, conn: Connection, state: rows.InvoiceState) -> None:
        money_in = rows.receivables(conn, [state.id])[state.id]
        if money_in.paid or money_in.credited:
            cur = state.currency
            raise LifecycleError(
                f"invoice {state.number} has {money.format_amount(money_in.paid, cur)} paid and "
                f"{money.format_amount(money_in.credited, cur)} credited: it is not voided; "
                "credit what remains instead (credit-notes create NUMBER --full)"
            )

    def _check_due(self, conn: Connection, state: rows.InvoiceState) -> None:
        if rows.receivables(conn, [state.id])[state.id].amount_due <= 0:
            raise LifecycleError(f"invoice {state.number} has nothing due: it is not marked uncollectible")

    # --- payments ------------------------------------------------------------------------------
    def record_payment(
        self,
        number: str,
        amount_text: str,
        *,
        method: ManualMethod,
        actor: str,
        reference: str | None = None,
        at: dt.datetime | None = None,
    ) -> LifecycleResult:
        """Record money received outside the gateway; ``paid`` when nothing remains due."""
        actor = check_actor(actor)
        now = self.now()
        at = at or now
        if at.tzinfo is None or at > now:
            raise LifecycleError(f"--at: must be an aware time not after now ({now:%Y-%m-%d %H:%M} UTC), got {at}")
        try:
            currency = rows.find_invoice(self.engine, number).currency
            amount = parse_amount(amount_text, currency)
            external_id = manual_payment_id(number, method, amount, currency, reference=reference, day=at.date())
        except (AmountError, rows.InvoiceNotFound) as exc:
            raise LifecycleError(exc.args[0]) from None
        what = f"{money.format_amount(amount, currency)} by {method.value}"
        with self.engine.begin() as conn:
            state = self._lock(conn, number)
            existing = rows.payments_of(conn, [state.id])[state.id]
            repeated = any(p.external_id == external_id for p in existing)
            if repeated:
                self._same_payment(state, existing, external_id, amount, method)
            else:
                self._record(conn, state, amount, method, external_id, at, actor, what)
        message = f"payment {external_id} already recorded" if repeated else f"payment {what} recorded"
        return self._result(number, changed=not repeated, message=message)

    def _record(self, conn, state, amount: Decimal, method: ManualMethod, external_id: str, at, actor, what) -> None:
        if state.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE):
            raise LifecycleError(f"invoice {state.number} is {state.status.value}: no payment can be recorded on it")
        due = rows.receivables(conn, [state.id])[state.id].amount_due
        refusal = overpayment_refusal(state.number, due, amount, state.currency)
        if refusal:
            raise LifecycleError(refusal)
        self._pay(conn, state, amount, method, external_id, at, actor, f"payment recorded: {what}")
        if amount == due:
            self._settle(conn, state, actor, f"paid in full: {what}", self.now(), {"payment": external_id})

    @staticmethod
    def _same_payment(state, existing, external_id: str, amount: Decimal, method: ManualMethod) -> None:
        found = next(p for p in existing if p.external_id == external_id)
        if found.amount != amount or found.method != method.value:
            raise LifecycleError(
                f"payment {external_id} is already recorded on {state.number} as "
                f"{money.format_amount(found.amount, state.currency)} by {found.method}: not recorded again"
            )

    def _pay(self, conn, state, amount, method: ManualMethod, external_id, at, actor, reason) -> None:
        payment, created = rows.insert_payment(conn, state.id, amount, state.currency, method.value, external_id, at)
        if not created:  # the same id on another invoice: never two rows for one movement
            raise LifecycleError(f"payment {external_id} is already recorded (invoice id {payment.invoice_id})")
        details = {"payment_id": payment.id, "external_id": external_id, "amount": str(amount), "at": at.isoformat()}
        rows.insert_event(
            conn, state.id, "payment", state.status, state.status, actor=actor, reason=reason, at=self.now(),
            details={**details, "method": method.value, "currency": state.currency},
        )  # fmt: skip

    def _settle(self, conn, state: rows.InvoiceState, actor: str, reason: str, at: dt.datetime, details) -> None:
        """``paid`` (nothing remains due) and its gateway effect; used by payments and credit notes."""
        rows.set_status(conn, state, InvoiceStatus.PAID, actor=actor, reason=reason, at=at, details=details)
        action = _MIRRORED[InvoiceStatus.PAID]
        mirror_effects.add_effect(conn, state.id, action, effect_key(action, state.number))

    # --- shared --------------------------------------------------------------------------------
    @staticmethod
    def _lock(conn: Connection, number: str) -> rows.InvoiceState:
        try:
            return rows.lock_invoice(conn, number)
        except rows.InvoiceNotFound as exc:
            raise LifecycleError(exc.args[0]) from None

    @staticmethod
    def _check(current: InvoiceStatus, target: InvoiceStatus, number: str) -> None:
        try:
            check_transition(current, target, number=number)
        except TransitionRefused as exc:
            raise LifecycleError(str(exc)) from None

    def _result(self, number: str, *, changed: bool, message: str, document: str | None = None) -> LifecycleResult:
        """After the commit: perform the gateway effects still open (a re-run finishes what a previous
        run left undone) and read back the status and amount due."""
        state = rows.find_invoice(self.engine, number)
        effects = perform_effects(self.engine, self.mirror, state.id, secrets=self.secrets)
        due = rows.receivables(self.engine, [state.id])[state.id].amount_due
        return LifecycleResult(number, state.status, changed, message, state.currency, due, effects, document)
