"""Read-only queries behind the CLI's reports: quarantine, imports, deliveries not done per channel."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from billing_pipeline.db.schema import event_imports, invoice_deliveries, quarantined_events


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
