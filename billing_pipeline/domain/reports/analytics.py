"""Daily analytics of one UTC calendar day, and weekly BI (seven of them, Sunday to Saturday), per
currency (never added across currencies).

Definitions (the README's "Reports" section says the same):

* **Invoiced revenue**: totals (tax included) of the invoices issued that day that are not void.
* **Collected cash**: ``succeeded`` payments dated that day (``payments.created_at``: when the
  money arrived), whatever the invoice's issue date.
* **New / reactivated / churned customers**: organizations without an active subscription at the
  day's first instant and with one at the next day's (new: never subscribed before; reactivated:
  subscribed before), or the other way round (churned); the MRR report's rules, over a day.
* **Draft-to-paid conversion**: among the invoices issued in the 30 days ending that day (void
  ones left out), the share now ``paid`` (statuses are read when the report runs).
* **Overdue amount**: AR aging's past-due total at the end of the day (as of the next day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .. import money
from ..catalog import Plan
from ..model import InvoiceStatus
from .aging import AgingInvoice, ar_aging
from .mrr import MrrSubscription, movements_between, mrr_at

CONVERSION_DAYS = 30


@dataclass(frozen=True)
class CurrencyDay:
    currency: str
    invoiced: Decimal
    invoices_issued: int
    collected: Decimal
    payments: int
    customers: dict[str, int]  # new | reactivated | churned
    conversion_paid: int
    conversion_issued: int
    overdue: Decimal

    @property
    def conversion(self) -> Decimal | None:
        """Paid / issued over the trailing window, 4 decimals (None when nothing was issued)."""
        if not self.conversion_issued:
            return None
        return (Decimal(self.conversion_paid) / Decimal(self.conversion_issued)).quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class DailyAnalytics:
    day: dt.date
    currencies: tuple[CurrencyDay, ...]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def daily_analytics(
    invoices: Sequence[AgingInvoice], subs: Sequence[MrrSubscription], plans: Mapping[str, Plan], day: dt.date
) -> DailyAnalytics:
    """``invoices``: every issued invoice (any status but draft) with its payments (module docstring)."""
    start, end = _midnight(day), _midnight(day + dt.timedelta(days=1))
    window = start - dt.timedelta(days=CONVERSION_DAYS - 1)
    overdue = {c.currency: c.past_due for c in ar_aging(invoices, end.date()).currencies}
    at_start, at_end = mrr_at(subs, plans, start), mrr_at(subs, plans, end)
    seen_before = {s.org_id for s in subs if s.starts_at < start}
    live = [i for i in invoices if i.status is not InvoiceStatus.VOID]
    currencies = sorted({i.currency for i in invoices} | set(at_start) | set(at_end))
    out = []
    for cur in currencies:
        zero = money.quantize(0, cur)
        mine = [i for i in live if i.currency == cur]
        issued = [i for i in mine if start <= i.issued_at < end]
        paid_today = [p for i in mine for p in i.payments if p.succeeded and p.at is not None and start <= p.at < end]
        recent = [i for i in mine if window <= i.issued_at < end]
        _, people = movements_between(cur, at_start.get(cur, {}), at_end.get(cur, {}), seen_before)
        out.append(CurrencyDay(
            cur, sum((i.total for i in issued), zero), len(issued), sum((p.amount for p in paid_today), zero),
            len(paid_today), people, sum(i.status is InvoiceStatus.PAID for i in recent), len(recent),
            overdue.get(cur, zero),
        ))  # fmt: skip
    return DailyAnalytics(day, tuple(out))


@dataclass(frozen=True)
class WeeklyBI:
    """Seven daily analytics (Sunday to Saturday, UTC) and their totals per currency."""

    first_day: dt.date
    days: tuple[DailyAnalytics, ...]

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({c.currency for d in self.days for c in d.currencies}))

    def series(self, currency: str, measure: str) -> tuple[tuple[str, Decimal | int], ...]:
        """(YYYY-MM-DD, value) for each day: ``measure`` is a ``CurrencyDay`` attribute."""
        zero = money.quantize(0, currency)
        out = []
        for d in self.days:
            c = next((c for c in d.currencies if c.currency == currency), None)
            out.append((d.day.isoformat(), getattr(c, measure) if c else zero))
        return tuple(out)

    def total(self, currency: str, measure: str) -> Decimal:
        return sum((v for _, v in self.series(currency, measure)), money.quantize(0, currency))

    def customers(self, currency: str, kind: str) -> int:
        return sum(c.customers[kind] for d in self.days for c in d.currencies if c.currency == currency)


def weekly_bi(
    invoices: Sequence[AgingInvoice], subs: Sequence[MrrSubscription], plans: Mapping[str, Plan], first_day: dt.date
) -> WeeklyBI:
    """The week of seven UTC days from ``first_day`` (a Sunday for the weekly report)."""
    days = tuple(daily_analytics(invoices, subs, plans, first_day + dt.timedelta(days=i)) for i in range(7))
    return WeeklyBI(first_day, days)
