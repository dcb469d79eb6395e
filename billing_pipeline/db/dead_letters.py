"""Dead letters: one row per side effect that failed for good, for an operator to retry or dismiss.

Any ledger that gives up (notifications, charges, payment syncs, invoice deliveries) calls
``record_dead_letter(bind, kind, business_key, payload, error, attempts)``, preferably in the
transaction that marks its own row dead. ``business_key`` is the ledger's unique key as text
(``"reminder:42:overdue:customer|email"``); the same key dying again reopens its row (one row per
key, attempts and error updated).

``retry_dead_letter`` and ``dismiss_dead_letter`` run the ``kind``'s handlers (``register_kind``)
in the same transaction as the status change: ``reset`` puts the ledger row back where the next
run takes it exactly once (and refuses if it is no longer dead), ``dismiss`` closes it for good.
A kind without handlers cannot be retried (``LookupError``); its owner registers them where its
ledger lives (``db.notifications`` does for ``notification``, ``db.delivery_dead_letters`` for
``invoice_delivery``; ``LEDGER_MODULES`` lists them).
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import dead_letters

STATUSES = ("open", "retried", "dismissed")

Handler = Callable[[Connection, Mapping[str, Any]], None]


@dataclass(frozen=True)
class KindHandlers:
    reset: Handler  # make the ledger row retryable again; raise if it is not dead any more
    dismiss: Handler  # close the ledger row for good


_KINDS: dict[str, KindHandlers] = {}
#: Modules whose ledgers register their kinds when imported (loaded before any retry or dismiss).
LEDGER_MODULES = (
    "billing_pipeline.db.notifications",
    "billing_pipeline.db.charges",
    "billing_pipeline.db.delivery_dead_letters",
)


def register_kind(kind: str, *, reset: Handler, dismiss: Handler) -> None:
    _KINDS[kind] = KindHandlers(reset, dismiss)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    kind: str
    business_key: str
    payload: dict[str, Any]
    error: str
    attempts: int
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


class DeadLetterStateError(ValueError):
    """The dead letter cannot be retried or dismissed (unknown id, not open, ledger moved on)."""


def _letter(row) -> DeadLetter:
    return DeadLetter(
        row.id,
        row.kind,
        row.business_key,
        dict(row.payload),
        row.error,
        row.attempts,
        row.status,
        row.created_at,
        row.updated_at,
    )


def record_dead_letter(
    conn: Connection, kind: str, business_key: str, payload: Mapping[str, Any], error: str, attempts: int
) -> None:
    """Open (or reopen) the dead letter of ``(kind, business_key)``, inside the caller's transaction."""
    now = utc_now()
    values = {"payload": dict(payload), "error": error[:4000], "attempts": attempts, "status": "open"}
    statement = dialect_insert(conn.dialect.name)(dead_letters).values(
        kind=kind, business_key=business_key, created_at=now, updated_at=now, **values
    )
    conn.execute(
        statement.on_conflict_do_update(index_elements=["kind", "business_key"], set_={**values, "updated_at": now})
    )


def close_open(conn: Connection, kind: str, business_key: str) -> None:
    """The ledger retries the row behind an open letter on its own (an operator's run): ``retried``."""
    conn.execute(
        update(dead_letters)
        .where(
            dead_letters.c.kind == kind, dead_letters.c.business_key == business_key, dead_letters.c.status == "open"
        )
        .values(status="retried", updated_at=utc_now())
    )


def keys_with_status(conn: Connection, kind: str, business_keys: Sequence[str], status: str) -> set[str]:
    """The business keys among ``business_keys`` whose letter of ``kind`` has ``status``."""
    found: set[str] = set()
    for i in range(0, len(business_keys), 1000):
        query = select(dead_letters.c.business_key).where(
            dead_letters.c.kind == kind,
            dead_letters.c.status == status,
            dead_letters.c.business_key.in_(list(business_keys[i : i + 1000])),
        )
        found.update(conn.execute(query).scalars())
    return found


def list_dead_letters(
    engine: Engine, *, status: str | None = "open", kind: str | None = None, limit: int = 1000
) -> list[DeadLetter]:
    """Dead letters, oldest first (``status=None``: every status)."""
    query = select(dead_letters).order_by(dead_letters.c.id).limit(limit)
    if status is not None:
        query = query.where(dead_letters.c.status == status)
    if kind is not None:
        query = query.where(dead_letters.c.kind == kind)
    with engine.connect() as conn:
        return [_letter(r) for r in conn.execute(query)]


def open_dead_letters(engine: Engine, kind: str | None = None) -> list[DeadLetter]:
    return list_dead_letters(engine, status="open", kind=kind, limit=1_000_000)


def count_open(engine: Engine) -> dict[str, int]:
    """Open dead letters per kind (for status pages)."""
    counts: dict[str, int] = {}
    for letter in open_dead_letters(engine):
        counts[letter.kind] = counts.get(letter.kind, 0) + 1
    return counts


def _transition(
    engine: Engine, letter_id: int, status: str, handler_of: Callable[[KindHandlers], Handler]
) -> DeadLetter:
    with engine.begin() as conn:
        row = conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id).with_for_update()).first()
        if row is None:
            raise DeadLetterStateError(f"no dead letter {letter_id}")
        if row.status != "open":
            raise DeadLetterStateError(f"dead letter {letter_id} is {row.status}, not open")
        for module in LEDGER_MODULES:
            importlib.import_module(module)
        handlers = _KINDS.get(row.kind)
        if handlers is None:
            raise LookupError(f"dead letter {letter_id}: no retry/dismiss handlers for kind {row.kind!r}")
        handler_of(handlers)(conn, row.payload)
        conn.execute(
            update(dead_letters).where(dead_letters.c.id == letter_id).values(status=status, updated_at=utc_now())
        )
        return _letter(conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).one())


def retry_dead_letter(engine: Engine, letter_id: int) -> DeadLetter:
    """Reset the ledger row behind ``letter_id`` so the next run performs it once; status ``retried``."""
    return _transition(engine, letter_id, "retried", lambda h: h.reset)


def dismiss_dead_letter(engine: Engine, letter_id: int) -> DeadLetter:
    """Close ``letter_id`` and its ledger row for good; status ``dismissed``."""
    return _transition(engine, letter_id, "dismissed", lambda h: h.dismiss)


__all__: Sequence[str] = [
    "DeadLetter",
    "DeadLetterStateError",
    "STATUSES",
    "close_open",
    "count_open",
    "dismiss_dead_letter",
    "keys_with_status",
    "list_dead_letters",
    "open_dead_letters",
    "record_dead_letter",
    "register_kind",
    "retry_dead_letter",
]
