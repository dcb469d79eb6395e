"""Billing periods and hours, all in UTC.

A period is ``[start, end)``: start inclusive, end exclusive, both midnight UTC. Monthly
periods start on the 1st; weekly periods start on a Monday (ISO weeks). Because every
boundary is UTC, daylight-saving changes anywhere in the world do not affect them: every
day has 24 hours, October 2026 has 744.

Every function here refuses naive datetimes (``ValueError``); aware ones in another
zone are converted to UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .model import BillingInterval

UTC = dt.UTC
_HOUR = dt.timedelta(hours=1)
_KEY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"  # Dagster's hourly partition keys
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def to_utc(ts: dt.datetime, name: str = "timestamp") -> dt.datetime:
    """``ts`` converted to UTC; ``ValueError`` if it is naive."""
    if not isinstance(ts, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {ts.isoformat()}")
    return ts.astimezone(UTC)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year, month, 1, tzinfo=UTC)


def _next_month_start(start: dt.datetime) -> dt.datetime:
    return _month_start(start.year + start.month // 12, start.month % 12 + 1)


@dataclass(frozen=True)
class BillingPeriod:
    """One billing period ``[start, end)`` in UTC, aligned to its interval."""

    interval: BillingInterval
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", BillingInterval(self.interval))
        start = to_utc(self.start, "period start")
        end = to_utc(self.end, "period end")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        if start != _midnight(start.date()):
            raise ValueError(f"period start must be midnight UTC, got {start.isoformat()}")
        if self.interval is BillingInterval.MONTHLY:
            if start.day != 1:
                raise ValueError(f"a monthly period starts on the 1st, got {start.date()}")
            expected_end = _next_month_start(start)
        else:
            if start.weekday() != 0:
                raise ValueError(f"a weekly period starts on a Monday, got {start.date()}")
            expected_end = start + dt.timedelta(days=7)
        if end != expected_end:
            raise ValueError(
                f"{self.interval.value} period starting {start.date()} must end at "
                f"{expected_end.isoformat()}, got {end.isoformat()}"
            )

    @property
    def hours(self) -> int:
        """Number of whole hours in the period (744 for October)."""
        return int((self.end - self.start) // _HOUR)

    @property
    def key(self) -> str:
        """Partition key: the start date, ``"2026-10-01"`` or the Monday ``"2026-10-05"``."""
        return self.start.date().isoformat()

    @property
    def label(self) -> str:
        """Human label: ``"October 2026"`` or ``"Week of 2026-10-05"``."""
        if self.interval is BillingInterval.MONTHLY:
            return f"{_MONTH_NAMES[self.start.month - 1]} {self.start.year}"
        return f"Week of {self.key}"

    def contains(self, ts: dt.datetime) -> bool:
        """True if ``start <= ts < end``."""
        return self.start <= to_utc(ts) < self.end

    def next(self) -> BillingPeriod:
        """The period that starts when this one ends."""
        return period_containing(self.interval, self.end)

    def previous(self) -> BillingPeriod:
        """The period that ends when this one starts."""
        return period_containing(self.interval, self.start - _HOUR)


def monthly_period(year: int, month: int) -> BillingPeriod:
    """The calendar month ``year-month`` in UTC."""
    start = _month_start(year, month)
    return BillingPeriod(BillingInterval.MONTHLY, start, _next_month_start(start))


def weekly_period(monday: dt.date) -> BillingPeriod:
    """The ISO week starting on ``monday`` (must be a Monday)."""
    if isinstance(monday, dt.datetime):
        raise TypeError("weekly_period takes a date, not a datetime")
    if monday.weekday() != 0:
        raise ValueError(f"a weekly period starts on a Monday; {monday} is a {monday:%A}")
    start = _midnight(monday)
    return BillingPeriod(BillingInterval.WEEKLY, start, start + dt.timedelta(days=7))


def period_containing(interval: BillingInterval | str, ts: dt.datetime) -> BillingPeriod:
    """The period of ``interval`` that contains ``ts``."""
    day = to_utc(ts).date()
    if BillingInterval(interval) is BillingInterval.MONTHLY:
        return monthly_period(day.year, day.month)
    return weekly_period(day - dt.timedelta(days=day.weekday()))


def period_from_key(interval: BillingInterval | str, key: str) -> BillingPeriod:
    """The period whose partition key is ``key`` (``"YYYY-MM-DD"``, its start date).

    A monthly key must be the 1st of a month and a weekly key a Monday; anything else
    raises ``ValueError`` saying what was expected.
    """
    interval = BillingInterval(interval)
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"period key must look like YYYY-MM-DD, got {key!r}")
    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        raise ValueError(f"period key {key!r} is not a valid date") from None
    if interval is BillingInterval.MONTHLY:
        if day.day != 1:
            raise ValueError(f"monthly period key must be the 1st of a month, got {key!r}")
        return monthly_period(day.year, day.month)
    if day.weekday() != 0:
        raise ValueError(f"weekly period key must be a Monday, got {key!r} (a {day:%A})")
    return weekly_period(day)


def previous_period(interval: BillingInterval | str, now: dt.datetime) -> BillingPeriod:
    """The last period that is closed at ``now`` (its ``end <= now``).

    At exactly ``2026-11-01T00:00Z`` that is October 2026.
    """
    return period_containing(interval, now).previous()


def hour_start(ts: dt.datetime) -> dt.datetime:
    """``ts`` in UTC truncated to the hour."""
    return to_utc(ts).replace(minute=0, second=0, microsecond=0)


def hour_key(hour: dt.datetime) -> str:
    """Partition key of the UTC hour holding ``hour``: ``"2026-10-01-13:00"``."""
    return hour_start(hour).strftime(_HOUR_KEY_FORMAT)


def hour_from_key(key: str) -> dt.datetime:
    """``"2026-10-01-13:00"`` -> 2026-10-01 13:00 UTC."""
    return dt.datetime.strptime(key, _HOUR_KEY_FORMAT).replace(tzinfo=UTC)


def parse_hour(text: str) -> dt.datetime:
    """An ISO hour, converted to UTC (``13:00+02:00`` is 11:00 UTC); without an offset it is UTC.

    ``ValueError`` unless it is a valid time at the start of an hour.
    """
    ts = dt.datetime.fromisoformat(text)
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if ts != hour_start(ts):
        raise ValueError(f"{text!r} is not the start of an hour")
    return ts


def consecutive_hours(hours: Iterable[dt.datetime], limit: int) -> list[list[dt.datetime]]:
    """Distinct hours, sorted, in runs of consecutive hours of at most ``limit`` each."""
    runs: list[list[dt.datetime]] = []
    for hour in sorted(set(hours)):
        if runs and hour - runs[-1][-1] == _HOUR and len(runs[-1]) < limit:
            runs[-1].append(hour)
        else:
            runs.append([hour])
    return runs


def hours_between(start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    """Start of every UTC hour that overlaps ``[start, end)``, in order."""
    hour, end = hour_start(start), to_utc(end, "end")
    while hour < end:
        yield hour
        hour += _HOUR


def due_date(issued_at: dt.datetime, terms_days: int) -> dt.datetime:
    """When an invoice issued at ``issued_at`` with net-``terms_days`` terms is due."""
    if isinstance(terms_days, bool) or not isinstance(terms_days, int) or terms_days < 0:
        raise ValueError(f"payment terms must be a non-negative number of days, got {terms_days!r}")
    return to_utc(issued_at, "issued_at") + dt.timedelta(days=terms_days)
