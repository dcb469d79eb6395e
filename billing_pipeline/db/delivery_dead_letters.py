"""Dead letters of the delivery ledger (kind ``invoice_delivery``): one per invoice x channel that failed for good.

A channel row becomes ``failed`` only at the end of a run's attempts (``db.deliveries.mark_failed``),
and that same transaction opens its dead letter (``record``): business key
``invoice:{invoice id}|{channel}`` (the ledger's unique key), payload with the invoice number,
organization, period and channel, the error and the row's attempt count. So a letter is open
exactly while its row is ``failed``:

* ``dead-letters retry`` (``_reset``) sets a row that is still ``failed`` back to ``pending`` (no
  Message-ID, attempts kept): the next delivery run, or the sensor, claims it once with a fresh
  attempt budget, then delivers the invoice's later channels; channels already succeeded are never
  touched again. A row that is no longer ``failed`` is refused;
* ``dead-letters dismiss`` (``_dismiss``) leaves the row ``failed`` for good: no run takes it again
  (``dismissed_rows``; the sensor never takes failed rows at all);
* an operator's delivery run that retries a ``failed`` row closes its open letter with the claim
  (``close``): it is reopened if the row fails again.

Ambiguous e-mails are not dead letters: they may have been delivered, so nothing retries them
automatically; ``billing-pipeline deliveries resolve`` settles them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db import dead_letters
from billing_pipeline.db.schema import invoice_deliveries, invoices

KIND = "invoice_delivery"

_d = invoice_deliveries.c


def business_key(invoice_id: int, channel: str) -> str:
    return f"invoice:{invoice_id}|{channel}"


def record(conn: Connection, invoice_id: int, channel: str, error: str, attempts: int) -> None:
    """Open (or reopen) the letter of one failed row, inside the transaction that set it ``failed``."""
    inv = conn.execute(
        select(invoices.c.number, invoices.c.org_id, invoices.c.interval, invoices.c.period_key).where(
            invoices.c.id == invoice_id
        )
    ).first()
    payload: dict[str, Any] = {"invoice_id": invoice_id, "channel": channel}
    if inv is not None:
        payload |= {"invoice": inv.number, "organization": inv.org_id, "interval": inv.interval}
        payload["period"] = inv.period_key
    dead_letters.record_dead_letter(conn, KIND, business_key(invoice_id, channel), payload, error, attempts)


def close(conn: Connection, invoice_id: int, channel: str) -> None:
    """A run retries the ``failed`` row (claimed in this transaction): its open letter is ``retried``."""
    dead_letters.close_open(conn, KIND, business_key(invoice_id, channel))


def dismissed_rows(conn: Connection, rows: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """The (invoice id, channel) pairs among ``rows`` whose letter an operator dismissed."""
    keys = {business_key(i, c): (i, c) for i, c in rows}
    if not keys:
        return set()
    found = dead_letters.keys_with_status(conn, KIND, list(keys), "dismissed")
    return {keys[k] for k in found}


def _where(payload: Mapping[str, Any]):
    return (_d.invoice_id == int(payload["invoice_id"])) & (_d.channel == payload["channel"])


def _reset(conn: Connection, payload: Mapping[str, Any]) -> None:
    changed = conn.execute(
        update(invoice_deliveries)
        .where(_where(payload), _d.status == "failed")
        .values(
            status="pending",
            external_id=None,
            last_error="reset by an operator (dead-letters retry): the next delivery run sends it",
            updated_at=utc_now(),
        )
    ).rowcount
    if changed != 1:
        status = conn.execute(select(_d.status).where(_where(payload))).scalar()
        what = f"invoice {payload.get('invoice') or payload['invoice_id']} {payload['channel']}"
        raise dead_letters.DeadLetterStateError(
            f"{what} is {status or 'not in the delivery ledger'}, not failed: nothing to retry"
        )


def _dismiss(conn: Connection, payload: Mapping[str, Any]) -> None:
    """The row stays ``failed``; the dismissed letter keeps every run away from it."""


dead_letters.register_kind(KIND, reset=_reset, dismiss=_dismiss)

__all__ = ["KIND", "business_key", "close", "dismissed_rows", "record"]
