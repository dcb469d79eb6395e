"""The one entry point: ``dagster dev -m billing_pipeline.definitions`` (see workspace.yaml)."""

from __future__ import annotations

import os

import dagster as dg

from billing_pipeline.defs.automation import build_invoice_schedule, organizations_sensor
from billing_pipeline.defs.delivery import build_delivery_asset, build_delivery_job, build_invoice_delivery_sensor
from billing_pipeline.defs.invoicing import build_invoice_assets
from billing_pipeline.defs.partitions import billing_partitions, hourly_usage_partitions
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.usage import (
    build_hourly_usage,
    build_hourly_usage_schedule,
    build_late_usage_sensor,
    hourly_usage_job,
)
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.services.delivery import DeliveryOptions, seller_from_settings
from billing_pipeline.settings import Settings, delivery_resources


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    hours = hourly_usage_partitions(settings.partitions_start)
    assets: list = [build_hourly_usage(hours)]
    checks: list = []
    jobs: list = [hourly_usage_job]
    schedules: list = [build_hourly_usage_schedule(settings.hourly_usage_cron, settings.schedules_running)]
    delivery_options = DeliveryOptions.from_settings(settings, render_workers=2)
    delivery_jobs: list = []
    crons = {
        BillingInterval.MONTHLY: settings.monthly_invoice_cron,
        BillingInterval.WEEKLY: settings.weekly_invoice_cron,
    }
    for interval in BillingInterval:
        partitions = billing_partitions(interval, settings.partitions_start)
        drafts, finalized, check = build_invoice_assets(
            interval,
            partitions,
            batch_size=settings.invoice_batch_size,
            dry_run_default=settings.dry_run,
        )
        assets += [drafts, finalized]
        checks.append(check)
        job = dg.define_asset_job(
            name=f"{interval.value}_invoices_job",
            selection=dg.AssetSelection.assets(drafts, finalized),
            description=f"Draft, reconcile and finalize {interval.value} invoices (partition = period × organization).",
        )
        jobs.append(job)
        deliveries = build_delivery_asset(
            interval,
            partitions,
            options=delivery_options,
            seller=seller_from_settings(settings.seller),
            batch_size=settings.invoice_batch_size,
        )
        assets.append(deliveries)
        delivery_jobs.append(build_delivery_job(interval, deliveries))
        schedules.append(
            build_invoice_schedule(
                interval,
                job,
                crons[interval],
                first_period=settings.partitions_start,
                batch_size=settings.invoice_batch_size,
                running=settings.schedules_running,
            )
        )
    database_url = _env("BILLING_DATABASE_URL") or settings.database_url  # may hold a password
    delivery_sensor = build_invoice_delivery_sensor(
        delivery_options, delivery_jobs, batch_size=settings.invoice_batch_size, running=settings.schedules_running
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs + delivery_jobs,
        schedules=schedules,
        sensors=[organizations_sensor, build_late_usage_sensor(hours), delivery_sensor],
        resources={
            "billing_db": BillingDatabaseResource(
                url=database_url, invoice_number_prefix=settings.invoice_number_prefix
            ),
            **delivery_resources(settings),
        },
        # Steps of a billing run are sequential and cheap; one process per run saves ~2 s per step.
        executor=dg.in_process_executor,
    )


def _env(name: str) -> dg.EnvVar | None:
    """A secret as an EnvVar when it is set (its value is read at run time, never here)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


__all__ = ["build_definitions", "defs", "delivery_resources"]

defs = build_definitions()
