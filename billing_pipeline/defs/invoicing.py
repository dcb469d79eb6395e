"""Invoice assets for one billing interval: drafts -> blocking reconciliation -> invoices.

Partitions are period × organization. A run carries a batch of organizations (a key
range); each organization is priced and finalized on its own, and reported on its
own partition: successes as materializations (skipped organizations too, with
``outcome: skipped``), failures by raising ``Failure`` at the end naming them, so the UI
shows exactly those as failed and the rest as materialized. A dry run writes no
materialization: each organization's result (and total) is an observation.

Finalization waits for the period's end plus the grace window (``INVOICE_GRACE_HOURS``);
a period that has not ended is refused before anything is numbered.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import dagster as dg

from billing_pipeline import launch
from billing_pipeline.clock import utc_now
from billing_pipeline.db import usage
from billing_pipeline.defs.dagster_internals import log_partition_events, mark_partitions_failed
from billing_pipeline.defs.partitions import billing_key, split_key
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.usage import HOURLY_USAGE_KEY, aggregate_hour_range
from billing_pipeline.domain import money
from billing_pipeline.domain.invoices import finalization_refusal
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import consecutive_hours, period_from_key
from billing_pipeline.services import invoicing
from billing_pipeline.services.invoicing import BatchResult, Outcome


class InvoiceRunConfig(dg.Config):
    """Run options, the same for drafts and invoices (set them on both, or use the tag)."""

    dry_run: bool = False
    """Compute and report everything, write nothing. The run tag billing/dry_run=true does the same."""
    organizations: list[str] = []
    """Limit the run to these organization ids (within its partitions); empty means all."""
    finalize_within_grace: bool = False
    """Finalize an ended period without waiting for its grace window (late usage then goes
    to the next invoice as a prior-period adjustment). An open period is refused regardless."""


def is_dry_run(context, config: InvoiceRunConfig | None, default: bool) -> bool:
    tag = (context.run.tags.get(launch.DRY_RUN_TAG) or "").strip().lower()
    return default or (config is not None and config.dry_run) or tag in {"1", "true", "yes"}


def batches(keys: Sequence, interval: BillingInterval, only: Sequence[str] = ()) -> dict[str, list[str]]:
    """Partition keys -> {period key: [org ids]}, optionally restricted to ``only``."""
    wanted = set(only)
    grouped: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        period_key, org = split_key(key, interval)
        if not wanted or org in wanted:
            grouped[period_key].append(org)
    return dict(sorted(grouped.items()))


def _money(result) -> str:
    return money.format_amount(result.total, result.currency) if result.total is not None else "-"


def _org_metadata(result) -> dict:
    meta = {"outcome": result.outcome.value, "organization": result.org_id}
    if result.number:
        meta["invoice_number"] = result.number
    if result.total is not None:
        meta["total"] = _money(result)
        meta["currency"] = result.currency
        meta["lines"] = result.lines
    if result.message:
        meta["message"] = result.message
    return meta


def summary_metadata(batches_done: Sequence[BatchResult]) -> dict:
    results = [r for b in batches_done for r in b.results]
    counts = {o.value: sum(1 for r in results if r.outcome is o) for o in Outcome}
    return {
        "organizations": len(results),
        **counts,
        "revenue": money.format_revenue(invoicing.revenue_by_currency(results)),
        "failures": dg.MetadataValue.md(
            "\n".join([f"- `{r.org_id}`: {r.message}" for r in results if r.outcome is Outcome.FAILED][:20]) or "none"
        ),
    }


def catch_up_hourly_usage(context, engine, period) -> None:
    """Aggregate the period's hours that still hold un-aggregated events, first.

    The monthly schedule fires at 00:00 on the 1st, when the month's last hour has just
    closed and its hourly run has not happened yet; late events can land any time. The
    hours are aggregated by the same code as the hourly_usage asset and reported as its
    materializations, so lineage stays true and the reconciliation check can pass.
    """
    now = utc_now()
    stale = [h for h in usage.unaggregated_hours(engine, period.start, period.end) if h + dt.timedelta(hours=1) <= now]
    if not stale:
        return
    events = []
    for group in consecutive_hours(stale, launch.MAX_HOURS_PER_RUN):
        events += aggregate_hour_range(engine, group, trigger=f"catch-up before invoicing {period.key}")
    log_partition_events(context, events)
    context.log.info(f"aggregated {len(stale)} hour(s) of {period.key} that held new events before drafting")


def _org_events(asset_key: dg.AssetKey, interval: BillingInterval, batch: BatchResult, *, observe: bool) -> list:
    """One event per organization of ``batch``: observations (dry runs, all outcomes) or
    materializations (every outcome but failed: skipped and already-final are answers too)."""
    event = dg.AssetObservation if observe else dg.AssetMaterialization
    return [
        event(
            asset_key=asset_key, partition=billing_key(interval, batch.period.key, r.org_id), metadata=_org_metadata(r)
        )
        for r in batch.results
        if observe or r.ok
    ]


def _failure(context, asset_key: dg.AssetKey, interval: BillingInterval, failed, *, mark: bool) -> dg.Failure:
    """The step's ``Failure`` naming the failed organizations; ``mark`` makes their partitions FAILED."""
    if mark:
        mark_partitions_failed(context, asset_key, [str(billing_key(interval, p, r.org_id)) for p, r in failed])
    return dg.Failure(
        description=f"{len(failed)} organization(s) failed: "
        + "; ".join(f"{r.org_id} {p}: {r.message}" for p, r in failed[:50]),
        metadata={"failed_organizations": sorted({r.org_id for _, r in failed})},
    )


def invoice_drafts_asset(
    *,
    name: str,
    interval: BillingInterval,
    partitions_def: dg.MultiPartitionsDefinition,
    batch_size: int,
    dry_run_default: bool,
    invoices_name: str,
) -> dg.AssetsDefinition:
    """Drafts of one interval: usage priced with the catalog, replaced on every run until finalized."""
    key, invoices_key = dg.AssetKey(name), dg.AssetKey(invoices_name)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        deps=[HOURLY_USAGE_KEY],
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=batch_size),
        output_required=False,  # a dry run yields no output (observations only)
        group_name="invoicing",
        kinds={"sql"},
        description=(
            f"Draft {interval.value} invoices: usage from hourly_usage priced with the catalog, per "
            "organization and period. Drafts are replaced on every run until finalized."
        ),
    )
    def _drafts(context: dg.AssetExecutionContext, config: InvoiceRunConfig, billing_db: BillingDatabaseResource):
        dry_run = is_dry_run(context, config, dry_run_default)
        engine = billing_db.engine()
        done = []
        for period_key, org_ids in batches(context.partition_keys, interval, config.organizations).items():
            period = period_from_key(interval, period_key)
            if not dry_run:
                catch_up_hourly_usage(context, engine, period)
            batch = invoicing.draft_batch(engine, period, org_ids, dry_run=dry_run)
            done.append(batch)
            if dry_run:
                log_partition_events(context, _org_events(key, interval, batch, observe=True))
            for r in batch.failed:
                context.log.warning(f"{r.org_id} {period_key}: {r.message}")
        context.log.info("\n" + "\n".join(invoicing.format_summary(b) for b in done))
        failed = [(b.period.key, r) for b in done for r in b.failed]
        if dry_run:  # observations only: nothing materialized, so the check and invoices are skipped
            if failed:
                raise _failure(context, key, interval, failed, mark=False)
            return
        # The step's output is what lets the check and the invoices step run; Dagster copies its
        # materialization to every partition of the range, so each organization's own event (and
        # the failed ones' planned events, which turn them FAILED) are written after it.
        yield dg.MaterializeResult(metadata={"dry_run": dry_run, **summary_metadata(done)})
        log_partition_events(context, [e for b in done for e in _org_events(key, interval, b, observe=False)])
        if not failed:
            return
        if invoices_key in context.job_def.asset_layer.selected_asset_keys:
            # the invoices step reports them too (from invoice_errors) and fails the run
            mark_partitions_failed(context, key, [str(billing_key(interval, p, r.org_id)) for p, r in failed])
            return
        raise _failure(context, key, interval, failed, mark=True)

    return _drafts


def usage_reconciliation_check(*, drafts: dg.AssetsDefinition, interval: BillingInterval) -> dg.AssetChecksDefinition:
    """The blocking check between drafts and finalization, with a result per organization partition."""
    check_name = "usage_reconciles_with_hourly_usage"

    @dg.asset_check(
        asset=drafts,
        name=check_name,
        blocking=True,
        partitions_def=drafts.partitions_def,
        description=(
            "Before finalization: every draft's quantities equal hourly usage now, hourly usage "
            "equals the raw events, and no hour of the period has events not yet aggregated. "
            "Each organization partition gets its own result; any failure blocks the batch."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext, billing_db: BillingDatabaseResource):
        engine = billing_db.engine()
        problems: list[str] = []
        checked = 0
        for period_key, org_ids in batches(context.partition_keys, interval).items():
            rec = invoicing.reconcile_batch(engine, period_from_key(interval, period_key), org_ids)
            checked += rec.checked
            stale = ""
            if rec.stale_hours:
                stale = (
                    f"{period_key}: {len(rec.stale_hours)} hour(s) have events not yet aggregated, first "
                    f"{rec.stale_hours[0].isoformat()} (late_usage_sensor re-aggregates them; or "
                    "materialize hourly_usage for those hours)"
                )
                problems.append(stale)
            for org, items in sorted(rec.mismatches.items()):
                problems.append(f"{period_key} {org}: " + "; ".join(items))
            for org in org_ids:  # no batched form for check evaluations: one write each
                mismatches = rec.mismatches.get(org, [])
                context.op_execution_context.log_event(
                    _org_evaluation(drafts.key, check_name, interval, period_key, org, mismatches, stale)
                )
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "drafts_checked": checked,
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:200]) or "none"),
            },
        )

    return _check


def _org_evaluation(asset_key, check_name, interval, period_key, org, mismatches: list[str], stale: str):
    """One organization partition's reconciliation result."""
    problems = mismatches + ([stale] if stale else [])
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        blocking=True,
        partition=str(billing_key(interval, period_key, org)),
        metadata={
            "organization": org,
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )


def invoices_asset(
    *,
    name: str,
    interval: BillingInterval,
    drafts: dg.AssetsDefinition,
    partitions_def: dg.MultiPartitionsDefinition,
    batch_size: int,
    dry_run_default: bool,
    grace: dt.timedelta,
) -> dg.AssetsDefinition:
    """Finalized invoices of one interval: numbered once, immutable, after the grace window."""
    key = dg.AssetKey(name)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        deps=[drafts],
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=batch_size),
        output_required=False,
        group_name="invoicing",
        kinds={"sql"},
        description=(
            f"Finalized {interval.value} invoices: each draft gets a gapless number and becomes immutable, "
            "once the period has ended and its grace window (INVOICE_GRACE_HOURS) has closed; an open "
            "period is refused. Re-materializing a finalized invoice changes nothing and says so."
        ),
    )
    def _invoices(context: dg.AssetExecutionContext, config: InvoiceRunConfig, billing_db: BillingDatabaseResource):
        dry_run = is_dry_run(context, config, dry_run_default)
        engine = billing_db.engine()
        now = utc_now()
        grouped = batches(context.partition_keys, interval, config.organizations)
        _refuse_open_periods(context, key, interval, grouped, now, mark=not dry_run)
        done = []
        for period_key, org_ids in grouped.items():
            period = period_from_key(interval, period_key)
            waiting = finalization_refusal(period, now, grace, within_grace=config.finalize_within_grace)
            if waiting:
                context.log.info(f"{period_key}: not finalized yet: {waiting}")
                log_partition_events(context, _waiting(key, interval, period_key, org_ids, waiting))
                continue
            batch = invoicing.finalize_batch(
                engine,
                period,
                org_ids,
                prefix=billing_db.invoice_number_prefix,
                now=now,
                dry_run=dry_run,
                zero_total=billing_db.zero_total_invoices,
            )
            done.append(batch)
            log_partition_events(context, _org_events(key, interval, batch, observe=dry_run))
        if done:
            context.log.info("\n" + "\n".join(invoicing.format_summary(b) for b in done))
        failed = [(b.period.key, r) for b in done for r in b.failed]
        if failed:
            raise _failure(context, key, interval, failed, mark=not dry_run)
        yield from ()

    return _invoices


def _refuse_open_periods(context, key, interval, grouped: dict[str, list[str]], now, *, mark: bool) -> None:
    """Raise ``Failure`` before anything is numbered when a period of the run has not ended."""
    refused = {}
    for period_key in grouped:
        reason = finalization_refusal(period_from_key(interval, period_key), now, dt.timedelta(0))
        if reason:
            refused[period_key] = reason
    if not refused:
        return
    if mark:
        keys = [str(billing_key(interval, p, o)) for p in refused for o in grouped[p]]
        mark_partitions_failed(context, key, keys)
    raise dg.Failure(
        description="refused, nothing was finalized: " + "; ".join(refused.values()),
        metadata={"open_periods": sorted(refused)},
    )


def _waiting(key: dg.AssetKey, interval: BillingInterval, period_key: str, org_ids, reason: str) -> list:
    """Observations saying why the period's invoices are not finalized yet (the grace window)."""
    return [
        dg.AssetObservation(
            asset_key=key,
            partition=billing_key(interval, period_key, org),
            metadata={"outcome": "awaiting_grace_window", "organization": org, "message": reason},
        )
        for org in org_ids
    ]
