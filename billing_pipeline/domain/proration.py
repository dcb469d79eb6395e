"""Subscription changes inside a period: the proration rule, by day (Lago's unit).

The rule (README "Subscription changes and proration"):

* the unit is the **day** (UTC): a change takes effect at midnight UTC of its date, and a
  period of ``D`` days splits into ``d`` days on the old plan (``[period start, change)``)
  and ``D - d`` days on the new plan (``[change, period end)``);
* every **flat** (recurring) charge of a plan is billed ``amount x days / D`` for the days
  that plan was in force, rounded **once** to the currency's minor unit by the money rule
  (``money.quantize_ratio``: exact rational, ``ROUND_HALF_UP``); a plan in force 0 days
  has no line;
* **usage** charges are priced once, over the whole period's usage, on the plan in force
  at the period's end (the new plan): quantities are never split, so a tier or a free
  allowance is never counted twice on one invoice (Lago instead bills the old plan's usage
  when it terminates the old subscription); the new plan's ``minimum_spend`` applies;
* an upgrade (``when="now"``) takes effect on its date; a downgrade is asked for
  ``when="period_end"`` and takes effect at the next period's start, so it is never
  prorated; cancel at period end ends the subscription at the period's end (no
  proration); suspending stops billing from its day: the period's recurring charges are
  prorated to the days before it, like a change to nothing.

A 30-day month with an upgrade on the 10th: 9 days on the old plan, 21 on the new one;
49 USD becomes 49 x 9 / 30 = 14.70 USD, 199 USD becomes 199 x 21 / 30 = 139.30 USD.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from . import money
from .catalog import FlatParams, Plan
from .customers import Subscription
from .invoices import not_billable_reason
from .model import InvoiceLine, Organization, OrganizationStatus
from .periods import BillingPeriod, to_utc

__all__ = [
    "PlanSegment",
    "ProrationError",
    "billing_refusal",
    "change_lines",
    "cut_by_change",
    "days_split",
    "prorated_amount",
    "prorated_flat_lines",
    "segments",
]


class ProrationError(ValueError):
    """A change date that cannot be prorated in a period (not midnight UTC, outside it)."""


@dataclass(frozen=True)
class PlanSegment:
    """``plan`` in force on ``[start, end)``, a part of one period, whole UTC days."""

    plan: Plan
    start: dt.datetime
    end: dt.datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def _period_days(period: BillingPeriod) -> int:
    return (period.end - period.start).days


def days_split(period: BillingPeriod, at: dt.datetime) -> tuple[int, int]:
    """``(days before at, days from at)`` in ``period``; ``at`` is midnight UTC inside it."""
    at = to_utc(at, "change date")
    if at.time() != dt.time(0):
        raise ProrationError(f"a change takes effect at midnight UTC, got {at.isoformat()}")
    if not period.start <= at < period.end:
        bounds = f"{period.start.date()} to {period.end.date()}, exclusive"
        raise ProrationError(f"change date {at.date()} is outside {period.label} ({bounds})")
    before = (at - period.start).days
    return before, _period_days(period) - before


def prorated_amount(amount: Decimal, days: int, period_days: int, currency: str) -> Decimal:
    """``amount x days / period_days`` rounded once to ``currency`` (``0 <= days <= period_days``)."""
    if period_days <= 0 or not 0 <= days <= period_days:
        raise ProrationError(f"cannot prorate {days} day(s) of a {period_days}-day period")
    return money.quantize_ratio(amount * days, period_days, currency)


def segments(period: BillingPeriod, spans: Sequence[tuple[Plan, dt.datetime, dt.datetime | None]]) -> list[PlanSegment]:
    """The parts of ``period`` each plan covers, from subscriptions ``(plan, starts_at, ends_at)``.

    Spans are clipped to the period; they must not overlap and must start and end at
    midnight UTC (``ProrationError`` otherwise). Empty parts are left out.
    """
    parts = []
    for plan, starts_at, ends_at in spans:
        start = max(to_utc(starts_at, "subscription start"), period.start)
        end = period.end if ends_at is None else min(to_utc(ends_at, "subscription end"), period.end)
        if end <= start:
            continue
        for edge in (start, end):
            if edge.time() != dt.time(0):
                raise ProrationError(f"plan {plan.code!r}: a subscription edge must be midnight UTC, got {edge}")
        parts.append(PlanSegment(plan, start, end))
    parts.sort(key=lambda part: part.start)
    for earlier, later in zip(parts, parts[1:], strict=False):
        if later.start < earlier.end:
            raise ProrationError(f"plans {earlier.plan.code!r} and {later.plan.code!r} overlap in {period.label}")
    return parts


def prorated_flat_lines(period: BillingPeriod, parts: Sequence[PlanSegment], currency: str) -> tuple[InvoiceLine, ...]:
    """One line per flat charge per part: ``amount x part days / period days``, rounded once."""
    total_days = _period_days(period)
    lines = []
    for part in parts:
        last_day = part.end - dt.timedelta(days=1)
        span = f"{part.days} of {total_days} days, {part.start:%Y-%m-%d} to {last_day:%Y-%m-%d}"
        for charge in part.plan.charges:
            if not isinstance(charge.params, FlatParams):
                continue
            amount = prorated_amount(charge.params.amount, part.days, total_days, currency)
            lines.append(
                InvoiceLine(
                    charge_code=charge.code,
                    description=f"{charge.description} ({part.plan.name}, {span})",
                    metric_code=None,
                    quantity=Decimal(part.days),
                    unit_price=None,
                    amount=amount,
                )
            )
    return tuple(lines)


def cut_by_change(period: BillingPeriod, subs: Sequence[Subscription]) -> bool:
    """Whether ``subs`` (one organization's, overlapping ``period``, in start order) change plan or stop inside it.

    A subscription that only *starts* inside the period is not a change: its first period
    is billed whole, as before.
    """
    return len(subs) > 1 or bool(subs and subs[-1].ends_at is not None and subs[-1].ends_at < period.end)


def billing_refusal(org: Organization, period: BillingPeriod, subs: Sequence[Subscription]) -> str | None:
    """``invoices.not_billable_reason``, except that a suspended or closed organization still gets
    the period its subscription stopped in (the days before the suspension, prorated)."""
    reason = not_billable_reason(org, period.interval)
    stopped = org.billing_interval is period.interval and cut_by_change(period, subs)
    return None if reason and org.status is not OrganizationStatus.ACTIVE and stopped else reason


def change_lines(
    period: BillingPeriod, subs: Sequence[Subscription], plans: Mapping[str, Plan], currency: str
) -> tuple[InvoiceLine, ...] | None:
    """The prorated flat lines of a period cut by a change (``None`` when it is not cut).

    ``ProrationError`` if a plan of ``subs`` is not in ``plans``.
    """
    if not cut_by_change(period, subs):
        return None
    missing = sorted({s.plan_code for s in subs} - set(plans))
    if missing:
        raise ProrationError(f"plan(s) {', '.join(map(repr, missing))} of {period.label} are not in the catalog")
    parts = segments(period, [(plans[s.plan_code], s.starts_at, s.ends_at) for s in subs])
    return prorated_flat_lines(period, parts, currency)
