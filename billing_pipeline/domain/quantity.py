"""Usage quantities as exact integers.

Event values are stored as integer micro-units (``value * 10**6``) so that sums and
maxima are exact on every database (SQLite's NUMERIC is a float). A value with more
than six decimal places cannot be stored exactly and is rejected, never rounded.
"""

from __future__ import annotations

from decimal import Decimal

QUANTITY_EXPONENT = 6
QUANTITY_SCALE = 10**QUANTITY_EXPONENT
#: Largest storable magnitude: hourly sums must still fit a signed 64-bit integer.
MAX_ABS_EXPONENT = 12
MAX_ABS_VALUE = Decimal(10) ** MAX_ABS_EXPONENT


class QuantityError(ValueError):
    pass


class ValueTooPrecise(QuantityError):
    """More than six decimal places: storing it would round."""


class ValueOutOfRange(QuantityError):
    """A magnitude of ``MAX_ABS_VALUE`` or more."""


def _short(value: Decimal) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_micros(value: Decimal) -> int:
    """Exact ``value * 10**6`` as an int; ``ValueTooPrecise`` / ``ValueOutOfRange`` if that
    would lose digits. Pure integer work on the digits: no ``decimal`` context, so nothing
    is rounded to its precision and no exponent over- or underflows."""
    if not value.is_finite():
        raise QuantityError(f"value {value} is not finite")
    sign, digits, exponent = value.as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return 0
    exponent += len(digits) - len(significant)  # the trailing zeros dropped
    if exponent + len(significant) - 1 >= MAX_ABS_EXPONENT:  # abs(value) >= 10**12
        raise ValueOutOfRange(f"value {_short(value)} exceeds the maximum of {MAX_ABS_VALUE}")
    if exponent < -QUANTITY_EXPONENT:
        raise ValueTooPrecise(f"value {_short(value)} has more than {QUANTITY_EXPONENT} decimal places")
    micros = int(significant) * 10 ** (exponent + QUANTITY_EXPONENT)
    return -micros if sign else micros


def from_micros(micros: int | None) -> Decimal:
    """The exact Decimal for a stored micro-unit integer (``None`` reads as 0)."""
    if not micros:
        return Decimal(0)
    value = Decimal(int(micros)).scaleb(-QUANTITY_EXPONENT)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()
