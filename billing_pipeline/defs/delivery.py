"""Invoice delivery in Dagster: ``monthly_invoice_deliveries`` / ``weekly_invoice_deliveries``.

A graph-backed asset, same partitions as the invoices (period x organization); a run carries a
batch of organizations (a key range). One op per channel, each with its vendor's pool::

    render_{interval}_invoice_pdfs (pool "pdf") -> upload_{interval}_invoice_pdfs (pool "s3")
      -> sync_{interval}_stripe_invoices (pool "stripe") -> send_{interval}_invoice_emails (pool "email")
      -> report_{interval}_invoice_deliveries

The ops (``defs.delivery_ops``) are linked by ``Nothing`` dependencies: nothing passes between
them through Dagster's storage. Each op works out the run's invoice ids from its partitions and
reads the invoices and their ledger rows itself (``services.delivery``), so a run re-executed
from failure picks up exactly where the ledger stands. PDF bytes wait in the spool
(``BILLING_HOME/rendered``) between the pdf op and the s3 / email ops. The report op logs one
``AssetMaterialization`` per delivered organization and raises ``Failure`` naming the ones that
failed, so the UI shows exactly those partitions FAILED.

Overlap: the pdf op renders with 2 processes (both cores); the network ops use
``DELIVERY_IO_WORKERS`` threads. Steps of one run are sequential (in-process executor), so
rendering overlaps the network work of *another* batch: with the ``pdf`` pool at 1 and two
delivery runs at a time (``dagster.yaml``), one run renders while the other uploads, syncs
and e-mails.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from billing_pipeline.db import delivery_views
from billing_pipeline.defs.delivery_ops import (
    CHANNEL_OPS,
    DELIVERY_POOLS,
    DeliveryConfig,
    ServiceFactory,
    channel_op,
    report_op,
)
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import (
    RunOutcome,
    execute_batches,
    in_flight_organizations,
    period_run_requests,
    wanted_batches,
)
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.delivery import CHANNELS, DeliveryOptions

#: On every delivery run (job tag): ``dagster.yaml`` limits how many run at once.
DELIVERY_RUN_TAG = {"billing/run": "delivery"}


@dataclass(frozen=True)
class DeliveryNames:
    """The names shown in the UI, literal so that a grep for any of them finds this file."""

    asset: str
    invoices: str
    job: str
    render_op: str
    upload_op: str
    stripe_op: str
    email_op: str
    report_op: str

    def channel_op(self, channel: str) -> str:
        """The name of the op that delivers ``channel``."""
        return {"pdf": self.render_op, "s3": self.upload_op, "stripe": self.stripe_op, "email": self.email_op}[channel]


DELIVERY_NAMES = {
    BillingInterval.MONTHLY: DeliveryNames(
        asset="monthly_invoice_deliveries",
        invoices="monthly_invoices",
        job="deliver_monthly_invoices_job",
        render_op="render_monthly_invoice_pdfs",
        upload_op="upload_monthly_invoice_pdfs",
        stripe_op="sync_monthly_stripe_invoices",
        email_op="send_monthly_invoice_emails",
        report_op="report_monthly_invoice_deliveries",
    ),
    BillingInterval.WEEKLY: DeliveryNames(
        asset="weekly_invoice_deliveries",
        invoices="weekly_invoices",
        job="deliver_weekly_invoices_job",
        render_op="render_weekly_invoice_pdfs",
        upload_op="upload_weekly_invoice_pdfs",
        stripe_op="sync_weekly_stripe_invoices",
        email_op="send_weekly_invoice_emails",
        report_op="report_weekly_invoice_deliveries",
    ),
}


def build_delivery_asset(
    interval: BillingInterval,
    partitions_def: dg.MultiPartitionsDefinition,
    *,
    options: DeliveryOptions,
    seller: Seller,
    batch_size: int,
) -> dg.AssetsDefinition:
    """The graph-backed delivery asset of one billing interval (names from ``DELIVERY_NAMES``)."""
    names = DELIVERY_NAMES[interval]
    deliveries_key = dg.AssetKey(names.asset)
    service = ServiceFactory(options, seller)
    channel_ops = [  # the first op waits for the invoices, each next one for the op before it
        channel_op(
            names.channel_op(step.channel), step, interval, service, {"after" if i else "finalized": dg.In(dg.Nothing)}
        )
        for i, step in enumerate(CHANNEL_OPS)
    ]
    report = report_op(names.report_op, deliveries_key, interval, service)

    @dg.graph_asset(
        key=deliveries_key,
        partitions_def=partitions_def,
        ins={"finalized": dg.AssetIn(dg.AssetKey(names.invoices), dagster_type=dg.Nothing)},
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=batch_size),
        group_name="delivery",
        kinds={"pdf", "s3", "stripe", "email"},
        description=(
            f"Delivered {interval.value} invoices: PDF rendered, stored, synced to the payment gateway and "
            "e-mailed, each channel exactly once (delivery ledger). Partition = period × organization."
        ),
    )
    def invoice_deliveries(finalized):
        done = finalized
        for op in channel_ops:  # pdf -> s3 -> stripe -> email
            done = op(done)
        return report(done)

    return invoice_deliveries


def build_delivery_job(interval: BillingInterval, asset: dg.AssetsDefinition):
    return dg.define_asset_job(
        name=DELIVERY_NAMES[interval].job,
        selection=dg.AssetSelection.assets(asset),
        tags=DELIVERY_RUN_TAG,
        description=f"Deliver finalized {interval.value} invoices (PDF, S3, Stripe, e-mail) "
        "for a batch of organizations.",
    )


def delivery_job_name(interval: BillingInterval) -> str:
    return DELIVERY_NAMES[interval].job


def delivery_run_config(interval: BillingInterval, **config) -> dict:
    """Run config giving every op of the delivery graph the same ``DeliveryConfig``."""
    n = DELIVERY_NAMES[interval]
    ops = (n.render_op, n.upload_op, n.stripe_op, n.email_op, n.report_op)
    return {"ops": {n.asset: {"ops": {op: {"config": dict(config)} for op in ops}}}}


def delivery_run_requests(
    all_orgs: Sequence[str],
    interval: BillingInterval,
    period_key: str,
    wanted: Sequence[str],
    batch_size: int,
    attempts: Mapping[str, int] | None = None,
) -> list[dg.RunRequest]:
    """Contiguous key ranges covering ``wanted`` (in partition order), at most ``batch_size`` wanted each.

    The run key hashes the organizations (with their ledger ``attempts`` so far, when more than
    zero), so a sensor tick that sees the same undelivered set launches nothing new, while an
    invoice wanted again after more ledger work (a dead-letter retry) gets a new key. Each run
    is limited to its wanted organizations (``organizations`` config): the others in its key
    range are not touched, so a sensor run never retries another invoice's failed row.
    """
    return period_run_requests(
        all_orgs,
        interval,
        period_key,
        batch_size,
        run_key_prefix=f"deliver-{interval.value}",
        wanted=wanted,
        trigger="invoice_delivery_sensor",
        job_name=delivery_job_name(interval),
        attempts=attempts,
        run_config=lambda batch: delivery_run_config(interval, organizations=batch),
    )


def build_invoice_delivery_sensor(
    options: DeliveryOptions, jobs: Sequence, *, batch_size: int, running: bool
) -> dg.SensorDefinition:
    @dg.sensor(
        name="invoice_delivery_sensor",
        minimum_interval_seconds=60,
        jobs=list(jobs),
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Launches delivery runs for finalized invoices that have no ledger row yet for an enabled "
            "channel (or a row reset by `dead-letters retry`), per period in contiguous batches. Failed "
            "deliveries are not retried here: each has a dead letter (kind invoice_delivery) to retry "
            "or dismiss, or re-materialize their partitions (or run_delivery) once the cause is fixed."
        ),
    )
    def invoice_delivery_sensor(context: dg.SensorEvaluationContext, billing_db: BillingDatabaseResource):
        if options.dry_run:
            return dg.SkipReason("DRY_RUN is set: nothing is delivered automatically")
        channels = options.channels
        if not channels:
            return dg.SkipReason("every delivery channel is disabled")
        pending = delivery_views.undelivered_invoice_attempts(billing_db.engine(), channels)
        requests, busy = [], {}
        for (interval_value, period_key), orgs in pending.items():
            interval = BillingInterval(interval_value)
            all_orgs = context.instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)
            if interval not in busy:  # batches queued or running: not requested again under a new key
                busy[interval] = in_flight_organizations(context.instance, delivery_job_name(interval), all_orgs)
            wanted = [org for org in orgs if f"{period_key}|{org}" not in busy[interval]]
            if wanted:
                requests += delivery_run_requests(all_orgs, interval, period_key, wanted, batch_size, orgs)
        if not requests:
            return dg.SkipReason(
                "every finalized invoice has been delivered, is being delivered by a queued or running "
                "run, or has failed (see the ledger)"
            )
        return dg.SensorResult(run_requests=requests)

    return invoice_delivery_sensor


def run_delivery(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    interval: BillingInterval,
    period_key: str,
    *,
    organizations: Sequence[str] = (),
    dry_run: bool = False,
    resend_ambiguous_email: bool = False,
    render_workers: int = -1,
    batch_size: int = 1000,
) -> list[RunOutcome]:
    """Run the delivery job in this process for one period, one run per batch of organizations."""
    run_config = delivery_run_config(
        interval,
        organizations=list(organizations),
        dry_run=dry_run,
        resend_ambiguous_email=resend_ambiguous_email,
        render_workers=render_workers,
    )
    return execute_batches(
        defs.resolve_job_def(delivery_job_name(interval)),
        instance,
        interval,
        period_key,
        wanted_batches(instance, interval, organizations, batch_size),
        run_config=run_config,
        dry_run=dry_run,
    )


__all__ = [
    "CHANNELS",
    "DELIVERY_NAMES",
    "DELIVERY_POOLS",
    "DELIVERY_RUN_TAG",
    "DeliveryConfig",
    "DeliveryNames",
    "build_delivery_asset",
    "build_delivery_job",
    "build_invoice_delivery_sensor",
    "delivery_job_name",
    "delivery_run_config",
    "delivery_run_requests",
    "run_delivery",
]
