"""Invoice status changes, payments recorded by hand and the audit trail (``invoice_events``).

Every change to a finalized invoice's money or status starts with ``lock_invoice`` (``SELECT ...
FOR UPDATE`` on PostgreSQL; SQLite serializes writers), so two commands on one invoice never both
read the same amount due. ``set_status`` checks the domain's transition table, updates the row only
if it still has the status read (optimistic, as a second guard) and writes the audit row in the same
transaction. Payments are append-only, one row per money movement; ``insert_payment`` is idempotent
on ``external_id``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import credit_notes, invoice_events, invoices, payments
from billing_pipeline.domain import money
from billing_pipeline.domain.model import InvoiceStatus, TransitionRefused, check_transition
from billing_pipeline.domain.receivables import Payment, Receivable, receivable

_i = invoices.c


@dataclass(frozen=True)
class InvoiceState:
    id: int
    number: str
    org_id: str
    status: InvoiceStatus
    currency: str
    total: Decimal


@dataclass(frozen=True)
class InvoiceEvent:
    id: int
    kind: str  # transition | payment | credit_note
    from_status: str
    to_status: str
    actor: str
    reason: str
    at: dt.datetime
    details: dict[str, Any]


class InvoiceNotFound(LookupError):
    pass


def _state(row: Any) -> InvoiceState:
    total = money.from_minor(row.total_minor, row.currency)
    return InvoiceState(row.id, row.number, row.org_id, InvoiceStatus(row.status), row.currency, total)


_STATE_COLUMNS = (_i.id, _i.number, _i.org_id, _i.status, _i.currency, _i.total_minor)


def lock_invoice(conn: Connection, number: str) -> InvoiceState:
    """The invoice numbered ``number``, its row locked until the transaction ends."""
    row = conn.execute(select(*_STATE_COLUMNS).where(_i.number == number).with_for_update()).first()
    if row is None:
        raise InvoiceNotFound(f"no invoice numbered {number!r}")
    return _state(row)


def find_invoice(engine: Engine, number: str) -> InvoiceState:
    with engine.connect() as conn:
        row = conn.execute(select(*_STATE_COLUMNS).where(_i.number == number)).first()
    if row is None:
        raise InvoiceNotFound(f"no invoice numbered {number!r}")
    return _state(row)


def payments_of(conn: Connection, invoice_ids: Sequence[int]) -> dict[int, list[Payment]]:
    """invoice id -> its payments (every status), oldest first."""
    out: dict[int, list[Payment]] = {i: [] for i in invoice_ids}
    query = select(payments).where(payments.c.invoice_id.in_(list(invoice_ids))).order_by(payments.c.id)
    for r in conn.execute(query):
        amount = money.from_minor(r.amount_minor, r.currency)
        out[r.invoice_id].append(Payment(amount, r.currency, r.status, r.method, r.external_id, r.created_at))
    return out


def receivables(bind: Engine | Connection, invoice_ids: Sequence[int]) -> dict[int, Receivable]:
    """invoice id -> ``Receivable`` (total, succeeded payments, credit notes) for the given invoices;
    ``.amount_due`` is ``domain.receivables.amount_due`` of the stored rows. For dunning and AR aging."""
    ids = list(invoice_ids)
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return receivables(conn, ids)
    out: dict[int, Receivable] = {}
    for i in range(0, len(ids), 1000):
        chunk = ids[i : i + 1000]
        paid = payments_of(bind, chunk)
        credited: dict[int, list[Decimal]] = {}
        query = select(credit_notes.c.invoice_id, credit_notes.c.total_minor, credit_notes.c.currency)
        for r in bind.execute(query.where(credit_notes.c.invoice_id.in_(chunk))):
            credited.setdefault(r.invoice_id, []).append(money.from_minor(r.total_minor, r.currency))
        for r in bind.execute(select(_i.id, _i.status, _i.currency, _i.total_minor).where(_i.id.in_(chunk))):
            total = money.from_minor(r.total_minor, r.currency)
            out[r.id] = receivable(total, r.currency, paid[r.id], credited.get(r.id, []), InvoiceStatus(r.status))
    return out


def insert_event(
    conn: Connection,
    invoice_id: int,
    kind: str,
    from_status: InvoiceStatus,
    to_status: InvoiceStatus,
    *,
    actor: str,
    reason: str,
    at: dt.datetime,
    details: dict[str, Any],
) -> None:
    conn.execute(
        insert(invoice_events).values(
            invoice_id=invoice_id,
            kind=kind,
            from_status=from_status.value,
            to_status=to_status.value,
            actor=actor,
            reason=reason,
            at=at,
            details=details,
        )
    )


def set_status(
    conn: Connection,
    state: InvoiceState,
    target: InvoiceStatus,
    *,
    actor: str,
    reason: str,
    at: dt.datetime,
    details: dict[str, Any] | None = None,
) -> InvoiceState:
    """Move the (locked) invoice to ``target`` and write its audit row; ``TransitionRefused`` if the
    table forbids it or the row changed since it was read."""
    check_transition(state.status, target, number=state.number)
    changed = conn.execute(
        update(invoices)
        .where(_i.id == state.id, _i.status == state.status.value)
        .values(status=target.value, updated_at=utc_now())
    ).rowcount
    if changed != 1:
        raise TransitionRefused(f"invoice {state.number} changed while it was being updated; nothing was changed")
    insert_event(
        conn, state.id, "transition", state.status, target, actor=actor, reason=reason, at=at, details=details or {}
    )
    return InvoiceState(state.id, state.number, state.org_id, target, state.currency, state.total)


@dataclass(frozen=True)
class StoredPayment:
    id: int
    invoice_id: int
    amount: Decimal
    currency: str
    method: str
    external_id: str
    status: str
    at: dt.datetime


def insert_payment(
    conn: Connection, invoice_id: int, amount: Decimal, currency: str, method: str, external_id: str, at: dt.datetime
) -> tuple[StoredPayment, bool]:
    """A succeeded payment, once per ``external_id``: (row, created). ``created_at`` is when the money
    arrived (``--at``); an existing row is returned as it is, whatever the other arguments say."""
    new_id = conn.execute(
        dialect_insert(conn.dialect.name)(payments)
        .values(
            invoice_id=invoice_id,
            amount_minor=money.to_minor(amount, currency),
            currency=currency,
            method=method,
            external_id=external_id,
            status="succeeded",
            created_at=at,
        )
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(payments.c.id)
    ).scalar()
    r = conn.execute(select(payments).where(payments.c.external_id == external_id)).one()
    stored = StoredPayment(
        r.id, r.invoice_id, money.from_minor(r.amount_minor, r.currency), r.currency, r.method, r.external_id,
        r.status, r.created_at,
    )  # fmt: skip
    return stored, new_id is not None


def history(engine: Engine, invoice_id: int) -> list[InvoiceEvent]:
    """The invoice's audit trail, oldest first."""
    query = select(invoice_events).where(invoice_events.c.invoice_id == invoice_id).order_by(invoice_events.c.id)
    with engine.connect() as conn:
        return [
            InvoiceEvent(r.id, r.kind, r.from_status, r.to_status, r.actor, r.reason, r.at, r.details or {})
            for r in conn.execute(query)
        ]


__all__ = [
    "InvoiceEvent",
    "InvoiceNotFound",
    "InvoiceState",
    "StoredPayment",
    "find_invoice",
    "history",
    "insert_event",
    "insert_payment",
    "lock_invoice",
    "payments_of",
    "receivables",
    "set_status",
]
