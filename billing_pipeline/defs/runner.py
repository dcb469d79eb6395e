"""Moved to ``billing_pipeline.launch``; these names stay here for defs/delivery.py and its tests
until they import them from there (then this module goes)."""

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import (  # noqa: F401 - re-exported
    QUIET_LOGS,
    RunOutcome,
    execute_batches,
    sync_organization_partitions,
    wanted_batches,
)


def run_hours(defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.datetime, last: dt.datetime):
    from billing_pipeline import definitions, launch

    return launch.run_hours(defs, instance, definitions.hourly_usage_job.name, first, last)


def run_period(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    interval: BillingInterval,
    period_key: str,
    *,
    organizations: Sequence[str] = (),
    dry_run: bool = False,
    batch_size: int = 1000,
):
    from billing_pipeline import definitions, launch

    return launch.run_period(
        defs,
        instance,
        definitions.INVOICE_JOBS[interval],
        period_key,
        organizations=organizations,
        dry_run=dry_run,
        batch_size=batch_size,
    )
