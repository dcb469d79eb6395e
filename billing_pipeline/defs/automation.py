"""Invoice schedules and the organization sensor (what they launch is built by ``billing_pipeline.launch``)."""

import datetime as dt

import dagster as dg

from billing_pipeline import launch
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import previous_period

# defs/delivery.py imports the range tags from here until it moves to billing_pipeline.launch
RANGE_START_TAG = launch.RANGE_START_TAG
RANGE_END_TAG = launch.RANGE_END_TAG


def invoice_schedule(
    *,
    name: str,
    interval: BillingInterval,
    job,
    cron: str,
    first_period: dt.date,
    batch_size: int,
    running: bool,
) -> dg.ScheduleDefinition:
    """A schedule that invoices the last closed ``interval`` period for every organization, in batches."""

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Invoices the last closed {interval.value} period for every organization, in batches.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        period = previous_period(interval, context.scheduled_execution_time)
        if period.start.date() < first_period:
            return dg.SkipReason(f"{period.key} is before the first billing period {first_period}")
        requests = launch.period_run_requests(
            launch.billed_organizations(context.instance, interval),
            interval,
            period.key,
            batch_size,
            run_key_prefix=f"{interval.value}-schedule",
        )
        if not requests:
            return dg.SkipReason(f"no {interval.value}-billed organizations yet")
        fresh = launch.not_yet_launched(context.instance, name, requests)
        return fresh or dg.SkipReason(f"every batch of {period.key} was already launched")

    return _schedule


@dg.sensor(name="organizations_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def organizations_sensor(context: dg.SensorEvaluationContext, billing_db: BillingDatabaseResource):
    """Adds every organization in the billing database to its interval's partitions.

    Organizations are never removed: closed ones keep their history and are skipped.
    """
    missing = launch.missing_organization_partitions(context.instance, billing_db.engine())
    if not missing:
        return dg.SkipReason("organization partitions are up to date")
    context.log.info(f"adding {sum(len(keys) for keys in missing.values())} organization partition(s)")
    return dg.SensorResult(
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(n, k) for n, k in missing.items()]
    )
