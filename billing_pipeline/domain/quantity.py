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
MAX_ABS_VALUE = Decimal(10) ** 12


class QuantityError(ValueError):
    pass


def to_micros(value: Decimal) -> int:
    """Exact ``value * 10**6`` as an int; raises ``QuantityError`` if that loses digits."""
    if not value.is_finite():
        raise QuantityError(f"value {value} is not finite")
    if abs(value) >= MAX_ABS_VALUE:
        raise QuantityError(f"value {value} exceeds the maximum of {MAX_ABS_VALUE}")
    scaled = value.scaleb(QUANTITY_EXPONENT)
    if scaled != scaled.to_integral_value():
        raise QuantityError(f"value {value} has more than {QUANTITY_EXPONENT} decimal places")
    return int(scaled)


def from_micros(micros: int | None) -> Decimal:
    """The exact Decimal for a stored micro-unit integer (``None`` reads as 0)."""
    if not micros:
        return Decimal(0)
    value = Decimal(int(micros)).scaleb(-QUANTITY_EXPONENT)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()
