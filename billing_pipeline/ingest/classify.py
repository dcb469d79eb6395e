"""One line's fields -> an ``AcceptedRow`` or a ``Rejection``: the fast path beside the rules.

``domain.events.validate_event`` is the reference: every rule and reject reason lives
there. ``Classifier.fast`` is a separate, optimized implementation for the common clean
shape (known org and metric, plain decimal value, ``...Z`` timestamp, printable-ASCII
id) using string operations only; it returns ``None`` whenever it is not sure, and the
reference decides. Where it answers it must answer exactly like the reference:
``unit/test_ingest_parsing.py`` checks that on 100,000+ generated lines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from billing_pipeline.db.event_writers import copy_line, ingested_suffix
from billing_pipeline.domain.catalog import Metric
from billing_pipeline.domain.events import (
    DEFAULT_MAX_PROPERTIES_BYTES,
    JsonNumber,
    Rejection,
    UsageEvent,
    canonical_properties,
    payload_fingerprint,
    validate_event,
)
from billing_pipeline.domain.quantity import to_micros

UTC = dt.UTC


class AcceptedRow(NamedTuple):
    """An accepted event in its stored form."""

    org_id: str
    event_id: str
    metric_code: str
    value_micros: str  #: integer text
    properties: str | None  #: canonical JSON (``domain.events.canonical_properties``)
    occurred_at: str  #: ISO UTC with microseconds
    payload_sha256: str
    copy_line: str  #: the row as a line of ``usage_events`` COPY text


_new_row = tuple.__new__  # a NamedTuple without its Python-level __new__ (hot path)

_VALUE_RE = re.compile(r"-?(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,6})?")
_TS_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.([0-9]{1,6}))?(?:Z|\+00:00)"
)
#: Ids the fast path takes: printable ASCII without space or backslash (COPY-safe).
_PLAIN_ID_RE = re.compile(r"[!-\[\]-~]{1,255}")
_ZEROS = "000000"
_PROPS_CACHE_LIMIT = 100_000


def row_from_event(event: UsageEvent, ingested: str) -> AcceptedRow:
    """The stored form of an event the reference accepted."""
    micros = str(to_micros(event.value))
    props = None if event.properties is None else canonical_properties(event.properties)
    occurred = event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    sha = payload_fingerprint(event)
    line = copy_line(event.org_id, event.event_id, event.metric_code, micros, props, occurred, sha, ingested)
    return AcceptedRow(event.org_id, event.event_id, event.metric_code, micros, props, occurred, sha, line)


class Classifier:
    """Classifies lines against one set of organizations, metrics and clock."""

    def __init__(
        self,
        *,
        known_orgs: Collection[str],
        metrics: Mapping[str, Metric],
        now: dt.datetime,
        max_future: dt.timedelta,
        max_properties_bytes: int = DEFAULT_MAX_PROPERTIES_BYTES,
    ) -> None:
        self.known_orgs = known_orgs
        self.metrics = metrics
        self.now = now
        self.max_future = max_future
        self.max_properties_bytes = max_properties_bytes
        self.org_json = {
            org: json.dumps(org, ensure_ascii=False)
            for org in known_orgs
            if isinstance(org, str) and _PLAIN_ID_RE.fullmatch(org)
        }
        self.metric_info = {
            code: (json.dumps(code, ensure_ascii=False), metric.allow_negative)
            for code, metric in metrics.items()
            if _PLAIN_ID_RE.fullmatch(code)
        }
        self.ingested = ingested_suffix(now)
        self.future_limit = (now + max_future).astimezone(UTC).isoformat(timespec="microseconds")
        self._props: dict[str, str | None] = {}
        self._dates: dict[str, bool] = {}

    def classify(self, fields: tuple, obj: Mapping[str, object] | None) -> AcceptedRow | Rejection:
        """The fast path if it answers, else the reference (``obj``: the JSON object, if any)."""
        try:
            row = self.fast(*fields)
        except (TypeError, ValueError):
            row = None
        if row is not None:
            return row
        return self.reference(obj if obj is not None else dict(zip(_FIELDS, fields, strict=False)))

    def reference(self, raw: Mapping[str, object]) -> AcceptedRow | Rejection:
        """``domain.events.validate_event``, its event in the stored form."""
        result = validate_event(
            raw,
            known_orgs=self.known_orgs,
            metrics=self.metrics,
            now=self.now,
            max_future=self.max_future,
            max_properties_bytes=self.max_properties_bytes,
        )
        return result if isinstance(result, Rejection) else row_from_event(result, self.ingested)

    def fast(
        self, org_id: Any, event_id: Any, metric: Any, value: Any, occurred_at: Any, properties: Any
    ) -> AcceptedRow | None:
        """The clean shape with string operations only; ``None``: ask the reference."""
        org_json = self.org_json.get(org_id)
        info = self.metric_info.get(metric)
        if org_json is None or info is None or type(event_id) is not str or type(occurred_at) is not str:
            return None
        value = _fast_value(value, info[1])
        stamp = _TS_RE.fullmatch(occurred_at)
        if value is None or stamp is None or _PLAIN_ID_RE.fullmatch(event_id) is None:
            return None
        date = stamp.group(1)
        ok = self._dates.get(date)
        if ok is None:
            ok = self._dates[date] = _valid_date(date)
        fraction = stamp.group(2) or ""
        occurred = f"{occurred_at[:19]}.{fraction}{_ZEROS[len(fraction) :]}+00:00"
        if not ok or occurred > self.future_limit:
            return None
        if properties is None or properties == "":
            props = None
        elif (props := self._fast_properties(properties)) is None:
            return None
        micros, text = value
        fingerprint = (
            f'{{"metric":{info[0]},"occurred_at":"{occurred}","org_id":{org_json},'
            f'"properties":{"null" if props is None else props},"value":"{text}"}}'
        )
        try:
            sha = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()
        except UnicodeEncodeError:
            return None
        if props is None:
            props_copy = "\\N"
        elif "\\" in props:
            props_copy = props.replace("\\", "\\\\")
        else:
            props_copy = props
        line = f"{org_id}\t{event_id}\t{metric}\t{micros}\t{props_copy}\t{occurred}{self.ingested}\t{sha}\n"
        return _new_row(AcceptedRow, (org_id, event_id, metric, micros, props, occurred, sha, line))

    def _fast_properties(self, properties: Any) -> str | None:
        """Canonical JSON of non-empty properties, or ``None``: ask the reference."""
        if type(properties) is str:
            cache = self._props
            props = cache.get(properties, False)
            if props is False:
                props = _properties_from_text(properties)
                if len(cache) >= _PROPS_CACHE_LIMIT:
                    cache.clear()
                cache[properties] = props
        elif type(properties) is dict and properties:
            try:
                props = canonical_properties(properties)
            except (TypeError, ValueError):
                return None
        else:
            return None
        if props is not None and len(props) * 4 > self.max_properties_bytes:
            if len(props.encode("utf-8")) > self.max_properties_bytes:
                return None
        return props


_FIELDS = ("org_id", "event_id", "metric", "value", "occurred_at", "properties")


def _fast_value(value: Any, allow_negative: bool) -> tuple[str, str] | None:
    """``(micros text, canonical value text)`` of a plain decimal, or ``None``."""
    kind = type(value)
    if kind is not str:
        if kind is int:
            value = str(value)
        elif kind is JsonNumber:
            value = value.text
        elif kind is float:
            value = repr(value)
        elif kind is Decimal:
            value = str(value)
        else:
            return None
    if _VALUE_RE.fullmatch(value) is None:
        return None
    if "." in value:
        whole, _, fraction = value.partition(".")
        micros = whole + fraction + _ZEROS[len(fraction) :]
        if whole == "0" or whole == "-0":
            micros = str(int(micros))  # no leading zeros: "0.5" -> "500000"
        value = value.rstrip("0").rstrip(".")
    elif value == "0" or value == "-0":
        micros = "0"
    else:
        micros = value + _ZEROS
    if value[0] == "-":
        if value == "-0":
            value = "0"
        elif not allow_negative:
            return None
    return micros, value


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _properties_from_text(text: str) -> str | None:
    if text[0] != "{":
        return None
    try:
        value = json.loads(text)
        if type(value) is not dict:
            return None
        return canonical_properties(value)
    except (ValueError, RecursionError):
        return None
