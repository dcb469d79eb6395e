"""The public surface: definitions load, names and crons are pinned, schedules and sensors decide right."""

import datetime as dt

import dagster as dg
import pytest

from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.definitions import build_definitions
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, add_events, org, setup_database


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"BILLING_HOME": str(tmp_path), "INVOICE_BATCH_SIZE": "2"})


def test_definitions_load_and_public_names_are_pinned(settings):
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    schedules = sorted((s.name, s.job_name, s.cron_schedule, s.execution_timezone) for s in defs.schedules)
    assert schedules == [
        ("hourly_usage_job_schedule", "hourly_usage_job", "5 * * * *", "UTC"),
        ("monthly_invoices_job_schedule", "monthly_invoices_job", "0 0 1 * *", "UTC"),
        ("weekly_invoices_job_schedule", "weekly_invoices_job", "0 0 * * 1", "UTC"),
    ]
    sensors = {s.name for s in defs.sensors}
    assert {"organizations_sensor", "late_usage_sensor"} <= sensors
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "hourly_usage",
        "monthly_invoice_drafts",
        "monthly_invoices",
        "weekly_invoice_drafts",
        "weekly_invoices",
    } <= keys


def test_crons_come_from_the_environment(tmp_path):
    defs = build_definitions(Settings.from_env({"BILLING_HOME": str(tmp_path), "MONTHLY_INVOICE_CRON": "*/5 * * * *"}))
    assert defs.resolve_schedule_def("monthly_invoices_job_schedule").cron_schedule == "*/5 * * * *"


def test_hourly_schedule_requests_the_last_closed_hour(settings):
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("hourly_usage_job_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(
            instance=instance,
            repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime(2026, 11, 23, 10, 5, tzinfo=UTC),
        )
        [request] = schedule.evaluate_tick(ctx).run_requests
    assert request.partition_key == "2026-11-23-09:00" and request.run_key == "2026-11-23-09:00"


def test_monthly_schedule_bills_the_previous_month_in_batches(settings):
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("monthly_invoices_job_schedule")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("monthly_billed_organizations", ["a", "b", "c", "d", "e"])
        ctx = dg.build_schedule_context(
            instance=instance,
            repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime(2026, 11, 1, tzinfo=UTC),
        )
        requests = schedule.evaluate_tick(ctx).run_requests
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]
    assert ranges == [
        ("2026-10-01|a", "2026-10-01|b"),
        ("2026-10-01|c", "2026-10-01|d"),
        ("2026-10-01|e", "2026-10-01|e"),
    ]
    assert [r.run_key for r in requests] == [
        "monthly-schedule-2026-10-01-a-b",
        "monthly-schedule-2026-10-01-c-d",
        "monthly-schedule-2026-10-01-e-e",
    ]


def test_organizations_sensor_adds_new_organizations_once(settings):
    setup_database(settings.database_url)
    engine = get_engine(settings.database_url)
    reference.upsert_organizations(engine, [org("m1"), org("w1", interval="weekly")])
    resources = {"billing_db": BillingDatabaseResource(url=settings.database_url)}
    with dg.instance_for_test() as instance:
        sensor = build_definitions(settings).resolve_sensor_def("organizations_sensor")
        result = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        assert instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[BillingInterval.MONTHLY].name) == ["m1"]
        assert instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[BillingInterval.WEEKLY].name) == ["w1"]
        again = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(again, dg.SkipReason)


def test_late_usage_sensor_requests_contiguous_hour_ranges(settings):
    setup_database(settings.database_url)
    engine = get_engine(settings.database_url)
    reference.upsert_organizations(engine, [org("m1")])
    base = dt.datetime(2026, 10, 3, tzinfo=UTC)
    add_events(
        settings.database_url,
        [
            ("m1", "e1", "api_calls", "1", base + dt.timedelta(minutes=10)),
            ("m1", "e2", "api_calls", "1", base + dt.timedelta(hours=1, minutes=10)),
            ("m1", "e3", "api_calls", "1", base + dt.timedelta(hours=5)),
        ],
    )
    resources = {"billing_db": BillingDatabaseResource(url=settings.database_url)}
    with dg.instance_for_test() as instance:
        sensor = build_definitions(settings).resolve_sensor_def("late_usage_sensor")
        requests = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    spans = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]
    assert spans == [("2026-10-03-00:00", "2026-10-03-01:00"), ("2026-10-03-05:00", "2026-10-03-05:00")]
