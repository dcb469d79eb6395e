"""The one module that leans on Dagster internals: per-partition asset events written to
the event log in batches, and cron ticks computed as Dagster's scheduler computes them.

A run that carries a batch of organizations reports each organization on its own
partition. ``context.log_event`` writes every event in its own transaction (~10 ms
each); these helpers tag the events as one batch so that an event log storage that
supports batch writes (dagster-postgres) stores them in a few statements, when
``DAGSTER_EVENT_BATCH_SIZE`` is set (see README). This leans on Dagster internals the
same way Dagster's own ranged outputs do; it is kept to this one module.
"""

import datetime as dt
from collections.abc import Sequence

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id


def log_partition_events(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    events: Sequence[dg.AssetMaterialization | dg.AssetObservation],
) -> None:
    """Log materializations/observations (one kind per call) as one event-log batch."""
    if not events:
        return
    kinds = {type(e) for e in events}
    if len(kinds) != 1:
        raise ValueError("log one kind of event per batch")
    op_context = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    step_context = op_context._step_execution_context  # noqa: SLF001
    batch_id = generate_event_batch_id()
    last = len(events) - 1
    for i, event in enumerate(events):
        batch = DagsterEventBatchMetadata(batch_id, i == last)
        if isinstance(event, dg.AssetMaterialization):
            dagster_event = DagsterEvent.asset_materialization(step_context, event, batch)
        else:
            dagster_event = DagsterEvent.asset_observation(step_context, event, batch)
        op_context._events.append(dagster_event)  # noqa: SLF001 - as context.log_event does


def mark_partitions_failed(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    asset_key: dg.AssetKey,
    partition_keys: Sequence[str],
) -> None:
    """Make these partitions show FAILED once the step raises.

    Dagster marks a partition failed when the failed run planned it and did not
    materialize it. With ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`` a run plans
    its whole range in one event (1 write instead of one per organization, the main
    per-organization cost measured on PostgreSQL), and no partition would turn failed;
    planning just the failed partitions here restores that. Without the variable the
    partitions are already planned one by one and this adds nothing harmful.
    """
    from dagster._core.events import AssetMaterializationPlannedData

    if not partition_keys:
        return
    op_context = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    step_context = op_context._step_execution_context  # noqa: SLF001
    for key in partition_keys:
        event = DagsterEvent.build_asset_materialization_planned_event(
            step_context.job_name,
            step_context.step.key,
            AssetMaterializationPlannedData(asset_key, partition=str(key)),
        )
        step_context.instance.report_dagster_event(event, step_context.run_id)


def next_cron_tick(cron: str, after: dt.datetime, timezone: str = "UTC") -> dt.datetime:
    """The first tick of ``cron`` (in ``timezone``) after ``after``, as the daemon would fire it."""
    from dagster._utils.schedules import cron_string_iterator

    return next(cron_string_iterator(after.timestamp(), cron, timezone))
