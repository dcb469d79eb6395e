"""The one entry point: ``dagster dev -m billing_pipeline.definitions`` (see workspace.yaml).

Every asset, job, schedule and sensor is a module-level object here or in ``defs/``, its
name literal and equal to its variable. The environment is read once, at load
(``settings``): crons, batch size and the first partition are part of the definitions.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from billing_pipeline.db.late_usage_ledger import pending_late_usage
from billing_pipeline.defs import alerts, automation, charges, health, invoicing, partitions, reminders, reports, usage
from billing_pipeline.defs.automation import organizations_sensor
from billing_pipeline.defs.dagster_internals import sleep_while_waiting_for_pool_slots
from billing_pipeline.defs.delivery import build_delivery_asset, build_delivery_job, build_invoice_delivery_sensor
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.usage import hourly_usage_job
from billing_pipeline.domain.charges import parse_retry_days, retry_days_from_policy
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import PeriodJob
from billing_pipeline.services.collections.charges import ChargeOptions
from billing_pipeline.services.collections.payment_sync import SyncOptions
from billing_pipeline.services.collections.policy import check_channels, load_policy
from billing_pipeline.services.delivery import DeliveryOptions, charges_automatically, seller_from_settings
from billing_pipeline.settings import Settings, delivery_resources, sms_resource

MONTHLY, WEEKLY = BillingInterval.MONTHLY, BillingInterval.WEEKLY
# Runs waiting for a pool slot (pdf, s3, stripe, email) sleep instead of spinning on a core.
sleep_while_waiting_for_pool_slots()

settings = Settings.from_env()

hourly_usage_partitions = partitions.hourly_usage_partitions(settings.partitions_start)
monthly_billing_partitions = partitions.billing_partitions(MONTHLY, settings.partitions_start)
weekly_billing_partitions = partitions.billing_partitions(WEEKLY, settings.partitions_start)
_invoice_options = {"batch_size": settings.invoice_batch_size, "dry_run_default": settings.dry_run}

hourly_usage = usage.hourly_usage_asset(hourly_usage_partitions)

monthly_invoice_drafts = invoicing.invoice_drafts_asset(
    name="monthly_invoice_drafts",
    interval=MONTHLY,
    partitions_def=monthly_billing_partitions,
    invoices_name="monthly_invoices",
    **_invoice_options,
)
monthly_invoices = invoicing.invoices_asset(
    name="monthly_invoices",
    interval=MONTHLY,
    drafts=monthly_invoice_drafts,
    partitions_def=monthly_billing_partitions,
    grace=settings.invoice_grace,
    **_invoice_options,
)
weekly_invoice_drafts = invoicing.invoice_drafts_asset(
    name="weekly_invoice_drafts",
    interval=WEEKLY,
    partitions_def=weekly_billing_partitions,
    invoices_name="weekly_invoices",
    **_invoice_options,
)
weekly_invoices = invoicing.invoices_asset(
    name="weekly_invoices",
    interval=WEEKLY,
    drafts=weekly_invoice_drafts,
    partitions_def=weekly_billing_partitions,
    grace=settings.invoice_grace,
    **_invoice_options,
)
monthly_usage_reconciliation = invoicing.usage_reconciliation_check(drafts=monthly_invoice_drafts, interval=MONTHLY)
weekly_usage_reconciliation = invoicing.usage_reconciliation_check(drafts=weekly_invoice_drafts, interval=WEEKLY)

monthly_invoices_job = dg.define_asset_job(
    name="monthly_invoices_job",
    selection=dg.AssetSelection.assets(monthly_invoice_drafts, monthly_invoices),
    description="Draft, reconcile and finalize monthly invoices (partition = month × organization).",
)
weekly_invoices_job = dg.define_asset_job(
    name="weekly_invoices_job",
    selection=dg.AssetSelection.assets(weekly_invoice_drafts, weekly_invoices),
    description="Draft, reconcile and finalize weekly invoices (partition = billing week × organization).",
)

hourly_usage_job_schedule = usage.hourly_usage_schedule(
    name="hourly_usage_job_schedule",
    job=hourly_usage_job,
    cron=settings.hourly_usage_cron,  # default "5 * * * *": five past every hour, UTC
    running=settings.schedules_running,
)
monthly_invoices_job_schedule = automation.invoice_schedule(
    name="monthly_invoices_job_schedule",
    interval=MONTHLY,
    job=monthly_invoices_job,
    cron=settings.monthly_invoice_cron,  # default "0 0 1 * *": the 1st of the month, 00:00 UTC
    first_period=settings.partitions_start,
    batch_size=settings.invoice_batch_size,
    running=settings.schedules_running,
)
weekly_invoices_job_schedule = automation.invoice_schedule(
    name="weekly_invoices_job_schedule",
    interval=WEEKLY,
    job=weekly_invoices_job,
    cron=settings.weekly_invoice_cron,  # default "0 0 * * 1": Monday 00:00 UTC
    first_period=settings.partitions_start,
    batch_size=settings.invoice_batch_size,
    running=settings.schedules_running,
)
invoice_finalization_sensor = automation.invoice_finalization_sensor(
    name="invoice_finalization_sensor",
    jobs={MONTHLY: monthly_invoices_job, WEEKLY: weekly_invoices_job},
    grace=settings.invoice_grace,  # INVOICE_GRACE_HOURS after a period ends, default 72
    first_period=settings.partitions_start,
    batch_size=settings.invoice_batch_size,
    running=settings.schedules_running,
)
service_health = health.service_health_asset(timeout_seconds=settings.health_probe_timeout_seconds)
service_health_job = dg.define_asset_job(
    name="service_health_job",
    selection=dg.AssetSelection.assets(service_health),
    description="Probe the database, payment gateway, document store and mailer (one asset check each).",
)
service_health_schedule = health.service_health_schedule(
    name="service_health_schedule",
    job=service_health_job,
    cron=settings.health_check_cron,  # default "*/15 * * * *": every 15 minutes, UTC
    running=settings.schedules_running,
)
_policy = load_policy(settings.dunning_policy_file)  # DUNNING_POLICY_FILE: a bad policy fails the load
check_channels(
    _policy, {"email", "sms"} if settings.sms_provider != "none" else {"email"}, settings.dunning_policy_file
)
payment_reminders = reminders.payment_reminders_asset(
    policy=_policy,
    seller=seller_from_settings(settings.seller),
    email_from=settings.email_from,
    max_attempts=settings.notification_max_attempts,
)
send_payment_reminders_job = dg.define_asset_job(
    name="send_payment_reminders_job",
    selection=dg.AssetSelection.assets(payment_reminders),
    description="Sends the payment reminders due today, each invoice x step x audience once.",
)
send_payment_reminders_job_schedule = reminders.payment_reminders_schedule(
    name="send_payment_reminders_job_schedule",
    job=send_payment_reminders_job,
    cron=settings.payment_reminders_cron,  # default "0 9 * * *": daily 09:00 UTC
    running=settings.schedules_running,
)
_gateway_charges = charges_automatically(settings)  # PAYMENT_GATEWAY=stripe and INVOICE_ENABLE_STRIPE
auto_charges = charges.auto_charges_asset(
    options=ChargeOptions(
        DeliveryOptions().idempotency_prefix,
        # CHARGE_RETRY_DAYS; default one day before each dunning step after the overdue notice (6, 13, 29)
        parse_retry_days(settings.charge_retry_days) if settings.charge_retry_days else retry_days_from_policy(_policy),
        max_attempts=settings.charge_max_attempts,  # CHARGE_MAX_ATTEMPTS, default 4: then a dead letter
    ),
    seller=seller_from_settings(settings.seller),
    email_from=settings.email_from,
    max_attempts=settings.notification_max_attempts,
    enabled=_gateway_charges,
)
charge_due_invoices_job = dg.define_asset_job(
    name="charge_due_invoices_job",
    selection=dg.AssetSelection.assets(auto_charges),
    description="Charges auto-pay organizations' due invoices through the payment gateway, each attempt once.",
)
charge_due_invoices_job_schedule = charges.collections_schedule(
    name="charge_due_invoices_job_schedule",
    job=charge_due_invoices_job,
    asset_name=charges.CHARGES_ASSET,
    cron=settings.charge_due_invoices_cron,  # default "0 6 * * *": daily 06:00 UTC, before the reminders
    running=settings.schedules_running,
    what="Charges the due invoices of auto-pay organizations (CHARGE_DUE_INVOICES_CRON, default daily 06:00 UTC).",
)
payment_status_sync = charges.payment_status_sync_asset(
    options=SyncOptions(max_checks=settings.payment_sync_max_checks),
    seller=seller_from_settings(settings.seller),
    email_from=settings.email_from,
    max_attempts=settings.notification_max_attempts,
    enabled=_gateway_charges,
)
sync_payment_status_job = dg.define_asset_job(
    name="sync_payment_status_job",
    selection=dg.AssetSelection.assets(payment_status_sync),
    description="Settles processing payments and records invoices paid in Stripe outside our charges.",
)
sync_payment_status_job_schedule = charges.collections_schedule(
    name="sync_payment_status_job_schedule",
    job=sync_payment_status_job,
    asset_name=charges.SYNC_ASSET,
    cron=settings.payment_sync_cron,  # default "*/30 * * * *": every 30 minutes, UTC
    running=settings.schedules_running,
    what="Re-reads processing payments and invoices paid in Stripe (PAYMENT_SYNC_CRON, default every 30 minutes).",
)
run_failure_alert_sensor = alerts.run_failure_alert_sensor(
    name="run_failure_alert_sensor", running=settings.schedules_running
)
failure_rate_alert_sensor = alerts.failure_rate_alert_sensor(
    name="failure_rate_alert_sensor",
    threshold=settings.alert_failure_threshold,  # ALERT_FAILURE_THRESHOLD, default 10
    window=dt.timedelta(hours=settings.alert_failure_window_hours),  # ALERT_FAILURE_WINDOW_HOURS, default 24
    interval_seconds=settings.alert_sensor_interval_seconds,  # ALERT_SENSOR_INTERVAL_SECONDS, default 300
    running=settings.schedules_running,
)
service_health_alert_sensor = alerts.service_health_alert_sensor(
    name="service_health_alert_sensor", running=settings.schedules_running
)
invoice_failures_alert_sensor = alerts.invoice_failures_alert_sensor(
    name="invoice_failures_alert_sensor",
    jobs={MONTHLY: monthly_invoices_job.name, WEEKLY: weekly_invoices_job.name},
    interval_seconds=settings.alert_sensor_interval_seconds,
    running=settings.schedules_running,
)
late_usage_alert_sensor = alerts.late_usage_alert_sensor(
    name="late_usage_alert_sensor",
    pending_late_usage=pending_late_usage,  # late usage no finalized invoice carries yet
    interval_seconds=settings.alert_sensor_interval_seconds,
    running=settings.schedules_running,
)
alert_redelivery_sensor = alerts.alert_redelivery_sensor(
    name="alert_redelivery_sensor",
    interval_seconds=settings.alert_sensor_interval_seconds,
    running=settings.schedules_running,
)
late_usage_sensor = usage.late_usage_sensor(
    name="late_usage_sensor", job=hourly_usage_job, partitions_def=hourly_usage_partitions
)

# Finance reports: partitioned assets, their jobs and the schedules built from them.
ar_aging_report_partitions = partitions.ar_aging_report_partitions(settings.partitions_start)
mrr_report_partitions = partitions.mrr_report_partitions(settings.partitions_start)
daily_analytics_report_partitions = partitions.daily_analytics_report_partitions(settings.partitions_start)
weekly_bi_report_partitions = partitions.weekly_bi_report_partitions(settings.partitions_start)
_report_mail = {"recipients": settings.report_recipients, "sender": settings.email_from}
ar_aging_report = reports.ar_aging_report_asset(ar_aging_report_partitions, **_report_mail)
mrr_report = reports.mrr_report_asset(mrr_report_partitions, **_report_mail)
daily_analytics_report = reports.daily_analytics_report_asset(daily_analytics_report_partitions, **_report_mail)
weekly_bi_report = reports.weekly_bi_report_asset(weekly_bi_report_partitions, **_report_mail)
ar_aging_report_job = dg.define_asset_job(
    name="ar_aging_report_job",
    selection=dg.AssetSelection.assets(ar_aging_report),
    partitions_def=ar_aging_report_partitions,
    description="AR aging as of Monday: PDF and CSV stored, e-mailed once to REPORT_RECIPIENTS.",
)
mrr_report_job = dg.define_asset_job(
    name="mrr_report_job",
    selection=dg.AssetSelection.assets(mrr_report),
    partitions_def=mrr_report_partitions,
    description="MRR/ARR summary of last month: PDF (trend charts) and CSV stored, e-mailed once.",
)
daily_analytics_report_job = dg.define_asset_job(
    name="daily_analytics_report_job",
    selection=dg.AssetSelection.assets(daily_analytics_report),
    partitions_def=daily_analytics_report_partitions,
    description="Daily analytics of yesterday (UTC): PDF and CSV stored, e-mailed once.",
)
weekly_bi_report_job = dg.define_asset_job(
    name="weekly_bi_report_job",
    selection=dg.AssetSelection.assets(weekly_bi_report),
    partitions_def=weekly_bi_report_partitions,
    description="Weekly BI of the Sunday-Saturday week just ended: PDF (charts) and CSV stored, e-mailed once.",
)
ar_aging_report_schedule = reports.report_schedule(
    name="ar_aging_report_schedule",
    job=ar_aging_report_job,
    partitions_def=ar_aging_report_partitions,
    cron=settings.ar_aging_report_cron,  # default "0 7 * * 1": Monday 07:00 UTC, for the week that just ended
    running=settings.schedules_running,
)
mrr_report_schedule = reports.report_schedule(
    name="mrr_report_schedule",
    job=mrr_report_job,
    partitions_def=mrr_report_partitions,
    cron=settings.mrr_report_cron,  # default "0 8 1 * *": the 1st, 08:00 UTC, for the month that just ended
    running=settings.schedules_running,
)
daily_analytics_report_schedule = reports.report_schedule(
    name="daily_analytics_report_schedule",
    job=daily_analytics_report_job,
    partitions_def=daily_analytics_report_partitions,
    cron=settings.daily_analytics_report_cron,  # default "0 2 * * *": 02:00 UTC, for the day that just ended
    running=settings.schedules_running,
)
weekly_bi_report_schedule = reports.report_schedule(
    name="weekly_bi_report_schedule",
    job=weekly_bi_report_job,
    partitions_def=weekly_bi_report_partitions,
    cron=settings.weekly_bi_report_cron,  # default "0 3 * * 0": Sunday 03:00 UTC, for the week that just ended
    running=settings.schedules_running,
)

#: What run-month launches per interval: the invoices job and the assets its run config goes to.
INVOICE_JOBS = {
    MONTHLY: PeriodJob(MONTHLY, monthly_invoices_job.name, (monthly_invoice_drafts.op.name, monthly_invoices.op.name)),
    WEEKLY: PeriodJob(WEEKLY, weekly_invoices_job.name, (weekly_invoice_drafts.op.name, weekly_invoices.op.name)),
}


def build_definitions(settings: Settings = settings) -> dg.Definitions:
    """The definitions with resources (and delivery) for ``settings``; the objects above are
    shared and come from the environment at load."""
    delivery = _delivery_definitions(settings)
    return dg.Definitions(
        assets=[hourly_usage, monthly_invoice_drafts, monthly_invoices, weekly_invoice_drafts, weekly_invoices]
        + [ar_aging_report, mrr_report, daily_analytics_report, weekly_bi_report]
        + [payment_reminders, auto_charges, payment_status_sync]
        + delivery["assets"]
        + [service_health],
        asset_checks=[monthly_usage_reconciliation, weekly_usage_reconciliation],
        jobs=[hourly_usage_job, monthly_invoices_job, weekly_invoices_job]
        + [ar_aging_report_job, mrr_report_job, daily_analytics_report_job, weekly_bi_report_job]
        + [send_payment_reminders_job, charge_due_invoices_job, sync_payment_status_job]
        + delivery["jobs"]
        + [service_health_job],
        schedules=[
            hourly_usage_job_schedule,
            monthly_invoices_job_schedule,
            weekly_invoices_job_schedule,
            ar_aging_report_schedule,
            mrr_report_schedule,
            daily_analytics_report_schedule,
            weekly_bi_report_schedule,
            service_health_schedule,
            send_payment_reminders_job_schedule,
            charge_due_invoices_job_schedule,
            sync_payment_status_job_schedule,
        ],
        sensors=[organizations_sensor, late_usage_sensor, invoice_finalization_sensor]
        + delivery["sensors"]
        + [
            run_failure_alert_sensor,
            failure_rate_alert_sensor,
            service_health_alert_sensor,
            invoice_failures_alert_sensor,
            late_usage_alert_sensor,
            alert_redelivery_sensor,
        ],
        resources=resources(settings),
        # Steps of a billing run are sequential and cheap; one process per run saves ~2 s per step.
        executor=dg.in_process_executor,
    )


def resources(settings: Settings) -> dict:
    """Every resource, one implementation per role, chosen from ``settings``."""
    database_url = _env("BILLING_DATABASE_URL") or settings.database_url  # may hold a password
    return {
        "billing_db": BillingDatabaseResource(
            url=database_url,
            invoice_number_prefix=settings.invoice_number_prefix,
            zero_total_invoices=settings.zero_total_invoices,
        ),
        **delivery_resources(settings),
        "sms": sms_resource(settings),  # SMS_PROVIDER: none | twilio (payment reminders' sms channel)
        "alerts": alerts.AlertsResource(
            channels=list(settings.alert_channels),
            email_to=settings.alert_email_to,
            email_from=settings.email_from,
            slack_webhook_url=_env("SLACK_WEBHOOK_URL"),  # a secret: read when a sensor or run starts
            slack_timeout_seconds=settings.slack_timeout_seconds,
            max_attempts=settings.notification_max_attempts,
            webserver_url=settings.dagster_webserver_url,
        ),
    }


def _delivery_definitions(settings: Settings) -> dict[str, list]:
    delivery_options = DeliveryOptions.from_settings(settings, render_workers=2)
    assets, jobs = [], []
    for interval, billing in ((MONTHLY, monthly_billing_partitions), (WEEKLY, weekly_billing_partitions)):
        deliveries = build_delivery_asset(
            interval,
            billing,
            options=delivery_options,
            seller=seller_from_settings(settings.seller, charges_automatically=charges_automatically(settings)),
            batch_size=settings.invoice_batch_size,
        )
        assets.append(deliveries)
        jobs.append(build_delivery_job(interval, deliveries))
    delivery_sensor = build_invoice_delivery_sensor(
        delivery_options, jobs, batch_size=settings.invoice_batch_size, running=settings.schedules_running
    )
    return {"assets": assets, "jobs": jobs, "sensors": [delivery_sensor]}


def _env(name: str) -> dg.EnvVar | None:
    """A secret as an EnvVar when it is set (its value is read at run time, never here)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


__all__ = ["build_definitions", "defs", "delivery_resources"]

defs = build_definitions()
