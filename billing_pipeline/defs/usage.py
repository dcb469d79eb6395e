"""Hourly usage: the asset, its job, its schedule and the late-event sensor."""

import datetime as dt

import dagster as dg

from billing_pipeline import launch
from billing_pipeline.clock import utc_now
from billing_pipeline.db import reference, usage
from billing_pipeline.defs.dagster_internals import log_partition_events, mark_partitions_failed
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.aggregation import hours_to_reaggregate
from billing_pipeline.domain.periods import consecutive_hours, hour_from_key, hour_key, hour_start

HOURLY_USAGE_KEY = dg.AssetKey("hourly_usage")


def hourly_usage_asset(partitions_def: dg.HourlyPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=HOURLY_USAGE_KEY,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=launch.MAX_HOURS_PER_RUN),
        output_required=False,
        group_name="usage",
        kinds={"sql"},
    )
    def hourly_usage(context: dg.AssetExecutionContext, billing_db: BillingDatabaseResource):
        """Usage per organization and metric for one UTC hour: event count, sum, max and latest value.

        Aggregated inside the database with one GROUP BY over the hour's raw events;
        re-materializing an hour replaces it exactly. A range run reports each hour.
        """
        engine = billing_db.engine()
        failed: dict[str, str] = {}
        done: list[dg.AssetMaterialization] = []
        for group in consecutive_hours(map(hour_from_key, context.partition_keys), launch.MAX_HOURS_PER_RUN):
            try:
                done += aggregate_hour_range(engine, group)
            except Exception as exc:  # noqa: BLE001 - report the range's hours, go on with others
                context.log.error(f"hours {hour_key(group[0])}..{hour_key(group[-1])} failed: {exc}")
                failed.update({hour_key(h): str(exc) for h in group})
        total_events = sum(m.metadata["events"].value for m in done)
        log_partition_events(context, done)
        context.log.info(f"aggregated {len(context.partition_keys) - len(failed)} hour(s), {total_events} events")
        if failed:
            mark_partitions_failed(context, HOURLY_USAGE_KEY, sorted(failed))
            raise dg.Failure(
                description=f"{len(failed)} hour(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()),
                metadata={"failed_hours": sorted(failed)},
            )
        yield from ()

    return hourly_usage


def aggregate_hour_range(engine, hours: list[dt.datetime], **metadata) -> list[dg.AssetMaterialization]:
    """Aggregate consecutive ``hours`` with one GROUP BY (as bare SQL would) and return
    one hourly_usage materialization per hour, to be logged by the caller's step."""
    catalog = reference.latest_catalog(engine)
    results = usage.aggregate_hours(engine, hours[0], hours[-1], catalog.metrics if catalog else {})
    return [
        dg.AssetMaterialization(
            asset_key=HOURLY_USAGE_KEY,
            partition=hour_key(r.hour),
            metadata={"events": r.event_count, "rows": r.row_count, **metadata},
        )
        for r in results
    ]


hourly_usage_job = dg.define_asset_job(
    name="hourly_usage_job",
    selection=dg.AssetSelection.assets(HOURLY_USAGE_KEY),
    description="Aggregate usage events for UTC hours (partition = hour).",
)


def hourly_usage_schedule(*, name: str, job, cron: str, running: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        """Aggregates the last closed hour before the tick."""
        return launch.hour_run_request(hour_start(context.scheduled_execution_time) - dt.timedelta(hours=1))

    return _schedule


def late_usage_sensor(
    *, name: str, job, partitions_def: dg.HourlyPartitionsDefinition, interval_seconds: int = 60
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(context: dg.SensorEvaluationContext, billing_db: BillingDatabaseResource):
        """Re-aggregates hours that received events after they were aggregated, and closed
        hours (older than 2 h) whose events were imported but never aggregated."""
        engine = billing_db.engine()
        due, stamp = hours_to_reaggregate(
            usage.dirty_marks(engine, limit=5000),
            [h for h, _ in usage.late_hours(engine, limit=5000)],
            first=partitions_def.start,
            now=utc_now(),
        )
        if not due:
            return dg.SkipReason("no hour has events waiting for aggregation")
        requests = launch.hour_range_run_requests(due, trigger=name, run_key_prefix="late", version=stamp.isoformat())
        context.log.info(f"{len(due)} hour(s) to re-aggregate in {len(requests)} run(s)")
        return requests

    return _sensor
