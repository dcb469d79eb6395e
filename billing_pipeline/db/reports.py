"""Read-only queries behind the reports: the CLI's (quarantine, imports, deliveries not done per
channel) and the finance reports' inputs (AR aging rows, subscriptions, plans, invoiced lines)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from billing_pipeline.db.lifecycle import payments_of
from billing_pipeline.db.schema import (
    catalog_versions,
    credit_notes,
    event_imports,
    invoice_deliveries,
    invoice_lines,
    invoices,
    organizations,
    quarantined_events,
    subscriptions,
)
from billing_pipeline.domain import money
from billing_pipeline.domain.catalog import CatalogError, Plan, parse_catalog
from billing_pipeline.domain.model import InvoiceStatus
from billing_pipeline.domain.reports import AgingInvoice, InvoicedLine, MrrSubscription


def quarantine_counts(engine: Engine) -> dict[str, int]:
    """Quarantined events per reason, by reason."""
    with engine.connect() as conn:
        rows = conn.execute(select(quarantined_events.c.reason, func.count()).group_by(quarantined_events.c.reason))
        return dict(sorted((r[0], int(r[1])) for r in rows))


def recent_imports(engine: Engine, limit: int = 5) -> list:
    """The last ``limit`` event imports, newest first."""
    with engine.connect() as conn:
        return conn.execute(select(event_imports).order_by(event_imports.c.id.desc()).limit(limit)).all()


#: Ledger statuses that need nothing more: every other one (pending, failed, and ambiguous
#: e-mails once that status exists) is counted as not done by ``undone_deliveries``.
DONE_DELIVERY_STATUSES = ("succeeded", "skipped")


def undone_deliveries(engine: Engine) -> dict[str, dict[str, int]]:
    """channel -> ledger status -> number of invoices, over every period, for rows not done."""
    query = (
        select(invoice_deliveries.c.channel, invoice_deliveries.c.status, func.count())
        .where(invoice_deliveries.c.status.not_in(DONE_DELIVERY_STATUSES))
        .group_by(invoice_deliveries.c.channel, invoice_deliveries.c.status)
    )
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for channel, status, count in conn.execute(query):
            out.setdefault(channel, {})[status] = int(count)
    return out


#: Invoices that may be owed something: the aging report sorts out which are (domain.reports.aging).
_MAY_OWE = (InvoiceStatus.FINALIZED.value, InvoiceStatus.UNCOLLECTIBLE.value)


#: Every issued invoice (the daily analytics count invoiced revenue, payments and conversion on them).
ISSUED = (*_MAY_OWE, InvoiceStatus.PAID.value, InvoiceStatus.VOID.value)


def aging_invoices(engine: Engine, cutoff: dt.datetime, statuses: tuple[str, ...] = _MAY_OWE) -> list[AgingInvoice]:
    """Invoices in ``statuses`` (default: finalized and uncollectible) issued before ``cutoff``, with
    every payment and credit note."""
    i = invoices.c
    query = (
        select(
            i.id, i.number, i.org_id, organizations.c.name, i.currency, i.status, i.issued_at, i.due_at, i.total_minor
        )  # fmt: skip
        .join(organizations, organizations.c.id == i.org_id)
        .where(i.status.in_(statuses), i.issued_at < cutoff, i.due_at.is_not(None))
        .order_by(i.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        ids = [r.id for r in rows]
        paid, credited = {}, {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            paid.update(payments_of(conn, chunk))
            notes = select(credit_notes.c.invoice_id, credit_notes.c.issued_at, credit_notes.c.total_minor,
                           credit_notes.c.currency).where(credit_notes.c.invoice_id.in_(chunk))  # fmt: skip
            for n in conn.execute(notes):
                credited.setdefault(n.invoice_id, []).append((n.issued_at, money.from_minor(n.total_minor, n.currency)))
    return [
        AgingInvoice(
            r.id,
            r.number,
            r.org_id,
            r.name,
            r.currency,
            InvoiceStatus(r.status),
            r.issued_at,
            r.due_at,
            money.from_minor(r.total_minor, r.currency),
            tuple(paid.get(r.id, ())),
            tuple(credited.get(r.id, ())),
        )  # fmt: skip
        for r in rows
    ]


def all_subscriptions(engine: Engine, before: dt.datetime) -> list[MrrSubscription]:
    """Every subscription that started before ``before``."""
    s = subscriptions.c
    query = select(s.org_id, s.plan_code, s.starts_at, s.ends_at).where(s.starts_at < before).order_by(s.id)
    with engine.connect() as conn:
        return [MrrSubscription(r.org_id, r.plan_code, r.starts_at, r.ends_at) for r in conn.execute(query)]


def plans_by_code(engine: Engine) -> dict[str, Plan]:
    """Every plan of every stored catalog version, the latest version's definition of each code
    (a retired plan keeps its last definition: its subscriptions still count)."""
    plans: dict[str, Plan] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(catalog_versions.c.document).order_by(catalog_versions.c.version)):
            try:
                plans.update(parse_catalog(row.document).plans)
            except CatalogError:  # a version today's rules refuse (being replaced): its plans are skipped
                continue
    return plans


def invoiced_lines(engine: Engine, start: dt.datetime, end: dt.datetime) -> list[InvoicedLine]:
    """The lines of invoices whose service period starts in ``[start, end)``, not draft or void."""
    i, li = invoices.c, invoice_lines.c
    query = (
        select(i.org_id, i.currency, li.charge_code, li.metric_code, li.amount_minor)
        .join(invoices, i.id == li.invoice_id)
        .where(i.period_start >= start, i.period_start < end, i.status.not_in(("draft", "void")))
        .order_by(i.id, li.line_number)
    )
    with engine.connect() as conn:
        return [
            InvoicedLine(
                r.org_id, r.currency, r.charge_code, r.metric_code, money.from_minor(r.amount_minor, r.currency)
            )
            for r in conn.execute(query)
        ]
