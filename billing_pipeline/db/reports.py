"""Read-only queries behind the CLI's reports: quarantine, imports, the delivery ledger of a period."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from billing_pipeline.db.schema import event_imports, invoice_deliveries, invoices, quarantined_events
from billing_pipeline.domain.periods import BillingPeriod


def quarantine_counts(engine: Engine) -> dict[str, int]:
    """Quarantined events per reason, by reason."""
    with engine.connect() as conn:
        rows = conn.execute(select(quarantined_events.c.reason, func.count()).group_by(quarantined_events.c.reason))
        return dict(sorted((r[0], int(r[1])) for r in rows))


def recent_imports(engine: Engine, limit: int = 5) -> list:
    """The last ``limit`` event imports, newest first."""
    with engine.connect() as conn:
        return conn.execute(select(event_imports).order_by(event_imports.c.id.desc()).limit(limit)).all()


def delivery_states(engine: Engine, period: BillingPeriod) -> dict[str, dict[str, tuple[str, str | None]]]:
    """org id -> channel -> (ledger status, last error) for the period's invoices."""
    query = (
        select(
            invoices.c.org_id,
            invoice_deliveries.c.channel,
            invoice_deliveries.c.status,
            invoice_deliveries.c.last_error,
        )
        .join(invoices, invoices.c.id == invoice_deliveries.c.invoice_id)
        .where(invoices.c.interval == period.interval.value, invoices.c.period_key == period.key)
    )
    out: dict[str, dict[str, tuple[str, str | None]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            out.setdefault(r.org_id, {})[r.channel] = (r.status, r.last_error)
    return out


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
