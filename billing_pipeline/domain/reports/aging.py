"""Accounts-receivable aging: what is still owed on an ``as_of`` date, by days past due.

Definitions (the README's "Reports" section says the same):

* **Open receivable**: a ``finalized`` invoice issued before the cutoff (``as_of`` 00:00 UTC)
  whose amount due is above zero. The amount due is ``receivable_amount_due``: total -
  succeeded payments - credit notes (``domain.receivables.amount_due``), counting only the
  payments and credit notes dated before the cutoff, so a re-run for a past week shows what was
  owed then. ``uncollectible`` invoices are owed but written off: totalled apart, in no bucket.
  ``draft``, ``void`` and ``paid`` invoices are never open.
* **Days past due** = ``as_of - due date`` in whole days, the due date being ``due_at``'s UTC
  calendar date. An invoice due on ``as_of`` is 0 days past due.
* **Buckets** (non-overlapping; overdue starts at day 1): ``current`` (0 or fewer days, not yet
  due), ``1-30``, ``31-60``, ``61-90``, ``90+`` (91 days and more).
* Totals are per currency and bucket; currencies are never added together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from .. import money
from ..model import InvoiceStatus
from ..receivables import Payment, amount_due

AGING_BUCKETS: tuple[str, ...] = ("current", "1-30", "31-60", "61-90", "90+")
#: How many invoices the report lists as the oldest (most days past due first).
OLDEST_LISTED = 10


def days_past_due(due: dt.date, as_of: dt.date) -> int:
    """Whole days from the due date to ``as_of``: 0 on the due date, negative before it."""
    return (as_of - due).days


def aging_bucket(days: int) -> str:
    """The bucket of an invoice ``days`` past due: <=0 current, 1-30, 31-60, 61-90, >=91 ``90+``."""
    if days <= 0:
        return "current"
    if days <= 30:
        return "1-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


@dataclass(frozen=True)
class AgingInvoice:
    """One invoice row with its money movements (payments of any status, credit note totals)."""

    invoice_id: int
    number: str
    org_id: str
    org_name: str
    currency: str
    status: InvoiceStatus
    issued_at: dt.datetime
    due_at: dt.datetime
    total: Decimal
    payments: tuple[Payment, ...] = ()
    credit_notes: tuple[tuple[dt.datetime, Decimal], ...] = ()  # (issued_at, total)


def receivable_amount_due(inv: AgingInvoice, cutoff: dt.datetime) -> Decimal:
    """The one amount-due rule (``domain.receivables.amount_due``) over what happened before ``cutoff``."""
    payments = [p for p in inv.payments if p.at is None or p.at < cutoff]
    credits = [total for at, total in inv.credit_notes if at < cutoff]
    return amount_due(inv.total, inv.currency, payments, credits, inv.status)


@dataclass(frozen=True)
class AgedInvoice:
    number: str
    org_id: str
    org_name: str
    currency: str
    due: dt.date
    days_past_due: int
    bucket: str
    total: Decimal
    amount_due: Decimal


@dataclass(frozen=True)
class AgingRow:
    """One organization in one currency: amount due per bucket."""

    org_id: str
    org_name: str
    currency: str
    buckets: dict[str, Decimal]
    invoices: int

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), Decimal(0))


@dataclass(frozen=True)
class CurrencyAging:
    currency: str
    rows: tuple[AgingRow, ...]  # by organization id
    totals: dict[str, Decimal]  # bucket -> amount due
    uncollectible: Decimal
    oldest: tuple[AgedInvoice, ...]

    @property
    def total(self) -> Decimal:
        return sum(self.totals.values(), Decimal(0))

    @property
    def past_due(self) -> Decimal:
        return self.total - self.totals["current"]


@dataclass(frozen=True)
class AgingReport:
    as_of: dt.date
    currencies: tuple[CurrencyAging, ...] = field(default_factory=tuple)  # by currency code

    @property
    def open_invoices(self) -> int:
        return sum(r.invoices for c in self.currencies for r in c.rows)


def _aged(invoices: Iterable[AgingInvoice], as_of: dt.date) -> tuple[list[AgedInvoice], dict[str, Decimal]]:
    cutoff = dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.UTC)
    aged: list[AgedInvoice] = []
    uncollectible: dict[str, Decimal] = {}
    for inv in invoices:
        if inv.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE) or inv.issued_at >= cutoff:
            continue
        due = receivable_amount_due(inv, cutoff)
        if due <= 0:
            continue
        if inv.status is InvoiceStatus.UNCOLLECTIBLE:
            uncollectible[inv.currency] = uncollectible.get(inv.currency, Decimal(0)) + due
            continue
        due_day = inv.due_at.astimezone(dt.UTC).date()
        days = days_past_due(due_day, as_of)
        aged.append(
            AgedInvoice(
                inv.number, inv.org_id, inv.org_name, inv.currency, due_day, days, aging_bucket(days), inv.total, due
            )
        )
    return aged, uncollectible


def ar_aging(invoices: Iterable[AgingInvoice], as_of: dt.date, *, oldest: int = OLDEST_LISTED) -> AgingReport:
    """The aging report of ``invoices`` on ``as_of`` (see the module docstring for every rule)."""
    aged, uncollectible = _aged(invoices, as_of)
    currencies = sorted({a.currency for a in aged} | set(uncollectible))
    out = []
    for cur in currencies:
        mine = [a for a in aged if a.currency == cur]
        zero = money.quantize(0, cur)
        rows: dict[tuple[str, str], dict[str, Decimal]] = {}
        counts: dict[str, int] = {}
        for a in mine:
            per = rows.setdefault((a.org_id, a.org_name), {b: zero for b in AGING_BUCKETS})
            per[a.bucket] += a.amount_due
            counts[a.org_id] = counts.get(a.org_id, 0) + 1
        totals = {b: sum((r[b] for r in rows.values()), zero) for b in AGING_BUCKETS}
        by_age = sorted(mine, key=lambda a: (-a.days_past_due, a.number))
        out.append(
            CurrencyAging(
                cur,
                tuple(AgingRow(o, n, cur, b, counts[o]) for (o, n), b in sorted(rows.items())),
                totals,
                uncollectible.get(cur, zero),
                tuple(by_age[:oldest]),
            )
        )
    return AgingReport(as_of, tuple(out))
