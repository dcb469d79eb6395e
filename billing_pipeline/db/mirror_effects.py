"""The mirror ledger (``invoice_mirror_effects``): each effect on the payment gateway, exactly once.

A row is added (``pending``, 0 attempts) in the same transaction as the change it mirrors, so a
committed void always has its "void in Stripe" to do. Before the gateway call the row is claimed
(``attempts + 1``, committed; optimistic on the attempt count so two processes cannot both call);
right after it, it is set ``succeeded`` (with the gateway's id), ``skipped`` (no gateway) or
``failed`` (with the error; the next run of a lifecycle command on that invoice tries again with
the same idempotency key). The idempotency key is the row's unique business key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import invoice_mirror_effects

ACTIONS = ("void", "mark_uncollectible", "mark_paid_out_of_band", "create_credit_note")
OPEN_STATUSES = ("pending", "failed")
_m = invoice_mirror_effects.c


@dataclass(frozen=True)
class MirrorEffect:
    id: int
    invoice_id: int
    credit_note_id: int | None
    action: str
    idempotency_key: str
    status: str
    attempts: int
    last_error: str | None
    external_id: str | None
    updated_at: dt.datetime


def _row(r) -> MirrorEffect:
    return MirrorEffect(
        r.id, r.invoice_id, r.credit_note_id, r.action, r.idempotency_key, r.status, r.attempts, r.last_error,
        r.external_id, r.updated_at,
    )  # fmt: skip


def add_effect(
    conn: Connection, invoice_id: int, action: str, idempotency_key: str, *, credit_note_id: int | None = None
) -> None:
    """Record an effect to perform (a second add of the same key is a no-op)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown mirror action {action!r}")
    now = utc_now()
    conn.execute(
        dialect_insert(conn.dialect.name)(invoice_mirror_effects)
        .values(
            invoice_id=invoice_id,
            credit_note_id=credit_note_id,
            action=action,
            idempotency_key=idempotency_key,
            status="pending",
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def effects_of(engine: Engine, invoice_id: int, *, open_only: bool = False) -> list[MirrorEffect]:
    """The invoice's effects in the order they were recorded (``open_only``: pending and failed)."""
    query = select(invoice_mirror_effects).where(_m.invoice_id == invoice_id).order_by(_m.id)
    if open_only:
        query = query.where(_m.status.in_(OPEN_STATUSES))
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def claim(engine: Engine, effect: MirrorEffect) -> bool:
    """Take the effect for one attempt; False if another process took it or it is done."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(invoice_mirror_effects)
            .where(_m.id == effect.id, _m.attempts == effect.attempts, _m.status.in_(OPEN_STATUSES))
            .values(status="pending", attempts=effect.attempts + 1, updated_at=utc_now())
        ).rowcount
    return changed == 1


def finish(engine: Engine, effect_id: int, status: str, *, external_id: str | None = None, error: str | None = None):
    if status not in ("succeeded", "skipped", "failed"):
        raise ValueError(f"not a final mirror status: {status!r}")
    with engine.begin() as conn:
        conn.execute(
            update(invoice_mirror_effects)
            .where(_m.id == effect_id)
            .values(status=status, external_id=external_id, last_error=error and error[:4000], updated_at=utc_now())
        )


__all__ = ["ACTIONS", "MirrorEffect", "add_effect", "claim", "effects_of", "finish"]
