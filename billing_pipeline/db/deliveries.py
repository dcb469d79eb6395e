"""The delivery ledger (``invoice_deliveries``): one row per invoice x channel.

A row is *claimed* (status ``pending``, ``attempts + 1``, committed) before the channel's
side effect and set ``succeeded`` (with ``external_id`` / ``checksum``) right after it, so a
re-run skips whatever already succeeded. ``skipped`` is final too (e.g. no payment gateway
configured when the invoice was delivered). Claims are optimistic: a claim only wins if the
row still has the attempt count the caller read, so two runs racing on one invoice cannot
both go ahead.

E-mail has one more step (``mark_sending``): the Message-ID is written to ``external_id``
while the row is still ``pending`` right before the SMTP DATA command, which marks the one
window where a crash leaves it unknown whether the server accepted the message.

``failed`` is written only when a run gives up on a channel (``mark_failed``: a permanent error,
or the last of its transient retries; the retries in between keep the row ``pending`` with the
error, ``mark_retrying``), and that transaction opens the row's dead letter
(``db.delivery_dead_letters``, kind ``invoice_delivery``). The sensor never takes a ``failed``
row; an operator's run does (unless its letter was dismissed), and so does the next run after
``dead-letters retry`` resets it to ``pending``.

``ambiguous`` (e-mail only) is that unknown made explicit (``mark_ambiguous``): the message may
have been delivered. No claim takes such a row unless the caller explicitly resends
(``claim(..., resend_ambiguous=True)``), so no run, sensor or re-materialization sends it
again; an operator settles it (``db.delivery_views.resolve_ambiguous``).

This module holds the rows and their writes; the read views (what is left to deliver, a
period's invoice ids, per-period states, ambiguous e-mails) are in ``db.delivery_views``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Integer, bindparam, insert, literal_column, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db import delivery_dead_letters as letters
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import invoice_deliveries
from billing_pipeline.db.types import UTCDateTime

CHANNELS = ("pdf", "s3", "stripe", "email")
FINAL_STATUSES = ("succeeded", "skipped")
AMBIGUOUS = "ambiguous"  # may have been delivered: left alone until an operator resolves it
STATUSES = ("pending", "succeeded", "failed", "skipped", AMBIGUOUS)


@dataclass(frozen=True)
class LedgerRow:
    invoice_id: int
    channel: str
    status: str
    attempts: int
    last_error: str | None
    external_id: str | None
    checksum: str | None
    delivered_at: dt.datetime | None
    dismissed: bool = False  # failed, and an operator dismissed its dead letter: no run takes it again

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


def _row(r) -> LedgerRow:
    return LedgerRow(
        r.invoice_id, r.channel, r.status, r.attempts, r.last_error, r.external_id, r.checksum, r.delivered_at
    )


def get_rows(engine: Engine, invoice_ids: Sequence[int]) -> dict[tuple[int, str], LedgerRow]:
    """(invoice id, channel) -> row, for the given invoices."""
    out: dict[tuple[int, str], LedgerRow] = {}
    ids = list(invoice_ids)
    with engine.connect() as conn:
        for i in range(0, len(ids), 1000):
            query = select(invoice_deliveries).where(invoice_deliveries.c.invoice_id.in_(ids[i : i + 1000]))
            for r in conn.execute(query):
                out[(r.invoice_id, r.channel)] = _row(r)
        failed = [key for key, row in out.items() if row.status == "failed"]
        for key in letters.dismissed_rows(conn, failed) if failed else ():
            out[key] = dataclasses.replace(out[key], dismissed=True)
    return out


class ClaimLost(RuntimeError):
    """Another run claimed the same invoice x channel first."""


@dataclass(frozen=True)
class Finish:
    """A final status to record for one row (see ``mark_succeeded``), possibly deferred so it can
    share a transaction with the next channel's claim."""

    invoice_id: int
    channel: str
    external_id: str | None
    checksum: str | None
    status: str = "succeeded"
    count_attempt: bool = False  # no claim preceded it (a step without side effect): count one here


Bind = Engine | Connection  # a connection kept by the caller saves a pool checkout per write


@contextlib.contextmanager
def _transaction(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        with bind.begin():
            yield bind
    else:
        with bind.begin() as conn:
            yield conn


# The write statements are built once (bound parameters): building and coercing them per call
# cost more CPU than running them.
_t = invoice_deliveries.c
_ROW = (_t.invoice_id == bindparam("w_invoice_id")) & (_t.channel == bindparam("w_channel"))
_CLAIM_UPDATE = {
    resend: update(invoice_deliveries)
    .where(
        _ROW,
        _t.attempts == bindparam("w_seen", type_=Integer()),
        *(
            _t.status != literal_column(f"'{status}'")
            for status in (FINAL_STATUSES if resend else (*FINAL_STATUSES, AMBIGUOUS))
        ),
    )
    .values(
        status="pending",
        attempts=bindparam("w_seen", type_=Integer()) + 1,
        last_error=None,  # the row shows this attempt's outcome, never an older one
        updated_at=bindparam("w_now", type_=UTCDateTime()),
        external_id=bindparam("w_sending"),
    )
    for resend in (False, True)
}
_FINISH = {
    count: update(invoice_deliveries)
    .where(_ROW)
    .values(
        status=bindparam("w_status"),
        last_error=None,
        external_id=bindparam("w_external_id"),
        checksum=bindparam("w_checksum"),
        updated_at=bindparam("w_now", type_=UTCDateTime()),
        delivered_at=bindparam("w_delivered_at", type_=UTCDateTime()),
        attempts=_t.attempts + 1 if count else _t.attempts,
    )
    for count in (False, True)
}
_FAIL = {
    status: update(invoice_deliveries)
    .where(_ROW, _t.status == literal_column("'pending'"))
    .values(
        status=status,
        last_error=bindparam("w_error"),
        updated_at=bindparam("w_now", type_=UTCDateTime()),
        external_id=None,
    )
    .returning(_t.attempts)
    for status in ("failed", "pending")
}


def _claim_insert(dialect: str):
    return (
        dialect_insert(dialect)(invoice_deliveries)
        .values(
            invoice_id=bindparam("w_invoice_id"),
            channel=bindparam("w_channel"),
            status="pending",
            attempts=1,
            last_error=None,
            external_id=bindparam("w_sending"),
            checksum=None,
            updated_at=bindparam("w_now", type_=UTCDateTime()),
            delivered_at=None,
        )
        .on_conflict_do_nothing(index_elements=["invoice_id", "channel"])
        .returning(_t.attempts)  # (rowcount is -1 here under psycopg 3)
    )


_CLAIM_INSERT = {d: _claim_insert(d) for d in ("postgresql", "sqlite")}


def claim(
    bind: Bind,
    invoice_id: int,
    channel: str,
    seen_attempts: int | None,
    *,
    finish: Finish | None = None,
    sending: str | None = None,
    resend_ambiguous: bool = False,
    retrying_failed: bool = False,
) -> int:
    """Mark the row ``pending`` with one more attempt; returns the new attempt count.

    ``seen_attempts`` is what the caller read (None: no row). Raises ``ClaimLost`` when the
    row changed meanwhile, already succeeded or is ``ambiguous`` (unless ``resend_ambiguous``:
    an operator chose to send it again).

    ``finish`` (the previous channel's outcome, whose side effect is done) is written in the
    same transaction and is committed even when the claim is lost. ``sending`` also records
    the e-mail Message-ID marker (``mark_sending``) with the claim: only pass it right before
    the side effect. ``retrying_failed``: the row read was ``failed`` (an operator's run retries
    it), so its open dead letter is closed with the claim.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown delivery channel {channel!r}")
    with _transaction(bind) as conn:
        if finish is not None:
            _mark_succeeded(conn, finish)
        attempts = _claim(conn, invoice_id, channel, seen_attempts, sending, resend_ambiguous)
        if attempts is not None and retrying_failed:
            letters.close(conn, invoice_id, channel)
    if attempts is None:
        if seen_attempts is None:
            raise ClaimLost(f"invoice {invoice_id} {channel}: claimed by another run")
        raise ClaimLost(f"invoice {invoice_id} {channel}: claimed by another run, already delivered or ambiguous")
    return attempts


def _claim(
    conn: Connection,
    invoice_id: int,
    channel: str,
    seen_attempts: int | None,
    sending: str | None,
    resend_ambiguous: bool,
) -> int | None:
    params = {"w_invoice_id": invoice_id, "w_channel": channel, "w_now": utc_now(), "w_sending": sending}
    if seen_attempts is None:
        # One statement: a row that appeared meanwhile (another run) makes the insert a no-op.
        inserted = conn.execute(_CLAIM_INSERT[conn.dialect.name], params).first()
        return 1 if inserted is not None else None
    changed = conn.execute(_CLAIM_UPDATE[resend_ambiguous], {**params, "w_seen": seen_attempts}).rowcount
    return seen_attempts + 1 if changed == 1 else None


def mark_sending(bind: Bind, invoice_id: int, channel: str, external_id: str) -> None:
    """Record what is about to be sent (still ``pending``): the ambiguous-window marker."""
    with _transaction(bind) as conn:
        conn.execute(
            update(invoice_deliveries)
            .where(invoice_deliveries.c.invoice_id == invoice_id, invoice_deliveries.c.channel == channel)
            .values(external_id=external_id, updated_at=utc_now())
        )


def mark_succeeded(
    bind: Bind,
    invoice_id: int,
    channel: str,
    *,
    external_id: str | None,
    checksum: str | None,
    status: str = "succeeded",
) -> None:
    """Set the row final (``succeeded`` or ``skipped``); inserts it when missing (operator fixes)."""
    write_finish(bind, Finish(invoice_id, channel, external_id, checksum, status))


def write_finish(bind: Bind, finish: Finish) -> None:
    """Write a (deferred) final status on its own, in one transaction."""
    with _transaction(bind) as conn:
        _mark_succeeded(conn, finish)


def write_finishes(bind: Bind, finishes: Sequence[Finish]) -> None:
    """Write many final statuses in one transaction (e.g. a batch of rendered PDFs)."""
    with _transaction(bind) as conn:
        for finish in finishes:
            _mark_succeeded(conn, finish)


def _mark_succeeded(conn: Connection, f: Finish) -> None:
    if f.status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {f.status!r}")
    now = utc_now()
    delivered_at = now if f.status == "succeeded" else None
    changed = conn.execute(
        _FINISH[f.count_attempt],
        {
            "w_invoice_id": f.invoice_id,
            "w_channel": f.channel,
            "w_status": f.status,
            "w_external_id": f.external_id,
            "w_checksum": f.checksum,
            "w_now": now,
            "w_delivered_at": delivered_at,
        },
    ).rowcount
    if not changed:
        conn.execute(
            insert(invoice_deliveries).values(
                invoice_id=f.invoice_id,
                channel=f.channel,
                attempts=int(f.count_attempt),
                status=f.status,
                last_error=None,
                external_id=f.external_id,
                checksum=f.checksum,
                updated_at=now,
                delivered_at=delivered_at,
            )
        )


def mark_failed(
    bind: Bind,
    invoice_id: int,
    channel: str,
    error: str,
    *,
    finish: Finish | None = None,
) -> None:
    """The run gives up on the claimed row: ``failed``, and its dead letter opened in the same
    transaction (attempts and error). An e-mail that may have been sent is ``mark_ambiguous`` instead."""
    with _transaction(bind) as conn:
        if finish is not None:
            _mark_succeeded(conn, finish)
        attempts = _fail(conn, "failed", invoice_id, channel, error)
        if attempts is not None:
            letters.record(conn, invoice_id, channel, error[:4000], attempts)


def mark_retrying(bind: Bind, invoice_id: int, channel: str, error: str) -> None:
    """A transient failure the run retries after a backoff: the row stays ``pending`` (nothing was
    delivered, no Message-ID) with the error, so a run that dies meanwhile leaves it to the next run."""
    with _transaction(bind) as conn:
        _fail(conn, "pending", invoice_id, channel, error)


def _fail(conn: Connection, status: str, invoice_id: int, channel: str, error: str) -> int | None:
    params = {"w_invoice_id": invoice_id, "w_channel": channel, "w_error": error[:4000], "w_now": utc_now()}
    return conn.execute(_FAIL[status], params).scalar()


def mark_ambiguous(
    bind: Bind,
    invoice_id: int,
    channel: str,
    error: str,
    *,
    external_id: str,
    seen_attempts: int | None = None,
    finish: Finish | None = None,
) -> bool:
    """Set the row ``ambiguous`` with the Message-ID it may have been delivered with.

    With ``seen_attempts`` only a row still ``pending`` at that attempt count changes (a row
    found ``pending`` by a later run: the run that claimed it may have finished meanwhile).
    Returns whether the row changed. ``finish`` is written in the same transaction.
    """
    query = update(invoice_deliveries).where(_t.invoice_id == invoice_id, _t.channel == channel)
    if seen_attempts is not None:
        query = query.where(_t.status == "pending", _t.attempts == seen_attempts)
    values = {"status": AMBIGUOUS, "last_error": error[:4000], "external_id": external_id, "updated_at": utc_now()}
    with _transaction(bind) as conn:
        if finish is not None:
            _mark_succeeded(conn, finish)
        return conn.execute(query.values(**values)).rowcount == 1


__all__ = [
    "AMBIGUOUS",
    "CHANNELS",
    "FINAL_STATUSES",
    "STATUSES",
    "LedgerRow",
    "Finish",
    "ClaimLost",
    "get_rows",
    "claim",
    "mark_sending",
    "mark_succeeded",
    "write_finish",
    "write_finishes",
    "mark_failed",
    "mark_retrying",
    "mark_ambiguous",
]
