"""The claim every side-effect ledger makes before its effect: one row per business key.

A first attempt inserts the row ``pending`` with ``attempts = 1`` (``ON CONFLICT DO NOTHING``
on the key, so of two racing runs exactly one gets it); a retry moves a row that is still in
``retry_from`` (``failed``) at the attempt count the caller saw to ``pending`` with one more
attempt. Either way the caller learns the attempt number it owns, or ``None``: another run has
the row, or it is not retryable any more (sent, pending, ambiguous, dead). Ledgers with their
own hot path (the delivery ledger's prepared statements) keep it; the rule is the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert


def claim_row(
    conn: Connection,
    table: Table,
    key: Mapping[str, Any],
    *,
    seen_attempts: int | None,
    values: Mapping[str, Any],
    first_values: Mapping[str, Any] | None = None,
    retry_from: str = "failed",
) -> int | None:
    """Claim the row ``key`` of ``table`` for one more attempt inside ``conn``'s transaction.

    ``values`` are written on every claim (the recipient, the Message-ID about to be sent);
    ``first_values`` only when the row is created (its kind, ``created_at``).
    """
    now = utc_now()
    if seen_attempts is None:
        row = conn.execute(
            dialect_insert(conn.dialect.name)(table)
            .values(**key, **(first_values or {}), **values, status="pending", attempts=1, updated_at=now)
            .on_conflict_do_nothing(index_elements=list(key))
            .returning(table.c.attempts)
        ).first()
        return 1 if row is not None else None
    changed = conn.execute(
        update(table)
        .where(*(table.c[name] == value for name, value in key.items()))
        .where(table.c.status == retry_from, table.c.attempts == seen_attempts)
        .values(**values, status="pending", attempts=seen_attempts + 1, last_error=None, updated_at=now)
    ).rowcount
    return seen_attempts + 1 if changed == 1 else None
