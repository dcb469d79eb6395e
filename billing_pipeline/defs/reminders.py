"""Payment reminders: the ``payment_reminders`` asset, run daily by ``send_payment_reminders_job_schedule``.

A schedule plus the reminder ledger, not a daily partitioned asset: the day that counts is each
organization's own (its time zone), which no one UTC partition matches; the ledger already makes
each (invoice, step, audience) happen once and the domain's catch-up rule decides what a late run
sends, so there is nothing a per-day backfill could add (re-running a past day with today's
payments would only decide what today decides). Each materialization's metadata is that run's
summary: sent, skipped, stopped, failed, dead letters, per step, amount due per currency.
"""

import datetime as dt

import dagster as dg

from billing_pipeline.clock import utc_now
from billing_pipeline.defs.delivery_resources import MailerResource
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.sms import SmsResource
from billing_pipeline.domain.dunning_policy import DunningPolicy
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.collections.reminders import ReminderSender, send_payment_reminders
from billing_pipeline.services.notifications import (
    EmailChannel,
    NotificationChannel,
    NotificationDispatcher,
    SmsChannel,
)

ASSET_NAME = "payment_reminders"


class SendPaymentRemindersConfig(dg.Config):
    as_of: str = ""  # an ISO instant with offset; empty: now (the schedule passes its tick time)


def _as_of(value: str) -> dt.datetime:
    if not value:
        return utc_now()
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError:
        raise dg.Failure(f"as_of: not an ISO time, got {value!r}") from None
    if instant.tzinfo is None:
        raise dg.Failure(f"as_of: needs a UTC offset (…Z or +00:00), got {value!r}")
    return instant.astimezone(dt.UTC)


def payment_reminders_asset(
    *, policy: DunningPolicy, seller: Seller, email_from: str, max_attempts: int
) -> dg.AssetsDefinition:
    domain = email_from.rsplit("@", 1)[-1].strip(" >")

    @dg.asset(name=ASSET_NAME, group_name="collections", kinds={"email"}, pool="email")  # shares the SMTP limit
    def payment_reminders(
        context: dg.AssetExecutionContext,
        config: SendPaymentRemindersConfig,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        sms: SmsResource,
    ) -> dg.MaterializeResult:
        """Sends the payment reminders due today (dunning policy: -7 upcoming, +1 overdue, +7, +14, +30
        with the account manager told at +14 and +30), each invoice x step x audience once; retries
        what failed in earlier runs and parks what gives up in the dead letters."""
        engine = billing_db.engine()
        channels: dict[str, NotificationChannel] = {
            "email": EmailChannel(mailer.mailer(), email_from, domain, reply_to=seller.email or None)
        }
        sms_sender = sms.sender()  # SMS_PROVIDER; None: a step naming sms dead-letters it (not configured)
        if sms_sender is not None:
            channels["sms"] = SmsChannel(sms_sender)
        sender = ReminderSender(policy, NotificationDispatcher(engine, channels, max_attempts=max_attempts), seller)
        summary = send_payment_reminders(engine, sender, _as_of(config.as_of))
        context.log.info(summary.describe())
        return dg.MaterializeResult(
            metadata={**summary.as_metadata(), "policy_version": policy.version, "catch_up": policy.catch_up.value}
        )

    return payment_reminders


def payment_reminders_schedule(*, name: str, job, cron: str, running: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Sends the day's payment reminders (PAYMENT_REMINDERS_CRON, default daily 09:00 UTC).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.astimezone(dt.UTC)
        return dg.RunRequest(
            run_key=f"reminders-{tick:%Y-%m-%dT%H:%M}",
            run_config={"ops": {ASSET_NAME: {"config": {"as_of": tick.isoformat()}}}},
            tags={"billing/as_of": tick.isoformat()},
        )

    return _schedule
