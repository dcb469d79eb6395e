"""Hourly aggregation and period quantities, computed inside the database.

``aggregate_hour`` replaces one hour of ``hourly_usage`` with a single
``INSERT ... SELECT ... GROUP BY`` over the raw events: raw events never travel to
Python. ``period_usage`` turns hourly rows into billed quantities for a period, except
``unique_count`` metrics, which are counted over the period's raw events (distinct
values do not add up hour by hour).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.exc import OperationalError

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _chunks(items: Sequence[str], size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def aggregate_hour(engine: Engine, hour: dt.datetime, metrics: Mapping[str, Metric]) -> HourResult:
    """Re-aggregate one UTC hour exactly; safe to repeat; clears the hour's late-event mark.

    Runs in one REPEATABLE READ transaction on PostgreSQL (one snapshot), so an import
    that commits meanwhile leaves its dirty mark in place and the hour is redone.
    """
    if hour.minute or hour.second or hour.microsecond:
        raise ValueError(f"hour {hour.isoformat()} is not at the start of an hour")
    for attempt in range(5):
        try:
            return _aggregate_hour_once(engine, hour, metrics)
        except OperationalError as exc:  # serialization failure under concurrent imports
            if attempt == 4 or "could not serialize" not in str(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _aggregate_hour_once(engine: Engine, hour: dt.datetime, metrics: Mapping[str, Metric]) -> HourResult:
    started = time.perf_counter()
    end = hour + HOUR
    latest_codes = sorted(c for c, m in metrics.items() if m.aggregation is Aggregation.LATEST)
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        snapshot_at = _now()
        in_hour = (usage_events.c.occurred_at >= hour) & (usage_events.c.occurred_at < end)
        conn.execute(delete(hourly_usage).where(hourly_usage.c.hour == hour))
        grouped = (
            select(
                literal(hour, UTCDateTime()),
                usage_events.c.org_id,
                usage_events.c.metric_code,
                func.count(),
                func.sum(usage_events.c.value_micros),
                func.max(usage_events.c.value_micros),
            )
            .where(in_hour)
            .group_by(usage_events.c.org_id, usage_events.c.metric_code)
        )
        conn.execute(
            insert(hourly_usage).from_select(
                ["hour", "org_id", "metric_code", "event_count", "value_sum_micros", "value_max_micros"],
                grouped,
            )
        )
        if latest_codes:
            _fill_latest(conn, hour, in_hour, latest_codes)
        totals = conn.execute(
            select(func.count(), func.coalesce(func.sum(hourly_usage.c.event_count), 0)).where(
                hourly_usage.c.hour == hour
            )
        ).one()
        conn.execute(delete(aggregated_hours).where(aggregated_hours.c.hour == hour))
        conn.execute(
            insert(aggregated_hours).values(
                hour=hour, aggregated_at=snapshot_at, event_count=int(totals[1]), row_count=int(totals[0])
            )
        )
        conn.execute(
            delete(dirty_hours).where(dirty_hours.c.hour == hour, dirty_hours.c.marked_at <= snapshot_at)
        )
    return HourResult(hour, int(totals[1]), int(totals[0]), time.perf_counter() - started)


def _fill_latest(conn, hour, in_hour, latest_codes) -> None:
    ranked = (
        select(
            usage_events.c.org_id,
            usage_events.c.metric_code,
            usage_events.c.value_micros,
            usage_events.c.occurred_at,
            usage_events.c.event_id,
            func.row_number()
            .over(
                partition_by=(usage_events.c.org_id, usage_events.c.metric_code),
                order_by=(usage_events.c.occurred_at.desc(), usage_events.c.event_id.desc()),
            )
            .label("rank"),
        )
        .where(in_hour, usage_events.c.metric_code.in_(latest_codes))
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
                "b_hour": hour,
                "b_org": r.org_id,
                "b_metric": r.metric_code,
                "b_value": r.value_micros,
                "b_at": r.occurred_at,
                "b_event": r.event_id,
            }
            for r in rows
        ],
    )


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
                    quantity = from_micros(events * 10**6)
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
    return result


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
        result[r.org_id][metric.code] = MetricUsage(from_micros(int(r.uniques) * 10**6), int(r.events))


def raw_totals(
    engine: Engine, org_ids: Sequence[str], start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """(org, metric) -> (event count, value sum in micros) straight from raw events."""
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    with engine.connect() as conn:
        for chunk in _chunks(list(org_ids)):
            rows = conn.execute(
                select(
                    usage_events.c.org_id,
                    usage_events.c.metric_code,
                    func.count(),
                    func.sum(usage_events.c.value_micros),
                )
                .where(
                    usage_events.c.occurred_at >= start,
                    usage_events.c.occurred_at < end,
                    usage_events.c.org_id.in_(chunk),
                )
                .group_by(usage_events.c.org_id, usage_events.c.metric_code)
            )
            for org, metric, count, total in rows:
                totals[(org, metric)] = (int(count), int(total))
    return totals


def hourly_totals(
    engine: Engine, org_ids: Sequence[str], start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """(org, metric) -> (event count, value sum in micros) from hourly_usage."""
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    with engine.connect() as conn:
        for chunk in _chunks(list(org_ids)):
            rows = conn.execute(
                select(
                    hourly_usage.c.org_id,
                    hourly_usage.c.metric_code,
                    func.sum(hourly_usage.c.event_count),
                    func.sum(hourly_usage.c.value_sum_micros),
                )
                .where(hourly_usage.c.hour >= start, hourly_usage.c.hour < end, hourly_usage.c.org_id.in_(chunk))
                .group_by(hourly_usage.c.org_id, hourly_usage.c.metric_code)
            )
            for org, metric, count, total in rows:
                totals[(org, metric)] = (int(count), int(total))
    return totals


def dirty_marks(engine: Engine, limit: int = 5000) -> list[tuple[dt.datetime, dt.datetime]]:
    """Every hour with events not yet aggregated: (hour, marked_at), oldest first."""
    query = select(dirty_hours.c.hour, dirty_hours.c.marked_at).order_by(dirty_hours.c.hour).limit(limit)
    with engine.connect() as conn:
        return [(r.hour, r.marked_at) for r in conn.execute(query)]
