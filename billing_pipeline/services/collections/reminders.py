"""One payment-reminders run: decide, record, re-check, send, act, summarize.

1. ``domain.dunning.due_reminders`` decides at ``as_of`` from the finalized invoices, their
   payments, the organizations and what the ledger already holds;
2. the decisions are written to ``payment_reminders`` (``pending`` or ``skipped``) before anything
   is sent: a step is decided once, however often the day is re-run;
3. every ``pending`` reminder (today's and earlier runs' unsettled ones) is re-checked against a
   fresh read of its invoice, payments and organization (``stop_reason``): stopped ones are
   recorded ``stopped``; the others go through the ``NotificationDispatcher`` (ledger per
   channel, retries to the cap, then a dead letter) and become ``sent`` when every channel is;
4. the step's action (``mark_invoice_uncollectible`` / ``suspend_organization``), if any, is done
   after the step's notices (guarded by status, so at most once).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from billing_pipeline.db import collections as ledger
from billing_pipeline.domain import money
from billing_pipeline.domain.dunning import (
    Decision,
    DunnedInvoice,
    amounts_due,
    due_reminders,
    local_date,
    stop_reason,
)
from billing_pipeline.domain.dunning_policy import Audience, DunningPolicy, StepAction
from billing_pipeline.domain.model import Organization
from billing_pipeline.rendering.reminders import ReminderFacts, render_reminder
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.rendering.sms import reminder_sms
from billing_pipeline.services.lifecycle import LifecycleError, LifecycleService
from billing_pipeline.services.notifications import Notification, NotificationDispatcher, Recipient

logger = logging.getLogger(__name__)


@dataclass
class ReminderRunSummary:
    as_of: dt.datetime
    decided: int = 0
    sent: int = 0
    skipped: int = 0  # decided skipped this run (catch-up superseded, no account manager)
    stopped: int = 0  # found paid / void / uncollectible / excluded at send time
    failed: int = 0  # a channel failed; retried by the next run
    dead: int = 0  # a channel gave up (dead letter) or is ambiguous
    actions: int = 0
    sent_by_step: Counter = field(default_factory=Counter)
    skipped_by_step: Counter = field(default_factory=Counter)
    amount_due_by_currency: dict[str, int] = field(default_factory=dict)  # minor units, customer reminders sent

    def amounts(self) -> dict[str, str]:
        return {
            cur: money.format_amount(money.from_minor(minor, cur), cur)
            for cur, minor in sorted(self.amount_due_by_currency.items())
        }

    def as_metadata(self) -> dict[str, object]:
        return {
            "as_of": self.as_of.isoformat(),
            "decided": self.decided,
            "sent": self.sent,
            "skipped": self.skipped,
            "stopped": self.stopped,
            "failed": self.failed,
            "dead_letters": self.dead,
            "actions": self.actions,
            "sent_by_step": dict(sorted(self.sent_by_step.items())),
            "skipped_by_step": dict(sorted(self.skipped_by_step.items())),
            "amount_due_reminded": self.amounts(),
        }

    def describe(self) -> str:
        steps = ", ".join(f"{k} {v}" for k, v in sorted(self.sent_by_step.items())) or "none"
        amounts = ", ".join(self.amounts().values()) or "nothing"
        return (
            f"reminders at {self.as_of:%Y-%m-%d %H:%M} UTC: {self.sent} sent ({steps}), {self.skipped} skipped, "
            f"{self.stopped} stopped, {self.failed} failed (retried next run), {self.dead} dead letter(s); "
            f"amount due reminded: {amounts}"
        )


@dataclass(frozen=True)
class ReminderSender:
    """What a run needs besides the database: the policy, the dispatcher, the seller for templates."""

    policy: DunningPolicy
    dispatcher: NotificationDispatcher
    seller: Seller


def send_payment_reminders(engine, sender: ReminderSender, as_of: dt.datetime) -> ReminderRunSummary:
    """One reminders run at ``as_of`` (an aware instant; each organization's date is taken in its zone)."""
    summary = ReminderRunSummary(as_of)
    policy = sender.policy
    data = ledger.load_receivables(engine)
    decisions = due_reminders(
        data.invoices, data.balances, policy, as_of, data.organizations, ledger.recorded_reminders(engine)
    )
    summary.decided = ledger.record_reminders(engine, decisions, policy.version)
    for rem in decisions:
        if rem.decision is Decision.SKIP:
            summary.skipped += 1
            summary.skipped_by_step[rem.step] += 1
    steps = {step.code: step for step in policy.steps}
    with sender.dispatcher.session():
        for row in ledger.reminder_rows(engine, status="pending"):
            _send_one(engine, sender, row, steps, as_of, summary)
    numbers = {inv.invoice_id: inv.number for inv in data.invoices}
    acted = {(r.invoice_id, r.org_id, r.step, r.action) for r in decisions if r.action is not StepAction.NONE}
    for invoice_id, org_id, step, action in sorted(acted, key=lambda a: (a[0], a[2], a[3].value)):
        summary.actions += _act(engine, policy, numbers.get(invoice_id), invoice_id, org_id, step, action)
    logger.info(summary.describe())
    return summary


def _act(engine, policy: DunningPolicy, number, invoice_id: int, org_id: str, step: str, action: StepAction) -> bool:
    """A step's action, once: an invoice written off goes through the lifecycle commands (audit trail,
    gateway mirror); an organization is suspended by a guarded update."""
    if action is StepAction.MARK_INVOICE_UNCOLLECTIBLE and number:
        reason = f"dunning policy version {policy.version}, step {step}"
        try:
            return LifecycleService(engine).mark_uncollectible(number, actor="dunning", reason=reason).changed
        except LifecycleError as exc:  # e.g. nothing due any more: a person settled it meanwhile
            logger.info("invoice %s not marked uncollectible: %s", number, exc)
            return False
    return ledger.apply_step_action(engine, invoice_id, org_id, action)


def _send_one(engine, sender: ReminderSender, row: ledger.ReminderRow, steps, as_of, summary) -> None:
    """Re-check one pending reminder on a fresh read, then send it (or record it stopped)."""
    fresh = ledger.load_receivables(engine, [row.invoice_id])
    invoice = fresh.invoices[0]
    due = amounts_due(fresh.invoices, fresh.balances)[invoice.invoice_id]
    org = fresh.organizations.get(invoice.org_id)
    step, audience = steps.get(row.step), Audience(row.audience)
    reason = stop_reason(invoice, due, org)
    if reason is None and step is None:
        reason = f"step {row.step!r} is not in policy version {sender.policy.version}"
    if reason is None and audience is Audience.ACCOUNT_MANAGER and not (org and org.account_manager_email):
        reason = "organization has no account manager"
    if reason is None and not _channels(step, audience, org):
        reason = "organization has no sms_phone (the step's only channel is sms)"
    if reason is not None:
        ledger.finish_reminder(engine, row.invoice_id, row.step, row.audience, "stopped", reason=reason)
        summary.stopped += 1
        return
    result = sender.dispatcher.send(_notification(sender, row, invoice, org, step, audience, due, as_of))
    if result.delivered:
        ledger.finish_reminder(engine, row.invoice_id, row.step, row.audience, "sent", amount_due_minor=due)
        summary.sent += 1
        summary.sent_by_step[row.step] += 1
        if audience is Audience.CUSTOMER:
            totals = summary.amount_due_by_currency
            totals[invoice.currency] = totals.get(invoice.currency, 0) + due
        return
    statuses = {o.status for o in result.outcomes}
    if statuses <= {"sent", "already_sent", "dismissed"}:
        ledger.finish_reminder(engine, row.invoice_id, row.step, row.audience, "stopped", reason="dismissed")
        summary.stopped += 1
    elif any(o.status in ("dead", "ambiguous") and o.changed for o in result.outcomes):
        summary.dead += 1
    elif "failed" in statuses:
        summary.failed += 1


def _notification(
    sender, row, invoice: DunnedInvoice, org: Organization, step, audience, due: int, as_of
) -> Notification:
    assert invoice.due_at is not None
    notice = next(n for n in step.notify if n.audience is audience)
    facts = ReminderFacts(
        org,
        invoice.number or f"#{invoice.invoice_id}",
        step.code,
        step.offset_days,
        local_date(invoice.due_at, org.time_zone),
        local_date(as_of, org.time_zone),
        due,
        invoice.total_minor,
        invoice.currency,
    )
    rendered = render_reminder(notice.template, facts, sender.seller)
    channels = _channels(step, audience, org)
    return Notification(
        dedupe_key=row.dedupe_key,
        kind="reminder",
        audience=audience.value,
        recipient=_recipient(org, audience),
        channels=channels,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        metadata={"invoice_id": str(invoice.invoice_id), "step": step.code},
        sms_text=reminder_sms(facts, sender.seller) if "sms" in channels else None,
    )


def _channels(step, audience: Audience, org: Organization | None) -> tuple[str, ...]:
    """The notice's channels; ``sms`` only for an organization with an ``sms_phone`` (others: e-mail alone)."""
    notice = next(n for n in step.notify if n.audience is audience)
    has_phone = org is not None and org.sms_phone is not None
    return tuple(c for c in notice.channels if c != "sms" or has_phone)


def _recipient(org: Organization, audience: Audience) -> Recipient:
    if audience is Audience.ACCOUNT_MANAGER:
        assert org.account_manager_email
        return Recipient(org.account_manager_email, f"Account manager of {org.name}")
    return Recipient(org.billing_email, org.name, org.sms_phone)
