"""MRR/ARR summary of one calendar month, from subscriptions and the plans' recurring charges.

Definitions (the README's "Reports" section says the same):

* **Committed MRR** of a subscription: the sum of its plan's ``flat`` charges (the recurring
  ones; metered charges and minimum-spend true-ups are usage, not MRR), normalized to a month:
  a monthly plan as is, a weekly plan ``x 52 / 12`` (a yearly one would be ``/ 12``; the catalog
  has monthly and weekly plans only), rounded **once per subscription** half-up to the
  currency's minor unit (``money.quantize_ratio``); totals are sums of those amounts. Taxes and
  discounts are left out.
* MRR **at instant** ``t`` is the state just before ``t``: the subscriptions that started before
  ``t`` and had not ended before it (``starts_at < t <= ends_at``; no end: open), summed per plan
  currency. So a subscription starting on the 1st 00:00 is new in that month, and one ending on
  the 1st 00:00 counts in the previous month's end MRR and churns in the month it ends in.
* **Start MRR** is MRR at the month's first instant (1st, 00:00 UTC); **end MRR** at the next
  month's first instant (so a month's end MRR is the next month's start MRR). Movements
  compare each organization at those two instants: **new** (not active at start, active at end,
  no subscription ever before), **reactivation** (the same, but it had one before), **churn**
  (active at start, not at end: minus its start MRR), **expansion** / **contraction** (active
  at both, MRR up / down). A subscription that starts and ends inside the month moves nothing
  (Lago's and ChartMogul's month-end view).
  ``start + new + reactivation + expansion + contraction + churn == end`` is checked for every
  currency (``ReportInconsistent`` otherwise).
* **ARR** = 12 x end MRR. **Customers**: organizations with an active subscription.
* **Invoiced** revenue of the month (labelled apart from MRR): the lines of the invoices whose
  service period starts in the month (not draft, not void), before tax: ``recurring`` (flat
  lines), ``usage`` (metered lines) and ``minimum spend`` true-ups.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .. import money
from ..catalog import ChargeModel, FlatParams, Plan
from ..catalog.types import MINIMUM_SPEND_CODE
from ..model import BillingInterval

MOVEMENTS: tuple[str, ...] = ("new", "reactivation", "expansion", "contraction", "churn")
TREND_MONTHS = 12
#: Months per plan interval: MRR = recurring amount x numerator / denominator.
_PER_MONTH: dict[BillingInterval, tuple[int, int]] = {BillingInterval.MONTHLY: (1, 1), BillingInterval.WEEKLY: (52, 12)}


class ReportInconsistent(AssertionError):
    """A report's numbers do not add up (a bug, never bad input): nothing is published."""


@dataclass(frozen=True)
class MrrSubscription:
    org_id: str
    plan_code: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None


@dataclass(frozen=True)
class InvoicedLine:
    """One line of an invoice whose service period starts in the month (not draft or void)."""

    org_id: str
    currency: str
    charge_code: str
    metric_code: str | None
    amount: Decimal


def monthly_recurring(plan: Plan) -> Decimal:
    """The plan's committed MRR: its flat charges per month, rounded once (module docstring)."""
    flat = sum(
        (c.params.amount for c in plan.charges if c.model is ChargeModel.FLAT and isinstance(c.params, FlatParams)),
        Decimal(0),
    )
    num, den = _PER_MONTH[plan.interval]
    return money.quantize_ratio(flat * num, den, plan.currency)


def month_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def previous_month(start: dt.datetime) -> dt.datetime:
    return (start - dt.timedelta(days=1)).replace(day=1)


def _active(sub: MrrSubscription, at: dt.datetime) -> bool:
    """Counted at ``at``: started before it, not ended before it (the state just before ``at``)."""
    return sub.starts_at < at and (sub.ends_at is None or at <= sub.ends_at)


def mrr_at(
    subs: Iterable[MrrSubscription], plans: Mapping[str, Plan], at: dt.datetime
) -> dict[str, dict[str, Decimal]]:
    """currency -> organization -> MRR at instant ``at`` (every active organization, 0 included)."""
    out: dict[str, dict[str, Decimal]] = {}
    for s in subs:
        if _active(s, at):
            plan = plans[s.plan_code]
            per = out.setdefault(plan.currency, {})
            per[s.org_id] = per.get(s.org_id, money.quantize(0, plan.currency)) + monthly_recurring(plan)
    return out


@dataclass(frozen=True)
class CurrencyMrr:
    currency: str
    start_mrr: Decimal
    end_mrr: Decimal
    movements: dict[str, Decimal]  # MOVEMENTS -> signed amount (churn and contraction <= 0)
    customers_start: int
    customers_end: int
    customer_moves: dict[str, int]  # new | reactivated | churned
    trend: tuple[tuple[str, Decimal], ...]  # (YYYY-MM, MRR at that month's end), oldest first
    invoiced: dict[str, Decimal]  # recurring | usage | minimum spend

    @property
    def arr(self) -> Decimal:
        return self.end_mrr * 12

    @property
    def net_change(self) -> Decimal:
        return sum(self.movements.values(), Decimal(0))


@dataclass(frozen=True)
class MrrReport:
    month: str  # YYYY-MM
    as_of: dt.date  # the first day of the next month: end MRR is MRR at its first instant
    currencies: tuple[CurrencyMrr, ...]


def movements_between(
    cur: str, start: dict[str, Decimal], end: dict[str, Decimal], seen_before: set[str]
) -> tuple[dict[str, Decimal], dict[str, int]]:
    """(MRR movements, customer counts new | reactivated | churned) between two ``mrr_at`` snapshots."""
    zero = money.quantize(0, cur)
    moves = {m: zero for m in MOVEMENTS}
    people = {"new": 0, "reactivated": 0, "churned": 0}
    for org in sorted(set(start) | set(end)):
        if org not in start:
            kind = "reactivation" if org in seen_before else "new"
            moves[kind] += end[org]
            people["reactivated" if org in seen_before else "new"] += 1
        elif org not in end:
            moves["churn"] -= start[org]
            people["churned"] += 1
        elif end[org] > start[org]:
            moves["expansion"] += end[org] - start[org]
        else:
            moves["contraction"] += end[org] - start[org]
    return moves, people


def _invoiced(cur: str, lines: Iterable[InvoicedLine]) -> dict[str, Decimal]:
    zero = money.quantize(0, cur)
    out = {"recurring": zero, "usage": zero, "minimum spend": zero}
    for line in lines:
        if line.currency != cur:
            continue
        kind = (
            "minimum spend" if line.charge_code == MINIMUM_SPEND_CODE else "usage" if line.metric_code else "recurring"
        )
        out[kind] += line.amount
    return out


def mrr_report(
    subs: Sequence[MrrSubscription], plans: Mapping[str, Plan], lines: Sequence[InvoicedLine], month: dt.date
) -> MrrReport:
    """The MRR summary of the calendar month containing ``month`` (module docstring for every rule)."""
    start, end = month_start(month), next_month(month_start(month))
    missing = sorted({s.plan_code for s in subs} - set(plans))
    if missing:
        raise ValueError(f"subscriptions refer to plans in no stored catalog: {', '.join(missing)}")
    at_start, at_end = mrr_at(subs, plans, start), mrr_at(subs, plans, end)
    seen_before = {s.org_id for s in subs if s.starts_at < start}
    months = [start]
    while len(months) < TREND_MONTHS:
        months.insert(0, previous_month(months[0]))
    trend_points = [(f"{t:%Y-%m}", mrr_at(subs, plans, next_month(t))) for t in months]
    currencies = sorted(set(at_start) | set(at_end) | {line.currency for line in lines})
    out = []
    for cur in currencies:
        s, e = at_start.get(cur, {}), at_end.get(cur, {})
        zero = money.quantize(0, cur)
        moves, people = movements_between(cur, s, e, seen_before)
        start_mrr, end_mrr = sum(s.values(), zero), sum(e.values(), zero)
        if start_mrr + sum(moves.values(), zero) != end_mrr:
            raise ReportInconsistent(f"{cur} MRR {start_mrr} + movements {moves} != {end_mrr}")
        trend = tuple((label, sum(p.get(cur, {}).values(), zero)) for label, p in trend_points)
        if trend[-1][1] != end_mrr:
            raise ReportInconsistent(f"{cur} trend ends at {trend[-1][1]}, end MRR is {end_mrr}")
        out.append(CurrencyMrr(cur, start_mrr, end_mrr, moves, len(s), len(e), people, trend, _invoiced(cur, lines)))
    return MrrReport(f"{start:%Y-%m}", end.date(), tuple(out))
