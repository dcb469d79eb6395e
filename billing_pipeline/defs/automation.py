"""Invoice schedules and the organization sensor."""

import datetime as dt

import dagster as dg

from billing_pipeline.db import reference
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS, billing_key, organization_batches
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import previous_period

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def period_run_requests(
    instance: dg.DagsterInstance,
    interval: BillingInterval,
    period_key: str,
    batch_size: int,
    *,
    run_key_prefix: str,
    tags: dict[str, str] | None = None,
) -> list[dg.RunRequest]:
    """One RunRequest per batch of organizations: a contiguous key range of one period."""
    orgs = instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)
    requests = []
    for chunk in organization_batches(orgs, batch_size):
        requests.append(
            dg.RunRequest(
                # the range is in the key: an organization added later makes a new request
                run_key=f"{run_key_prefix}-{period_key}-{chunk[0]}-{chunk[-1]}",
                tags={
                    RANGE_START_TAG: str(billing_key(interval, period_key, chunk[0])),
                    RANGE_END_TAG: str(billing_key(interval, period_key, chunk[-1])),
                    "billing/period": period_key,
                    **(tags or {}),
                },
            )
        )
    return requests


def build_invoice_schedule(
    interval: BillingInterval,
    job,
    cron: str,
    *,
    first_period: dt.date,
    batch_size: int,
    running: bool,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{job.name}_schedule",
        # defaults: monthly "0 0 1 * *" (1st of month, 00:00 UTC); weekly "0 0 * * 1" (Monday 00:00 UTC)
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Invoices the last closed {interval.value} period for every organization, in batches.",
    )
    def invoice_schedule(context: dg.ScheduleEvaluationContext):
        period = previous_period(interval, context.scheduled_execution_time.astimezone(dt.UTC))
        if period.start.date() < first_period:
            return dg.SkipReason(f"{period.key} is before the first billing period {first_period}")
        requests = period_run_requests(
            context.instance, interval, period.key, batch_size, run_key_prefix=f"{interval.value}-schedule"
        )
        if not requests:
            return dg.SkipReason(f"no {interval.value}-billed organizations yet")
        # Dagster dedupes a schedule's run keys within one tick only; a cron that ticks more
        # than once a month must not relaunch batches already launched for this period.
        fresh = [r for r in requests if not _launched(context.instance, f"{job.name}_schedule", r.run_key)]
        return fresh or dg.SkipReason(f"every batch of {period.key} was already launched")

    return invoice_schedule


def missing_organization_partitions(instance: dg.DagsterInstance, engine) -> dict[str, list[str]]:
    """Organization partitions to add, by partitions name: every organization not there yet."""
    missing = {}
    for interval, ids in reference.organization_ids_by_interval(engine).items():
        name = ORGANIZATION_PARTITIONS[interval].name
        existing = set(instance.get_dynamic_partitions(name))
        new = [org for org in ids if org not in existing]
        if new:
            missing[name] = new
    return missing


def _launched(instance: dg.DagsterInstance, schedule_name: str, run_key: str) -> bool:
    tags = {"dagster/run_key": run_key, "dagster/schedule_name": schedule_name}
    return bool(instance.get_run_records(dg.RunsFilter(tags=tags), limit=1))


@dg.sensor(name="organizations_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def organizations_sensor(context: dg.SensorEvaluationContext, billing_db: BillingDatabaseResource):
    """Adds every organization in the billing database to its interval's partitions.

    Organizations are never removed: closed ones keep their history and are skipped.
    """
    missing = missing_organization_partitions(context.instance, billing_db.engine())
    requests = [dg.AddDynamicPartitionsRequest(name, keys) for name, keys in missing.items()]
    added = sum(len(keys) for keys in missing.values())
    if not requests:
        return dg.SkipReason("organization partitions are up to date")
    context.log.info(f"adding {added} organization partition(s)")
    return dg.SensorResult(dynamic_partitions_requests=requests)
