"""What ``customers show`` prints of one organization: its invoices with the amount still due."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine, select

from billing_pipeline.db.lifecycle import receivables
from billing_pipeline.db.schema import invoices
from billing_pipeline.domain import money


@dataclass(frozen=True)
class InvoiceSummary:
    number: str | None
    interval: str
    period_key: str
    status: str
    currency: str
    total: Decimal
    amount_due: Decimal


def organization_invoices(engine: Engine, org_id: str) -> list[InvoiceSummary]:
    """``org_id``'s invoices (drafts too), oldest period first, each with ``domain.receivables.amount_due``."""
    query = (
        select(invoices.c.id, invoices.c.number, invoices.c.interval, invoices.c.period_key)
        .add_columns(invoices.c.status, invoices.c.currency, invoices.c.total_minor)
        .where(invoices.c.org_id == org_id)
        .order_by(invoices.c.period_start, invoices.c.id)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(query))
        due = receivables(conn, [r.id for r in rows])
    return [
        InvoiceSummary(
            r.number,
            r.interval,
            r.period_key,
            r.status,
            r.currency,
            money.from_minor(r.total_minor, r.currency),
            due[r.id].amount_due,
        )
        for r in rows
    ]
