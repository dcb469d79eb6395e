"""Validation of one raw usage event, as read from CSV or JSON Lines.

``validate_event`` turns a raw mapping into a ``UsageEvent`` or a ``Rejection`` that says
why it cannot be billed. Raw fields:

* ``org_id``, ``event_id``, ``metric`` — non-empty strings of at most 255 characters
  (JSON integers are accepted and turned into strings);
* ``value`` — a number or numeric string; optional for ``count`` metrics (default 1).
  JSON floats keep their written digits (``0.1`` -> ``Decimal("0.1")``). It must be
  storable exactly (``domain.quantity``: at most 6 decimals, below 10**12);
* ``occurred_at`` — ISO 8601 **with** a UTC offset (``Z`` or ``+02:00``), stored in UTC;
* ``properties`` — optional object, or a JSON string holding one (CSV).

``payload_fingerprint`` hashes what an event says, so a re-sent event (same id, same
fingerprint) is a harmless duplicate and a reused id with a different payload is a
conflict to quarantine.
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
from .quantity import QuantityError, to_micros

MAX_ID_LENGTH = 255

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
    FIELD_TOO_LONG = "field_too_long"


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


def _identifier(raw: Mapping[str, object], name: str) -> str:
    value = raw.get(name)
    if _blank(value):
        raise _Reject(RejectReason.MISSING_FIELD, f"{name} is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Reject(RejectReason.MISSING_FIELD, f"{name} must be a string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise _Reject(
            RejectReason.FIELD_TOO_LONG,
            f"{name} is {len(value)} characters long (max {MAX_ID_LENGTH})",
        )
    return value


def _parse_value(value: object) -> Decimal:
    """Exact ``Decimal`` of a raw event value; ``_Reject`` if it is not a finite number."""
    if isinstance(value, bool):
        raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value must be a number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Reject(RejectReason.NON_FINITE_VALUE, f"value is not finite: {value!r}")
        number = Decimal(repr(value))  # the shortest repr keeps the digits that were written
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise _Reject(RejectReason.NON_FINITE_VALUE, f"value is not finite: {value!r}")
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _NON_FINITE_RE.fullmatch(text):
            raise _Reject(RejectReason.NON_FINITE_VALUE, f"value is not finite: {value!r}")
        if not _NUMBER_RE.fullmatch(text):
            raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value is not a number: {_short(value)}")
        number = Decimal(text)
    else:
        raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value must be a number, got {type(value).__name__}")
    try:
        to_micros(number)
    except QuantityError as exc:
        raise _Reject(RejectReason.NON_NUMERIC_VALUE, f"value cannot be stored exactly: {exc}") from None
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
    occurred_at = parsed.astimezone(dt.UTC)
    if occurred_at > now + max_future:
        raise _Reject(
            RejectReason.FUTURE_TIMESTAMP,
            f"occurred_at {occurred_at.isoformat()} is more than {max_future} after {now.isoformat()}",
        )
    return occurred_at


def _properties(value: object) -> dict[str, Any] | None:
    if _blank(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Reject(RejectReason.INVALID_PROPERTIES, f"properties is not valid JSON: {exc.msg}") from None
    if not isinstance(value, Mapping):
        raise _Reject(
            RejectReason.INVALID_PROPERTIES,
            f"properties must be a JSON object, got {type(value).__name__}",
        )
    if not all(isinstance(key, str) for key in value):
        raise _Reject(RejectReason.INVALID_PROPERTIES, "properties keys must be strings")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _Reject(RejectReason.INVALID_PROPERTIES, f"properties are not plain JSON: {exc}") from None
    return dict(value)


def validate_event(
    raw: Mapping[str, object],
    *,
    known_orgs: Container[str],
    metrics: Mapping[str, Metric],
    now: dt.datetime,
    max_future: dt.timedelta = dt.timedelta(hours=1),
) -> UsageEvent | Rejection:
    """Check one raw event; return it normalized (UTC, ``Decimal``) or why it is rejected.

    Checks run in a fixed order (missing fields, lengths, org, metric, value, timestamp,
    properties) and the first failure is reported.
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
        raw_value = raw.get("value")
        if _blank(raw_value):
            if metric.aggregation is not Aggregation.COUNT:
                raise _Reject(
                    RejectReason.MISSING_FIELD,
                    f"value is missing (required for {metric.aggregation.value} metric {metric_code!r})",
                )
            value = Decimal(1)
        else:
            value = _parse_value(raw_value)
        if value < 0 and not metric.allow_negative:
            raise _Reject(
                RejectReason.NEGATIVE_VALUE,
                f"value {value} is negative; metric {metric_code!r} does not allow it",
            )
        occurred_at = _timestamp(raw["occurred_at"], now, max_future)
        properties = _properties(raw.get("properties"))
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
