"""The operator alert store (``alerts``): every alert as raised, until no channel will retry it.

``record`` is idempotent on the dedupe key (an alert raised again keeps its first text and
channels); ``unsettled`` lists what ``alert_redelivery_sensor`` sends again (the notification
ledger then sends only the channels not yet done); ``settle`` closes one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import alerts


@dataclass(frozen=True)
class AlertRow:
    dedupe_key: str
    kind: str
    level: str
    subject: str
    text: str
    link: str | None
    channels: tuple[str, ...]
    created_at: dt.datetime
    settled_at: dt.datetime | None


def _row(r) -> AlertRow:
    channels = tuple(c for c in r.channels.split(",") if c)
    return AlertRow(r.dedupe_key, r.kind, r.level, r.subject, r.text, r.link, channels, r.created_at, r.settled_at)


def record(
    engine: Engine,
    *,
    dedupe_key: str,
    kind: str,
    level: str,
    subject: str,
    text: str,
    link: str | None,
    channels: tuple[str, ...],
) -> AlertRow:
    """The stored alert ``dedupe_key``: written now unless it already was (then as first written)."""
    with engine.begin() as conn:
        conn.execute(
            dialect_insert(conn.dialect.name)(alerts)
            .values(
                dedupe_key=dedupe_key,
                kind=kind,
                level=level,
                subject=subject[:500],
                text=text,
                link=link,
                channels=",".join(channels),
                created_at=utc_now(),
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
        return _row(conn.execute(select(alerts).where(alerts.c.dedupe_key == dedupe_key)).one())


def unsettled(engine: Engine, *, limit: int = 100) -> list[AlertRow]:
    """Alerts some channel may still send, oldest first."""
    query = select(alerts).where(alerts.c.settled_at.is_(None)).order_by(alerts.c.created_at).limit(limit)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def settle(engine: Engine, dedupe_key: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(alerts)
            .where(alerts.c.dedupe_key == dedupe_key, alerts.c.settled_at.is_(None))
            .values(settled_at=utc_now())
        )


def list_alerts(engine: Engine, *, kind: str | None = None) -> list[AlertRow]:
    query = select(alerts).order_by(alerts.c.created_at)
    if kind is not None:
        query = query.where(alerts.c.kind == kind)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


__all__ = ["AlertRow", "list_alerts", "record", "settle", "unsettled"]
