"""Price one charge for one period's usage: the charge models, exactly.

Semantics follow the Stripe and Lago documentation:

* ``flat`` — the amount, whatever the usage (quantity 1);
* ``per_unit`` — quantity x unit price;
* ``graduated`` — each unit at its own tier's price; a tier's flat fee is added once if
  any unit falls in it, and the first tier's flat fee is charged even at 0 units
  (Stripe: "0 units cost 10 GBP");
* ``volume`` — every unit at the price of the tier the total falls in, plus that
  tier's flat fee; 0 units fall in the first tier;
* ``package`` — free units first, then every started package billed in full:
  ``ceil((quantity - free) / size) x package_price``;
* ``percentage`` — ``max(sum - free_units, 0) x rate + fixed_fee_per_event x events``;
* ``hourly`` — ``monthly_price / hours_per_month x hours used``.

Tiers cover ``(previous up_to, up_to]``. Every amount is computed exactly and rounded
once, per line, by ``domain.money`` (see its docstring for the rule).
"""

from __future__ import annotations

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
    Tier,
    TieredParams,
)
from .model import InvoiceLine, TierLine
from .periods import BillingPeriod

__all__ = ["MetricUsage", "PricingError", "graduated_tiers", "price_charge", "volume_tier"]

_ZERO = Decimal(0)
_ONE = Decimal(1)


class PricingError(ValueError):
    """Usage or inputs that cannot be priced (negative quantity, currency mismatch...)."""


def _tier_line(tiers: tuple[Tier, ...], index: int, quantity: Decimal, amount: Decimal) -> TierLine:
    tier = tiers[index]
    lower = tiers[index - 1].up_to if index else _ZERO
    return TierLine(
        first_unit=(lower or _ZERO) + _ONE,  # display as whole units: 1-5, 6-10, 11+
        last_unit=tier.up_to,
        quantity=quantity,
        unit_price=tier.unit_price,
        flat_fee=tier.flat_fee,
        amount=amount,
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
            lines.append(_tier_line(tiers, index, in_tier, in_tier * tier.unit_price + tier.flat_fee))
        if tier.up_to is None or quantity <= tier.up_to:
            break
        lower = tier.up_to
    return tuple(lines)


def volume_tier(tiers: tuple[Tier, ...], quantity: Decimal) -> TierLine:
    """The one tier a volume charge bills ``quantity`` in, with its exact amount."""
    for index, tier in enumerate(tiers):
        if tier.up_to is None or quantity <= tier.up_to:
            return _tier_line(tiers, index, quantity, quantity * tier.unit_price + tier.flat_fee)
    raise PricingError("volume tiers must end with an unbounded tier")


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
        return _line(charge, quantity, params.unit_price, quantity * params.unit_price, currency)
    if isinstance(params, TieredParams):
        if charge.model is ChargeModel.GRADUATED:
            tier_lines = graduated_tiers(params.tiers, quantity)
        else:
            tier_lines = (volume_tier(params.tiers, quantity),)
        amount = sum((t.amount for t in tier_lines), _ZERO)
        return _line(charge, quantity, None, amount, currency, tiers=tier_lines)
    if isinstance(params, PackageParams):
        billable = max(quantity - params.free_units, _ZERO)
        packages = billable // params.package_size
        if packages * params.package_size < billable:  # a started package is billed in full
            packages += 1
        detail = (
            f"{money.format_quantity(quantity)} units, {money.format_quantity(params.free_units)}"
            f" free, {money.format_quantity(packages)} x {money.format_quantity(params.package_size)}"
        )
        return _line(
            charge,
            packages,
            params.package_price,
            packages * params.package_price,
            currency,
            detail=detail,
        )
    if isinstance(params, PercentageParams):
        taxable = max(quantity - params.free_units, _ZERO)
        fees = params.fixed_fee_per_event * usage.event_count
        detail = f"{money.format_quantity(params.rate * 100)}% of {money.format_quantity(taxable)}"
        if params.fixed_fee_per_event:
            detail += f" + {usage.event_count} x {money.format_unit_price(params.fixed_fee_per_event, currency)}"
        return _line(charge, quantity, None, taxable * params.rate + fees, currency, detail=detail)
    if isinstance(params, HourlyParams):
        with decimal.localcontext(decimal.Context(prec=28)):  # display only; amount is exact
            hourly_price = params.monthly_price / params.hours_per_month
        amount = money.quantize_ratio(params.monthly_price * quantity, params.hours_per_month, currency)
        return _line(charge, quantity, hourly_price, amount, currency)
    raise PricingError(f"charge {charge.code!r}: unsupported model {charge.model}")
