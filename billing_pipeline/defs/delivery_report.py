"""The delivery job's last op: each organization's outcome, read from the ledger, as Dagster events.

One ``AssetMaterialization`` per delivered organization, an ``AssetObservation`` for the
others (and for dry runs), then ``Failure`` naming the organizations that were not delivered, so
that exactly those partitions show FAILED (NOTES.md: per-partition status in batched runs).
"""

from collections.abc import Sequence

import dagster as dg

from billing_pipeline.defs.dagster_internals import log_partition_events, mark_partitions_failed
from billing_pipeline.defs.partitions import billing_key
from billing_pipeline.domain import money
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.services.delivery import (
    ChannelStatus,
    InvoiceDelivery,
    InvoiceDeliveryService,
    format_summary,
    summarize,
)


def org_metadata(r: InvoiceDelivery) -> dict:
    meta: dict = {"outcome": "delivered" if r.ok else "failed"}
    if r.number:
        meta["invoice_number"] = r.number
    if r.total is not None and r.currency:
        meta["total"] = money.format_amount(r.total, r.currency)
    for channel, cr in r.channels.items():
        meta[channel] = cr.status.value
        if cr.external_id and cr.status is ChannelStatus.SUCCEEDED and channel in ("stripe", "email"):
            meta[f"{channel}_id"] = cr.external_id
    if r.failure:
        meta["error"] = r.failure
    return meta


def summary_metadata(results: Sequence[InvoiceDelivery], without_invoice: int, dry_run: bool) -> dict:
    summary = summarize(results, dry_run=dry_run)
    return {
        "invoices": summary.invoices,
        "delivered": summary.delivered,
        "failed": summary.failed,
        "without_invoice": without_invoice,
        "revenue": summary.revenue_text(),
        **{f"errors_{c}": n for c, n in summary.errors_by_channel.items()},
        "failures": dg.MetadataValue.md(
            "\n".join(f"- `{org}`: {err}" for org, err in list(summary.failed_orgs.items())[:50]) or "none"
        ),
    }


def report_deliveries(
    context, interval: BillingInterval, deliveries_key: dg.AssetKey, svc: InvoiceDeliveryService, run
):
    """``run``: the invoice ids per period and the organizations without an invoice (``defs.delivery_ops``)."""
    dry_run = svc.dry_run
    results: list[InvoiceDelivery] = []
    failed: list[InvoiceDelivery] = []
    failed_keys: list[str] = []
    observations: list[dg.AssetObservation] = []
    materializations: list[dg.AssetMaterialization] = []
    for period_key, ids in run.invoice_ids.items():
        for r in svc.report(ids):
            results.append(r)
            key = str(billing_key(interval, period_key, r.org_id))
            event = dg.AssetObservation if dry_run or not r.ok else dg.AssetMaterialization
            (observations if event is dg.AssetObservation else materializations).append(
                event(asset_key=deliveries_key, partition=key, metadata=org_metadata(r))
            )
            if not r.ok and not dry_run:
                failed.append(r)
                failed_keys.append(key)
        for org in run.without_invoice.get(period_key, []):
            observations.append(
                dg.AssetObservation(
                    asset_key=deliveries_key,
                    partition=str(billing_key(interval, period_key, org)),
                    metadata={"outcome": "no finalized invoice"},
                )
            )
    log_partition_events(context, observations)
    log_partition_events(context, materializations)
    shown = results if len(results) <= 200 else [r for r in results if not r.ok][:200]
    context.log.info("\n" + format_summary(summarize(results, dry_run=dry_run), shown))
    without = sum(len(v) for v in run.without_invoice.values())
    metadata = summary_metadata(results, without, dry_run)
    context.log_event(dg.AssetObservation(asset_key=deliveries_key, metadata=metadata))
    if failed:
        mark_partitions_failed(context, deliveries_key, failed_keys)
        raise dg.Failure(
            description=f"{len(failed)} organization(s) not delivered: "
            + "; ".join(f"{r.org_id}: {r.failure}" for r in failed[:50]),
            metadata={"failed_organizations": [r.org_id for r in failed], **metadata},
        )
    yield from ()
