"""`billing-pipeline status` reads the deployment: instigator states and ticks stored in the
instance, the daemon's heartbeats, the delivery ledger and late usage."""

import datetime as dt
import time

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.types import DaemonHeartbeat
from sqlalchemy import insert

from billing_pipeline import definitions
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import aggregated_hours, dirty_hours, invoice_deliveries, invoices
from billing_pipeline.status import daemon_line, delivery_lines, deployment_report, pending_late_usage_lines
from billing_pipeline_tests.builders import org, setup_database, store_unchecked_organizations

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 5, 10, 30, tzinfo=UTC)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    setup_database(url)
    return get_engine(url)


def _remote_repository(instance):
    """The project's definitions as the webserver and daemon see them (an in-process code location)."""
    target = LoadableTargetOrigin(module_name="billing_pipeline.definitions", attribute="defs")
    return InProcessCodeLocationOrigin(target, location_name="billing_pipeline").create_location(instance)


def _line(report: str, name: str) -> str:
    return next(line for line in report.splitlines() if line.strip().startswith(name + " "))


def test_schedule_states_and_next_ticks_come_from_the_instance(instance, engine):
    with _remote_repository(instance) as location:
        repo = next(iter(location.get_repositories().values()))
        monthly = repo.get_schedule("monthly_invoices_job_schedule")
        weekly = repo.get_schedule("weekly_invoices_job_schedule")
        sensor = repo.get_sensor("late_usage_sensor")
        instance.stop_schedule(monthly.get_remote_origin_id(), monthly.selector_id, monthly)
        instance.stop_schedule(weekly.get_remote_origin_id(), weekly.selector_id, weekly)
        instance.start_schedule(weekly)  # stored RUNNING, with the cron the instance was given
        instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)

    report = deployment_report(instance, definitions.defs, engine, NOW)

    assert "STOPPED " in _line(report, "monthly_invoices_job_schedule")
    assert "next -" in _line(report, "monthly_invoices_job_schedule")
    weekly_line = _line(report, "weekly_invoices_job_schedule")
    assert "RUNNING " in weekly_line and "(default)" not in weekly_line
    assert "0 0 * * 1" in weekly_line and "next 2026-11-09 00:00" in weekly_line  # the Monday after NOW
    assert "STOPPED " in _line(report, "late_usage_sensor")
    # no stored state: the definition's default status
    default = "RUNNING (default)" if definitions.settings.schedules_running else "STOPPED (default)"
    assert default in _line(report, "hourly_usage_job_schedule")
    assert "daemon: not running" in report


def test_daemon_heartbeats(instance):
    assert daemon_line(instance, NOW).startswith("daemon: not running")
    beat = time.time()
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(beat, daemon_type, "daemon-1", []))
    now = dt.datetime.fromtimestamp(beat + 3, UTC)
    assert daemon_line(instance, now) == "daemon: healthy, last heartbeat 3 s ago"


def test_a_stale_heartbeat_is_not_healthy(instance):
    beat = time.time() - 3600  # past Dagster's tolerance (30 min, as the UI judges it)
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(beat, daemon_type, "daemon-1", []))
    line = daemon_line(instance, dt.datetime.fromtimestamp(beat + 3600, UTC))
    assert line.startswith("daemon: NOT healthy, last heartbeat 3600 s ago; unhealthy: ")
    assert "SCHEDULER" in line


def test_delivery_failures_per_channel_and_late_hours(engine):
    store_unchecked_organizations(str(engine.url), [org("acme"), org("globex")])
    stamp = dt.datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for invoice_id, org_id in ((1, "acme"), (2, "globex")):
            conn.execute(insert(invoices).values(_invoice_row(invoice_id, org_id, stamp)))
        rows = [
            (1, "pdf", "succeeded"),
            (1, "email", "failed"),
            (1, "stripe", "skipped"),
            (2, "email", "failed"),
            (2, "s3", "pending"),
        ]
        conn.execute(
            insert(invoice_deliveries),
            [{"invoice_id": i, "channel": c, "status": s, "attempts": 1, "updated_at": stamp} for i, c, s in rows],
        )
        hour = dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
        conn.execute(insert(aggregated_hours).values(hour=hour, aggregated_at=stamp, event_count=1, row_count=1))
        conn.execute(insert(dirty_hours).values(hour=hour, marked_at=stamp + dt.timedelta(hours=2)))

    assert delivery_lines(engine) == [
        "Deliveries not done (ledger, every period; `billing-pipeline deliver PERIOD` retries):",
        "  email   failed 2",
        "  s3      pending 1",
    ]
    assert pending_late_usage_lines(engine) == [
        "Late usage: 1 hour(s) with events not yet re-aggregated, 2026-10-31 23:00 .. 2026-10-31 23:00",
        "Late-usage adjustments pending: 0",
    ]


def _invoice_row(invoice_id: int, org_id: str, stamp: dt.datetime) -> dict:
    return {
        "id": invoice_id,
        "org_id": org_id,
        "interval": "monthly",
        "period_key": "2026-10-01",
        "period_start": dt.datetime(2026, 10, 1, tzinfo=UTC),
        "period_end": dt.datetime(2026, 11, 1, tzinfo=UTC),
        "status": "finalized",
        "number": f"INV-2026-{invoice_id:06d}",
        "currency": "USD",
        "plan_code": "starter",
        "catalog_version": 1,
        "subtotal_minor": 100,
        "tax_rate": 0,
        "tax_minor": 0,
        "total_minor": 100,
        "usage": {},
        "created_at": stamp,
        "updated_at": stamp,
    }
