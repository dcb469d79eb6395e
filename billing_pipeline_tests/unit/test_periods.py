"""domain.periods: UTC billing periods, keys, closed-period selection."""

import datetime as dt

import pytest

from billing_pipeline.domain import periods
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import BillingPeriod

UTC = dt.UTC
M, W = BillingInterval.MONTHLY, BillingInterval.WEEKLY


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("year", "month", "hours", "end"),
    [
        (2026, 10, 744, utc(2026, 11, 1)),  # EU DST ends 2026-10-25: no effect in UTC
        (2026, 11, 720, utc(2026, 12, 1)),  # US DST ends 2026-11-01
        (2026, 3, 744, utc(2026, 4, 1)),  # US 2026-03-08 and EU 2026-03-29 DST starts
        (2026, 12, 744, utc(2027, 1, 1)),  # year boundary
        (2027, 2, 672, utc(2027, 3, 1)),
        (2028, 2, 696, utc(2028, 3, 1)),  # leap year
        (2026, 1, 744, utc(2026, 2, 1)),
    ],
)
def test_monthly_period(year, month, hours, end):
    period = periods.monthly_period(year, month)
    assert period.start == utc(year, month, 1)
    assert period.end == end
    assert period.hours == hours
    assert period.key == f"{year}-{month:02d}-01"


@pytest.mark.parametrize(
    ("monday", "end", "key"),
    [
        (dt.date(2026, 10, 5), utc(2026, 10, 12), "2026-10-05"),
        (dt.date(2026, 12, 28), utc(2027, 1, 4), "2026-12-28"),  # crosses the year
        (dt.date(2026, 9, 28), utc(2026, 10, 5), "2026-09-28"),  # crosses the month
        (dt.date(2026, 10, 19), utc(2026, 10, 26), "2026-10-19"),  # EU DST change inside
        (dt.date(2028, 2, 28), utc(2028, 3, 6), "2028-02-28"),  # leap day inside
    ],
)
def test_weekly_period(monday, end, key):
    period = periods.weekly_period(monday)
    assert (period.end, period.key, period.hours) == (end, key, 168)
    assert period.label == f"Week of {key}"


@pytest.mark.parametrize("day", ["2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"])
def test_dst_days_have_24_hours_in_utc(day):
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    hours = list(periods.hours_between(start, start + dt.timedelta(days=1)))
    assert len(hours) == 24
    assert hours[0] == start and hours[-1] == start + dt.timedelta(hours=23)


def test_hours_between_covers_a_month_without_gaps():
    period = periods.monthly_period(2026, 10)
    hours = list(periods.hours_between(period.start, period.end))
    assert len(hours) == period.hours == 744
    assert all(b - a == dt.timedelta(hours=1) for a, b in zip(hours, hours[1:], strict=False))


def test_hours_between_includes_a_partial_first_hour():
    hours = list(periods.hours_between(utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 12)))
    assert hours == [utc(2026, 1, 1, 10), utc(2026, 1, 1, 11)]


@pytest.mark.parametrize(
    ("interval", "key", "label"),
    [
        (M, "2026-10-01", "October 2026"),
        (M, "2028-02-01", "February 2028"),
        (W, "2026-10-05", "Week of 2026-10-05"),
        ("weekly", "2026-12-28", "Week of 2026-12-28"),
    ],
)
def test_period_from_key_round_trips(interval, key, label):
    period = periods.period_from_key(interval, key)
    assert period.key == key
    assert period.label == label


@pytest.mark.parametrize(
    ("interval", "key", "message"),
    [
        (W, "2026-10-06", "weekly period key must be a Monday, got '2026-10-06' \\(a Tuesday\\)"),
        (M, "2026-10-02", "must be the 1st of a month"),
        (M, "2026-10", "YYYY-MM-DD"),
        (M, "20261001", "YYYY-MM-DD"),
        (M, "2026-13-01", "not a valid date"),
        (W, "2027-02-29", "not a valid date"),
    ],
)
def test_period_from_key_rejects_bad_keys(interval, key, message):
    with pytest.raises(ValueError, match=message):
        periods.period_from_key(interval, key)


def test_weekly_period_requires_a_monday():
    with pytest.raises(ValueError, match="Sunday"):
        periods.weekly_period(dt.date(2026, 10, 4))


@pytest.mark.parametrize(
    ("interval", "now", "key"),
    [
        (M, utc(2026, 3, 1), "2026-02-01"),  # exactly at the boundary: Feb just closed
        (M, utc(2026, 2, 28, 23, 59, 59), "2026-01-01"),  # Feb still open
        (M, utc(2026, 1, 31, 12), "2025-12-01"),
        (M, utc(2027, 1, 1), "2026-12-01"),
        (W, utc(2027, 1, 4), "2026-12-28"),  # Monday 00:00 closes the week crossing the year
        (W, utc(2027, 1, 3, 23), "2026-12-21"),
        (W, utc(2026, 10, 7, 9), "2026-09-28"),
        # 2026-03-01 01:30+02:00 is still February in UTC
        (M, dt.datetime(2026, 3, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-01-01"),
    ],
)
def test_previous_period_is_the_last_closed_one(interval, now, key):
    period = periods.previous_period(interval, now)
    assert period.key == key
    assert period.end <= now


def test_next_and_previous_chain():
    jan = periods.monthly_period(2026, 1)
    assert jan.next() == periods.monthly_period(2026, 2)
    assert jan.next().previous() == jan
    assert periods.monthly_period(2026, 12).next().key == "2027-01-01"


def test_contains_is_start_inclusive_end_exclusive():
    period = periods.monthly_period(2026, 10)
    assert period.contains(utc(2026, 10, 1))
    assert period.contains(utc(2026, 10, 31, 23, 59, 59, 999999))
    assert not period.contains(utc(2026, 11, 1))
    assert not period.contains(utc(2026, 9, 30, 23, 59, 59))
    # 2026-11-01 00:30+01:00 is 2026-10-31 23:30Z
    assert period.contains(dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))))


@pytest.mark.parametrize(
    "call",
    [
        lambda: periods.hour_start(dt.datetime(2026, 1, 1, 10, 30)),
        lambda: periods.previous_period(M, dt.datetime(2026, 1, 1)),
        lambda: periods.monthly_period(2026, 1).contains(dt.datetime(2026, 1, 5)),
        lambda: periods.due_date(dt.datetime(2026, 1, 1), 30),
        lambda: list(periods.hours_between(dt.datetime(2026, 1, 1), utc(2026, 1, 2))),
        lambda: BillingPeriod(M, dt.datetime(2026, 1, 1), utc(2026, 2, 1)),
    ],
)
def test_naive_datetimes_are_refused(call):
    with pytest.raises(ValueError, match="naive"):
        call()


@pytest.mark.parametrize(
    ("interval", "start", "end", "message"),
    [
        (M, utc(2026, 1, 2), utc(2026, 2, 2), "starts on the 1st"),
        (M, utc(2026, 1, 1), utc(2026, 1, 31), "must end at"),
        (W, utc(2026, 10, 6), utc(2026, 10, 13), "starts on a Monday"),
        (W, utc(2026, 10, 5, 1), utc(2026, 10, 12, 1), "midnight"),
    ],
)
def test_billing_period_must_be_aligned(interval, start, end, message):
    with pytest.raises(ValueError, match=message):
        BillingPeriod(interval, start, end)


def test_billing_period_normalizes_to_utc():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    period = BillingPeriod(M, dt.datetime(2026, 10, 1, 2, tzinfo=plus2), utc(2026, 11, 1))
    assert period.start == utc(2026, 10, 1) and period.start.tzinfo is UTC
    assert period == periods.monthly_period(2026, 10)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (utc(2026, 10, 25, 1, 59, 59, 999), utc(2026, 10, 25, 1)),
        (dt.datetime(2026, 10, 25, 3, 15, tzinfo=dt.timezone(dt.timedelta(hours=2))), utc(2026, 10, 25, 1)),
        (utc(2026, 10, 25, 0), utc(2026, 10, 25, 0)),
    ],
)
def test_hour_start(ts, expected):
    assert periods.hour_start(ts) == expected


def test_due_date():
    assert periods.due_date(utc(2026, 11, 1, 6), 30) == utc(2026, 12, 1, 6)
    assert periods.due_date(utc(2026, 11, 1), 0) == utc(2026, 11, 1)
    with pytest.raises(ValueError, match="non-negative"):
        periods.due_date(utc(2026, 11, 1), -1)


@pytest.mark.parametrize(
    ("hour", "key"),
    [
        (utc(2026, 10, 1, 13), "2026-10-01-13:00"),
        (dt.datetime(2026, 10, 1, 0, 45, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-09-30-22:00"),
        (utc(2028, 2, 29, 23), "2028-02-29-23:00"),
    ],
)
def test_hour_keys_round_trip(hour, key):
    assert periods.hour_key(hour) == key
    assert periods.hour_from_key(key) == periods.hour_start(hour)
    assert periods.hour_from_key(key).tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-01T13:00+02:00", utc(2026, 10, 1, 11)),
        ("2026-12-31T23:00-05:00", utc(2027, 1, 1, 4)),
        ("2026-10-01T13:00", utc(2026, 10, 1, 13)),
        ("2026-10-01 13:00:00Z", utc(2026, 10, 1, 13)),
    ],
)
def test_parse_hour_converts_to_utc(text, expected):
    assert periods.parse_hour(text) == expected


def test_parse_hour_refuses_a_time_inside_an_hour():
    with pytest.raises(ValueError, match="not the start of an hour"):
        periods.parse_hour("2026-10-01T13:30+00:00")


def test_consecutive_hours_are_grouped_in_runs_of_at_most_limit():
    day = [utc(2026, 10, 1, h) for h in range(6)]
    hours = [day[4], day[0], day[1], day[1], day[2], day[5], utc(2026, 10, 2, 0)]
    assert periods.consecutive_hours(hours, limit=24) == [day[0:3], day[4:6], [utc(2026, 10, 2, 0)]]
    assert periods.consecutive_hours(day, limit=4) == [day[0:4], day[4:6]]
    assert periods.consecutive_hours([], limit=4) == []
