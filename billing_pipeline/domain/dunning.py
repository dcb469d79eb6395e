"""Which payment reminder is due for which invoice and audience on a date (pure).

``due_reminders(invoices, payments, policy, as_of, organizations, recorded)`` is evaluated by
every reminders run; it is a function of its inputs only, so re-running a day decides the same.

* **Anchor: each invoice's own due date**, in its organization's time zone (``due_on``): a step
  with offset ``n`` is due on ``due_on + n days`` and from then on. ``as_of`` is an instant; the
  organization's local date at that instant is "today" (``local_date``), so a customer in
  Pacific/Auckland gets its 09:00 UTC run on the next local day. There is no account-level
  anchor ("the earliest unpaid invoice") and no "next check" scheduled from an earlier check:
  paying one invoice of several (Kill Bill issue #2297, where the moved anchor made a state be
  passed over) changes nothing for the others' steps.
* **Catch-up** (``policy.catch_up``) for steps that became due on days no run saw:
  ``most_severe`` sends the latest due step per invoice x audience and returns the earlier
  unrecorded ones as ``skip`` (superseded) so the ledger records them; ``all_missed`` sends all
  of them, oldest first.
* **Stop conditions** (``stop_reason``, also re-checked right before each send): the invoice is
  not ``finalized`` (paid, void, uncollectible), nothing is left to pay once succeeded payments
  are deducted, the organization is excluded from dunning. An account-manager notice is
  skipped when the organization has no account manager.
* ``recorded``: the ``(invoice id, step code, audience)`` already in the ledger (sent, skipped
  or pending): never returned again.

Amounts are integer minor units of the invoice's currency (``domain.money``).
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from .dunning_policy import Audience, CatchUp, DunningPolicy, DunningStep, StepAction
from .model import InvoiceStatus, Organization

SUCCEEDED = "succeeded"  # the only payment status that reduces the amount due


class Decision(str, enum.Enum):
    SEND = "send"
    SKIP = "skip"


@dataclass(frozen=True)
class Receivable:
    """An invoice as dunning sees it."""

    invoice_id: int
    org_id: str
    number: str | None
    status: InvoiceStatus
    currency: str
    total_minor: int
    due_at: dt.datetime | None  # aware, UTC


@dataclass(frozen=True)
class PaymentRecord:
    invoice_id: int
    amount_minor: int
    currency: str
    status: str


@dataclass(frozen=True)
class Reminder:
    invoice_id: int
    org_id: str
    step: str
    offset_days: int
    audience: Audience
    channels: tuple[str, ...]
    template: str
    decision: Decision
    reason: str | None  # why it is skipped
    step_date: dt.date  # the local day the step became due
    amount_due_minor: int
    currency: str
    action: StepAction = StepAction.NONE

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.invoice_id, self.step, self.audience.value)


def local_date(instant: dt.datetime, time_zone: str) -> dt.date:
    """The calendar day at ``instant`` in ``time_zone`` (an IANA name)."""
    if instant.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got {instant!r}")
    return instant.astimezone(zoneinfo.ZoneInfo(time_zone)).date()


def amounts_due(invoices: Iterable[Receivable], payments: Iterable[PaymentRecord]) -> dict[int, int]:
    """Invoice id -> total minus its succeeded payments (minor units; negative if overpaid)."""
    by_id = {inv.invoice_id: inv for inv in invoices}
    due = {inv.invoice_id: inv.total_minor for inv in by_id.values()}
    for payment in payments:
        invoice = by_id.get(payment.invoice_id)
        if invoice is None or payment.status != SUCCEEDED:
            continue
        if payment.currency != invoice.currency:
            raise ValueError(
                f"payment of invoice {payment.invoice_id} is in {payment.currency}, the invoice in {invoice.currency}"
            )
        due[payment.invoice_id] -= payment.amount_minor
    return due


def stop_reason(invoice: Receivable, amount_due_minor: int, org: Organization | None) -> str | None:
    """Why no reminder may go out for ``invoice`` (checked at plan and at send time), or None."""
    if invoice.status is not InvoiceStatus.FINALIZED:
        return f"invoice is {invoice.status.value}"
    if invoice.due_at is None:
        return "invoice has no due date"
    if amount_due_minor <= 0:
        return "nothing left to pay"
    if org is None:
        return f"organization {invoice.org_id!r} is unknown"
    if org.dunning_excluded:
        return "organization is excluded from dunning"
    return None


def step_date(invoice: Receivable, step: DunningStep, org: Organization) -> dt.date:
    """The local day ``step`` becomes due for ``invoice``."""
    assert invoice.due_at is not None
    return local_date(invoice.due_at, org.time_zone) + dt.timedelta(days=step.offset_days)


def due_reminders(
    invoices: Iterable[Receivable],
    payments: Iterable[PaymentRecord],
    policy: DunningPolicy,
    as_of: dt.datetime,
    organizations: Mapping[str, Organization],
    recorded: Set[tuple[int, str, str]] = frozenset(),
) -> list[Reminder]:
    """The reminders to send or record as skipped at ``as_of``, by invoice, audience and offset."""
    invoices = list(invoices)
    due = amounts_due(invoices, payments)
    out: list[Reminder] = []
    for invoice in sorted(invoices, key=lambda i: i.invoice_id):
        org = organizations.get(invoice.org_id)
        if stop_reason(invoice, due[invoice.invoice_id], org) is not None:
            continue
        assert org is not None
        today = local_date(as_of, org.time_zone)
        for audience in Audience:
            out += _for_audience(invoice, org, policy, audience, today, due[invoice.invoice_id], recorded)
    return out


def _for_audience(
    invoice: Receivable,
    org: Organization,
    policy: DunningPolicy,
    audience: Audience,
    today: dt.date,
    amount_due: int,
    recorded: Set[tuple[int, str, str]],
) -> list[Reminder]:
    steps = [s for s in policy.steps if any(n.audience is audience for n in s.notify)]
    reached = [s for s in steps if step_date(invoice, s, org) <= today]
    if not reached:
        return []
    latest = reached[-1]
    out = []
    for step in reached:
        if (invoice.invoice_id, step.code, audience.value) in recorded:
            continue
        notice = next(n for n in step.notify if n.audience is audience)
        reason = None
        if policy.catch_up is CatchUp.MOST_SEVERE and step is not latest:
            reason = f"superseded by {latest.code} (catch-up: most_severe)"
        elif audience is Audience.ACCOUNT_MANAGER and not org.account_manager_email:
            reason = "organization has no account manager"
        out.append(
            Reminder(
                invoice.invoice_id,
                invoice.org_id,
                step.code,
                step.offset_days,
                audience,
                notice.channels,
                notice.template,
                Decision.SKIP if reason else Decision.SEND,
                reason,
                step_date(invoice, step, org),
                amount_due,
                invoice.currency,
                step.action,
            )
        )
    return out


__all__ = [
    "Decision",
    "PaymentRecord",
    "Receivable",
    "Reminder",
    "amounts_due",
    "due_reminders",
    "local_date",
    "step_date",
    "stop_reason",
]
