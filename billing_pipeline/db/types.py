"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which keeps
    lexical order equal to time order so range filters work unchanged. Naive
    values are refused on the way in: every timestamp in this project is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; use an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def rate_from_row(value: object) -> Decimal:
    """A stored NUMERIC rate (a tax rate) as an exact Decimal without trailing zeros:
    ``0.200000`` -> ``Decimal("0.2")``; NULL or zero -> ``Decimal(0)``. SQLite hands back floats
    or strings, PostgreSQL Decimals; ``str`` first keeps a float's shortest repr."""
    return Decimal(str(value)).normalize() if value else Decimal(0)
