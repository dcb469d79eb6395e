"""The delivery ledger's read views, and resolving an ambiguous row.

What the sensor and the delivery ops select (``undelivered_invoices``, ``finalized_invoice_ids``)
and what operators see (per-period states, ambiguous e-mails); the rows and their claim /
finish writes are in ``db.deliveries``.

``resolve_ambiguous`` is the only way out of ``ambiguous`` besides an explicit resend: after
checking the mail server's log for the Message-ID, ``sent=True`` records the e-mail as
delivered (``succeeded``, Message-ID kept) and ``sent=False`` makes it an ordinary ``failed``
row that the next delivery run sends again, with the same Message-ID.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, or_, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.deliveries import AMBIGUOUS, CHANNELS, FINAL_STATUSES
from billing_pipeline.db.schema import invoice_deliveries, invoices

_d = invoice_deliveries.c


@dataclass(frozen=True)
class AmbiguousDelivery:
    invoice_id: int
    number: str | None
    org_id: str
    interval: str
    period_key: str
    channel: str
    external_id: str | None  # the Message-ID to look up in the mail server's log
    since: dt.datetime


class NotAmbiguous(ValueError):
    """The row to resolve does not exist or is not ``ambiguous`` (nothing changed)."""


def undelivered_invoices(
    engine: Engine, channels: Iterable[str], *, interval: str | None = None, limit: int | None = None
) -> dict[tuple[str, str], list[str]]:
    """Finalized (or already paid: a zero total under ``finalize_paid``) invoices missing a final
    ledger row for any of ``channels``: what the sensor launches delivery runs for.

    Returns ``{(interval, period key): [org ids]}`` (sorted). An invoice with a ``failed`` or
    ``ambiguous`` row is left out: the sensor never retries a failure (its dead letter does, see
    ``db.delivery_dead_letters``; a ``pending`` row, which a dead-letter retry leaves, is taken)
    and leaves ambiguous e-mails to an operator.
    """
    found = undelivered_invoice_attempts(engine, channels, interval=interval, limit=limit)
    return {period: list(orgs) for period, orgs in found.items()}


def undelivered_invoice_attempts(
    engine: Engine, channels: Iterable[str], *, interval: str | None = None, limit: int | None = None
) -> dict[tuple[str, str], dict[str, int]]:
    """``undelivered_invoices`` with each invoice's ledger attempts so far (all channels).

    Every claim adds one, so the count tells a sensor the invoice is wanted again after more
    work (a dead-letter retry of a row that failed) rather than still the same request.
    """
    channels = [c for c in channels if c in CHANNELS]
    if not channels:
        return {}
    mine = (_d.invoice_id == invoices.c.id) & _d.channel.in_(channels)
    blocked = select(_d.invoice_id).where(mine, _d.status.in_(("failed", AMBIGUOUS))).exists()
    undone = [
        ~select(_d.invoice_id).where(mine, _d.channel == channel, _d.status.in_(FINAL_STATUSES)).exists()
        for channel in channels
    ]
    attempts = select(func.coalesce(func.sum(_d.attempts), 0)).where(_d.invoice_id == invoices.c.id).scalar_subquery()
    query = select(invoices.c.interval, invoices.c.period_key, invoices.c.org_id, attempts.label("attempts")).where(
        invoices.c.status.in_(("finalized", "paid")), ~blocked, or_(*undone)
    )
    if interval is not None:
        query = query.where(invoices.c.interval == interval)
    query = query.order_by(invoices.c.interval, invoices.c.period_key, invoices.c.org_id)
    if limit is not None:
        query = query.limit(limit)
    out: dict[tuple[str, str], dict[str, int]] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            out.setdefault((r.interval, r.period_key), {})[r.org_id] = int(r.attempts)
    return out


def finalized_invoice_ids(
    engine: Engine, interval: str, period_key: str, org_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """org id -> invoice id of the period's finalized (or later: paid) invoices."""
    query = select(invoices.c.org_id, invoices.c.id).where(
        invoices.c.interval == interval,
        invoices.c.period_key == period_key,
        invoices.c.status.in_(("finalized", "paid")),
    )
    if org_ids is not None:
        query = query.where(invoices.c.org_id.in_(list(org_ids)))
    with engine.connect() as conn:
        return {r.org_id: r.id for r in conn.execute(query)}


def delivery_states(
    engine: Engine, interval: str, period_key: str, org_ids: Sequence[str] | None = None
) -> dict[str, dict[str, tuple[str, str | None]]]:
    """org id -> channel -> (ledger status, last error) for one period's invoices (``org_ids``: only those)."""
    query = (
        select(invoices.c.org_id, _d.channel, _d.status, _d.last_error)
        .join(invoices, invoices.c.id == _d.invoice_id)
        .where(invoices.c.interval == interval, invoices.c.period_key == period_key)
    )
    if org_ids:
        query = query.where(invoices.c.org_id.in_(list(org_ids)))
    out: dict[str, dict[str, tuple[str, str | None]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            out.setdefault(r.org_id, {})[r.channel] = (r.status, r.last_error)
    return out


def ambiguous_deliveries(engine: Engine, limit: int = 1000) -> list[AmbiguousDelivery]:
    """Every ``ambiguous`` ledger row (oldest first), with what an operator needs to look it up."""
    query = (
        select(
            _d.invoice_id,
            invoices.c.number,
            invoices.c.org_id,
            invoices.c.interval,
            invoices.c.period_key,
            _d.channel,
            _d.external_id,
            _d.updated_at,
        )
        .join(invoices, invoices.c.id == _d.invoice_id)
        .where(_d.status == AMBIGUOUS)
        .order_by(_d.updated_at, _d.invoice_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [AmbiguousDelivery(*r) for r in conn.execute(query)]


def find_invoice(engine: Engine, number: str) -> tuple[int, str, str, str] | None:
    """(invoice id, org id, interval, period key) of the invoice numbered ``number``."""
    query = select(invoices.c.id, invoices.c.org_id, invoices.c.interval, invoices.c.period_key).where(
        invoices.c.number == number
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return tuple(row) if row is not None else None  # type: ignore[return-value]


def resolve_ambiguous(engine: Engine, invoice_id: int, channel: str, *, sent: bool) -> str | None:
    """Settle an ``ambiguous`` row: ``sent`` -> ``succeeded``; else ``failed`` (resent by the next
    run with the same Message-ID). Returns the row's Message-ID; raises ``NotAmbiguous``."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown delivery channel {channel!r}")
    now = utc_now()
    if sent:
        values = {"status": "succeeded", "last_error": None, "delivered_at": now}
    else:
        values = {"status": "failed", "last_error": "resend requested by an operator after checking the mail log"}
    where = (_d.invoice_id == invoice_id, _d.channel == channel)
    with engine.begin() as conn:
        external_id = conn.execute(
            update(invoice_deliveries)
            .where(*where, _d.status == AMBIGUOUS)
            .values(**values, updated_at=now)
            .returning(_d.external_id)
        ).scalar()
        if external_id is None:
            status = conn.execute(select(_d.status).where(*where)).scalar()
            if status != AMBIGUOUS:
                raise NotAmbiguous(f"invoice {invoice_id} {channel}: {status or 'no ledger row'}, not ambiguous")
    return external_id


__all__ = [
    "AmbiguousDelivery",
    "NotAmbiguous",
    "ambiguous_deliveries",
    "delivery_states",
    "finalized_invoice_ids",
    "find_invoice",
    "resolve_ambiguous",
    "undelivered_invoice_attempts",
    "undelivered_invoices",
]
