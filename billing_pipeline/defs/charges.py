"""Auto-charge and payment status sync: two assets, each run by its own schedule.

``auto_charges`` (``charge_due_invoices_job``, daily 06:00 UTC: before the 09:00 reminders, so a
charge that succeeds stops that day's reminder) charges auto-pay organizations' due invoices;
``payment_status_sync`` (``sync_payment_status_job``, every 30 minutes) settles processing payments
and records invoices paid in Stripe. Like the reminders, schedules plus a ledger, not partitions:
what is due is decided by each invoice's due date and attempts (``charge_attempts``), and the
ledger makes every charge happen once however often a run is repeated. One run covers every
organization (a charge is two gateway requests, so 10,000 invoices are one run within the rate
limit); the per-organization outcome is in the materialization's ``by_organization`` metadata.
With ``PAYMENT_GATEWAY=none`` (or ``INVOICE_ENABLE_STRIPE=false``) both record "no gateway" and
touch nothing: no invoice is declined for lack of a gateway.
"""

import datetime as dt

import dagster as dg

from billing_pipeline.defs.delivery_resources import MailerResource, PaymentGatewayResource
from billing_pipeline.defs.reminders import SendPaymentRemindersConfig, _as_of
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.collections.charge_notices import NoticeSender
from billing_pipeline.services.collections.charges import ChargeOptions, charge_due_invoices
from billing_pipeline.services.collections.payment_sync import SyncOptions, sync_payment_status
from billing_pipeline.services.notifications import EmailChannel, NotificationDispatcher

CHARGES_ASSET, SYNC_ASSET = "auto_charges", "payment_status_sync"


def _notices(billing_db, mailer, seller: Seller, email_from: str, max_attempts: int) -> NoticeSender:
    domain = email_from.rsplit("@", 1)[-1].strip(" >")
    channel = EmailChannel(mailer.mailer(), email_from, domain, reply_to=seller.email or None)
    return NoticeSender(
        NotificationDispatcher(billing_db.engine(), {"email": channel}, max_attempts=max_attempts), seller
    )


def auto_charges_asset(
    *, options: ChargeOptions, seller: Seller, email_from: str, max_attempts: int, enabled: bool
) -> dg.AssetsDefinition:
    @dg.asset(name=CHARGES_ASSET, group_name="collections", kinds={"stripe"}, pool="stripe")
    def auto_charges(
        context: dg.AssetExecutionContext,
        config: SendPaymentRemindersConfig,
        billing_db: BillingDatabaseResource,
        payment_gateway: PaymentGatewayResource,
        mailer: MailerResource,
    ) -> dg.MaterializeResult:
        """Charges auto-pay organizations' due invoices (amount due > 0) once per attempt; retries soft
        declines on the retry schedule, stops at hard declines, dead-letters at the cap; receipts and
        failure notices through the notification dispatcher."""
        if not enabled:
            context.log.info("auto-charge: no payment gateway configured (PAYMENT_GATEWAY=none): nothing charged")
            return dg.MaterializeResult(metadata={"skipped": "no payment gateway"})
        notices = _notices(billing_db, mailer, seller, email_from, max_attempts)
        summary = charge_due_invoices(
            billing_db.engine(), payment_gateway.gateway(), notices, options, _as_of(config.as_of)
        )
        context.log.info(summary.describe())
        return dg.MaterializeResult(
            metadata={**summary.as_metadata(), "retry_days": list(options.retry_days), "cap": options.max_attempts}
        )

    return auto_charges


def payment_status_sync_asset(
    *, options: SyncOptions, seller: Seller, email_from: str, max_attempts: int, enabled: bool
) -> dg.AssetsDefinition:
    @dg.asset(name=SYNC_ASSET, group_name="collections", kinds={"stripe"}, pool="stripe")
    def payment_status_sync(
        context: dg.AssetExecutionContext,
        config: SendPaymentRemindersConfig,
        billing_db: BillingDatabaseResource,
        payment_gateway: PaymentGatewayResource,
        mailer: MailerResource,
    ) -> dg.MaterializeResult:
        """Re-reads payments processing for over an hour (settled / failed / still processing, capped then
        dead-lettered) and records invoices paid in Stripe outside our charges, once each."""
        if not enabled:
            context.log.info("payment sync: no payment gateway configured (PAYMENT_GATEWAY=none): nothing to sync")
            return dg.MaterializeResult(metadata={"skipped": "no payment gateway"})
        notices = _notices(billing_db, mailer, seller, email_from, max_attempts)
        summary = sync_payment_status(
            billing_db.engine(), payment_gateway.gateway(), notices, options, _as_of(config.as_of)
        )
        context.log.info(summary.describe())
        return dg.MaterializeResult(metadata=summary.as_metadata())

    return payment_status_sync


def collections_schedule(*, name: str, job, asset_name: str, cron: str, running: bool, what: str):
    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=what,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.astimezone(dt.UTC)
        return dg.RunRequest(
            run_key=f"{asset_name}-{tick:%Y-%m-%dT%H:%M}",
            run_config={"ops": {asset_name: {"config": {"as_of": tick.isoformat()}}}},
            tags={"billing/as_of": tick.isoformat()},
        )

    return _schedule
