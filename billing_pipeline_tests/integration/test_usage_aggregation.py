"""Hourly aggregation and period quantities in the database agree with the pure reference,
on SQLite and on a real PostgreSQL."""

import datetime as dt
import random
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing_pipeline.db import reference, usage
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import aggregated_hours, dirty_hours, hourly_usage
from billing_pipeline.domain.aggregation import aggregate_events
from billing_pipeline.domain.events import UsageEvent
from billing_pipeline_tests.builders import UTC, add_events, org, setup_database

pytestmark = pytest.mark.integration
OCT = dt.datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'billing.db'}"
    return request.getfixturevalue("billing_db_url")


def _events(rng: random.Random, n: int) -> list[UsageEvent]:
    metrics = ["api_calls", "storage_gb", "active_users", "seats", "server_hours"]
    out = []
    for i in range(n):
        metric = metrics[i % len(metrics)]
        value = Decimal(rng.randint(-0, 5_000_000)) / 1000 if metric != "api_calls" else Decimal(1)
        props = {"user_id": f"u{rng.randint(1, 15)}"} if metric == "active_users" else None
        when = OCT + dt.timedelta(seconds=rng.randrange(3 * 24 * 3600))
        out.append(UsageEvent(rng.choice(["a", "b"]), f"e{i}", metric, value, props, when))
    # two events at the same instant: the latest is chosen by event id
    out.append(UsageEvent("a", "zz-last", "seats", Decimal(7), None, OCT + dt.timedelta(hours=5)))
    out.append(UsageEvent("a", "aa-first", "seats", Decimal(3), None, OCT + dt.timedelta(hours=5)))
    return out


def test_database_matches_the_reference(url):
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("a"), org("b")])
    events = _events(random.Random(5), 600)
    for e in events:
        add_events(url, [(e.org_id, e.event_id, e.metric_code, str(e.value), e.occurred_at)], props=e.properties)
    catalog = reference.latest_catalog(engine)
    first, last = OCT, OCT + dt.timedelta(days=3) - dt.timedelta(hours=1)
    results = usage.aggregate_hours(engine, first, last, catalog.metrics)
    assert len(results) == 72 and sum(r.event_count for r in results) == len(events)
    with engine.connect() as conn:
        snapshot = conn.execute(
            select(hourly_usage).order_by(hourly_usage.c.hour, hourly_usage.c.org_id, hourly_usage.c.metric_code)
        ).all()
        assert conn.execute(select(func.count()).select_from(dirty_hours)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(aggregated_hours)).scalar() == 72

    # re-materializing replaces exactly: same rows
    usage.aggregate_hours(engine, first, last, catalog.metrics)
    with engine.connect() as conn:
        again = conn.execute(
            select(hourly_usage).order_by(hourly_usage.c.hour, hourly_usage.c.org_id, hourly_usage.c.metric_code)
        ).all()
    assert [tuple(r)[:9] for r in again] == [tuple(r)[:9] for r in snapshot]

    period_end = OCT + dt.timedelta(days=31)
    got = usage.period_usage(engine, ["a", "b"], OCT, period_end, catalog.metrics)
    for org_id in ("a", "b"):
        for code, metric in catalog.metrics.items():
            mine = [e for e in events if e.org_id == org_id and e.metric_code == code]
            if not mine:
                continue
            want = aggregate_events(mine, metric)
            assert got[org_id][code].quantity == want.quantity, (org_id, code)
            assert got[org_id][code].event_count == want.event_count, (org_id, code)


def test_monthly_unique_count_is_not_a_sum_of_hourly_counts(url):
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("a")])
    rows = [("a", f"u{i}", "active_users", "1", OCT + dt.timedelta(hours=i)) for i in range(6)]
    for r in rows:
        add_events(url, [r], props={"user_id": "same-user"})
    catalog = reference.latest_catalog(engine)
    usage.aggregate_hours(engine, OCT, OCT + dt.timedelta(hours=5), catalog.metrics)
    got = usage.period_usage(engine, ["a"], OCT, OCT + dt.timedelta(days=31), catalog.metrics)
    assert got["a"]["active_users"].quantity == 1 and got["a"]["active_users"].event_count == 6


def test_late_event_marks_an_aggregated_hour_and_reaggregation_clears_it(url):
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("a")])
    hour = OCT + dt.timedelta(hours=3)
    add_events(url, [("a", "e1", "api_calls", "1", hour + dt.timedelta(minutes=1))])
    catalog = reference.latest_catalog(engine)
    usage.aggregate_hours(engine, hour, hour, catalog.metrics)
    assert usage.late_hours(engine) == []
    add_events(url, [("a", "e2", "api_calls", "1", hour + dt.timedelta(minutes=59))])
    assert [h for h, _ in usage.late_hours(engine)] == [hour]
    [result] = usage.aggregate_hours(engine, hour, hour, catalog.metrics)
    assert result.event_count == 2 and usage.late_hours(engine) == []


def test_per_event_values_in_event_order_for_lago_percentage(url):
    """payment_volume keeps its events' values (plans.yaml: payments_usd); the database reads
    them in (occurred_at, event_id) order like the reference, and they price Lago's example."""
    from billing_pipeline.domain import periods
    from billing_pipeline.domain.pricing import price_charge

    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("a"), org("b")])
    at = OCT + dt.timedelta(hours=2)
    # Lago docs: 200, 100, 100, 50; inserted out of order, two at the same instant (event id decides)
    rows = [
        ("a", "t4", "payment_volume", "50", at + dt.timedelta(days=2)),
        ("a", "t2", "payment_volume", "100", at),
        ("a", "t1", "payment_volume", "200", at),
        ("a", "t3", "payment_volume", "100", at + dt.timedelta(hours=30)),
        ("b", "x1", "payment_volume", "7.5", at),
        ("a", "late", "payment_volume", "999", OCT + dt.timedelta(days=31)),  # next period
    ]
    add_events(url, rows)
    catalog = reference.latest_catalog(engine)
    assert catalog.metrics["payment_volume"].keeps_event_values
    usage.aggregate_hours(engine, OCT, OCT + dt.timedelta(days=3), catalog.metrics)
    got = usage.period_usage(engine, ["a", "b", "c"], OCT, OCT + dt.timedelta(days=31), catalog.metrics)
    events = [UsageEvent(o, e, m, Decimal(v), None, t) for o, e, m, v, t in rows[:4]]
    want = aggregate_events(events, catalog.metrics["payment_volume"])
    assert got["a"]["payment_volume"] == want
    assert want.values == (Decimal(200), Decimal(100), Decimal(100), Decimal(50))
    assert got["b"]["payment_volume"].values == (Decimal("7.5"),)
    assert "payment_volume" not in got["c"]
    charge = catalog.plans["payments_usd"].charges[0]
    line = price_charge(charge, got["a"]["payment_volume"], "USD", periods.monthly_period(2026, 10))
    assert str(line.amount) == "0.70"  # 0.10 + 1.2 % of 50 = 0.70, above the 0.25 minimum
