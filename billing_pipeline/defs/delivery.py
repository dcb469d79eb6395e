"""Invoice delivery in Dagster: ``{interval}_invoice_deliveries``, a graph-backed asset.

Same partitions as ``{interval}_invoices`` (period x organization); a run carries a batch of
organizations (a key range). Its ops are the channels, so each vendor has its own
concurrency pool (set the limits in ``dagster.yaml``)::

    render_invoice_pdfs -> upload_invoice_pdfs (pool "s3") -> sync_stripe_invoices (pool "stripe")
      -> send_invoice_emails (pool "email") -> report_invoice_deliveries

``report_invoice_deliveries`` logs one ``AssetMaterialization`` per delivered organization and
raises ``Failure`` naming the ones that failed, so the UI shows exactly those partitions
FAILED. Organizations in the range without a finalized invoice get an ``AssetObservation``
(nothing to deliver). The ledger makes re-materializing any partition safe: channels that
already succeeded are not repeated.

``invoice_delivery_sensor`` launches ``deliver_{interval}_invoices_job`` runs for finalized
invoices that have no ledger row yet for an enabled channel; ``run_delivery`` does the same
from the CLI, right after ``run_period``.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import dagster as dg

from billing_pipeline.db import deliveries as ledger
from billing_pipeline.defs.automation import RANGE_END_TAG, RANGE_START_TAG
from billing_pipeline.defs.delivery_resources import DocumentStoreResource, MailerResource, PaymentGatewayResource
from billing_pipeline.defs.events import log_partition_events, mark_partitions_failed
from billing_pipeline.defs.invoicing import batches, is_dry_run
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS, billing_key, organization_batches
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.runner import RunOutcome, execute_batches, wanted_batches
from billing_pipeline.domain import money
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.delivery import (
    CHANNELS,
    ChannelStatus,
    DeliveryBatch,
    DeliveryOptions,
    InvoiceDelivery,
    InvoiceDeliveryService,
    format_summary,
    summarize,
)

DELIVERY_POOLS = {"s3": "s3", "stripe": "stripe", "email": "email"}


class DeliveryConfig(dg.Config):
    """Options of one delivery run (set on ``render_invoice_pdfs``; later ops follow it)."""

    organizations: list[str] = []
    """Limit the run to these organization ids (within its partitions); empty means all."""
    dry_run: bool = False
    """Render and validate everything; send nothing, write no ledger rows. Tag billing/dry_run=true too."""
    resend_ambiguous_email: bool = False
    """Resend e-mails an earlier run may or may not have sent (same Message-ID). Check the mail log first."""
    render_workers: int = -1
    """Processes rendering PDFs; -1 uses the deployment default."""


@dataclass
class PeriodDeliveries:
    """What flows between the ops: one period's batch plus the organizations with nothing to deliver."""

    period_key: str
    batch: DeliveryBatch
    without_invoice: list[str] = field(default_factory=list)


def _org_metadata(r: InvoiceDelivery) -> dict:
    meta: dict = {"organization": r.org_id, "outcome": "delivered" if r.ok else "failed"}
    if r.number:
        meta["invoice_number"] = r.number
    if r.total is not None and r.currency:
        meta["total"] = money.format_amount(r.total, r.currency)
    for channel, cr in r.channels.items():
        meta[channel] = cr.status.value
        if cr.external_id and cr.status in (ChannelStatus.SUCCEEDED, ChannelStatus.ALREADY_DONE):
            meta[f"{channel}_id"] = cr.external_id
    if r.failure:
        meta["error"] = r.failure
    return meta


def summary_metadata(periods: Sequence[PeriodDeliveries]) -> dict:
    results = [r for p in periods for r in p.batch.results]
    summary = summarize(results, dry_run=any(p.batch.dry_run for p in periods))
    return {
        "invoices": summary.invoices,
        "delivered": summary.delivered,
        "failed": summary.failed,
        "without_invoice": sum(len(p.without_invoice) for p in periods),
        "revenue": summary.revenue_text(),
        **{f"errors_{c}": n for c, n in summary.errors_by_channel.items()},
        **{f"sent_{c}": n for c, n in summary.sent_by_channel.items()},
        "failures": dg.MetadataValue.md(
            "\n".join(f"- `{org}`: {err}" for org, err in list(summary.failed_orgs.items())[:50]) or "none"
        ),
    }


def build_delivery_assets(
    interval: BillingInterval,
    partitions_def: dg.MultiPartitionsDefinition,
    *,
    options: DeliveryOptions,
    seller: Seller,
    batch_size: int,
) -> dg.AssetsDefinition:
    """The graph-backed ``{interval}_invoice_deliveries`` asset for one billing interval."""
    name = interval.value
    deliveries_key = dg.AssetKey(f"{name}_invoice_deliveries")
    invoices_key = dg.AssetKey(f"{name}_invoices")

    def service(
        batch: DeliveryBatch | None,
        billing_db,
        document_store,
        payment_gateway,
        mailer,
        opts: DeliveryOptions | None = None,
    ) -> InvoiceDeliveryService:
        opts = opts or (batch.options if batch is not None and batch.options else options)
        channels = opts.channels
        return InvoiceDeliveryService(
            billing_db.engine(),
            seller=seller,
            options=opts,
            store=document_store.store() if ("s3" in channels or "pdf" in channels) else None,
            gateway=payment_gateway.gateway() if "stripe" in channels else None,
            mailer=mailer.mailer() if "email" in channels else None,
            secrets=[*document_store.secrets(), *payment_gateway.secrets(), *mailer.secrets()],
        )

    @dg.op(
        name=f"render_{name}_invoice_pdfs",
        ins={"finalized": dg.In(dg.Nothing)},
        description="Load the finalized invoices of the run's partitions and render their PDFs.",
    )
    def render_invoice_pdfs(
        context: dg.OpExecutionContext,
        config: DeliveryConfig,
        billing_db: BillingDatabaseResource,
        document_store: DocumentStoreResource,
        payment_gateway: PaymentGatewayResource,
        mailer: MailerResource,
    ) -> list[PeriodDeliveries]:
        opts = replace(
            options,
            dry_run=is_dry_run(context, config, options.dry_run),
            resend_ambiguous_email=config.resend_ambiguous_email,
            render_workers=options.render_workers if config.render_workers < 0 else config.render_workers,
        )
        svc = service(None, billing_db, document_store, payment_gateway, mailer, opts)
        out = []
        for period_key, org_ids in batches(context.partition_keys, interval, config.organizations).items():
            ids = ledger.finalized_invoice_ids(svc.engine, name, period_key, org_ids)
            batch = svc.prepare([ids[o] for o in org_ids if o in ids])
            svc.render_pdfs(batch)
            out.append(PeriodDeliveries(period_key, batch, [o for o in org_ids if o not in ids]))
        context.log.info(
            f"{sum(len(p.batch.items) for p in out)} invoice(s) to deliver" + (" (dry run)" if opts.dry_run else "")
        )
        return out

    def stage(op_name: str, pool: str | None, method: str, description: str):
        @dg.op(name=f"{op_name}", pool=pool, description=description)
        def _stage(
            context: dg.OpExecutionContext,
            periods: list[PeriodDeliveries],
            billing_db: BillingDatabaseResource,
            document_store: DocumentStoreResource,
            payment_gateway: PaymentGatewayResource,
            mailer: MailerResource,
        ) -> list[PeriodDeliveries]:
            for p in periods:
                svc = service(p.batch, billing_db, document_store, payment_gateway, mailer)
                getattr(svc, method)(p.batch)
            return periods

        return _stage

    upload = stage(
        f"upload_{name}_invoice_pdfs",
        DELIVERY_POOLS["s3"],
        "upload_pdfs",
        "Store each PDF under its write-once key (S3 or the local folder).",
    )
    stripe_sync = stage(
        f"sync_{name}_stripe_invoices",
        DELIVERY_POOLS["stripe"],
        "sync_stripe",
        "Mirror each invoice into Stripe (lookup first, deterministic idempotency keys, total check).",
    )
    email = stage(
        f"send_{name}_invoice_emails",
        DELIVERY_POOLS["email"],
        "send_emails",
        "E-mail each invoice with its PDF attached and a presigned link (deterministic Message-ID).",
    )

    @dg.op(
        name=f"report_{name}_invoice_deliveries",
        out=dg.Out(is_required=False),
        description="Per-organization status: materializations for delivered ones, Failure naming the others.",
    )
    def report_invoice_deliveries(context: dg.OpExecutionContext, periods: list[PeriodDeliveries]):
        dry_run = any(p.batch.dry_run for p in periods)
        failed: list[InvoiceDelivery] = []
        failed_keys: list[str] = []
        observations: list[dg.AssetObservation] = []
        materializations: list[dg.AssetMaterialization] = []
        for p in periods:
            for r in p.batch.results:
                key = billing_key(interval, p.period_key, r.org_id)
                if dry_run or not r.ok:
                    observations.append(
                        dg.AssetObservation(asset_key=deliveries_key, partition=key, metadata=_org_metadata(r))
                    )
                else:
                    materializations.append(
                        dg.AssetMaterialization(asset_key=deliveries_key, partition=key, metadata=_org_metadata(r))
                    )
                if not r.ok and not dry_run:
                    failed.append(r)
                    failed_keys.append(str(key))
            for org in p.without_invoice:
                observations.append(
                    dg.AssetObservation(
                        asset_key=deliveries_key,
                        partition=billing_key(interval, p.period_key, org),
                        metadata={"organization": org, "outcome": "no finalized invoice"},
                    )
                )
        log_partition_events(context, observations)
        log_partition_events(context, materializations)
        results = [r for p in periods for r in p.batch.results]
        context.log.info("\n" + format_summary(summarize(results, dry_run=dry_run), results))
        metadata = summary_metadata(periods)
        context.log_event(dg.AssetObservation(asset_key=deliveries_key, metadata=metadata))
        if failed:
            mark_partitions_failed(context, deliveries_key, failed_keys)
            raise dg.Failure(
                description=f"{len(failed)} organization(s) not delivered: "
                + "; ".join(f"{r.org_id}: {r.failure}" for r in failed[:50]),
                metadata={"failed_organizations": [r.org_id for r in failed], **metadata},
            )
        yield from ()

    @dg.graph_asset(
        key=deliveries_key,
        partitions_def=partitions_def,
        ins={"finalized": dg.AssetIn(invoices_key, dagster_type=dg.Nothing)},
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=batch_size),
        group_name="delivery",
        kinds={"pdf", "s3", "stripe", "email"},
        description=(
            f"Delivered {name} invoices: PDF rendered, stored, synced to the payment gateway and "
            "e-mailed, each channel exactly once (delivery ledger). Partition = period × organization."
        ),
    )
    def invoice_deliveries(finalized):
        return report_invoice_deliveries(email(stripe_sync(upload(render_invoice_pdfs(finalized)))))

    return invoice_deliveries


def delivery_job_name(interval: BillingInterval) -> str:
    return f"deliver_{interval.value}_invoices_job"


def build_delivery_job(interval: BillingInterval, asset: dg.AssetsDefinition):
    return dg.define_asset_job(
        name=delivery_job_name(interval),
        selection=dg.AssetSelection.assets(asset),
        description=f"Deliver finalized {interval.value} invoices (PDF, S3, Stripe, e-mail) "
        "for a batch of organizations.",
    )


def _render_op_name(interval: BillingInterval) -> str:
    return f"render_{interval.value}_invoice_pdfs"


def delivery_run_config(interval: BillingInterval, **config) -> dict:
    asset = f"{interval.value}_invoice_deliveries"
    return {"ops": {asset: {"ops": {_render_op_name(interval): {"config": config}}}}}


def delivery_run_requests(
    all_orgs: Sequence[str],
    interval: BillingInterval,
    period_key: str,
    wanted: Sequence[str],
    batch_size: int,
) -> list[dg.RunRequest]:
    """Contiguous key ranges covering ``wanted`` (in partition order), at most ``batch_size`` wanted each.

    The run key hashes the organizations, so a sensor tick that sees the same undelivered set
    launches nothing new; organizations between two wanted ones are re-checked for free (the
    ledger makes them no-ops).
    """
    requests = []
    for chunk in organization_batches(all_orgs, batch_size, wanted):
        digest = hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"deliver-{interval.value}-{period_key}-{digest}",
                job_name=delivery_job_name(interval),
                tags={
                    RANGE_START_TAG: str(billing_key(interval, period_key, chunk[0])),
                    RANGE_END_TAG: str(billing_key(interval, period_key, chunk[-1])),
                    "billing/period": period_key,
                    "billing/trigger": "invoice_delivery_sensor",
                },
            )
        )
    return requests


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
            "channel, per period in contiguous batches. Failed deliveries are not retried here: "
            "re-materialize their partitions (or run_delivery) once the cause is fixed."
        ),
    )
    def invoice_delivery_sensor(context: dg.SensorEvaluationContext, billing_db: BillingDatabaseResource):
        if options.dry_run:
            return dg.SkipReason("DRY_RUN is set: nothing is delivered automatically")
        channels = options.channels
        if not channels:
            return dg.SkipReason("every delivery channel is disabled")
        pending = ledger.undelivered_invoices(billing_db.engine(), channels)
        requests = []
        for (interval_value, period_key), orgs in pending.items():
            interval = BillingInterval(interval_value)
            all_orgs = context.instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)
            requests += delivery_run_requests(all_orgs, interval, period_key, orgs, batch_size)
        if not requests:
            return dg.SkipReason("every finalized invoice has been delivered (or has failed: see the ledger)")
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
    """Deliver one period's finalized invoices in this process: one run per batch of organizations."""
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
    "DELIVERY_POOLS",
    "DeliveryConfig",
    "PeriodDeliveries",
    "build_delivery_assets",
    "build_delivery_job",
    "build_invoice_delivery_sensor",
    "delivery_job_name",
    "delivery_run_config",
    "delivery_run_requests",
    "run_delivery",
]
