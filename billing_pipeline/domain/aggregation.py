"""Period-level usage semantics: how a metric's events become one billed quantity.

``aggregate_events`` is the reference over raw events; the database layer must agree
with it. ``hourly_aggregates`` and ``combine_hourly`` are the two halves of the
incremental path (hourly partitions rolled up into a billing period):

* ``count`` = number of events; ``sum`` = sum of values; ``max`` = largest value;
* ``latest`` = value of the last event by ``(occurred_at, event_id)``, the id breaking ties;
* ``unique_count`` = number of distinct ``properties[unique_property]`` values over the
  **whole period**, compared by their text (a string as-is, anything else as JSON, like
  PostgreSQL's ``->>``); events without the property (or with null) are not counted.

A metric that ``keeps_event_values`` also gets each event's value in event order (the
order Lago's free events and running totals follow); hourly aggregates cannot rebuild
them, so ``combine_hourly`` leaves them out and pricing refuses to guess.

``unique_count`` is not combinable: a user active in two hours is one user in the month,
so summing hourly distinct counts over-counts. ``combine_hourly`` refuses it; compute it
from the period's events instead. A period with no events has quantity 0.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from . import money
from .catalog import Aggregation, Metric
from .events import UsageEvent
from .periods import hour_start


@dataclass(frozen=True)
class MetricUsage:
    """A metric's billed quantity for one organization and period, and its event count.

    ``values``: each event's value in ``(occurred_at, event_id)`` order, only for metrics
    that keep them (``Metric.keeps_event_values``: Lago percentage options), else ``None``.
    """

    quantity: Decimal
    event_count: int
    values: tuple[Decimal, ...] | None = None

    @classmethod
    def zero(cls) -> MetricUsage:
        return cls(Decimal(0), 0)


@dataclass(frozen=True)
class HourlyAggregate:
    """The combinable summary of one metric's events in one UTC hour."""

    hour: dt.datetime
    metric_code: str
    event_count: int
    value_sum: Decimal
    value_max: Decimal | None
    latest_value: Decimal | None
    latest_at: dt.datetime | None
    latest_event_id: str | None


class NotCombinable(ValueError):
    """The metric's aggregation cannot be rebuilt from hourly aggregates."""


def unique_key(value: object) -> str | None:
    """Text by which ``unique_count`` compares property values; ``None`` is not counted."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _check_metric(codes: Iterable[str], metric: Metric) -> None:
    for code in codes:
        if code != metric.code:
            raise ValueError(f"got a {code!r} row while aggregating metric {metric.code!r}")


def _latest(event: UsageEvent) -> tuple[dt.datetime, str]:
    return (event.occurred_at, event.event_id)


def aggregate_events(events: Iterable[UsageEvent], metric: Metric) -> MetricUsage:
    """The metric's quantity over ``events`` (one organization, one period)."""
    events = list(events)
    _check_metric((e.metric_code for e in events), metric)
    with decimal.localcontext(money.EXACT):
        return _aggregate(events, metric)


def _aggregate(events: list[UsageEvent], metric: Metric) -> MetricUsage:
    count = len(events)
    if metric.aggregation is Aggregation.COUNT:
        quantity = Decimal(count)
    elif metric.aggregation is Aggregation.SUM:
        quantity = sum((e.value for e in events), Decimal(0))
    elif metric.aggregation is Aggregation.MAX:
        quantity = max((e.value for e in events), default=Decimal(0))
    elif metric.aggregation is Aggregation.LATEST:
        quantity = max(events, key=_latest).value if events else Decimal(0)
    else:
        if not metric.unique_property:
            raise ValueError(f"unique_count metric {metric.code!r} has no unique_property")
        keys = {unique_key((e.properties or {}).get(metric.unique_property)) for e in events}
        keys.discard(None)
        quantity = Decimal(len(keys))
    if metric.keeps_event_values:
        return MetricUsage(quantity, count, tuple(e.value for e in sorted(events, key=_latest)))
    return MetricUsage(quantity, count)


def hourly_aggregates(events: Iterable[UsageEvent], metric: Metric) -> list[HourlyAggregate]:
    """One ``HourlyAggregate`` per UTC hour that has events, ordered by hour."""
    by_hour: dict[dt.datetime, list[UsageEvent]] = {}
    for event in events:
        by_hour.setdefault(hour_start(event.occurred_at), []).append(event)
    _check_metric((e.metric_code for group in by_hour.values() for e in group), metric)
    with decimal.localcontext(money.EXACT):
        return [_summarize(hour, by_hour[hour], metric) for hour in sorted(by_hour)]


def _summarize(hour: dt.datetime, group: list[UsageEvent], metric: Metric) -> HourlyAggregate:
    last = max(group, key=_latest)
    return HourlyAggregate(
        hour=hour,
        metric_code=metric.code,
        event_count=len(group),
        value_sum=sum((e.value for e in group), Decimal(0)),
        value_max=max(e.value for e in group),
        latest_value=last.value,
        latest_at=last.occurred_at,
        latest_event_id=last.event_id,
    )


def combine_hourly(aggregates: Iterable[HourlyAggregate], metric: Metric) -> MetricUsage:
    """The period quantity from its hourly aggregates (all but ``unique_count``).

    Raises ``NotCombinable`` for ``unique_count``: see the module docstring.
    """
    if metric.aggregation is Aggregation.UNIQUE_COUNT:
        raise NotCombinable(
            f"metric {metric.code!r} is unique_count: distinct values over a period are not "
            "the sum of hourly distinct counts; aggregate the period's events instead"
        )
    rows = [a for a in aggregates if a.event_count > 0]
    _check_metric((a.metric_code for a in rows), metric)
    with decimal.localcontext(money.EXACT):
        return _combine(rows, metric)


def _combine(rows: list[HourlyAggregate], metric: Metric) -> MetricUsage:
    count = sum(a.event_count for a in rows)
    if metric.aggregation is Aggregation.COUNT:
        quantity = Decimal(count)
    elif metric.aggregation is Aggregation.SUM:
        quantity = sum((a.value_sum for a in rows), Decimal(0))
    elif metric.aggregation is Aggregation.MAX:
        quantity = max((a.value_max for a in rows if a.value_max is not None), default=Decimal(0))
    else:
        candidates = [a for a in rows if a.latest_at is not None and a.latest_value is not None]
        if candidates:
            last = max(candidates, key=lambda a: (a.latest_at, a.latest_event_id or ""))
            quantity = last.latest_value  # type: ignore[assignment]
        else:
            quantity = Decimal(0)
    return MetricUsage(quantity, count)


def hours_to_reaggregate(
    marks: Iterable[tuple[dt.datetime, dt.datetime]],
    aggregated: Iterable[dt.datetime],
    *,
    first: dt.datetime,
    now: dt.datetime,
    settle: dt.timedelta = dt.timedelta(hours=2),
) -> tuple[list[dt.datetime], dt.datetime | None]:
    """Which hours holding events not yet aggregated to aggregate at ``now``, and their latest mark.

    ``marks`` are (hour, marked_at) of those hours; ``aggregated`` the hours aggregated before.
    Due are the closed hours from ``first`` on that were aggregated before (late events), or
    that closed more than ``settle`` ago (never aggregated: the hourly schedule had its turn).
    """
    current = hour_start(now)
    aggregated = set(aggregated)
    due_marks = [(h, m) for h, m in marks if first <= h < current and (h in aggregated or h < current - settle)]
    return [h for h, _ in due_marks], max((m for _, m in due_marks), default=None)
