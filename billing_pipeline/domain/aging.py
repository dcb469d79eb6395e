"""Receivables by age (pure): what is due, and how long overdue, per currency in minor units."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from billing_pipeline.domain.dunning import Receivable

#: (label, first overdue day, last overdue day or None)
BUCKETS = (("1-30", 1, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))
NOT_DUE = "not due"


def bucket_of(due_at: dt.datetime, now: dt.datetime) -> str:
    """``not due`` until the due instant, then by whole days overdue (day 1 starts at the due instant)."""
    if now < due_at:
        return NOT_DUE
    days = (now - due_at).days + 1
    return next(label for label, low, high in BUCKETS if days >= low and (high is None or days <= high))


def aging(
    invoices: Iterable[Receivable], due: Mapping[int, int], now: dt.datetime
) -> dict[str, dict[str, tuple[int, int]]]:
    """bucket -> currency -> (invoices, minor units due), for invoices with something due."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for inv in invoices:
        amount = due.get(inv.invoice_id, 0)
        if amount <= 0 or inv.due_at is None:
            continue
        per_currency = out.setdefault(bucket_of(inv.due_at, now), {})
        count, total = per_currency.get(inv.currency, (0, 0))
        per_currency[inv.currency] = (count + 1, total + amount)
    return out
