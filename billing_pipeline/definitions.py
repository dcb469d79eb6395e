"""The one entry point: ``dagster dev -m billing_pipeline.definitions`` (see workspace.yaml)."""

from __future__ import annotations

import os

import dagster as dg

from billing_pipeline.defs.automation import build_invoice_schedule, organizations_sensor
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
from billing_pipeline.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    hours = hourly_usage_partitions(settings.partitions_start)
    assets: list = [build_hourly_usage(hours)]
    checks: list = []
    jobs: list = [hourly_usage_job]
    schedules: list = [build_hourly_usage_schedule(settings.hourly_usage_cron, settings.schedules_running)]
    crons = {BillingInterval.MONTHLY: settings.monthly_invoice_cron, BillingInterval.WEEKLY: settings.weekly_invoice_cron}
    for interval in BillingInterval:
        drafts, finalized, check = build_invoice_assets(
            interval,
            billing_partitions(interval, settings.partitions_start),
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
        schedules.append(
            build_invoice_schedule(
                interval, job, crons[interval],
                first_period=settings.partitions_start,
                batch_size=settings.invoice_batch_size,
                running=settings.schedules_running,
            )
        )
    database_url: str | dg.EnvVar = (
        dg.EnvVar("BILLING_DATABASE_URL") if os.environ.get("BILLING_DATABASE_URL") else settings.database_url
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[organizations_sensor, build_late_usage_sensor(hours)],
        resources={
            "billing_db": BillingDatabaseResource(
                url=database_url, invoice_number_prefix=settings.invoice_number_prefix
            ),
        },
        # Steps of a billing run are sequential and cheap; one process per run saves ~2 s per step.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
