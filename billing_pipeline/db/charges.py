"""The charge ledger (``charge_attempts``) and the payments the gateway makes.

A charge attempt is *claimed* (insert ``pending`` with its deterministic idempotency key, on
conflict nothing) and committed before the gateway is called; ``record_outcome`` writes what the
gateway answered in one transaction with the invoice row locked (as ``db.lifecycle`` does): the
attempt's status, the ``payments`` row (external id = the gateway payment id; ``succeeded`` counts
toward the amount due, ``processing`` does not yet), its audit row, and ``finalized -> paid`` when
nothing remains due. A payment id is recorded once, whichever path (charge, find_charge after a
crash, payment sync, paid out of band) sees it first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db import dead_letters
from billing_pipeline.db import lifecycle as rows
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import charge_attempts, invoice_deliveries, invoices, payments
from billing_pipeline.domain import money
from billing_pipeline.domain.model import InvoiceStatus

CHARGE_KIND, SYNC_KIND = "charge", "payment_sync"
ACTOR = "billing-pipeline auto-charge"
_a = charge_attempts.c


@dataclass(frozen=True)
class AttemptRow:
    invoice_id: int
    attempt: int
    idempotency_key: str
    status: str
    amount_minor: int
    currency: str
    gateway_payment_id: str | None
    decline_code: str | None
    hard_decline: bool
    message: str | None
    sync_checks: int
    notified: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What the gateway answered for one attempt (or what the payment sync found)."""

    status: str  # succeeded | processing | declined | requires_action | settled | failed
    amount_minor: int
    gateway_payment_id: str | None = None
    decline_code: str | None = None
    hard_decline: bool = False
    message: str | None = None


def _row(r) -> AttemptRow:
    return AttemptRow(
        r.invoice_id, r.attempt, r.idempotency_key, r.status, r.amount_minor, r.currency, r.gateway_payment_id,
        r.decline_code, r.hard_decline, r.message, r.sync_checks, r.notified, r.created_at, r.updated_at,
    )  # fmt: skip


def attempts_of(engine: Engine, invoice_ids: Sequence[int]) -> dict[int, list[AttemptRow]]:
    out: dict[int, list[AttemptRow]] = {i: [] for i in invoice_ids}
    ids = list(invoice_ids)
    with engine.connect() as conn:
        for i in range(0, len(ids), 1000):
            query = select(charge_attempts).where(_a.invoice_id.in_(ids[i : i + 1000])).order_by(_a.attempt)
            for r in conn.execute(query):
                out[r.invoice_id].append(_row(r))
    return out


def attempt_rows(engine: Engine, *, status: Sequence[str] | None = None, notified: bool | None = None):
    query = select(charge_attempts).order_by(_a.id)
    if status is not None:
        query = query.where(_a.status.in_(list(status)))
    if notified is not None:
        query = query.where(_a.notified.is_(notified))
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def stripe_invoice_ids(engine: Engine, invoice_ids: Sequence[int]) -> dict[int, str]:
    """Our invoice id -> the Stripe invoice id the delivery's ``stripe`` channel recorded."""
    query = select(invoice_deliveries.c.invoice_id, invoice_deliveries.c.external_id).where(
        invoice_deliveries.c.channel == "stripe", invoice_deliveries.c.invoice_id.in_(list(invoice_ids)),
        invoice_deliveries.c.external_id.is_not(None),
    )  # fmt: skip
    with engine.connect() as conn:
        return {r.invoice_id: r.external_id for r in conn.execute(query)}


def claim_attempt(engine: Engine, invoice_id: int, attempt: int, key: str, amount_minor: int, currency: str) -> bool:
    """Write the attempt ``pending`` before the gateway call; False when the row already exists."""
    now = utc_now()
    with engine.begin() as conn:
        statement = dialect_insert(conn.dialect.name)(charge_attempts).values(
            invoice_id=invoice_id, attempt=attempt, idempotency_key=key, status="pending",
            amount_minor=amount_minor, currency=currency, created_at=now, updated_at=now,
        )  # fmt: skip
        return conn.execute(statement.on_conflict_do_nothing()).rowcount == 1


def record_outcome(engine: Engine, number: str, attempt: int, outcome: Outcome, at: dt.datetime) -> bool:
    """The attempt's answer, its payment and the invoice's status, in one locked transaction.
    Returns whether a succeeded payment was recorded now (False: already recorded)."""
    with engine.begin() as conn:
        state = rows.lock_invoice(conn, number)
        conn.execute(
            update(charge_attempts)
            .where(_a.invoice_id == state.id, _a.attempt == attempt)
            .values(
                status=outcome.status, gateway_payment_id=outcome.gateway_payment_id,
                decline_code=outcome.decline_code, hard_decline=outcome.hard_decline,
                message=(outcome.message or None) and outcome.message[:2000], updated_at=at,  # the run's clock
            )
        )  # fmt: skip
        if outcome.gateway_payment_id is None or outcome.status not in ("succeeded", "processing", "settled"):
            return False
        status = "processing" if outcome.status == "processing" else "succeeded"
        return record_payment(conn, state, outcome.gateway_payment_id, outcome.amount_minor, status, at)


def record_payment(
    conn: Connection, state: rows.InvoiceState, external_id: str, amount_minor: int, status: str, at: dt.datetime
) -> bool:
    """A gateway payment on the locked invoice, once per ``external_id``; a ``processing`` row becomes
    ``succeeded`` when the money arrives. Marks the invoice ``paid`` when nothing remains due."""
    found = conn.execute(select(payments).where(payments.c.external_id == external_id)).first()
    if found is not None and (found.status == status or found.status == "succeeded"):
        return False
    if found is None:
        conn.execute(
            dialect_insert(conn.dialect.name)(payments).values(
                invoice_id=state.id, amount_minor=amount_minor, currency=state.currency, method="stripe",
                external_id=external_id, status=status, created_at=at,
            )
        )  # fmt: skip
    else:
        conn.execute(update(payments).where(payments.c.id == found.id).values(status=status, amount_minor=amount_minor))
    if status != "succeeded":
        return False
    amount = money.from_minor(amount_minor, state.currency)
    details = {"external_id": external_id, "amount": str(amount), "currency": state.currency, "method": "stripe"}
    rows.insert_event(
        conn, state.id, "payment", state.status, state.status, actor=ACTOR, at=utc_now(), details=details,
        reason=f"payment received: {money.format_amount(amount, state.currency)} ({external_id})",
    )  # fmt: skip
    due = rows.receivables(conn, [state.id])[state.id].amount_due
    if due == 0 and state.status in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE):
        rows.set_status(
            conn, state, InvoiceStatus.PAID, actor=ACTOR, reason=f"paid in full by {external_id}", at=utc_now(),
            details={"payment": external_id},
        )  # fmt: skip
    return True


def record_paid_elsewhere(engine: Engine, number: str, external_id: str, amount_minor: int, at: dt.datetime) -> int:
    """A payment made in the gateway outside our charges (hosted page, out of band): recorded once,
    never more than the amount still due. Returns the minor units recorded (0: nothing to record)."""
    with engine.begin() as conn:
        state = rows.lock_invoice(conn, number)
        if conn.execute(select(payments.c.id).where(payments.c.external_id == external_id)).first() is not None:
            return 0
        if state.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE):
            return 0
        due = money.to_minor(rows.receivables(conn, [state.id])[state.id].amount_due, state.currency)
        amount = min(amount_minor, due)
        if amount <= 0:
            return 0
        record_payment(conn, state, external_id, amount, "succeeded", at)
        return amount


def recorded_payment_ids(engine: Engine, external_ids: Sequence[str]) -> set[str]:
    query = select(payments.c.external_id).where(payments.c.external_id.in_(list(external_ids)))
    with engine.connect() as conn:
        return {r.external_id for r in conn.execute(query)} if external_ids else set()


def fail_payment(engine: Engine, external_id: str) -> None:
    """A ``processing`` payment that will not complete: ``failed`` (it never counted toward the amount due)."""
    with engine.begin() as conn:
        conn.execute(
            update(payments)
            .where(payments.c.external_id == external_id, payments.c.status == "processing")
            .values(status="failed")
        )


def amount_of_payments(engine: Engine, external_ids: Sequence[str]) -> int:
    """Minor units of the succeeded payments among ``external_ids``."""
    if not external_ids:
        return 0
    query = select(payments.c.amount_minor).where(
        payments.c.external_id.in_(list(external_ids)), payments.c.status == "succeeded"
    )
    with engine.connect() as conn:
        return sum(r.amount_minor for r in conn.execute(query))


def invoice_number(engine: Engine, invoice_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(invoices.c.number).where(invoices.c.id == invoice_id)).scalar_one()


def mark_notified(engine: Engine, invoice_id: int, attempt: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(charge_attempts)
            .where(_a.invoice_id == invoice_id, _a.attempt == attempt)
            .values(notified=True, updated_at=utc_now())
        )


def count_sync_check(engine: Engine, invoice_id: int, attempt: int, at: dt.datetime) -> int:
    """One more re-read of a processing payment at ``at`` (the run's clock: the next is an hour later)."""
    with engine.begin() as conn:
        conn.execute(
            update(charge_attempts)
            .where(_a.invoice_id == invoice_id, _a.attempt == attempt)
            .values(sync_checks=_a.sync_checks + 1, updated_at=at)
        )
        return conn.execute(
            select(_a.sync_checks).where(_a.invoice_id == invoice_id, _a.attempt == attempt)
        ).scalar_one()


def give_up(engine: Engine, kind: str, row: AttemptRow, number: str, error: str, attempts: int | None = None) -> bool:
    """Attempt ``dead`` and its dead letter, once (a dismissed letter is never reopened by a run)."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(charge_attempts)
            .where(_a.invoice_id == row.invoice_id, _a.attempt == row.attempt, _a.status != "dead")
            .values(status="dead", message=error[:2000], updated_at=utc_now())
        ).rowcount
        if changed:
            payload = {"invoice_id": row.invoice_id, "invoice": number, "attempt": row.attempt, "prior": row.status}
            attempts = row.attempt if attempts is None else attempts
            dead_letters.record_dead_letter(conn, kind, row.idempotency_key, payload, error, attempts)
        return bool(changed)


def _reset_charge(conn: Connection, payload: Mapping[str, Any]) -> None:
    raise dead_letters.DeadLetterStateError(
        f"invoice {payload['invoice']}: automatic charging gave up after {payload['attempt']} declined attempt(s); "
        "the customer pays on the hosted invoice page or an operator records the payment: dismiss this letter"
    )


def _reset_sync(conn: Connection, payload: Mapping[str, Any]) -> None:
    changed = conn.execute(
        update(charge_attempts)
        .where(_a.invoice_id == payload["invoice_id"], _a.attempt == payload["attempt"], _a.status == "dead")
        .values(status=payload.get("prior", "processing"), sync_checks=0, updated_at=utc_now())
    ).rowcount
    if changed != 1:
        raise dead_letters.DeadLetterStateError(f"payment sync of {payload['invoice']} is no longer dead")


def _dismiss(conn: Connection, payload: Mapping[str, Any]) -> None:
    """The attempt stays ``dead``: nothing retries it."""


dead_letters.register_kind(CHARGE_KIND, reset=_reset_charge, dismiss=_dismiss)
dead_letters.register_kind(SYNC_KIND, reset=_reset_sync, dismiss=_dismiss)
