"""Draft invoices: one organization, one plan, one closed period, its usage.

``build_invoice`` prices every charge of the plan in catalog order, adds a
``minimum_spend`` true-up line when the plan's minimum is not reached, then applies
tax once on the subtotal (rounding rule: ``domain.money``). The result is a ``DRAFT``
with no number; numbering happens at finalization with ``format_invoice_number``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal

from . import money
from .aggregation import MetricUsage
from .catalog import MINIMUM_SPEND_CODE, FlatParams, Plan
from .model import BillingInterval, Invoice, InvoiceLine, InvoiceStatus, Organization, OrganizationStatus
from .periods import BillingPeriod, previous_period
from .pricing import PricingError, price_charge

logger = logging.getLogger(__name__)

__all__ = [
    "PricingError",
    "build_invoice",
    "finalization_opens_at",
    "finalization_refusal",
    "format_invoice_number",
    "last_period_to_finalize",
    "minimum_spend_line",
    "not_billable_reason",
    "reconcile_usage",
]


def finalization_opens_at(period: BillingPeriod, grace: dt.timedelta) -> dt.datetime:
    """When ``period``'s drafts may be finalized: its end plus the grace window."""
    if grace < dt.timedelta(0):
        raise ValueError(f"the grace window cannot be negative, got {grace}")
    return period.end + grace


def last_period_to_finalize(interval: BillingInterval, now: dt.datetime, grace: dt.timedelta) -> BillingPeriod:
    """The latest period of ``interval`` whose grace window has closed at ``now``."""
    return previous_period(interval, now - grace)


def finalization_refusal(
    period: BillingPeriod, now: dt.datetime, grace: dt.timedelta, *, within_grace: bool = False
) -> str | None:
    """Why ``period`` cannot be finalized at ``now``; ``None`` when it can.

    A period that has not ended is never finalized. An ended one waits for the grace
    window (late events still change its drafts) unless ``within_grace`` is asked for.
    """
    if now < period.end:
        return (
            f"{period.label} is still open: it ends {period.end:%Y-%m-%d %H:%M} UTC; an open period is never finalized"
        )
    opens = finalization_opens_at(period, grace)
    if now < opens and not within_grace:
        hours = int(grace.total_seconds() // 3600)
        return (
            f"{period.label} is in its {hours} h grace window until {opens:%Y-%m-%d %H:%M} UTC: "
            "drafts are recomputed until then and finalized when it closes"
        )
    return None


def not_billable_reason(org: Organization, interval: BillingInterval) -> str | None:
    """Why ``org`` gets no invoice for a period of ``interval``; ``None`` when it is billed.

    Only active organizations are billed, each on its own billing interval.
    """
    if org.status is not OrganizationStatus.ACTIVE:
        return f"organization is {org.status.value}"
    if org.billing_interval is not interval:
        return f"organization is billed {org.billing_interval.value}"
    return None


def minimum_spend_line(plan: Plan, subtotal: Decimal) -> InvoiceLine | None:
    """The true-up line that brings ``subtotal`` (rounded charge amounts) up to the plan's minimum, if short."""
    if plan.minimum_spend is None:
        return None
    minimum = money.quantize(plan.minimum_spend, plan.currency)
    if subtotal >= minimum:
        return None
    shortfall = minimum - subtotal
    return InvoiceLine(
        charge_code=MINIMUM_SPEND_CODE,
        description=f"Minimum spend true-up (minimum {money.format_amount(minimum, plan.currency)})",
        metric_code=None,
        quantity=Decimal(1),
        unit_price=shortfall,
        amount=shortfall,
    )


def build_invoice(
    org: Organization,
    plan: Plan,
    period: BillingPeriod,
    usage: Mapping[str, MetricUsage],
    *,
    flat_lines: Sequence[InvoiceLine] | None = None,
) -> Invoice:
    """Draft invoice for ``org`` on ``plan`` over ``period``; ``usage`` is keyed by metric code.

    Metrics missing from ``usage`` had no events. ``flat_lines`` (a plan change inside the
    period, ``domain.proration``) replace the plan's flat charges and come first. Raises ``PricingError`` if the plan's
    currency or interval does not match the organization or period, or the tax rate is
    out of range.
    """
    if plan.currency != org.currency:
        raise PricingError(
            f"plan {plan.code!r} is priced in {plan.currency} but organization {org.id!r} is billed in {org.currency}"
        )
    if plan.interval != period.interval:
        raise PricingError(
            f"plan {plan.code!r} is billed {plan.interval.value}, period {period.key} is {period.interval.value}"
        )
    if not Decimal(0) <= org.tax_rate <= Decimal(1):
        raise PricingError(f"organization {org.id!r} has tax rate {org.tax_rate} outside [0, 1]")

    lines: list[InvoiceLine] = list(flat_lines or ())
    billed_usage: dict[str, Decimal] = {}
    for charge in plan.charges:
        if flat_lines is not None and isinstance(charge.params, FlatParams):
            continue
        metric_usage = usage.get(charge.metric_code) if charge.metric_code else None
        lines.append(price_charge(charge, metric_usage, plan.currency, period))
        if charge.metric_code is not None:
            billed_usage[charge.metric_code] = (metric_usage or MetricUsage.zero()).quantity
    ignored = sorted(set(usage) - set(billed_usage))
    if ignored:
        logger.debug("plan %s does not bill metrics %s for org %s", plan.code, ignored, org.id)

    subtotal = sum((line.amount for line in lines), Decimal(0))
    true_up = minimum_spend_line(plan, subtotal)
    if true_up is not None:
        lines.append(true_up)
        subtotal += true_up.amount
    tax = money.quantize(subtotal * org.tax_rate, plan.currency)
    total = subtotal + tax
    if total != sum((line.amount for line in lines), Decimal(0)) + tax:
        raise AssertionError(f"invoice total {total} != sum of lines + tax for org {org.id!r}")

    return Invoice(
        organization_id=org.id,
        period_start=period.start,
        period_end=period.end,
        interval=period.interval,
        currency=plan.currency,
        lines=tuple(lines),
        subtotal=subtotal,
        tax_rate=org.tax_rate,
        tax=tax,
        total=total,
        status=InvoiceStatus.DRAFT,
        usage=billed_usage,
    )


def format_invoice_number(prefix: str, year: int, sequence: int) -> str:
    """``("INV", 2026, 42)`` -> ``"INV-2026-000042"``; the sequence restarts each year."""
    if not prefix or any(ch.isspace() for ch in prefix):
        raise ValueError(f"invoice number prefix must be non-empty without spaces, got {prefix!r}")
    if not 1 <= sequence:
        raise ValueError(f"invoice sequence must be >= 1, got {sequence}")
    return f"{prefix}-{year:04d}-{sequence:06d}"


def reconcile_usage(invoice_usage: Mapping[str, Decimal], recomputed: Mapping[str, Decimal]) -> list[str]:
    """Mismatches between billed and recomputed quantities, one message per metric.

    A metric missing on one side counts as 0 there; ``1.0`` equals ``1``. An empty list
    means the invoice is consistent with the events.
    """
    messages = []
    for code in sorted(set(invoice_usage) | set(recomputed)):
        billed = invoice_usage.get(code, Decimal(0))
        actual = recomputed.get(code, Decimal(0))
        if billed != actual:
            messages.append(
                f"metric {code}: invoice bills {money.format_quantity(billed)}, events give "
                f"{money.format_quantity(actual)} (difference "
                f"{'+' if actual > billed else ''}{money.format_quantity(actual - billed)})"
            )
    return messages
