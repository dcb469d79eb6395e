"""Collections reads and writes: receivables, the reminder ledger (``payment_reminders``), step actions.

The reminder ledger has one row per (invoice, step, audience), inserted (``pending`` to send,
``skipped`` when catch-up superseded it or no account manager exists) before anything is sent;
an insert that meets an existing row does nothing, so a re-run never decides a step twice.
``pending`` rows become ``sent`` once every channel of their notification is sent, or
``stopped`` when the invoice is found paid, void, uncollectible or excluded at send time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.reference import get_organizations
from billing_pipeline.db.schema import invoices, organizations, payment_reminders, payments
from billing_pipeline.domain.dunning import Decision, PaymentRecord, Receivable, Reminder
from billing_pipeline.domain.dunning_policy import StepAction
from billing_pipeline.domain.model import InvoiceStatus, Organization

_CHUNK = 1000


@dataclass(frozen=True)
class Receivables:
    invoices: list[Receivable]
    payments: list[PaymentRecord]
    organizations: dict[str, Organization]


@dataclass(frozen=True)
class ReminderRow:
    invoice_id: int
    step: str
    audience: str
    org_id: str
    step_date: str
    status: str
    reason: str | None
    dedupe_key: str
    amount_due_minor: int
    currency: str
    decided_at: dt.datetime


def dedupe_key(invoice_id: int, step: str, audience: str) -> str:
    """The notification key of a reminder: our ids only, so every run builds the same one."""
    return f"reminder:{invoice_id}:{step}:{audience}"


def _receivable(r) -> Receivable:
    return Receivable(r.id, r.org_id, r.number, InvoiceStatus(r.status), r.currency, r.total_minor, r.due_at)


_INVOICE_COLUMNS = (
    invoices.c.id,
    invoices.c.org_id,
    invoices.c.number,
    invoices.c.status,
    invoices.c.currency,
    invoices.c.total_minor,
    invoices.c.due_at,
)


def load_receivables(engine: Engine, invoice_ids: Sequence[int] | None = None) -> Receivables:
    """Finalized invoices with a due date (or exactly ``invoice_ids``, any status), their payments, orgs."""
    query = select(*_INVOICE_COLUMNS).order_by(invoices.c.id)
    if invoice_ids is None:
        query = query.where(invoices.c.status == InvoiceStatus.FINALIZED.value, invoices.c.due_at.is_not(None))
    found: list[Receivable] = []
    with engine.connect() as conn:
        if invoice_ids is None:
            found = [_receivable(r) for r in conn.execute(query)]
        else:
            ids = list(invoice_ids)
            for i in range(0, len(ids), _CHUNK):
                found += [_receivable(r) for r in conn.execute(query.where(invoices.c.id.in_(ids[i : i + _CHUNK])))]
        ids = [inv.invoice_id for inv in found]
        paid: list[PaymentRecord] = []
        for i in range(0, len(ids), _CHUNK):
            rows = conn.execute(
                select(payments.c.invoice_id, payments.c.amount_minor, payments.c.currency, payments.c.status).where(
                    payments.c.invoice_id.in_(ids[i : i + _CHUNK])
                )
            )
            paid += [PaymentRecord(r.invoice_id, r.amount_minor, r.currency, r.status) for r in rows]
    orgs = get_organizations(engine, sorted({inv.org_id for inv in found})) if found else {}
    return Receivables(found, paid, orgs)


def _reminder_row(r) -> ReminderRow:
    return ReminderRow(
        r.invoice_id,
        r.step,
        r.audience,
        r.org_id,
        r.step_date,
        r.status,
        r.reason,
        r.dedupe_key,
        r.amount_due_minor,
        r.currency,
        r.decided_at,
    )


def recorded_reminders(engine: Engine) -> set[tuple[int, str, str]]:
    """Every (invoice id, step, audience) in the ledger."""
    query = select(payment_reminders.c.invoice_id, payment_reminders.c.step, payment_reminders.c.audience)
    with engine.connect() as conn:
        return {(r.invoice_id, r.step, r.audience) for r in conn.execute(query)}


def record_reminders(engine: Engine, reminders: Iterable[Reminder], policy_version: int) -> int:
    """Insert the decisions (existing rows untouched); returns how many rows were new."""
    now, new = utc_now(), 0
    with engine.begin() as conn:
        insert = dialect_insert(conn.dialect.name)
        for rem in reminders:
            inserted = conn.execute(
                insert(payment_reminders)
                .values(
                    invoice_id=rem.invoice_id,
                    step=rem.step,
                    audience=rem.audience.value,
                    org_id=rem.org_id,
                    policy_version=policy_version,
                    step_date=rem.step_date.isoformat(),
                    status="pending" if rem.decision is Decision.SEND else "skipped",
                    reason=rem.reason,
                    dedupe_key=dedupe_key(rem.invoice_id, rem.step, rem.audience.value),
                    amount_due_minor=rem.amount_due_minor,
                    currency=rem.currency,
                    decided_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["invoice_id", "step", "audience"])
                .returning(payment_reminders.c.invoice_id)
            ).first()
            new += inserted is not None
    return new


def reminder_rows(engine: Engine, *, status: str | None = None) -> list[ReminderRow]:
    query = select(payment_reminders).order_by(
        payment_reminders.c.invoice_id, payment_reminders.c.step_date, payment_reminders.c.audience
    )
    if status is not None:
        query = query.where(payment_reminders.c.status == status)
    with engine.connect() as conn:
        return [_reminder_row(r) for r in conn.execute(query)]


def finish_reminder(
    engine: Engine, invoice_id: int, step: str, audience: str, status: str, *, reason: str | None = None,
    amount_due_minor: int | None = None,
) -> None:  # fmt: skip
    """Settle a ``pending`` row: ``sent`` (with the amount the message showed) or ``stopped``."""
    values: dict[str, object] = {"status": status, "reason": reason, "updated_at": utc_now()}
    if amount_due_minor is not None:
        values["amount_due_minor"] = amount_due_minor
    with engine.begin() as conn:
        conn.execute(
            update(payment_reminders)
            .where(
                payment_reminders.c.invoice_id == invoice_id,
                payment_reminders.c.step == step,
                payment_reminders.c.audience == audience,
                payment_reminders.c.status == "pending",
            )
            .values(**values)
        )


def apply_step_action(engine: Engine, invoice_id: int, org_id: str, action: StepAction) -> bool:
    """Do a step's action; guarded by the current status, so doing it again changes nothing.

    ``mark_invoice_uncollectible``: finalized -> uncollectible; ``suspend_organization``:
    active -> suspended. Returns whether a row changed.
    """
    if action is StepAction.NONE:
        return False
    now = utc_now()
    with engine.begin() as conn:
        if action is StepAction.MARK_INVOICE_UNCOLLECTIBLE:
            statement = (
                update(invoices)
                .where(invoices.c.id == invoice_id, invoices.c.status == InvoiceStatus.FINALIZED.value)
                .values(status=InvoiceStatus.UNCOLLECTIBLE.value, updated_at=now)
            )
        else:
            statement = (
                update(organizations)
                .where(organizations.c.id == org_id, organizations.c.status == "active")
                .values(status="suspended", updated_at=now)
            )
        return conn.execute(statement).rowcount == 1


__all__ = [
    "ReminderRow",
    "Receivables",
    "apply_step_action",
    "dedupe_key",
    "finish_reminder",
    "load_receivables",
    "record_reminders",
    "recorded_reminders",
    "reminder_rows",
]
