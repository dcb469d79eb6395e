"""The public surface: definitions load, names and crons are pinned, schedules and sensors decide right."""

import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from billing_pipeline import definitions
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.definitions import build_definitions
from billing_pipeline.defs.automation import invoice_schedule
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, add_events, org, setup_database

ASSETS = {
    "hourly_usage",
    "monthly_invoice_drafts",
    "monthly_invoices",
    "monthly_invoice_deliveries",
    "weekly_invoice_drafts",
    "weekly_invoices",
    "weekly_invoice_deliveries",
    "ar_aging_report",
    "mrr_report",
    "daily_analytics_report",
    "weekly_bi_report",
    "payment_reminders",
    "service_health",
    "auto_charges",
    "payment_status_sync",
}
CHECKS = {
    ("monthly_invoice_drafts", "usage_reconciles_with_hourly_usage"),
    ("weekly_invoice_drafts", "usage_reconciles_with_hourly_usage"),
    ("service_health", "database_health"),
    ("service_health", "payment_gateway_health"),
    ("service_health", "document_store_health"),
    ("service_health", "mailer_health"),
}
JOBS = {
    "hourly_usage_job",
    "monthly_invoices_job",
    "weekly_invoices_job",
    "deliver_monthly_invoices_job",
    "deliver_weekly_invoices_job",
    "ar_aging_report_job",
    "mrr_report_job",
    "daily_analytics_report_job",
    "weekly_bi_report_job",
    "send_payment_reminders_job",
    "service_health_job",
    "charge_due_invoices_job",
    "sync_payment_status_job",
}
SCHEDULES = {
    ("hourly_usage_job_schedule", "hourly_usage_job", "5 * * * *", "UTC"),
    ("monthly_invoices_job_schedule", "monthly_invoices_job", "0 0 1 * *", "UTC"),
    ("weekly_invoices_job_schedule", "weekly_invoices_job", "0 0 * * 1", "UTC"),
    ("ar_aging_report_schedule", "ar_aging_report_job", "0 7 * * 1", "UTC"),  # Monday 07:00 UTC
    ("mrr_report_schedule", "mrr_report_job", "0 8 1 * *", "UTC"),  # the 1st, 08:00 UTC
    ("daily_analytics_report_schedule", "daily_analytics_report_job", "0 2 * * *", "UTC"),  # 02:00 UTC
    ("weekly_bi_report_schedule", "weekly_bi_report_job", "0 3 * * 0", "UTC"),  # Sunday 03:00 UTC
    ("send_payment_reminders_job_schedule", "send_payment_reminders_job", "0 9 * * *", "UTC"),
    ("service_health_schedule", "service_health_job", "*/15 * * * *", "UTC"),
    ("charge_due_invoices_job_schedule", "charge_due_invoices_job", "0 6 * * *", "UTC"),
    ("sync_payment_status_job_schedule", "sync_payment_status_job", "*/30 * * * *", "UTC"),
}
SENSORS = {
    "organizations_sensor",
    "late_usage_sensor",
    "invoice_delivery_sensor",
    "invoice_finalization_sensor",
    "run_failure_alert_sensor",
    "failure_rate_alert_sensor",
    "service_health_alert_sensor",
    "invoice_failures_alert_sensor",
    "late_usage_alert_sensor",
    "alert_redelivery_sensor",
}


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"BILLING_HOME": str(tmp_path)})


def test_definitions_load_and_public_names_are_pinned(settings):
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == CHECKS
    assert {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")} == JOBS
    schedules = [defs.resolve_schedule_def(s.name) for s in defs.schedules]
    assert {(s.name, s.job_name, s.cron_schedule, s.execution_timezone) for s in schedules} == SCHEDULES
    assert all(s.default_status is dg.DefaultScheduleStatus.RUNNING for s in schedules)
    assert {s.name for s in defs.sensors} == SENSORS


def test_module_level_names_match_their_variables():
    for name in [
        "monthly_invoice_drafts",
        "monthly_invoices",
        "weekly_invoice_drafts",
        "weekly_invoices",
        "service_health",
        "ar_aging_report",
        "mrr_report",
        "daily_analytics_report",
        "weekly_bi_report",
    ]:
        assert getattr(definitions, name).key.to_user_string() == name
    for name in ["payment_reminders", "auto_charges", "payment_status_sync"]:
        assert getattr(definitions, name).key.to_user_string() == name
    jobs = ["hourly_usage_job", "monthly_invoices_job", "weekly_invoices_job", "service_health_job"]
    jobs += ["ar_aging_report_job", "mrr_report_job", "daily_analytics_report_job", "weekly_bi_report_job"]
    jobs += ["send_payment_reminders_job", "charge_due_invoices_job", "sync_payment_status_job"]
    for name in jobs:
        assert getattr(definitions, name).name == name
    for name, *_ in SCHEDULES:
        assert getattr(definitions, name).name == name
    for name in SENSORS - {"invoice_delivery_sensor"}:
        assert getattr(definitions, name).name == name


def test_crons_come_from_the_environment(tmp_path):
    """Crons are part of the definitions: read from the environment when the code location loads."""
    code = (
        "import json; from billing_pipeline.definitions import defs; "
        "print(json.dumps({s.name: s.cron_schedule for s in defs.schedules}))"
    )
    env = {
        **os.environ,
        "BILLING_HOME": str(tmp_path),
        "MONTHLY_INVOICE_CRON": "*/5 * * * *",
        "HEALTH_CHECK_CRON": "*/5 * * * *",
        "PAYMENT_REMINDERS_CRON": "0 10 * * *",
        "CHARGE_DUE_INVOICES_CRON": "30 5 * * *",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    crons = json.loads(out.stdout.strip().splitlines()[-1])
    assert crons["monthly_invoices_job_schedule"] == "*/5 * * * *"
    assert crons["weekly_invoices_job_schedule"] == "0 0 * * 1"
    assert crons["service_health_schedule"] == "*/5 * * * *"
    assert crons["send_payment_reminders_job_schedule"] == "0 10 * * *"
    assert crons["charge_due_invoices_job_schedule"] == "30 5 * * *"
    assert crons["sync_payment_status_job_schedule"] == "*/30 * * * *"


def test_hourly_schedule_requests_the_last_closed_hour():
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
        )
        request = definitions.hourly_usage_job_schedule(ctx)
    assert request.partition_key == "2026-11-23-09:00" and request.run_key == "2026-11-23-09:00"


def small_batch_schedule(batch_size=2):
    return invoice_schedule(
        name="monthly_invoices_job_schedule",
        interval=BillingInterval.MONTHLY,
        job=definitions.monthly_invoices_job,
        cron="0 0 1 * *",
        first_period=dt.date(2026, 1, 1),
        batch_size=batch_size,
        running=True,
    )


def test_monthly_schedule_bills_the_previous_month_in_batches():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("monthly_billed_organizations", ["a", "b", "c", "d", "e"])
        ctx = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2026, 11, 1, tzinfo=UTC)
        )
        requests = small_batch_schedule()(ctx)
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
    assert {r.tags["billing/period"] for r in requests} == {"2026-10-01"}


@pytest.mark.parametrize(
    ("tick", "period"),
    [
        (dt.datetime(2027, 1, 1, tzinfo=UTC), "2026-12-01"),
        (dt.datetime(2028, 3, 1, tzinfo=UTC), "2028-02-01"),
        (dt.datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "2026-11-01"),  # an off-cron tick: December is open
    ],
)
def test_monthly_schedule_period_comes_from_the_tick(tick, period):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("monthly_billed_organizations", ["a"])
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        [request] = small_batch_schedule()(ctx)
    assert request.tags["dagster/asset_partition_range_start"] == f"{period}|a"


def test_schedule_skips_batches_it_launched_on_an_earlier_tick():
    tick = dt.datetime(2026, 11, 1, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("monthly_billed_organizations", ["a", "b", "c"])
        launched = {
            "dagster/run_key": "monthly-schedule-2026-10-01-a-b",
            "dagster/schedule_name": "monthly_invoices_job_schedule",
        }
        dg.materialize([_noop], instance=instance, tags=launched)
        requests = small_batch_schedule()(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
        assert [r.run_key for r in requests] == ["monthly-schedule-2026-10-01-c-c"]
        instance.delete_dynamic_partition("monthly_billed_organizations", "c")
        skip = small_batch_schedule()(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert isinstance(skip, dg.SkipReason) and "already launched" in skip.skip_message


@dg.asset
def _noop():
    return None


def test_organizations_sensor_adds_new_organizations_once(settings):
    setup_database(settings.database_url)
    engine = get_engine(settings.database_url)
    reference.upsert_organizations(engine, [org("m1"), org("w1", interval="weekly")])
    resources = {"billing_db": BillingDatabaseResource(url=settings.database_url)}
    with dg.instance_for_test() as instance:
        sensor = definitions.organizations_sensor
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
        requests = definitions.late_usage_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    spans = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]
    assert spans == [("2026-10-03-00:00", "2026-10-03-01:00"), ("2026-10-03-05:00", "2026-10-03-05:00")]
    assert {r.tags["billing/trigger"] for r in requests} == {"late_usage_sensor"}
    assert all(r.run_key.startswith(f"late-{s}-{e}-") for r, (s, e) in zip(requests, spans, strict=True))


def _finalization_sensor():
    from billing_pipeline.defs.automation import invoice_finalization_sensor

    return invoice_finalization_sensor(
        name="invoice_finalization_sensor",
        jobs={
            BillingInterval.MONTHLY: dg.define_asset_job("monthly_invoices_job"),
            BillingInterval.WEEKLY: dg.define_asset_job("weekly_invoices_job"),
        },
        grace=dt.timedelta(hours=72),
        first_period=dt.date(2026, 1, 1),
        batch_size=2,
        running=True,
    )


def test_finalization_sensor_launches_the_last_period_once_its_grace_window_closed(settings):
    import time_machine

    setup_database(settings.database_url)
    sensor = _finalization_sensor()
    resources = {"billing_db": BillingDatabaseResource(url=settings.database_url)}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(ORGANIZATION_PARTITIONS[BillingInterval.MONTHLY].name, ["a", "b", "c"])
        with time_machine.travel(dt.datetime(2026, 11, 3, 23, 59, tzinfo=UTC), tick=False):
            early = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        with time_machine.travel(dt.datetime(2026, 11, 4, 0, 0, tzinfo=UTC), tick=False):
            due = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert {r.tags["billing/period"] for r in early} == {"2026-09-01"}  # October still in its grace window
    assert [(r.job_name, r.tags["billing/period"], r.run_key) for r in due] == [
        ("monthly_invoices_job", "2026-10-01", "monthly-finalize-2026-10-01-a-b"),
        ("monthly_invoices_job", "2026-10-01", "monthly-finalize-2026-10-01-c-c"),
    ]


def test_finalization_sensor_finalizes_drafts_left_in_older_periods(settings):
    """The daemon was down through September's finalization: its drafts are launched again, once per set."""
    import time_machine

    from billing_pipeline.clock import utc_now
    from billing_pipeline.domain.periods import monthly_period
    from billing_pipeline.services import invoicing
    from billing_pipeline_tests.builders import subscribe

    setup_database(settings.database_url)
    engine = get_engine(settings.database_url)
    reference.upsert_organizations(engine, [org("a"), org("b"), org("c")])
    for o in ("a", "b", "c"):
        subscribe(settings.database_url, o, "starter", dt.datetime(2026, 8, 1, tzinfo=UTC))
    with time_machine.travel(dt.datetime(2026, 10, 1, 0, 5, tzinfo=UTC), tick=False):
        invoicing.draft_batch(engine, monthly_period(2026, 9), ["a", "c"], dry_run=False)
    sensor = _finalization_sensor()
    resources = {"billing_db": BillingDatabaseResource(url=settings.database_url)}

    def requests_at(moment):
        with time_machine.travel(moment, tick=False):
            return [
                (r.tags["billing/period"], r.tags["dagster/asset_partition_range_start"], r.run_key)
                for r in sensor(dg.build_sensor_context(instance=instance, resources=resources))
            ]

    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(ORGANIZATION_PARTITIONS[BillingInterval.MONTHLY].name, ["a", "b", "c"])
        within_grace = requests_at(dt.datetime(2026, 10, 3, 23, 59, tzinfo=UTC))
        december = requests_at(dt.datetime(2026, 12, 10, tzinfo=UTC))
        with time_machine.travel(dt.datetime(2026, 12, 10, tzinfo=UTC), tick=False):
            invoicing.finalize_batch(engine, monthly_period(2026, 9), ["c"], prefix="INV", now=utc_now(), dry_run=False)
        after_c = requests_at(dt.datetime(2026, 12, 10, 0, 1, tzinfo=UTC))
    # On 3 October September is in its grace window: only August, the last period to finalize, is asked for.
    assert [p for p, _, _ in within_grace] == ["2026-08-01", "2026-08-01"]
    backlog = [(p, start, key) for p, start, key in december if p == "2026-09-01"]
    assert [(p, start) for p, start, _ in backlog] == [("2026-09-01", "2026-09-01|a")]
    assert backlog[0][2].startswith("monthly-finalize-backlog-2026-09-01-")
    assert {p for p, _, _ in december} == {"2026-09-01", "2026-11-01"}
    still = [(p, start, key) for p, start, key in after_c if p == "2026-09-01"]
    assert [start for _, start, _ in still] == ["2026-09-01|a"] and still[0][2] != backlog[0][2]
