"""Hourly aggregation and period quantities, computed inside the database.

``aggregate_hours`` replaces a range of hours of ``hourly_usage`` with a single
``INSERT ... SELECT ... GROUP BY`` over the raw events: raw events never travel to
Python. ``period_usage`` turns hourly rows into billed quantities for a period, except
``unique_count`` metrics, which are counted over the period's raw events (distinct
values do not add up hour by hour), and the per-event values of metrics that keep them
(Lago percentage options), read from the raw events in event order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import OperationalError

from billing_pipeline.clock import utc_now
from billing_pipeline.db.schema import aggregated_hours, dirty_hours, hourly_usage, usage_events
from billing_pipeline.db.types import UTCDateTime
from billing_pipeline.domain.aggregation import MetricUsage
from billing_pipeline.domain.catalog import Aggregation, Metric
from billing_pipeline.domain.quantity import from_micros

HOUR = dt.timedelta(hours=1)
_CHUNK = 1000


@dataclass(frozen=True)
class HourResult:
    hour: dt.datetime
    event_count: int
    row_count: int
    seconds: float


def _chunks(items: Sequence[str], size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def aggregate_hours(
    engine: Engine, first: dt.datetime, last: dt.datetime, metrics: Mapping[str, Metric]
) -> list[HourResult]:
    """Replace hourly_usage for every hour from ``first`` to ``last`` inclusive, exactly.

    One ``INSERT ... SELECT ... GROUP BY hour, org, metric`` over the range, in one
    REPEATABLE READ transaction on PostgreSQL (one snapshot): an import that commits
    meanwhile leaves its dirty mark in place and its hours are redone. Safe to repeat.
    Clears the late-event marks of the range that the snapshot covers.
    """
    for ts in (first, last):
        if ts.minute or ts.second or ts.microsecond:
            raise ValueError(f"hour {ts.isoformat()} is not at the start of an hour")
    if last < first:
        raise ValueError(f"last hour {last.isoformat()} is before the first {first.isoformat()}")
    for attempt in range(5):
        try:
            return _aggregate_once(engine, first, last + HOUR, metrics)
        except OperationalError as exc:  # serialization failure under concurrent imports
            if attempt == 4 or "could not serialize" not in str(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _hour_bucket(engine: Engine):
    """occurred_at truncated to the hour, in the column's storage form on each dialect."""
    if engine.dialect.name == "postgresql":
        return func.date_trunc("hour", usage_events.c.occurred_at)
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (see db.types.UTCDateTime)
    return func.strftime("%Y-%m-%d %H:00:00.000000", usage_events.c.occurred_at)


def _aggregate_once(
    engine: Engine, start: dt.datetime, end: dt.datetime, metrics: Mapping[str, Metric]
) -> list[HourResult]:
    """One transaction: replace the range's hourly rows, record it aggregated, clear its dirty marks."""
    started = time.perf_counter()
    latest_codes = sorted(c for c, m in metrics.items() if m.aggregation is Aggregation.LATEST)
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    bucket = _hour_bucket(engine)
    in_range = (usage_events.c.occurred_at >= start) & (usage_events.c.occurred_at < end)
    hours = list(_hours(start, end))
    with engine.connect().execution_options(**options) as conn, conn.begin():
        snapshot_at = utc_now()
        conn.execute(delete(hourly_usage).where(hourly_usage.c.hour >= start, hourly_usage.c.hour < end))
        conn.execute(_insert_grouped(bucket, in_range))
        if latest_codes:
            _fill_latest(conn, bucket, in_range, latest_codes)
        per_hour = {r.hour: (int(r.rows), int(r.events)) for r in conn.execute(_hourly_counts(start, end))}
        conn.execute(delete(aggregated_hours).where(aggregated_hours.c.hour >= start, aggregated_hours.c.hour < end))
        conn.execute(insert(aggregated_hours), _aggregated_rows(hours, per_hour, snapshot_at))
        conn.execute(
            delete(dirty_hours).where(
                dirty_hours.c.hour >= start, dirty_hours.c.hour < end, dirty_hours.c.marked_at <= snapshot_at
            )
        )
    seconds = (time.perf_counter() - started) / max(len(hours), 1)
    return [HourResult(h, per_hour.get(h, (0, 0))[1], per_hour.get(h, (0, 0))[0], seconds) for h in hours]


def _insert_grouped(bucket, in_range):
    """``INSERT INTO hourly_usage SELECT ... GROUP BY hour, org, metric`` over the events ``in_range``."""
    grouped = (
        select(
            bucket,
            usage_events.c.org_id,
            usage_events.c.metric_code,
            func.count(),
            func.sum(usage_events.c.value_micros),
            func.max(usage_events.c.value_micros),
        )
        .where(in_range)
        .group_by(bucket, usage_events.c.org_id, usage_events.c.metric_code)
    )
    columns = ["hour", "org_id", "metric_code", "event_count", "value_sum_micros", "value_max_micros"]
    return insert(hourly_usage).from_select(columns, grouped)


def _hourly_counts(start: dt.datetime, end: dt.datetime):
    """Per hour of [start, end): how many hourly_usage rows (``rows``) and events (``events``)."""
    return (
        select(
            hourly_usage.c.hour,
            func.count().label("rows"),
            func.sum(hourly_usage.c.event_count).label("events"),
        )
        .where(hourly_usage.c.hour >= start, hourly_usage.c.hour < end)
        .group_by(hourly_usage.c.hour)
    )


def _aggregated_rows(
    hours: Sequence[dt.datetime], per_hour: Mapping[dt.datetime, tuple[int, int]], snapshot_at: dt.datetime
) -> list[dict]:
    """One ``aggregated_hours`` row per hour, empty hours included."""
    return [
        {
            "hour": h,
            "aggregated_at": snapshot_at,
            "event_count": per_hour.get(h, (0, 0))[1],
            "row_count": per_hour.get(h, (0, 0))[0],
        }
        for h in hours
    ]


def _hours(start: dt.datetime, end: dt.datetime):
    hour = start
    while hour < end:
        yield hour
        hour += HOUR


def _fill_latest(conn, bucket, in_range, latest_codes) -> None:
    ranked = (
        select(
            bucket.label("hour"),
            usage_events.c.org_id,
            usage_events.c.metric_code,
            usage_events.c.value_micros,
            usage_events.c.occurred_at,
            usage_events.c.event_id,
            func.row_number()
            .over(
                partition_by=(bucket, usage_events.c.org_id, usage_events.c.metric_code),
                order_by=(usage_events.c.occurred_at.desc(), usage_events.c.event_id.desc()),
            )
            .label("rank"),
        )
        .where(in_range, usage_events.c.metric_code.in_(latest_codes))
        .subquery()
    )
    rows = conn.execute(select(ranked).where(ranked.c.rank == 1)).all()
    if not rows:
        return
    conn.execute(
        update(hourly_usage)
        .where(
            hourly_usage.c.hour == bindparam("b_hour", type_=UTCDateTime()),
            hourly_usage.c.org_id == bindparam("b_org"),
            hourly_usage.c.metric_code == bindparam("b_metric"),
        )
        .values(
            latest_value_micros=bindparam("b_value"),
            latest_at=bindparam("b_at", type_=UTCDateTime()),
            latest_event_id=bindparam("b_event"),
        ),
        [
            {
                "b_hour": _as_utc(r.hour),
                "b_org": r.org_id,
                "b_metric": r.metric_code,
                "b_value": r.value_micros,
                "b_at": r.occurred_at,
                "b_event": r.event_id,
            }
            for r in rows
        ],
    )


def _as_utc(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def late_hours(engine: Engine, limit: int = 500) -> list[tuple[dt.datetime, dt.datetime]]:
    """Hours already aggregated that have received events since: (hour, marked_at), oldest first."""
    query = (
        select(dirty_hours.c.hour, dirty_hours.c.marked_at)
        .join(aggregated_hours, aggregated_hours.c.hour == dirty_hours.c.hour)
        .order_by(dirty_hours.c.hour)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(r.hour, r.marked_at) for r in conn.execute(query)]


def unaggregated_hours(engine: Engine, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Hours in [start, end) that hold events not reflected in hourly_usage (dirty marks)."""
    query = (
        select(dirty_hours.c.hour)
        .where(dirty_hours.c.hour >= start, dirty_hours.c.hour < end)
        .order_by(dirty_hours.c.hour)
    )
    with engine.connect() as conn:
        return [r.hour for r in conn.execute(query)]


def period_usage(
    engine: Engine,
    org_ids: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
    metrics: Mapping[str, Metric],
) -> dict[str, dict[str, MetricUsage]]:
    """Billed quantity per organization and metric for [start, end), from hourly usage."""
    result: dict[str, dict[str, MetricUsage]] = {org: {} for org in org_ids}
    latest_codes = [c for c, m in metrics.items() if m.aggregation is Aggregation.LATEST]
    in_period = (hourly_usage.c.hour >= start) & (hourly_usage.c.hour < end)
    with engine.connect() as conn:
        for chunk in _chunks(list(org_ids)):
            rows = conn.execute(
                select(
                    hourly_usage.c.org_id,
                    hourly_usage.c.metric_code,
                    func.sum(hourly_usage.c.event_count).label("events"),
                    func.sum(hourly_usage.c.value_sum_micros).label("total"),
                    func.max(hourly_usage.c.value_max_micros).label("peak"),
                )
                .where(in_period, hourly_usage.c.org_id.in_(chunk))
                .group_by(hourly_usage.c.org_id, hourly_usage.c.metric_code)
            )
            for r in rows:
                metric = metrics.get(r.metric_code)
                if metric is None or metric.aggregation is Aggregation.UNIQUE_COUNT:
                    continue
                events = int(r.events)
                if metric.aggregation is Aggregation.COUNT:
                    quantity = Decimal(events)
                elif metric.aggregation is Aggregation.SUM:
                    quantity = from_micros(int(r.total))
                elif metric.aggregation is Aggregation.MAX:
                    quantity = from_micros(int(r.peak))
                else:  # LATEST: filled below
                    quantity = from_micros(0)
                result[r.org_id][r.metric_code] = MetricUsage(quantity, events)
            if latest_codes:
                _period_latest(conn, chunk, in_period, latest_codes, result)
            for metric in metrics.values():
                if metric.aggregation is Aggregation.UNIQUE_COUNT:
                    _period_unique(conn, chunk, start, end, metric, result)
                if metric.keeps_event_values:
                    _period_values(conn, chunk, start, end, metric, result)
    return result


def _period_values(conn, chunk, start, end, metric: Metric, result) -> None:
    """Each event's value in (occurred_at, event_id) order, beside the hourly totals.

    Pricing checks that they add up to the hourly sum and count: an hour aggregated before
    late events arrived fails loudly instead of pricing two different sets of events.
    """
    rows = conn.execute(
        select(usage_events.c.org_id, usage_events.c.value_micros)
        .where(
            usage_events.c.metric_code == metric.code,
            usage_events.c.occurred_at >= start,
            usage_events.c.occurred_at < end,
            usage_events.c.org_id.in_(chunk),
        )
        .order_by(usage_events.c.org_id, usage_events.c.occurred_at, usage_events.c.event_id)
    )
    values: dict[str, list[Decimal]] = {}
    for org_id, micros in rows:
        values.setdefault(org_id, []).append(from_micros(micros))
    for org_id, org_values in values.items():
        usage = result[org_id].get(metric.code, MetricUsage.zero())
        result[org_id][metric.code] = dataclasses.replace(usage, values=tuple(org_values))


def _period_latest(conn, chunk, in_period, latest_codes, result) -> None:
    ranked = (
        select(
            hourly_usage.c.org_id,
            hourly_usage.c.metric_code,
            hourly_usage.c.latest_value_micros,
            func.row_number()
            .over(
                partition_by=(hourly_usage.c.org_id, hourly_usage.c.metric_code),
                order_by=(hourly_usage.c.latest_at.desc(), hourly_usage.c.latest_event_id.desc()),
            )
            .label("rank"),
        )
        .where(in_period, hourly_usage.c.org_id.in_(chunk), hourly_usage.c.metric_code.in_(latest_codes))
        .subquery()
    )
    for r in conn.execute(select(ranked).where(ranked.c.rank == 1)):
        previous = result[r.org_id].get(r.metric_code)
        events = previous.event_count if previous else 0
        result[r.org_id][r.metric_code] = MetricUsage(from_micros(r.latest_value_micros), events)


def _period_unique(conn, chunk, start, end, metric: Metric, result) -> None:
    value = usage_events.c.properties[metric.unique_property].as_string()
    rows = conn.execute(
        select(
            usage_events.c.org_id,
            func.count(func.distinct(value)).label("uniques"),
            func.count().label("events"),
        )
        .where(
            usage_events.c.metric_code == metric.code,
            usage_events.c.occurred_at >= start,
            usage_events.c.occurred_at < end,
            usage_events.c.org_id.in_(chunk),
        )
        .group_by(usage_events.c.org_id)
    )
    for r in rows:
        result[r.org_id][metric.code] = MetricUsage(Decimal(int(r.uniques)), int(r.events))


def raw_totals(
    engine: Engine, org_ids: Sequence[str], start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """(org, metric) -> (event count, value sum in micros) straight from raw events."""
    t = usage_events.c
    return _totals(
        engine,
        org_ids,
        t.org_id,
        t.metric_code,
        func.count(),
        func.sum(t.value_micros),
        (t.occurred_at >= start) & (t.occurred_at < end),
    )


def hourly_totals(
    engine: Engine, org_ids: Sequence[str], start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """(org, metric) -> (event count, value sum in micros) from hourly_usage."""
    t = hourly_usage.c
    return _totals(
        engine,
        org_ids,
        t.org_id,
        t.metric_code,
        func.sum(t.event_count),
        func.sum(t.value_sum_micros),
        (t.hour >= start) & (t.hour < end),
    )


def _totals(engine, org_ids, org_col, metric_col, count, total, window) -> dict[tuple[str, str], tuple[int, int]]:
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    with engine.connect() as conn:
        for chunk in _chunks(list(org_ids)):
            query = select(org_col, metric_col, count, total).where(window, org_col.in_(chunk))
            for org, metric, n, amount in conn.execute(query.group_by(org_col, metric_col)):
                totals[(org, metric)] = (int(n), int(amount))
    return totals


def dirty_marks(engine: Engine, limit: int = 5000) -> list[tuple[dt.datetime, dt.datetime]]:
    """Every hour with events not yet aggregated: (hour, marked_at), oldest first."""
    query = select(dirty_hours.c.hour, dirty_hours.c.marked_at).order_by(dirty_hours.c.hour).limit(limit)
    with engine.connect() as conn:
        return [(r.hour, r.marked_at) for r in conn.execute(query)]
