"""Receivables by age for ``status`` (pure): the AR aging report's buckets (``domain.reports.aging``:
current, 1-30, 31-60, 61-90, 90+ days past the UTC due date), counted per currency in minor units."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from billing_pipeline.domain.dunning import DunnedInvoice
from billing_pipeline.domain.reports.aging import AGING_BUCKETS, aging_bucket, days_past_due

BUCKETS = AGING_BUCKETS


def bucket_of(due_at: dt.datetime, now: dt.datetime) -> str:
    return aging_bucket(days_past_due(due_at.astimezone(dt.UTC).date(), now.astimezone(dt.UTC).date()))


def aging(
    invoices: Iterable[DunnedInvoice], due: Mapping[int, int], now: dt.datetime
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
