"""Price one charge for one period's usage: the charge models, exactly.

Semantics follow the Stripe, Lago and Kill Bill documentation:

* ``flat`` — the amount, whatever the usage (quantity 1);
* ``per_unit`` — quantity x unit price; with Stripe's ``transform_quantity`` the quantity is
  first divided by ``divide_by`` and rounded ``up`` or ``down`` to a whole number (150
  minutes at 10 USD per hour, rounded up: 3 x 10 = 30 USD); the line shows that quantity;
* ``graduated`` — each unit at its own tier's price; a tier's flat fee is added once if
  any unit falls in it, and the first tier's flat fee is charged even at 0 units
  (Stripe: "0 units cost 10 GBP");
* ``volume`` — every unit at the price of the tier the total falls in, plus that
  tier's flat fee; 0 units fall in the first tier;
* tiered blocks (a tier's ``block_size``, Kill Bill) — the tier's units are billed in blocks
  of ``block_size`` at ``unit_price`` per block, a started block in full: ``graduated`` is
  Kill Bill's ``ALL_TIERS`` (``ceil(units in tier / size)`` blocks per tier), ``volume`` its
  ``TOP_TIER`` (``ceil(quantity / size)`` blocks at the reached tier); the tier line's
  quantity is its blocks;
* ``package`` — free units first, then every started package billed in full:
  ``ceil((quantity - free) / size) x package_price``;
* ``percentage`` — ``max(sum - free_units, 0) x rate + fixed_fee_per_event x events``; with
  Lago's options, over the events in ``(occurred_at, event_id)`` order:

  - the **free period** ends at whichever comes first: ``free_units_per_events`` events, or
    the event whose running total reaches ``free_units_per_total_aggregation``; events in it
    carry no fee at all (neither the rate nor the fixed fee), and the event that reaches
    the free amount pays the fixed fee and the rate on its part above it (Lago's docs: 3
    events or 500 free; 200, 100, 100 are free, the 4th, 50, costs 0.10 + 1.2 % of 50);
  - without a per-transaction bound: ``max(sum - free amount used, 0) x rate + fixed fee x
    charged events``;
  - with ``per_transaction_min_amount`` / ``per_transaction_max_amount``: each charged
    event costs ``value x rate + fixed fee`` clamped to ``[min, max]`` (Lago: 1 % + 0.50,
    min 1, max 5: 20 USD costs 1, 600 USD costs 5); free events cost nothing.

  Lago's code computes the free period in two ways that disagree (its min/max path keeps
  events free while either allowance remains); this follows the documented example, one
  rule for both paths;
* ``hourly`` — ``monthly_price / hours_per_month x hours used``.

Tiers cover ``(previous up_to, up_to]``. Every amount is computed exactly and rounded
once, per line, by ``domain.money`` (see its docstring for the rule); a tiered line's tier
amounts are that rounded amount split by largest remainder (``money.allocate``), so each
prints in the currency's minor unit and they add up to the line.
"""

from __future__ import annotations

import dataclasses
import decimal
from decimal import Decimal

from . import money
from .aggregation import MetricUsage
from .catalog import (
    Charge,
    ChargeModel,
    FlatParams,
    HourlyParams,
    PackageParams,
    PercentageParams,
    PerUnitParams,
    Rounding,
    Tier,
    TieredParams,
)
from .model import InvoiceLine, TierLine
from .periods import BillingPeriod

__all__ = ["MetricUsage", "PricingError", "free_period", "graduated_tiers", "price_charge", "volume_tier"]

_ZERO = Decimal(0)
_ONE = Decimal(1)


class PricingError(ValueError):
    """Usage or inputs that cannot be priced (negative quantity, currency mismatch...)."""


def _ceil_div(units: Decimal, size: Decimal) -> Decimal:
    """Whole blocks of ``size`` needed for ``units`` (>= 0): a started block counts."""
    blocks = units // size
    return blocks + 1 if blocks * size < units else blocks


def _tier_line(tiers: tuple[Tier, ...], index: int, units: Decimal) -> TierLine:
    """One tier's exact share; with a block size its quantity is the blocks billed."""
    tier = tiers[index]
    lower = tiers[index - 1].up_to if index else _ZERO
    quantity = units if tier.block_size is None else _ceil_div(units, tier.block_size)
    return TierLine(
        first_unit=(lower or _ZERO) + _ONE,  # display as whole units: 1-5, 6-10, 11+
        last_unit=tier.up_to,
        quantity=quantity,
        unit_price=tier.unit_price,
        flat_fee=tier.flat_fee,
        amount=quantity * tier.unit_price + tier.flat_fee,
    )


def graduated_tiers(tiers: tuple[Tier, ...], quantity: Decimal) -> tuple[TierLine, ...]:
    """The tiers a graduated charge bills for ``quantity``, with exact amounts.

    Tiers with no units are left out, except the first one (its flat fee is owed even
    at zero units).
    """
    lines = []
    lower = _ZERO
    for index, tier in enumerate(tiers):
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        in_tier = max(upper - lower, _ZERO)
        if in_tier > 0 or index == 0:
            lines.append(_tier_line(tiers, index, in_tier))
        if tier.up_to is None or quantity <= tier.up_to:
            break
        lower = tier.up_to
    return tuple(lines)


def volume_tier(tiers: tuple[Tier, ...], quantity: Decimal) -> TierLine:
    """The one tier a volume charge bills ``quantity`` in, with its exact amount."""
    for index, tier in enumerate(tiers):
        if tier.up_to is None or quantity <= tier.up_to:
            return _tier_line(tiers, index, quantity)
    raise PricingError("volume tiers must end with an unbounded tier")


def _rounded_tiers(lines: tuple[TierLine, ...], currency: str) -> tuple[TierLine, ...]:
    """Tier lines whose amounts are the line's rounded amount split by largest remainder."""
    shares = money.allocate([t.amount for t in lines], currency)
    return tuple(dataclasses.replace(t, amount=share) for t, share in zip(lines, shares, strict=True))


def _line(
    charge: Charge,
    quantity: Decimal,
    unit_price: Decimal | None,
    amount: Decimal,
    currency: str,
    *,
    detail: str = "",
    tiers: tuple[TierLine, ...] = (),
) -> InvoiceLine:
    return InvoiceLine(
        charge_code=charge.code,
        description=f"{charge.description} ({detail})" if detail else charge.description,
        metric_code=charge.metric_code,
        quantity=quantity,
        unit_price=unit_price,
        amount=money.quantize(amount, currency),
        tiers=tiers,
    )


def price_charge(charge: Charge, usage: MetricUsage | None, currency: str, period: BillingPeriod) -> InvoiceLine:
    """The invoice line for ``charge`` given its metric's usage in ``period``.

    ``usage`` ``None`` means no events (quantity 0). The amount is rounded once to
    ``currency``; quantities, unit prices and tier amounts stay exact.
    """
    usage = usage or MetricUsage.zero()
    if usage.quantity < 0 and charge.model is not ChargeModel.FLAT:
        raise PricingError(
            f"charge {charge.code!r} in {period.label}: cannot price a negative quantity ({usage.quantity})"
        )
    with decimal.localcontext(money.EXACT):
        return _price(charge, usage, currency)


def _price(charge: Charge, usage: MetricUsage, currency: str) -> InvoiceLine:
    params = charge.params
    quantity = usage.quantity
    if isinstance(params, FlatParams):
        return _line(charge, _ONE, params.amount, params.amount, currency)
    if isinstance(params, PerUnitParams):
        return _per_unit(charge, params, quantity, currency)
    if isinstance(params, TieredParams):
        return _tiered(charge, params, quantity, currency)
    if isinstance(params, PackageParams):
        return _package(charge, params, quantity, currency)
    if isinstance(params, PercentageParams):
        if params.needs_event_values:
            return _percentage_per_event(charge, params, usage, currency)
        return _percentage(charge, params, usage, currency)
    if isinstance(params, HourlyParams):
        with decimal.localcontext(decimal.Context(prec=28)):  # display only; amount is exact
            hourly_price = params.monthly_price / params.hours_per_month
        amount = money.quantize_ratio(params.monthly_price * quantity, params.hours_per_month, currency)
        return _line(charge, quantity, hourly_price, amount, currency)
    raise PricingError(f"charge {charge.code!r}: unsupported model {charge.model}")


def _per_unit(charge: Charge, params: PerUnitParams, quantity: Decimal, currency: str) -> InvoiceLine:
    transform = params.transform_quantity
    if transform is None:
        return _line(charge, quantity, params.unit_price, quantity * params.unit_price, currency)
    divisor = Decimal(transform.divide_by)
    billed = quantity // divisor
    if transform.round is Rounding.UP and billed * divisor < quantity:
        billed += 1
    detail = f"{money.format_quantity(quantity)} / {transform.divide_by}, rounded {transform.round.value}"
    return _line(charge, billed, params.unit_price, billed * params.unit_price, currency, detail=detail)


def _tiered(charge: Charge, params: TieredParams, quantity: Decimal, currency: str) -> InvoiceLine:
    if charge.model is ChargeModel.GRADUATED:
        exact = graduated_tiers(params.tiers, quantity)
    else:
        exact = (volume_tier(params.tiers, quantity),)
    amount = sum((t.amount for t in exact), _ZERO)
    sizes = list(dict.fromkeys(money.format_quantity(t.block_size) for t in params.tiers if t.block_size))
    detail = f"{money.format_quantity(quantity)} units in blocks of {' / '.join(sizes)}" if sizes else ""
    return _line(charge, quantity, None, amount, currency, detail=detail, tiers=_rounded_tiers(exact, currency))


def _package(charge: Charge, params: PackageParams, quantity: Decimal, currency: str) -> InvoiceLine:
    billable = max(quantity - params.free_units, _ZERO)
    packages = _ceil_div(billable, params.package_size)  # a started package is billed in full
    detail = (
        f"{money.format_quantity(quantity)} units, {money.format_quantity(params.free_units)}"
        f" free, {money.format_quantity(packages)} x {money.format_quantity(params.package_size)}"
    )
    return _line(charge, packages, params.package_price, packages * params.package_price, currency, detail=detail)


def _percentage(charge: Charge, params: PercentageParams, usage: MetricUsage, currency: str) -> InvoiceLine:
    """The older rule: ``max(sum - free_units, 0) x rate + fixed fee x every event``."""
    taxable = max(usage.quantity - params.free_units, _ZERO)
    fees = params.fixed_fee_per_event * usage.event_count
    detail = f"{money.format_quantity(params.rate * 100)}% of {money.format_quantity(taxable)}"
    if params.fixed_fee_per_event:
        detail += f" + {usage.event_count} x {money.format_unit_price(params.fixed_fee_per_event, currency)}"
    return _line(charge, usage.quantity, None, taxable * params.rate + fees, currency, detail=detail)


def _event_values(charge: Charge, usage: MetricUsage) -> tuple[Decimal, ...]:
    if usage.event_count == 0:
        return ()
    values = usage.values
    if values is None:
        raise PricingError(f"charge {charge.code!r} needs each event's value; the usage carries only totals")
    if len(values) != usage.event_count or sum(values, _ZERO) != usage.quantity:
        raise PricingError(
            f"charge {charge.code!r}: the events' values ({len(values)} events, sum "
            f"{money.format_quantity(sum(values, _ZERO))}) disagree with the usage ({usage.event_count} events, "
            f"sum {money.format_quantity(usage.quantity)}): re-aggregate the period's hours"
        )
    return values


def free_period(values: tuple[Decimal, ...], free_events: int, free_amount: Decimal) -> tuple[int, Decimal]:
    """Lago's free units: (events free of every fee, amount free of the rate).

    The free period ends at whichever comes first: ``free_events`` events, or the event
    whose running total reaches ``free_amount`` (that event pays the fixed fee and the
    rate on its part above the free amount). Without either option nothing is free.
    """
    if not free_events and not free_amount:
        return 0, _ZERO
    running = _ZERO
    for index, value in enumerate(values):
        if free_events and index >= free_events:
            return index, running
        if free_amount and running + value >= free_amount:
            return index, free_amount
        running += value
    return len(values), running


def _percentage_per_event(charge: Charge, params: PercentageParams, usage: MetricUsage, currency: str) -> InvoiceLine:
    values = _event_values(charge, usage)
    free_count, free_value = free_period(values, params.free_units_per_events, params.free_units_per_total_aggregation)
    charged = len(values) - free_count
    taxable = max(usage.quantity - free_value, _ZERO)
    fee = params.fixed_fee_per_event
    detail = f"{money.format_quantity(params.rate * 100)}% of {money.format_quantity(taxable)}"
    if fee:
        detail += f" + {charged} x {money.format_unit_price(fee, currency)}"
    low, high = params.per_transaction_min_amount, params.per_transaction_max_amount
    if low is None and high is None:
        amount = taxable * params.rate + fee * charged
    else:
        charged_values = list(values[free_count:])
        if charged_values:  # the event that ends a free amount pays on its part above it
            charged_values[0] = sum(values[: free_count + 1], _ZERO) - free_value
        amount = sum((_clamp(v * params.rate + fee, low, high) for v in charged_values), _ZERO)
        bounds = " - ".join(money.format_amount(b, currency) for b in (low, high) if b is not None)
        detail += f", each event {'at least ' if high is None else 'at most ' if low is None else ''}{bounds}"
    if free_count:
        detail += f"; {free_count} of {len(values)} events free"
    return _line(charge, usage.quantity, None, amount, currency, detail=detail)


def _clamp(amount: Decimal, low: Decimal | None, high: Decimal | None) -> Decimal:
    if low is not None and amount < low:
        return low
    if high is not None and amount > high:
        return high
    return amount
