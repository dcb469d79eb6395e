"""The ops of the delivery graph (``defs.delivery``): one per channel, then the report op.

Each op builds the delivery service from the deployment's options, its run's
``DeliveryConfig`` and the resources, works out the run's invoice ids from its partitions and
calls one service method with them: the op reads the invoices and their ledger rows itself,
so a run re-executed from failure picks up exactly where the ledger stands. Nothing passes
between the ops through Dagster's storage (``Nothing`` dependencies).
"""

from dataclasses import dataclass, replace

import dagster as dg

from billing_pipeline.db import delivery_views
from billing_pipeline.defs.delivery_report import report_deliveries
from billing_pipeline.defs.delivery_resources import DocumentStoreResource, MailerResource, PaymentGatewayResource
from billing_pipeline.defs.invoicing import batches, is_dry_run
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.delivery import ChannelReport, DeliveryOptions, InvoiceDeliveryService

DELIVERY_POOLS = {"pdf": "pdf", "s3": "s3", "stripe": "stripe", "email": "email"}


class DeliveryConfig(dg.Config):
    """Options of one delivery run (every op of the run takes the same; ``delivery_run_config``)."""

    organizations: list[str] = []
    """Limit the run to these organization ids (within its partitions); empty means all."""
    dry_run: bool = False
    """Render and validate everything; send nothing, write no ledger rows. Tag billing/dry_run=true too."""
    resend_ambiguous_email: bool = False
    """Resend e-mails an earlier run may or may not have sent (same Message-ID). Check the mail log first."""
    render_workers: int = -1
    """Processes rendering PDFs; -1 uses the deployment default."""


@dataclass(frozen=True)
class ChannelOp:
    """One channel's op: the pool it runs in and the service method it calls with the run's invoice ids."""

    channel: str  # its pool: DELIVERY_POOLS[channel]
    method: str  # an InvoiceDeliveryService method
    description: str


#: The channel ops in graph order: pdf -> s3 -> stripe -> email.
CHANNEL_OPS = (
    ChannelOp(
        "pdf", "render_pdfs", "Render the PDF of each finalized invoice of the run (2 processes), written to the spool."
    ),
    ChannelOp("s3", "store_pdfs", "Store each PDF under its write-once key (S3 or the local folder)."),
    ChannelOp(
        "stripe",
        "sync_payments",
        "Mirror each invoice into Stripe (lookup first, deterministic idempotency keys, total check).",
    ),
    ChannelOp(
        "email",
        "send_emails",
        "E-mail each invoice with its PDF attached and a presigned link (deterministic Message-ID).",
    ),
)


@dataclass(frozen=True)
class _Run:
    """What an op of one run works on: per period, the invoice ids and the organizations without one."""

    invoice_ids: dict[str, list[int]]
    without_invoice: dict[str, list[str]]

    @property
    def all_ids(self) -> list[int]:
        return [i for ids in self.invoice_ids.values() for i in ids]


def _run_invoices(context, interval: BillingInterval, config: DeliveryConfig, engine) -> _Run:
    ids: dict[str, list[int]] = {}
    missing: dict[str, list[str]] = {}
    for period_key, org_ids in batches(context.partition_keys, interval, config.organizations).items():
        found = delivery_views.finalized_invoice_ids(engine, interval.value, period_key, org_ids)
        ids[period_key] = [found[o] for o in org_ids if o in found]
        missing[period_key] = [o for o in org_ids if o not in found]
    return _Run(ids, missing)


def _channel_output(context, report: ChannelReport) -> dg.Output:
    context.log.info(report.text())
    failures = report.failures()
    metadata: dict = {k: v for k, v in report.counts().items()}
    if failures:
        metadata["first_failures"] = dg.MetadataValue.md(
            "\n".join(f"- invoice {i}: {e}" for i, e in list(failures.items())[:20])
        )
    return dg.Output(None, metadata=metadata)


@dataclass(frozen=True)
class ServiceFactory:
    """Builds the service an op works with: the deployment's options with its run's config, and the resources."""

    options: DeliveryOptions
    seller: Seller

    def __call__(
        self, context, config: DeliveryConfig, billing_db, document_store, payment_gateway, mailer
    ) -> InvoiceDeliveryService:
        options = self.options
        opts = replace(
            options,
            dry_run=is_dry_run(context, config, options.dry_run),
            resend_ambiguous_email=config.resend_ambiguous_email,
            render_workers=options.render_workers if config.render_workers < 0 else config.render_workers,
        )
        channels = opts.channels
        return InvoiceDeliveryService(
            billing_db.engine(),
            seller=self.seller,
            options=opts,
            store=document_store.store() if ("s3" in channels or "email" in channels) else None,
            gateway=payment_gateway.gateway() if "stripe" in channels else None,
            mailer=mailer.mailer() if "email" in channels else None,
            secrets=[*document_store.secrets(), *payment_gateway.secrets(), *mailer.secrets()],
        )


def _delivery_op(interval: BillingInterval, service: ServiceFactory, work, **op_args) -> dg.OpDefinition:
    """An op of the graph: builds the service, works out the run's invoices, yields what ``work`` makes of them."""

    @dg.op(**op_args)
    def _delivery(
        context: dg.OpExecutionContext,
        config: DeliveryConfig,
        billing_db: BillingDatabaseResource,
        document_store: DocumentStoreResource,
        payment_gateway: PaymentGatewayResource,
        mailer: MailerResource,
    ):
        svc = service(context, config, billing_db, document_store, payment_gateway, mailer)
        yield from work(context, svc, _run_invoices(context, interval, config, svc.engine))

    return _delivery


def channel_op(
    name: str, step: ChannelOp, interval: BillingInterval, service: ServiceFactory, ins: dict
) -> dg.OpDefinition:
    """The op ``name`` of one channel: ``step.method`` over the run's finalized invoices."""

    def work(context, svc: InvoiceDeliveryService, run: _Run):
        yield _channel_output(context, getattr(svc, step.method)(run.all_ids))

    pool = DELIVERY_POOLS[step.channel]
    return _delivery_op(
        interval, service, work, name=name, pool=pool, ins=ins, out=dg.Out(dg.Nothing), description=step.description
    )


def report_op(name: str, asset_key: dg.AssetKey, interval: BillingInterval, service: ServiceFactory) -> dg.OpDefinition:
    """The last op: per-organization events for ``asset_key`` from the ledger (``defs.delivery_report``)."""

    def work(context, svc: InvoiceDeliveryService, run: _Run):
        return report_deliveries(context, interval, asset_key, svc, run)

    return _delivery_op(
        interval,
        service,
        work,
        name=name,
        ins={"after": dg.In(dg.Nothing)},
        out=dg.Out(is_required=False),
        description="Per-organization status from the ledger: materializations for delivered ones, "
        "Failure naming the others.",
    )


__all__ = ["CHANNEL_OPS", "DELIVERY_POOLS", "ChannelOp", "DeliveryConfig", "ServiceFactory", "channel_op", "report_op"]
