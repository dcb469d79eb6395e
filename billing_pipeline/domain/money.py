"""Money: currencies, the one rounding rule, parsing and display.

The rounding rule (the only one in the project):

* every invoice line amount is computed exactly with ``Decimal`` and rounded **once**
  to the currency's minor unit with ``ROUND_HALF_UP``;
* ``subtotal`` = sum of the rounded line amounts (no further rounding needed);
* ``tax`` = ``subtotal * tax_rate`` rounded **once** with ``ROUND_HALF_UP``;
* ``total`` = ``subtotal + tax``;
* the parts printed under a line (tier sub-amounts) are the line's rounded amount
  distributed by **largest remainder** (``allocate``): each exact part rounded down to the
  minor unit, then the minor units still missing to reach the line amount go one each to
  the parts with the largest remainders (the earlier part first on a tie), so every part
  prints with the currency's decimals and the parts add up to the line exactly.

Intermediate results (tier amounts, quantities, unit prices) are never rounded. Exact
arithmetic runs under ``EXACT``, a decimal context that raises instead of silently
rounding; the one division in pricing goes through ``quantize_ratio``, which rounds the
exact rational result. Floats are rejected everywhere: ``to_decimal(0.1)`` is a bug.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

#: ISO 4217 minor-unit exponents (number of decimals) of the currencies we accept.
CURRENCY_EXPONENTS: dict[str, int] = {
    **{
        code: 2
        for code in (
            "USD",
            "EUR",
            "GBP",
            "CAD",
            "AUD",
            "NZD",
            "CHF",
            "SEK",
            "NOK",
            "DKK",
            "PLN",
            "CZK",
            "HUF",
            "RON",
            "BGN",
            "INR",
            "BRL",
            "MXN",
            "ZAR",
            "SGD",
            "HKD",
            "CNY",
            "TWD",
            "THB",
            "MYR",
            "PHP",
            "IDR",
            "ILS",
            "TRY",
            "AED",
            "SAR",
            "COP",
            "ARS",
            "PEN",
            "EGP",
            "NGN",
            "KES",
        )
    },
    **{code: 0 for code in ("JPY", "KRW", "VND", "CLP", "ISK", "PYG", "UGX", "XAF", "XOF")},
    **{code: 3 for code in ("KWD", "BHD", "OMR", "JOD", "TND", "IQD", "LYD")},
}

#: Context for exact arithmetic: 100 significant digits, and any rounding raises.
EXACT = decimal.Context(
    prec=100,
    rounding=ROUND_HALF_UP,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)

# Roomy context for quantize/format so large amounts never hit the default 28 digits.
_WIDE = decimal.Context(prec=100, rounding=ROUND_HALF_UP)


class UnknownCurrency(ValueError):
    """A currency code that is not in ``CURRENCY_EXPONENTS``."""


def exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit (``"USD"`` -> 2, ``"JPY"`` -> 0).

    Codes are upper-case ISO 4217; ``"usd"`` is unknown on purpose.
    """
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(
            f"unknown currency {currency!r}: expected an upper-case ISO 4217 code such as 'USD'"
        ) from None


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Exact ``Decimal`` from a ``Decimal``, ``int`` or numeric string.

    Raises ``TypeError`` for floats (they cannot hold 0.1 exactly) and bools, and
    ``ValueError`` for text that is not a finite number.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(
            f"expected Decimal, int or str, got {type(value).__name__} {value!r}: floats cannot represent money exactly"
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            if "_" in value:  # Decimal() accepts "1_000"; a price list should not
                raise decimal.InvalidOperation
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise TypeError(f"expected Decimal, int or str, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def quantize(amount: Decimal | int, currency: str) -> Decimal:
    """Round ``amount`` to ``currency``'s minor unit, half away from zero.

    ``quantize(Decimal("0.005"), "USD") == Decimal("0.01")``; a zero result is never
    negative.
    """
    result = to_decimal(amount).quantize(_quantum(currency), rounding=ROUND_HALF_UP, context=_WIDE)
    return result.copy_abs() if result.is_zero() else result


def quantize_ratio(numerator: Decimal | int, denominator: Decimal | int, currency: str) -> Decimal:
    """``numerator / denominator`` rounded once, exactly, like ``quantize``.

    The quotient is computed as a rational number, so a non-terminating result such
    as ``100 / 730`` is rounded from its true value, not from a 28-digit approximation.
    """
    den = Fraction(to_decimal(denominator))
    if den == 0:
        raise ZeroDivisionError("quantize_ratio: denominator is zero")
    exact = Fraction(to_decimal(numerator)) / den * 10 ** exponent(currency)
    units = int(abs(exact) + Fraction(1, 2))  # half-up on the magnitude
    return from_minor(-units if exact < 0 else units, currency)


def allocate(parts: Sequence[Decimal], currency: str) -> tuple[Decimal, ...]:
    """``parts`` rounded to minor units by largest remainder, adding up to their rounded sum.

    ``allocate([0.0045, 0.0045], "USD") == (0.01, 0.00)``: the line is
    ``quantize(0.009) = 0.01``, both parts floor to 0 with equal remainders, the earlier one
    gets the cent.
    """
    scale = 10 ** exponent(currency)
    exact = [Fraction(to_decimal(p)) * scale for p in parts]
    floors = [math.floor(x) for x in exact]
    total = sum(exact, Fraction(0))
    rounded = int(abs(total) + Fraction(1, 2))  # half-up on the magnitude, like quantize
    missing = (-rounded if total < 0 else rounded) - sum(floors)
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in by_remainder[:missing]:
        floors[i] += 1
    return tuple(from_minor(units, currency) for units in floors)


def to_minor(amount: Decimal | int, currency: str) -> int:
    """Integer count of minor units (cents) after ``quantize``: ``12.345 USD`` -> ``1235``."""
    return int(quantize(amount, currency).scaleb(exponent(currency), context=_WIDE))


def from_minor(units: int, currency: str) -> Decimal:
    """``Decimal`` amount of ``units`` minor units: ``(150, "USD")`` -> ``Decimal("1.50")``."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"minor units must be an int, got {type(units).__name__}")
    exp = exponent(currency)
    return Decimal(units).scaleb(-exp, context=_WIDE).quantize(_quantum(currency), context=_WIDE)


def format_amount(amount: Decimal | int, currency: str) -> str:
    """Display an amount with exactly the currency's decimals: ``"1,234.50 USD"``."""
    return f"{quantize(amount, currency):,.{exponent(currency)}f} {currency}"


def format_rate(rate: Decimal) -> str:
    """A rate as a percentage: ``Decimal("0.20")`` -> ``"20%"``, ``Decimal("0.075")`` -> ``"7.5%"``."""
    return f"{(rate * 100).normalize(_WIDE):f}%"


def revenue_by_currency(amounts: Iterable[tuple[str | None, Decimal | None]]) -> dict[str, Decimal]:
    """(currency, amount) pairs summed per currency, sorted by currency; pairs without either are left out.

    Amounts of different currencies never add up: revenue is reported one total per currency.
    """
    totals: dict[str, Decimal] = {}
    for currency, amount in amounts:
        if currency and amount is not None:
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return dict(sorted(totals.items()))


def format_revenue(totals: dict[str, Decimal]) -> str:
    """``"272.75 EUR, 4,950 JPY, 45.19 USD"`` (in currency order), or ``"none"``."""
    return ", ".join(format_amount(v, c) for c, v in sorted(totals.items())) or "none"


def _plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros (and never ``-0``)."""
    value = to_decimal(value)
    return Decimal(0) if value.is_zero() else value.normalize(_WIDE)


def format_quantity(quantity: Decimal | int) -> str:
    """Display a quantity without exponent or trailing zeros: ``65000`` -> ``"65,000"``."""
    return f"{_plain(quantity):,f}"


def format_unit_price(price: Decimal | int, currency: str) -> str:
    """Display a unit price with at least the currency's decimals, more only if non-zero.

    ``0.0010 USD`` -> ``"0.001 USD"``; ``7 GBP`` -> ``"7.00 GBP"``.
    """
    plain = _plain(price)
    decimals = max(exponent(currency), -plain.as_tuple().exponent)  # type: ignore[operator]
    return f"{plain:,.{decimals}f} {currency}"
