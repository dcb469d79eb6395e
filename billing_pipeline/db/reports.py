"""Read-only queries behind the CLI's reports: quarantine, imports, the delivery ledger of a period."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from billing_pipeline.db.schema import event_imports, quarantined_events


def quarantine_counts(engine: Engine) -> dict[str, int]:
    """Quarantined events per reason, by reason."""
    with engine.connect() as conn:
        rows = conn.execute(select(quarantined_events.c.reason, func.count()).group_by(quarantined_events.c.reason))
        return dict(sorted((r[0], int(r[1])) for r in rows))


def recent_imports(engine: Engine, limit: int = 5) -> list:
    """The last ``limit`` event imports, newest first."""
    with engine.connect() as conn:
        return conn.execute(select(event_imports).order_by(event_imports.c.id.desc()).limit(limit)).all()
