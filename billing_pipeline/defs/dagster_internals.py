"""The one module that leans on Dagster internals: per-partition asset events written to
the event log in batches, cron ticks computed as Dagster's scheduler computes them, and a
run waiting for a pool slot that sleeps instead of spinning (``sleep_while_waiting_for_pool_slots``).

A run that carries a batch of organizations reports each organization on its own
partition. ``context.log_event`` writes every event in its own transaction (~10 ms
each); these helpers tag the events as one batch so that an event log storage that
supports batch writes (dagster-postgres) stores them in a few statements, when
``DAGSTER_EVENT_BATCH_SIZE`` is set (see README). This leans on Dagster internals the
same way Dagster's own ranged outputs do; it is kept to this one module.
"""

import datetime as dt
import time
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


def _pool_wait_spins(context_class) -> bool:
    """Whether ``interval_to_next_pending_claim_check`` never asks for a positive sleep.

    Dagster 1.13 returns ``min([0, *(ready_at - now)])``: at most 0 however far away the next
    claim check is, so ``ActiveExecution.sleep_til_ready`` never sleeps and a run whose next
    step waits for a pool slot loops on one core for as long as it waits (dagster-io/dagster
    PR #20367 describes it and was closed unmerged).
    """
    probe = context_class.__new__(context_class)
    probe._pending_claims = {"probe"}  # noqa: SLF001
    probe._pending_timeouts = {"probe": time.time() + 60}  # noqa: SLF001
    return probe.interval_to_next_pending_claim_check() <= 0


def sleep_while_waiting_for_pool_slots() -> bool:
    """Make a run blocked on a pool (``pool="pdf"`` ...) sleep until its next claim check.

    The delivery job's ops share pools across runs, so with three delivery runs at once two
    of them usually wait for a slot: measured at 10,000 invoices, the waiting run workers
    spun at ~48 ms of CPU per invoice, taking the cores the rendering needed. The wait becomes
    ``max(0, earliest pending check - now)``: Dagster's own back-off (1 s growing to 15 s)
    decides when to claim again, as intended. Applied only while Dagster has the bug (checked
    by behaviour, so an upgrade that fixes it turns this off); returns whether it applied.
    """
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    if not _pool_wait_spins(InstanceConcurrencyContext):
        return False

    def interval_to_next_pending_claim_check(self) -> float:
        if not self._pending_claims or not self._pending_timeouts:
            return 0.0
        return max(0.0, min(self._pending_timeouts.values()) - time.time())

    InstanceConcurrencyContext.interval_to_next_pending_claim_check = interval_to_next_pending_claim_check
    return True
