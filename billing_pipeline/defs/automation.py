"""Invoice schedules and the organization sensor (what they launch is built by ``billing_pipeline.launch``)."""

import datetime as dt

import dagster as dg

from billing_pipeline import launch
from billing_pipeline.clock import utc_now
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.invoices import last_period_to_finalize
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import previous_period


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


def invoice_finalization_sensor(
    *,
    name: str,
    jobs: dict[BillingInterval, dg.JobDefinition],
    grace: dt.timedelta,
    first_period: dt.date,
    batch_size: int,
    running: bool,
) -> dg.SensorDefinition:
    """Finalizes each interval's last period once its grace window has closed, in batches.

    The invoice schedules draft a period when it ends; this launches the same job again when
    ``period.end + grace`` has passed, which re-drafts, reconciles and finalizes. Run keys
    name the period and the batch's range, so each batch is launched once (a new
    organization makes a new range).

    Earlier periods are not forgotten: an organization whose draft of an older period is
    still unfinalized (the daemon was down past a whole period, or its finalizing run
    failed) is launched again for that period, keyed on the period and the organizations
    (``finalize-backlog``), so the same backlog is asked for once and a new one again.
    """

    @dg.sensor(
        name=name,
        jobs=list(jobs.values()),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
    )
    def _sensor(context: dg.SensorEvaluationContext, billing_db: BillingDatabaseResource):
        """Finalizes the last period of each interval once INVOICE_GRACE_HOURS have passed since it ended."""
        requests, waiting = [], []
        now = utc_now()
        for interval, job in jobs.items():
            period = last_period_to_finalize(interval, now, grace)
            targets: list[tuple[str, set[str] | None, str]] = []  # (period key, wanted, run key prefix)
            if period.start.date() < first_period:
                waiting.append(f"{interval.value}: {period.key} is before the first billing period")
            else:
                targets.append((period.key, None, f"{interval.value}-finalize"))
            backlog = invoice_rows.drafts_of_ended_periods(billing_db.engine(), interval, now - grace)
            targets += [
                (key, set(orgs), f"{interval.value}-finalize-backlog")
                for key, orgs in backlog.items()
                if key != period.key and dt.date.fromisoformat(key) >= first_period
            ]
            all_orgs = launch.billed_organizations(context.instance, interval)
            for period_key, wanted, prefix in targets:
                requests += launch.period_run_requests(
                    all_orgs,
                    interval,
                    period_key,
                    batch_size,
                    run_key_prefix=prefix,
                    wanted=wanted,
                    trigger=name,
                    job_name=job.name,
                )
        return requests or dg.SkipReason("; ".join(waiting) or "no organizations to finalize")

    return _sensor
