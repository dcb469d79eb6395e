"""The notification ledger (``notifications``): one row per (dedupe key, channel).

The same protocol as the delivery ledger (``db.deliveries``): a row is *claimed* (``pending``,
``attempts + 1``, with the external id about to be used, e.g. the e-mail's Message-ID) and
committed before the side effect, and set ``sent`` right after it. The claim is optimistic: it
only wins on a missing row (insert, on conflict nothing) or on a ``failed`` row still at the
attempt count the caller read, so two runs racing on one notice cannot both send it.

* ``failed``: retried by the next ``send`` of the same notice, until the caller's cap;
* ``ambiguous``: the channel may have delivered it (an SMTP connection lost after DATA, or a
  ``pending`` row a crashed run left behind): never re-sent automatically;
* ``dead``: given up (the cap, a permanent error, an ambiguous outcome); ``give_up`` writes the
  dead letter (``db.dead_letters``, kind ``notification``) in the same transaction;
* ``dismissed``: an operator closed it (``billing-pipeline dead-letters dismiss``).

An operator's ``dead-letters retry`` resets a ``dead`` row to ``failed`` with zero attempts
(only if it is still dead), so the next run claims and sends it exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db import dead_letters
from billing_pipeline.db.ledger import claim_row
from billing_pipeline.db.schema import notifications

KIND = "notification"  # dead-letter kind
FINAL = ("sent", "dead", "dismissed")


@dataclass(frozen=True)
class NotificationRow:
    dedupe_key: str
    channel: str
    kind: str
    recipient: str
    status: str
    attempts: int
    last_error: str | None
    external_id: str | None
    sent_at: dt.datetime | None


class ClaimLost(RuntimeError):
    """Another run claimed the notice first, or it is no longer retryable."""


def business_key(dedupe_key: str, channel: str) -> str:
    return f"{dedupe_key}|{channel}"


def _row(r) -> NotificationRow:
    return NotificationRow(
        r.dedupe_key, r.channel, r.kind, r.recipient, r.status, r.attempts, r.last_error, r.external_id, r.sent_at
    )


def _where(dedupe_key: str, channel: str):
    return (notifications.c.dedupe_key == dedupe_key) & (notifications.c.channel == channel)


def get_row(bind: Engine | Connection, dedupe_key: str, channel: str) -> NotificationRow | None:
    query = select(notifications).where(_where(dedupe_key, channel))
    if isinstance(bind, Connection):
        found = bind.execute(query).first()
    else:
        with bind.connect() as conn:
            found = conn.execute(query).first()
    return _row(found) if found is not None else None


def claim(
    engine: Engine,
    dedupe_key: str,
    channel: str,
    *,
    kind: str,
    recipient: str,
    seen: NotificationRow | None,
    external_id: str | None,
) -> int:
    """Mark the row ``pending`` with one more attempt (committed); returns the attempt number."""
    with engine.begin() as conn:
        attempt = claim_row(
            conn,
            notifications,
            {"dedupe_key": dedupe_key, "channel": channel},
            seen_attempts=None if seen is None else seen.attempts,
            values={"recipient": recipient, "external_id": external_id},
            first_values={"kind": kind, "created_at": utc_now()},
        )
    if attempt is None:
        raise ClaimLost(f"{dedupe_key} {channel}: claimed by another run or no longer retryable")
    return attempt


def mark_sent(engine: Engine, dedupe_key: str, channel: str, attempts: int, external_id: str | None) -> None:
    """The side effect of attempt ``attempts`` is done (also over an ``ambiguous`` mark of a racing run)."""
    now = utc_now()
    with engine.begin() as conn:
        conn.execute(
            update(notifications)
            .where(_where(dedupe_key, channel), notifications.c.attempts == attempts)
            .values(status="sent", last_error=None, external_id=external_id, updated_at=now, sent_at=now)
        )


def mark_failed(engine: Engine, dedupe_key: str, channel: str, attempts: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(notifications)
            .where(_where(dedupe_key, channel), notifications.c.attempts == attempts)
            .values(status="failed", last_error=error[:4000], updated_at=utc_now())
        )


def give_up(
    engine: Engine,
    dedupe_key: str,
    channel: str,
    error: str,
    payload: Mapping[str, Any],
    *,
    status: str = "dead",
    seen_attempts: int | None = None,
) -> bool:
    """Set the row ``dead`` (or ``ambiguous``) and open its dead letter, in one transaction.

    With ``seen_attempts`` only a row still at that attempt count changes. Returns whether it did.
    """
    if status not in ("dead", "ambiguous"):
        raise ValueError(f"give_up status must be dead or ambiguous, got {status!r}")
    query = update(notifications).where(_where(dedupe_key, channel), notifications.c.status.not_in(FINAL))
    if seen_attempts is not None:
        query = query.where(notifications.c.attempts == seen_attempts)
    with engine.begin() as conn:
        if conn.execute(query.values(status=status, last_error=error[:4000], updated_at=utc_now())).rowcount != 1:
            return False
        row = get_row(conn, dedupe_key, channel)
        assert row is not None
        letter = {**payload, "dedupe_key": dedupe_key, "channel": channel, "external_id": row.external_id}
        dead_letters.record_dead_letter(
            conn, KIND, business_key(dedupe_key, channel), letter, f"{status}: {error}", row.attempts
        )
    return True


def _reset(conn: Connection, payload: Mapping[str, Any]) -> None:
    changed = conn.execute(
        update(notifications)
        .where(
            _where(payload["dedupe_key"], payload["channel"]),
            notifications.c.status.in_(("dead", "ambiguous")),
        )
        .values(
            status="failed", attempts=0, last_error="reset by an operator (dead-letters retry)", updated_at=utc_now()
        )
    ).rowcount
    if changed != 1:
        raise dead_letters.DeadLetterStateError(
            f"notification {payload['dedupe_key']} {payload['channel']} is no longer dead: nothing to retry"
        )


def _dismiss(conn: Connection, payload: Mapping[str, Any]) -> None:
    conn.execute(
        update(notifications)
        .where(_where(payload["dedupe_key"], payload["channel"]), notifications.c.status != "sent")
        .values(status="dismissed", updated_at=utc_now())
    )


dead_letters.register_kind(KIND, reset=_reset, dismiss=_dismiss)

__all__ = [
    "FINAL",
    "KIND",
    "ClaimLost",
    "NotificationRow",
    "business_key",
    "claim",
    "get_row",
    "give_up",
    "mark_failed",
    "mark_sent",
]
