"""Validation of one raw usage event, as read from CSV or JSON Lines.

``validate_event`` turns a raw mapping into a ``UsageEvent`` or a ``Rejection`` that says
why it cannot be billed. Raw fields:

* ``org_id``, ``event_id``, ``metric`` — non-empty strings of at most 255 characters
  (JSON integers are accepted and turned into strings);
* ``value`` — a number or numeric string; optional for ``count`` metrics (default 1).
  Read exactly: a JSON number arrives as a ``JsonNumber`` holding its written text,
  a float keeps its shortest repr (``0.1`` -> ``Decimal("0.1")``). It must be storable
  exactly (``domain.quantity``): more than 6 decimals is ``too_precise``, a magnitude of
  10**12 or more ``value_out_of_range``; nothing is ever rounded;
* ``occurred_at`` — ISO 8601 **with** a UTC offset (``Z`` or ``+02:00``), stored in UTC
  (an instant outside years 1..9999 once in UTC is ``invalid_timestamp``); the microsecond
  is the store's precision: digits of a second beyond it are cut (never rounded up, so an
  event keeps its hour), and two stamps that differ only there are the same instant;
* ``properties`` — optional object, or a JSON string holding one (CSV), at most
  ``max_properties_bytes`` of compact JSON (``canonical_properties``).

Text must be storable: no NUL in ids, valid Unicode everywhere (``malformed_line``).

``payload_fingerprint`` hashes what an event says, so a re-sent event (same id, same
fingerprint) is a harmless duplicate (a replay) and a reused id with a different payload
is a conflict to quarantine (``replay_or_conflict``): the payload seen first wins.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .catalog import Aggregation, Metric
from .quantity import QuantityError, ValueOutOfRange, ValueTooPrecise, to_micros

MAX_ID_LENGTH = 255
#: Default limit of an event's properties, as compact UTF-8 JSON (settings: INGEST_MAX_PROPERTIES_BYTES).
DEFAULT_MAX_PROPERTIES_BYTES = 16 * 1024

_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE_RE = re.compile(r"[+-]?(nan|snan|inf|infinity)", re.IGNORECASE)


class RejectReason(str, enum.Enum):
    MISSING_FIELD = "missing_field"
    UNKNOWN_ORG = "unknown_org"
    UNKNOWN_METRIC = "unknown_metric"
    NON_NUMERIC_VALUE = "non_numeric_value"
    NON_FINITE_VALUE = "non_finite_value"
    NEGATIVE_VALUE = "negative_value"
    INVALID_TIMESTAMP = "invalid_timestamp"
    NAIVE_TIMESTAMP = "naive_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    INVALID_PROPERTIES = "invalid_properties"
    PROPERTIES_TOO_LARGE = "properties_too_large"
    FIELD_TOO_LONG = "field_too_long"
    TOO_PRECISE = "too_precise"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    #: The line is not a record (bad quoting, bad JSON), or holds text that cannot be stored.
    MALFORMED_LINE = "malformed_line"
    #: An event id seen before (stored, or earlier in the file) with a different payload.
    CONFLICTING_DUPLICATE = "conflicting_duplicate"


class JsonNumber(float):
    """A JSON number as read from the text (``json.loads(..., parse_float=JsonNumber)``):
    a float wherever the JSON value is used (properties), and its written ``text`` for an
    exact event value (``1.00000000000000000001`` is too precise, not 1.0)."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


@dataclass(frozen=True)
class UsageEvent:
    org_id: str
    event_id: str
    metric_code: str
    value: Decimal
    properties: dict[str, Any] | None
    occurred_at: dt.datetime  # UTC


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str


class _Reject(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _storable(text: str) -> bool:
    """Text a database can hold: no NUL, and valid Unicode (no lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _identifier(raw: Mapping[str, object], name: str) -> str:
    value = raw.get(name)
    if _blank(value):
        raise _Reject(RejectReason.MISSING_FIELD, f"{name} is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        kind = "number" if isinstance(value, float | Decimal) else type(value).__name__
        raise _Reject(RejectReason.MISSING_FIELD, f"{name} must be a string, got {kind}")
    if len(value) > MAX_ID_LENGTH:
        raise _Reject(
            RejectReason.FIELD_TOO_LONG,
            f"{name} is {len(value)} characters long (max {MAX_ID_LENGTH})",
        )
    if not _storable(value):
        raise _Reject(RejectReason.MALFORMED_LINE, f"{name} contains a NUL character or invalid UTF-8")
    return value


def _decimal_text(text: str) -> Decimal:
    """``Decimal(text)`` for text matching ``_NUMBER_RE``, whose exponent may be beyond
    what ``decimal`` represents (``1e99999999999999999999``): too large, too precise or 0."""
    try:
        return Decimal(text)
    except decimal.InvalidOperation:
        mantissa, _, exponent = text.lower().partition("e")
        if Decimal(mantissa).is_zero():
            return Decimal(0)
        if exponent.startswith("-"):
            raise _Reject(RejectReason.TOO_PRECISE, f"value {_short(text)} has more than 6 decimal places") from None
        raise _Reject(RejectReason.VALUE_OUT_OF_RANGE, f"value {_short(text)} is out of range") from None


def _number(value: object) -> Decimal:
    """The exact ``Decimal`` a raw value spells; ``_Reject`` if it is not a finite number."""
    if isinstance(value, bool):
        raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value must be a number, got {value!r}")
    if isinstance(value, JsonNumber):
        value = value.text  # the digits as written, not the nearest float
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Reject(RejectReason.NON_FINITE_VALUE, f"value is not finite: {value!r}")
        return Decimal(repr(value))  # the shortest repr keeps the digits that were written
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Reject(RejectReason.NON_FINITE_VALUE, f"value is not finite: {value!r}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _NON_FINITE_RE.fullmatch(text):
            raise _Reject(RejectReason.NON_FINITE_VALUE, f"value is not finite: {_short(value)}")
        if not _NUMBER_RE.fullmatch(text):
            raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value is not a number: {_short(value)}")
        return _decimal_text(text)
    raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value must be a number, got {type(value).__name__}")


def _parse_value(value: object) -> Decimal:
    """Exact ``Decimal`` of a raw event value, storable in micro-units without rounding."""
    number = _number(value)
    try:
        to_micros(number)
    except ValueTooPrecise as exc:
        raise _Reject(RejectReason.TOO_PRECISE, str(exc)) from None
    except ValueOutOfRange as exc:
        raise _Reject(RejectReason.VALUE_OUT_OF_RANGE, str(exc)) from None
    except QuantityError as exc:  # pragma: no cover - finite numbers only reach here
        raise _Reject(RejectReason.NON_NUMERIC_VALUE, str(exc)) from None
    return Decimal(0) if number.is_zero() else number


def _timestamp(value: object, now: dt.datetime, max_future: dt.timedelta) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Reject(
                RejectReason.INVALID_TIMESTAMP,
                f"occurred_at is not an ISO 8601 timestamp: {_short(value)}",
            ) from None
    else:
        raise _Reject(
            RejectReason.INVALID_TIMESTAMP,
            f"occurred_at must be an ISO 8601 string, got {type(value).__name__}",
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Reject(
            RejectReason.NAIVE_TIMESTAMP,
            f"occurred_at has no timezone: {_short(value)} (add 'Z' or an offset like +00:00)",
        )
    try:
        occurred_at = parsed.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is in year 10000 in UTC
        raise _Reject(
            RejectReason.INVALID_TIMESTAMP, f"occurred_at is out of range in UTC (years 1..9999): {_short(value)}"
        ) from None
    if occurred_at > now + max_future:
        raise _Reject(
            RejectReason.FUTURE_TIMESTAMP,
            f"occurred_at {occurred_at.isoformat()} is more than {max_future} after {now.isoformat()}",
        )
    return occurred_at


def canonical_properties(properties: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys: what is stored, hashed and size-limited."""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _properties(value: object, max_bytes: int) -> dict[str, Any] | None:
    if _blank(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:  # bad JSON, too deep, a 5,000-digit integer
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else _short(str(exc))
            raise _Reject(RejectReason.INVALID_PROPERTIES, f"properties is not valid JSON: {message}") from None
    if not isinstance(value, Mapping):
        raise _Reject(
            RejectReason.INVALID_PROPERTIES,
            f"properties must be a JSON object, got {type(value).__name__}",
        )
    if not all(isinstance(key, str) for key in value):
        raise _Reject(RejectReason.INVALID_PROPERTIES, "properties keys must be strings")
    try:
        text = canonical_properties(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Reject(RejectReason.INVALID_PROPERTIES, f"properties are not plain JSON: {_short(str(exc))}") from None
    if not _storable(text):
        raise _Reject(RejectReason.MALFORMED_LINE, "properties contain invalid UTF-8 (lone surrogates)")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise _Reject(RejectReason.PROPERTIES_TOO_LARGE, f"properties are {size} bytes of JSON (max {max_bytes})")
    return dict(value)


def validate_event(
    raw: Mapping[str, object],
    *,
    known_orgs: Container[str],
    metrics: Mapping[str, Metric],
    now: dt.datetime,
    max_future: dt.timedelta = dt.timedelta(hours=1),
    max_properties_bytes: int = DEFAULT_MAX_PROPERTIES_BYTES,
) -> UsageEvent | Rejection:
    """Check one raw event; return it normalized (UTC, ``Decimal``) or why it is rejected.

    Checks run in a fixed order (missing fields, lengths and text, org, metric, value,
    timestamp, properties) and the first failure is reported. Never raises for any
    raw value: every input is an event or a ``Rejection``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    try:
        for name in ("org_id", "event_id", "metric", "occurred_at"):
            if _blank(raw.get(name)):
                raise _Reject(RejectReason.MISSING_FIELD, f"{name} is missing")
        org_id = _identifier(raw, "org_id")
        event_id = _identifier(raw, "event_id")
        metric_code = _identifier(raw, "metric")
        if org_id not in known_orgs:
            raise _Reject(RejectReason.UNKNOWN_ORG, f"unknown organization {org_id!r}")
        metric = metrics.get(metric_code)
        if metric is None:
            raise _Reject(RejectReason.UNKNOWN_METRIC, f"unknown metric {metric_code!r}")
        value = _value(raw.get("value"), metric, metric_code)
        occurred_at = _timestamp(raw["occurred_at"], now, max_future)
        properties = _properties(raw.get("properties"), max_properties_bytes)
    except _Reject as reject:
        return reject.rejection
    return UsageEvent(
        org_id=org_id,
        event_id=event_id,
        metric_code=metric_code,
        value=value,
        properties=properties,
        occurred_at=occurred_at,
    )


def _value(raw_value: object, metric: Metric, metric_code: str) -> Decimal:
    if _blank(raw_value):
        if metric.aggregation is not Aggregation.COUNT:
            raise _Reject(
                RejectReason.MISSING_FIELD,
                f"value is missing (required for {metric.aggregation.value} metric {metric_code!r})",
            )
        return Decimal(1)
    value = _parse_value(raw_value)
    if value < 0 and not metric.allow_negative:
        raise _Reject(
            RejectReason.NEGATIVE_VALUE,
            f"value {value} is negative; metric {metric_code!r} does not allow it",
        )
    return value


def replay_or_conflict(winner_sha256: str, sha256: str, org_id: str, event_id: str, earlier: str) -> Rejection | None:
    """A repeated ``(org_id, event_id)``: ``None`` if its payload equals the one that won
    (the stored one, else the first in the file), else the ``conflicting_duplicate``
    rejection. ``earlier`` says where the winner is ("line 12", "already imported")."""
    if sha256 == winner_sha256:
        return None
    return Rejection(
        RejectReason.CONFLICTING_DUPLICATE,
        f"event {event_id!r} of {org_id!r} {earlier} with a different payload",
    )


def canonical_value(value: Decimal) -> str:
    """Plain text of a value without exponent or trailing zeros: ``1.50``/``15E-1`` -> ``"1.5"``."""
    if value.is_zero():
        return "0"
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        return f"{value.normalize():f}"


def payload_fingerprint(event: UsageEvent) -> str:
    """SHA-256 hex of the event's canonical payload (everything but ``event_id``).

    Covers org, metric, value (``1.0`` == ``1``), properties (key order ignored) and
    ``occurred_at`` in UTC (``+02:00`` == the same instant in ``Z``).
    """
    payload = {
        "org_id": event.org_id,
        "metric": event.metric_code,
        "value": canonical_value(event.value),
        "properties": event.properties,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
