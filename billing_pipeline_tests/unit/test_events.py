"""domain.events: validating raw usage events and fingerprinting their payload."""

import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.domain.catalog import Aggregation, Metric
from billing_pipeline.domain.events import (
    JsonNumber,
    Rejection,
    RejectReason,
    UsageEvent,
    payload_fingerprint,
    replay_or_conflict,
    validate_event,
)

from .examples import utc

NOW = utc(2026, 10, 15, 12)
ORGS = frozenset({"org_1", "org_2"})
METRICS = {
    "api_calls": Metric("api_calls", "API calls", Aggregation.COUNT),
    "gb": Metric("gb", "GB", Aggregation.SUM),
    "credits": Metric("credits", "Credits", Aggregation.SUM, allow_negative=True),
}


def raw(**overrides):
    base = {
        "org_id": "org_1",
        "event_id": "evt_1",
        "metric": "gb",
        "value": "1.5",
        "occurred_at": "2026-10-15T10:00:00Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def check(data, **kwargs):
    return validate_event(data, known_orgs=ORGS, metrics=METRICS, now=NOW, **kwargs)


def test_valid_event_is_normalized():
    result = check(raw(occurred_at="2026-10-15T12:30:00+02:00", properties='{"b": 1, "a": "x"}'))
    assert result == UsageEvent(
        org_id="org_1",
        event_id="evt_1",
        metric_code="gb",
        value=D("1.5"),
        properties={"a": "x", "b": 1},
        occurred_at=utc(2026, 10, 15, 10, 30),
    )
    assert result.occurred_at.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", "1.5"),
        (" 2 ", "2"),
        (3, "3"),
        (0.1, "0.1"),
        (1e-6, "0.000001"),
        (2.675, "2.675"),
        (D("4.20"), "4.20"),
        ("1e3", "1E+3"),
        ("-0", "0"),
        ("+7", "7"),
        (".5", "0.5"),
        ("999999999999.999999", "999999999999.999999"),
    ],
)
def test_values_keep_their_written_digits(value, expected):
    result = check(raw(value=value))
    assert isinstance(result, UsageEvent)
    assert str(result.value) == expected


@pytest.mark.parametrize("value", [..., None, "", "  "])
def test_count_metric_value_defaults_to_one(value):
    result = check(raw(metric="api_calls", value=value))
    assert isinstance(result, UsageEvent) and result.value == 1


def test_properties_may_be_a_dict_or_absent():
    assert check(raw(properties={"k": [1, 2]})).properties == {"k": [1, 2]}
    assert check(raw()).properties is None
    assert check(raw(properties="")).properties is None


def test_negative_allowed_when_metric_says_so():
    assert check(raw(metric="credits", value="-5")).value == D(-5)


@pytest.mark.parametrize("fraction", ["9999999", "999999999", "9999999999999999"])
def test_fractions_of_a_second_beyond_the_microsecond_are_cut(fraction):
    """The store's precision is the microsecond (datetime, PostgreSQL timestamptz): nanosecond stamps
    (Go's RFC3339Nano, Java's Instant) are cut toward the earlier instant, never rounded up, so an
    event stays in its second, hour and period."""
    result = check(raw(occurred_at=f"2026-10-15T09:59:59.{fraction}Z"))
    assert result.occurred_at == utc(2026, 10, 15, 9, 59, 59, 999999)


def test_future_tolerance():
    assert isinstance(check(raw(occurred_at="2026-10-15T13:00:00Z")), UsageEvent)
    assert isinstance(check(raw(occurred_at="2026-10-15T20:00:00Z"), max_future=dt.timedelta(hours=8)), UsageEvent)


R = RejectReason
REJECTED = [
    ("org missing", raw(org_id=...), R.MISSING_FIELD, "org_id is missing"),
    ("org blank", raw(org_id=" "), R.MISSING_FIELD, "org_id is missing"),
    ("event id missing", raw(event_id=None), R.MISSING_FIELD, "event_id is missing"),
    ("metric missing", raw(metric=""), R.MISSING_FIELD, "metric is missing"),
    ("time missing", raw(occurred_at=...), R.MISSING_FIELD, "occurred_at is missing"),
    ("value missing for sum", raw(value=...), R.MISSING_FIELD, "value is missing (required for sum"),
    ("id not a string", raw(event_id=["x"]), R.MISSING_FIELD, "event_id must be a string, got list"),
    ("org id too long", raw(org_id="o" * 256), R.FIELD_TOO_LONG, "org_id is 256 characters long"),
    ("event id too long", raw(event_id="e" * 300), R.FIELD_TOO_LONG, "event_id is 300 characters"),
    ("metric too long", raw(metric="m" * 256), R.FIELD_TOO_LONG, "metric is 256"),
    ("unknown org", raw(org_id="org_9"), R.UNKNOWN_ORG, "unknown organization 'org_9'"),
    ("unknown metric", raw(metric="cpu"), R.UNKNOWN_METRIC, "unknown metric 'cpu'"),
    ("text value", raw(value="abc"), R.NON_NUMERIC_VALUE, "value is not a number: 'abc'"),
    ("thousands separator", raw(value="1,000"), R.NON_NUMERIC_VALUE, "not a number"),
    ("underscore", raw(value="1_000"), R.NON_NUMERIC_VALUE, "not a number"),
    ("hex", raw(value="0x10"), R.NON_NUMERIC_VALUE, "not a number"),
    ("bool", raw(value=True), R.NON_NUMERIC_VALUE, "must be a number, got True"),
    ("list", raw(value=[1]), R.NON_NUMERIC_VALUE, "must be a number, got list"),
    ("huge", raw(value="1e40"), R.VALUE_OUT_OF_RANGE, "exceeds the maximum"),
    ("too large", raw(value=10**12), R.VALUE_OUT_OF_RANGE, "exceeds the maximum"),
    ("too large negative", raw(metric="credits", value="-1e12"), R.VALUE_OUT_OF_RANGE, "exceeds the maximum"),
    ("beyond decimal's exponents", raw(value="1e99999999999999999999"), R.VALUE_OUT_OF_RANGE, "out of range"),
    ("seven decimals", raw(value="0.0000001"), R.TOO_PRECISE, "more than 6 decimal places"),
    ("tiny float", raw(value=1e-7), R.TOO_PRECISE, "more than 6 decimal places"),
    # Not rounded by the decimal context (28 digits) nor flushed to zero by its Emin:
    ("32 digits", raw(value="1.0000000000000000000000000000001"), R.TOO_PRECISE, "more than 6 decimal places"),
    ("underflow", raw(value="1e-9999999"), R.TOO_PRECISE, "more than 6 decimal places"),
    ("below decimal's exponents", raw(value="1e-99999999999999999999"), R.TOO_PRECISE, "more than 6 decimal"),
    ("JSON digits", raw(value=JsonNumber("1.00000000000000000001")), R.TOO_PRECISE, "more than 6 decimal places"),
    ("nan text", raw(value="nan"), R.NON_FINITE_VALUE, "not finite"),
    ("NaN text", raw(value="NaN"), R.NON_FINITE_VALUE, "not finite"),
    ("inf text", raw(value="inf"), R.NON_FINITE_VALUE, "not finite"),
    ("Infinity text", raw(value="-Infinity"), R.NON_FINITE_VALUE, "not finite"),
    ("nan float", raw(value=float("nan")), R.NON_FINITE_VALUE, "not finite"),
    ("inf float", raw(value=float("inf")), R.NON_FINITE_VALUE, "not finite"),
    ("nan decimal", raw(value=D("NaN")), R.NON_FINITE_VALUE, "not finite"),
    ("negative", raw(value="-1"), R.NEGATIVE_VALUE, "value -1 is negative"),
    ("negative count", raw(metric="api_calls", value=-2), R.NEGATIVE_VALUE, "negative"),
    ("bad timestamp", raw(occurred_at="yesterday"), R.INVALID_TIMESTAMP, "not an ISO 8601"),
    ("bad date", raw(occurred_at="2026-02-30T00:00:00Z"), R.INVALID_TIMESTAMP, "not an ISO 8601"),
    ("epoch number", raw(occurred_at=1760000000), R.INVALID_TIMESTAMP, "must be an ISO 8601 string"),
    ("year 10000 in UTC", raw(occurred_at="9999-12-31T23:59:59-14:00"), R.INVALID_TIMESTAMP, "out of range"),
    ("year 0 in UTC", raw(occurred_at="0001-01-01T00:00:00+14:00"), R.INVALID_TIMESTAMP, "out of range"),
    ("naive", raw(occurred_at="2026-10-15T10:00:00"), R.NAIVE_TIMESTAMP, "has no timezone"),
    ("date only", raw(occurred_at="2026-10-15"), R.NAIVE_TIMESTAMP, "has no timezone"),
    ("naive datetime", raw(occurred_at=dt.datetime(2026, 10, 15)), R.NAIVE_TIMESTAMP, "no timezone"),
    ("future", raw(occurred_at="2026-10-15T13:00:01Z"), R.FUTURE_TIMESTAMP, "more than 1:00:00"),
    ("future offset", raw(occurred_at="2026-10-15T16:00:00+02:00"), R.FUTURE_TIMESTAMP, "after"),
    ("props bad json", raw(properties="{oops"), R.INVALID_PROPERTIES, "not valid JSON"),
    ("props list", raw(properties="[1, 2]"), R.INVALID_PROPERTIES, "must be a JSON object, got list"),
    ("props number", raw(properties=5), R.INVALID_PROPERTIES, "must be a JSON object, got int"),
    ("props nan", raw(properties={"x": float("nan")}), R.INVALID_PROPERTIES, "not plain JSON"),
    ("props object", raw(properties={"x": object()}), R.INVALID_PROPERTIES, "not plain JSON"),
    ("props int key", raw(properties={1: "x"}), R.INVALID_PROPERTIES, "keys must be strings"),
    ("props 5,000-digit int", raw(properties='{"n": ' + "1" * 5000 + "}"), R.INVALID_PROPERTIES, "not valid JSON"),
    ("props too deep", raw(properties="[" * 100_000), R.INVALID_PROPERTIES, "not valid JSON"),
    ("props too large", raw(properties={"k": "x" * 16_400}), R.PROPERTIES_TOO_LARGE, "16408 bytes of JSON (max 16384)"),
    ("props surrogate", raw(properties={"k": "\udcff"}), R.MALFORMED_LINE, "invalid UTF-8"),
    ("NUL in id", raw(event_id="e\x00"), R.MALFORMED_LINE, "NUL"),
]


@pytest.mark.parametrize(("data", "reason", "detail"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejections(data, reason, detail):
    result = check(data)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert detail in result.detail


def test_every_reject_reason_is_exercised():
    # A conflicting duplicate needs a second event: replay_or_conflict, below.
    assert {c[2] for c in REJECTED} | {R.CONFLICTING_DUPLICATE} == set(RejectReason)


def test_properties_limit_is_a_parameter():
    big = raw(properties={"k": "x" * 100})
    assert check(big, max_properties_bytes=108).properties == {"k": "x" * 100}
    assert check(big, max_properties_bytes=107).reason is R.PROPERTIES_TOO_LARGE


def test_huge_exponent_of_zero_is_zero():
    assert check(raw(value="0e99999999999999999999")).value == 0


def test_replay_or_conflict():
    assert replay_or_conflict("a" * 64, "a" * 64, "org_1", "e1", "appears earlier (line 3)") is None
    conflict = replay_or_conflict("a" * 64, "b" * 64, "org_1", "e1", "appears earlier (line 3)")
    assert conflict == Rejection(
        R.CONFLICTING_DUPLICATE, "event 'e1' of 'org_1' appears earlier (line 3) with a different payload"
    )


def test_json_numbers_keep_their_text_and_act_as_floats():
    number = JsonNumber("2.50")
    assert number == 2.5 and number.text == "2.50"
    assert check(raw(value=number)).value == D("2.50")
    assert check(raw(properties={"n": number})).properties == {"n": 2.5}


def test_first_failure_wins():
    result = check(raw(org_id="nope", metric="cpu", value="abc"))
    assert result.reason is R.UNKNOWN_ORG


def test_integer_ids_from_json_become_strings():
    result = check(raw(event_id=12345))
    assert result.event_id == "12345"


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        validate_event(raw(), known_orgs=ORGS, metrics=METRICS, now=dt.datetime(2026, 10, 15))


def fp(**overrides):
    event = check(raw(**overrides))
    assert isinstance(event, UsageEvent), event
    return payload_fingerprint(event)


@pytest.mark.parametrize(
    "same",
    [
        {"value": "1.50"},
        {"value": 1.5},
        {"value": "15e-1"},
        {"occurred_at": "2026-10-15T12:00:00+02:00"},
        {"occurred_at": "2026-10-15T10:00:00.000000+00:00"},
        {"properties": {"b": 2, "a": 1}},
        {"event_id": "evt_other"},
    ],
)
def test_fingerprint_ignores_representation(same):
    base = fp(properties={"a": 1, "b": 2})
    assert fp(**{"properties": {"a": 1, "b": 2}, **same}) == base


@pytest.mark.parametrize(
    "different",
    [
        {"value": "1.51"},
        {"occurred_at": "2026-10-15T10:00:00.000001Z"},
        {"properties": {"a": 1, "b": 3}},
        {"properties": None},
        {"metric": "credits"},
        {"org_id": "org_2"},
    ],
)
def test_fingerprint_detects_a_changed_payload(different):
    base = fp(properties={"a": 1, "b": 2})
    assert fp(**{"properties": {"a": 1, "b": 2}, **different}) != base


def test_fingerprint_is_sha256_hex():
    value = fp()
    assert len(value) == 64 and int(value, 16) >= 0


def test_zero_values_share_a_fingerprint():
    assert fp(value="0") == fp(value="0.00") == fp(value="-0")
    assert fp(value="10") == fp(value="1E+1")
