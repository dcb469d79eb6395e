"""The in-app notification inbox (``notifications_inbox``): one row per notice, read or unread.

``add`` is idempotent on the dedupe key (insert, on conflict nothing, then read the row), so the
in-app channel writes a notice once however often it is sent; ``mark_read`` only sets ``read_at``
on unread rows, so reading twice keeps the first time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import notifications_inbox as inbox

LEVELS = ("info", "warning", "error")


@dataclass(frozen=True)
class InboxItem:
    id: int
    dedupe_key: str
    kind: str
    level: str
    subject: str
    text: str
    link: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None


def _item(r) -> InboxItem:
    return InboxItem(r.id, r.dedupe_key, r.kind, r.level, r.subject, r.text, r.link, r.created_at, r.read_at)


def add(
    engine: Engine, *, dedupe_key: str, kind: str, level: str, subject: str, text: str, link: str | None = None
) -> int:
    """The inbox id of the notice ``dedupe_key``, written now unless it already is."""
    if level not in LEVELS:
        raise ValueError(f"level: must be one of {', '.join(LEVELS)}, got {level!r}")
    with engine.begin() as conn:
        conn.execute(
            dialect_insert(conn.dialect.name)(inbox)
            .values(
                dedupe_key=dedupe_key,
                kind=kind,
                level=level,
                subject=subject[:500],
                text=text,
                link=link,
                created_at=utc_now(),
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
        return conn.execute(select(inbox.c.id).where(inbox.c.dedupe_key == dedupe_key)).scalar_one()


def list_items(engine: Engine, *, unread_only: bool = False, limit: int = 100) -> list[InboxItem]:
    """Newest first."""
    query = select(inbox).order_by(inbox.c.created_at.desc(), inbox.c.id.desc()).limit(limit)
    if unread_only:
        query = query.where(inbox.c.read_at.is_(None))
    with engine.connect() as conn:
        return [_item(r) for r in conn.execute(query)]


def unread_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(inbox).where(inbox.c.read_at.is_(None))).scalar_one()


def get(engine: Engine, item_id: int) -> InboxItem | None:
    with engine.connect() as conn:
        row = conn.execute(select(inbox).where(inbox.c.id == item_id)).first()
    return _item(row) if row is not None else None


def mark_read(engine: Engine, item_id: int | None = None) -> int:
    """Mark one notice (or, with None, every unread one) read; returns how many changed."""
    query = update(inbox).where(inbox.c.read_at.is_(None))
    if item_id is not None:
        query = query.where(inbox.c.id == item_id)
    with engine.begin() as conn:
        return conn.execute(query.values(read_at=utc_now())).rowcount


__all__ = ["LEVELS", "InboxItem", "add", "get", "list_items", "mark_read", "unread_count"]
