"""Field validators for the catalog document: each error names the field path.

Also ``decode_catalog``, the checks on the file itself (size, UTF-8) before any parser
sees it.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from .. import money
from .types import MAX_CATALOG_BYTES, MAX_CODE_LENGTH, MAX_DECIMAL, MAX_DECIMAL_PLACES, MAX_TEXT_LENGTH, CatalogError

_T = TypeVar("_T")

#: Bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the line and
#: paragraph separators: they reorder or break what an invoice or a log line shows.
_FORBIDDEN_FORMAT = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029))


def fail(path: str, message: str) -> CatalogError:
    return CatalogError(f"{path}: {message}")


def decode_catalog(data: bytes, source: str) -> str:
    """The catalog file's text: at most ``MAX_CATALOG_BYTES``, valid UTF-8.

    A problem raises ``CatalogError`` naming ``source`` and, for bad bytes, the byte
    offset, line and column.
    """
    if len(data) > MAX_CATALOG_BYTES:
        raise fail(source, f"file is {len(data):,} bytes; a catalog may be at most {MAX_CATALOG_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise fail(
            source,
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}, column {column}); "
            "save the catalog as UTF-8",
        ) from None


def mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(path, f"must be a mapping, got {type(value).__name__}")
    return value


def items(value: object, path: str, limit: int) -> list[Any]:
    """A list of at most ``limit`` items."""
    if not isinstance(value, list | tuple):
        raise fail(path, f"must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise fail(path, f"has {len(value):,} items; at most {limit:,} are allowed")
    return list(value)


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def check_keys(node: Mapping[str, Any], path: str, required: set[str], optional: set[str]) -> None:
    for key in sorted(required - node.keys()):
        raise fail(join(path, key), "is required")
    for key in sorted(set(node) - required - optional, key=str):
        allowed = ", ".join(sorted(required | optional))
        raise fail(join(path, key), f"unknown field (allowed: {allowed})")


def text(value: object, path: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A non-empty single-line string without control or bidi override characters."""
    if not isinstance(value, str) or not value.strip():
        raise fail(path, f"must be a non-empty string, got {value!r}")
    if len(value) > max_length:
        raise fail(path, f"must be at most {max_length} characters, got {len(value)}")
    for index, char in enumerate(value):
        if char in _FORBIDDEN_FORMAT or (ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0):
            raise fail(path, f"must not contain control or bidi characters, got U+{ord(char):04X} at {index}")
    return value


def code(value: object, path: str) -> str:
    result = text(value, path, max_length=MAX_CODE_LENGTH)
    if any(ch.isspace() for ch in result):
        raise fail(path, f"must not contain whitespace, got {result!r}")
    return result


def number(value: object, path: str, *, minimum: Decimal = Decimal(0), exclusive: bool = False) -> Decimal:
    """A decimal from a string or int, ``>= minimum`` (``>`` if ``exclusive``), in range.

    In range: below ``MAX_DECIMAL`` with at most ``MAX_DECIMAL_PLACES`` decimals.
    """
    if isinstance(value, float):
        raise fail(path, f"must be a string or integer, got float {value!r} — quote decimal values")
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise fail(path, f"must be a string or integer, got {type(value).__name__} {value!r}")
    try:
        result = money.to_decimal(value)
    except (ValueError, decimal.InvalidOperation):
        raise fail(path, f"must be a finite decimal number, got {value!r}") from None
    if abs(result) >= MAX_DECIMAL or decimal_places(result) > MAX_DECIMAL_PLACES:
        raise fail(path, f"out of range: must be below 10^12 with at most {MAX_DECIMAL_PLACES} decimals, got {value!r}")
    if result < minimum or (exclusive and result == minimum):
        raise fail(path, f"must be {'>' if exclusive else '>='} {minimum}, got {value!r}")
    return result


def decimal_places(value: Decimal) -> int:
    """Decimals that matter in ``value``: ``1.50`` has 1, ``1e-3`` has 3 (exact, no context)."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(-(exponent + trailing), 0)


def integer(value: object, path: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, f"must be an integer, got {value!r}")
    if value < minimum or value >= MAX_DECIMAL:
        raise fail(path, f"must be an integer from {minimum} to below 10^12, got {value!r}")
    return value


def amount(value: object, path: str, currency: str) -> Decimal:
    """A non-negative amount with at most the currency's decimals (no silent rounding)."""
    result = number(value, path)
    if money.quantize(result, currency) != result:
        raise fail(path, f"{value!r} has more decimals than {currency} allows ({money.exponent(currency)})")
    return result


def choice(enum_type: type[_T], value: object, path: str) -> _T:
    try:
        return enum_type(value)  # type: ignore[call-arg]
    except ValueError:
        allowed = " | ".join(m.value for m in enum_type)  # type: ignore[attr-defined]
        raise fail(path, f"must be one of {allowed}, got {value!r}") from None


def unique(entries: list[_T], code_of: Callable[[_T], str], path: str, what: str) -> dict[str, _T]:
    result: dict[str, _T] = {}
    for index, entry in enumerate(entries):
        key = code_of(entry)
        if key in result:
            raise fail(f"{path}[{index}].code", f"duplicate {what} code {key!r}")
        result[key] = entry
    return result
