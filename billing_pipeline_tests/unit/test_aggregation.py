"""domain.aggregation: period semantics from raw events and from hourly aggregates."""

import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.domain.aggregation import (
    HourlyAggregate,
    MetricUsage,
    NotCombinable,
    aggregate_events,
    combine_hourly,
    hourly_aggregates,
    hours_to_reaggregate,
)
from billing_pipeline.domain.catalog import Aggregation, Metric
from billing_pipeline.domain.events import UsageEvent
from billing_pipeline.domain.periods import hour_start

from .examples import utc

COUNT = Metric("m", "M", Aggregation.COUNT)
SUM = Metric("m", "M", Aggregation.SUM)
MAX = Metric("m", "M", Aggregation.MAX)
LATEST = Metric("m", "M", Aggregation.LATEST)
UNIQUE = Metric("m", "M", Aggregation.UNIQUE_COUNT, unique_property="user_id")


def event(event_id, value, at, user=None, metric="m"):
    props = None if user is None else {"user_id": user}
    return UsageEvent("org_1", event_id, metric, D(value), props, at)


# Three hours; user "u1" active in two of them, "u2" in two, "u3" once.
EVENTS = [
    event("e1", "5", utc(2026, 10, 1, 0, 10), "u1"),
    event("e2", "7.5", utc(2026, 10, 1, 0, 50), "u2"),
    event("e3", "2", utc(2026, 10, 1, 1, 5), "u1"),
    event("e4", "9", utc(2026, 10, 1, 1, 59, 59), "u3"),
    event("e5", "1.25", utc(2026, 10, 2, 13, 0), "u2"),
]


@pytest.mark.parametrize(
    ("metric", "quantity"),
    [(COUNT, "5"), (SUM, "24.75"), (MAX, "9"), (LATEST, "1.25"), (UNIQUE, "3")],
)
def test_aggregate_events(metric, quantity):
    assert aggregate_events(EVENTS, metric) == MetricUsage(D(quantity), 5)


@pytest.mark.parametrize("metric", [COUNT, SUM, MAX, LATEST, UNIQUE])
def test_no_events_is_zero(metric):
    assert aggregate_events([], metric) == MetricUsage(D(0), 0)


@pytest.mark.parametrize("metric", [COUNT, SUM, MAX, LATEST])
def test_combining_hourly_aggregates_equals_the_reference(metric):
    hourly = hourly_aggregates(EVENTS, metric)
    assert [h.hour for h in hourly] == [utc(2026, 10, 1, 0), utc(2026, 10, 1, 1), utc(2026, 10, 2, 13)]
    assert combine_hourly(hourly, metric) == aggregate_events(EVENTS, metric)


def test_monthly_unique_count_is_not_the_sum_of_hourly_unique_counts():
    by_hour: dict[dt.datetime, list[UsageEvent]] = {}
    for e in EVENTS:
        by_hour.setdefault(hour_start(e.occurred_at), []).append(e)
    hourly_distinct = [aggregate_events(group, UNIQUE).quantity for group in by_hour.values()]
    assert hourly_distinct == [2, 2, 1]
    assert sum(hourly_distinct) == 5
    assert aggregate_events(EVENTS, UNIQUE).quantity == 3


def test_combine_hourly_refuses_unique_count():
    with pytest.raises(NotCombinable, match="distinct"):
        combine_hourly(hourly_aggregates(EVENTS, UNIQUE), UNIQUE)


def test_monthly_max_is_max_of_hourly_max():
    hourly = hourly_aggregates(EVENTS, MAX)
    assert [h.value_max for h in hourly] == [D("7.5"), D(9), D("1.25")]
    assert combine_hourly(hourly, MAX).quantity == max(h.value_max for h in hourly) == D(9)


def test_max_of_negative_values():
    metric = Metric("m", "M", Aggregation.MAX, allow_negative=True)
    events = [event("a", "-3", utc(2026, 1, 1)), event("b", "-1", utc(2026, 1, 1, 5))]
    assert aggregate_events(events, metric).quantity == D(-1)
    assert combine_hourly(hourly_aggregates(events, metric), metric).quantity == D(-1)


def test_latest_ties_on_time_are_broken_by_event_id():
    at = utc(2026, 10, 31, 23, 59, 59)
    events = [event("evt_b", "2", at), event("evt_a", "1", at), event("evt_0", "9", utc(2026, 10, 1))]
    assert aggregate_events(events, LATEST).quantity == D(2)
    assert aggregate_events(list(reversed(events)), LATEST).quantity == D(2)


def test_latest_across_hours_with_tie_in_combined_rows():
    at = utc(2026, 10, 1, 5)
    rows = [
        HourlyAggregate(at, "m", 1, D(1), D(1), D(1), at, "evt_a"),
        HourlyAggregate(at, "m", 1, D(2), D(2), D(2), at, "evt_b"),
        HourlyAggregate(utc(2026, 10, 1, 4), "m", 3, D(30), D(20), D(20), utc(2026, 10, 1, 4, 59), "z"),
    ]
    assert combine_hourly(rows, LATEST) == MetricUsage(D(2), 5)


def test_latest_in_a_later_hour_wins_over_a_larger_id():
    events = [event("zzz", "1", utc(2026, 10, 1, 0)), event("aaa", "2", utc(2026, 10, 1, 1))]
    assert aggregate_events(events, LATEST).quantity == D(2)
    assert combine_hourly(hourly_aggregates(events, LATEST), LATEST).quantity == D(2)


def test_hourly_aggregate_fields():
    (first, *_rest) = hourly_aggregates(EVENTS, SUM)
    assert first == HourlyAggregate(
        hour=utc(2026, 10, 1, 0),
        metric_code="m",
        event_count=2,
        value_sum=D("12.5"),
        value_max=D("7.5"),
        latest_value=D("7.5"),
        latest_at=utc(2026, 10, 1, 0, 50),
        latest_event_id="e2",
    )


def test_combine_ignores_empty_hours():
    empty = HourlyAggregate(utc(2026, 10, 1, 3), "m", 0, D(0), None, None, None, None)
    assert combine_hourly([empty], MAX) == MetricUsage(D(0), 0)
    assert combine_hourly([empty], LATEST) == MetricUsage(D(0), 0)


@pytest.mark.parametrize(
    ("values", "distinct"),
    [
        (["u1", "u1", "u2"], 2),
        ([1, "1"], 1),  # compared by text, like PostgreSQL's ->>
        ([1, 1.0], 2),
        ([None, "u1"], 1),  # null is not counted
        ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], 1),
        ([True, "true"], 1),
    ],
)
def test_unique_count_compares_text(values, distinct):
    events = [event(f"e{i}", 1, utc(2026, 1, 1), v) for i, v in enumerate(values)]
    assert aggregate_events(events, UNIQUE).quantity == distinct


def test_unique_count_skips_events_without_the_property():
    events = [event("e1", 1, utc(2026, 1, 1), "u1"), event("e2", 1, utc(2026, 1, 1))]
    assert aggregate_events(events, UNIQUE) == MetricUsage(D(1), 2)


def test_count_ignores_values():
    events = [event("e1", "5", utc(2026, 1, 1)), event("e2", "0", utc(2026, 1, 1))]
    assert aggregate_events(events, COUNT).quantity == 2


def test_sum_stays_exact():
    events = [event(f"e{i}", "0.1", utc(2026, 1, 1)) for i in range(10)]
    events.append(event("big", "12345678901234567890.000000001", utc(2026, 1, 1)))
    assert aggregate_events(events, SUM).quantity == D("12345678901234567891.000000001")


@pytest.mark.parametrize("call", [aggregate_events, hourly_aggregates])
def test_rows_of_another_metric_are_refused(call):
    with pytest.raises(ValueError, match="'other'"):
        call([event("e1", 1, utc(2026, 1, 1), metric="other")], SUM)


def test_unique_count_needs_its_property_name():
    with pytest.raises(ValueError, match="unique_property"):
        aggregate_events([], Metric("m", "M", Aggregation.UNIQUE_COUNT))


def test_hours_to_reaggregate_picks_late_and_settled_hours():
    now = utc(2026, 10, 3, 12, 30)
    marks = [
        (utc(2025, 12, 31, 23), utc(2026, 10, 3, 9)),  # before the first partition
        (utc(2026, 10, 3, 8), utc(2026, 10, 3, 9)),  # never aggregated, closed > 2 h ago
        (utc(2026, 10, 3, 10), utc(2026, 10, 3, 11)),  # never aggregated, closed < 2 h ago: the schedule's turn
        (utc(2026, 10, 3, 11), utc(2026, 10, 3, 11, 50)),  # aggregated before: late events
        (utc(2026, 10, 3, 12), utc(2026, 10, 3, 12, 10)),  # the current hour is still open
    ]
    due, stamp = hours_to_reaggregate(
        marks, [utc(2026, 10, 3, 11), utc(2026, 10, 3, 12)], first=utc(2026, 1, 1), now=now
    )
    assert due == [utc(2026, 10, 3, 8), utc(2026, 10, 3, 11)]
    assert stamp == utc(2026, 10, 3, 11, 50)
    assert hours_to_reaggregate([], [], first=utc(2026, 1, 1), now=now) == ([], None)


class _CountedHour(dt.datetime):
    """A datetime that counts how often it is hashed (set building and membership)."""

    hashes = 0

    def __hash__(self):
        type(self).hashes += 1
        return super().__hash__()


def test_hours_to_reaggregate_is_linear_in_the_number_of_marks():
    n = 2000
    hours = [utc(2026, 10, 1) + dt.timedelta(hours=i) for i in range(n)]
    marks = [(_CountedHour(*h.timetuple()[:4], tzinfo=dt.UTC), h) for h in hours]
    _CountedHour.hashes = 0
    due, stamp = hours_to_reaggregate(marks, hours, first=hours[0], now=hours[-1] + dt.timedelta(hours=1))
    assert len(due) == n and stamp == hours[-1]
    assert _CountedHour.hashes <= 4 * n  # a set rebuilt per mark would hash n * n times
