"""One auto-charge run: charge auto-pay organizations' due invoices through the gateway, once each.

For every finalized invoice of an auto-pay organization whose due date has passed and whose amount
due is above zero, ``domain.charges.plan_charge`` decides from the recorded attempts:

* ``CHARGE``: the attempt row is written ``pending`` with ``charge_key(number, attempt, prefix)``
  (committed), then ``charge_invoice`` is called with that attempt and the amount due, then the
  answer is recorded (``db.charges.record_outcome``: payment, audit, ``paid``);
* ``RESOLVE``: a ``pending`` row a crashed run left: ``find_charge`` first (the payment is then
  recorded once, nothing charged again); nothing found -> the same attempt again (same key:
  Stripe replays the answer it saved, it never charges twice);
* ``GIVE_UP``: ``max_attempts`` soft declines: the attempt becomes ``dead`` with a dead letter.

Then every attempt whose notice has not gone out gets it through the ``NotificationDispatcher``:
a receipt per payment (``receipt:{payment id}``), a failure notice per declined attempt
(``charge-failed:{invoice}:{attempt}``), marked ``notified`` once delivered or settled.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from billing_pipeline.clients.errors import GatewayError, TransientGatewayError
from billing_pipeline.clients.payments import ChargeGateway, ChargeResult, charge_key
from billing_pipeline.db import charges as ledger
from billing_pipeline.db import collections
from billing_pipeline.db.invoices import load_invoices
from billing_pipeline.domain import money
from billing_pipeline.domain.charges import AttemptRecord, NextCharge, plan_charge
from billing_pipeline.domain.dunning import amounts_due
from billing_pipeline.services.collections.charge_notices import NoticeSender, notify_attempts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChargeOptions:
    idempotency_prefix: str
    retry_days: tuple[int, ...]  # days after the due date of attempts 2, 3, ...
    max_attempts: int


@dataclass
class ChargeRunSummary:
    as_of: dt.datetime
    charged: int = 0
    declined: int = 0
    pending: int = 0  # processing (bank debits): left to the payment sync
    requires_action: int = 0
    recovered: int = 0  # found by find_charge after a crash: recorded, not charged again
    errors: int = 0  # the gateway failed (5xx, down): the attempt stays pending, retried next run
    dead: int = 0
    notices: int = 0
    charged_by_currency: Counter = field(default_factory=Counter)
    declined_by_currency: Counter = field(default_factory=Counter)
    by_org: dict[str, str] = field(default_factory=dict)

    def amounts(self, counter: Counter) -> dict[str, str]:
        return {c: money.format_amount(money.from_minor(m, c), c) for c, m in sorted(counter.items())}

    def as_metadata(self) -> dict[str, object]:
        return {
            "as_of": self.as_of.isoformat(), "charged": self.charged, "declined": self.declined,
            "pending": self.pending, "requires_action": self.requires_action, "recovered": self.recovered,
            "errors": self.errors, "dead_letters": self.dead, "notices": self.notices,
            "charged_amounts": self.amounts(self.charged_by_currency),
            "declined_amounts": self.amounts(self.declined_by_currency),
            "by_organization": dict(sorted(self.by_org.items())),
        }  # fmt: skip

    def describe(self) -> str:
        charged = ", ".join(self.amounts(self.charged_by_currency).values()) or "nothing"
        return (
            f"auto-charge at {self.as_of:%Y-%m-%d %H:%M} UTC: {self.charged} charged ({charged}), "
            f"{self.declined} declined, {self.pending} pending, {self.requires_action} need the customer, "
            f"{self.recovered} recovered, {self.errors} gateway errors, {self.dead} dead letter(s), "
            f"{self.notices} notice(s)"
        )


def charge_due_invoices(
    engine, gateway: ChargeGateway, notices: NoticeSender, options: ChargeOptions, as_of: dt.datetime
) -> ChargeRunSummary:
    summary = ChargeRunSummary(as_of)
    data = collections.load_receivables(engine)
    due = amounts_due(data.invoices, data.balances)
    candidates = [
        inv
        for inv in data.invoices
        if inv.due_at is not None and inv.due_at <= as_of and due[inv.invoice_id] > 0
        and (org := data.organizations.get(inv.org_id)) is not None and org.auto_pay
    ]  # fmt: skip
    ids = [inv.invoice_id for inv in candidates]
    attempts = ledger.attempts_of(engine, ids)
    stripe_ids = ledger.stripe_invoice_ids(engine, ids)
    due_now = {
        inv.invoice_id
        for inv in candidates
        if plan_charge(
            _records(attempts[inv.invoice_id]), inv.due_at, as_of, options.retry_days, options.max_attempts
        ).action
        in (NextCharge.CHARGE, NextCharge.RESOLVE)
    }
    loaded = load_invoices(engine, sorted(due_now))  # one read for the run, not one per invoice
    for inv in candidates:
        plan = plan_charge(
            _records(attempts[inv.invoice_id]), inv.due_at, as_of, options.retry_days, options.max_attempts
        )
        if plan.action is NextCharge.GIVE_UP:
            row = attempts[inv.invoice_id][-1]
            summary.dead += ledger.give_up(engine, ledger.CHARGE_KIND, row, inv.number, plan.reason)
        elif plan.action in (NextCharge.CHARGE, NextCharge.RESOLVE):
            invoice = loaded[inv.invoice_id].invoice
            _attempt(
                engine,
                gateway,
                options,
                inv,
                invoice,
                plan,
                due[inv.invoice_id],
                stripe_ids.get(inv.invoice_id),
                summary,
            )
    summary.notices = notify_attempts(engine, notices)
    logger.info(summary.describe())
    return summary


def _records(rows: list[ledger.AttemptRow]) -> list[AttemptRecord]:
    return [AttemptRecord(a.attempt, a.status, a.hard_decline) for a in rows]


def _attempt(engine, gateway, options: ChargeOptions, inv, invoice, plan, amount_due: int, stripe_id, summary) -> None:
    prefix = options.idempotency_prefix
    key = charge_key(inv.number, plan.attempt, prefix)
    try:
        result = None
        if plan.action is NextCharge.RESOLVE:
            result = gateway.find_charge(invoice, plan.attempt, idempotency_prefix=prefix, external_id=stripe_id)
            summary.recovered += result is not None
        else:
            ledger.claim_attempt(engine, inv.invoice_id, plan.attempt, key, amount_due, inv.currency)
        if result is None:
            result = gateway.charge_invoice(
                invoice, plan.attempt, idempotency_prefix=prefix, amount_minor=amount_due, external_id=stripe_id
            )
    except TransientGatewayError as exc:  # the row stays pending: the next run asks find_charge, same key
        logger.warning("charge %s: %s", key, exc)
        summary.errors += 1
        summary.by_org[inv.org_id] = f"{inv.number} attempt {plan.attempt}: gateway error, retried next run"
        return
    except GatewayError as exc:  # void in Stripe, totals disagree...: an operator must look
        row = next(a for a in ledger.attempts_of(engine, [inv.invoice_id])[inv.invoice_id] if a.attempt == plan.attempt)
        summary.dead += ledger.give_up(engine, ledger.CHARGE_KIND, row, inv.number, f"gateway refused: {exc}")
        summary.by_org[inv.org_id] = f"{inv.number} attempt {plan.attempt}: refused by the gateway (dead letter)"
        return
    _record(engine, inv, plan.attempt, result, summary)


def _record(engine, inv, attempt: int, result: ChargeResult, summary: ChargeRunSummary) -> None:
    outcome = ledger.Outcome(
        result.status.value, result.amount_minor, result.gateway_payment_id, result.decline_code,
        result.hard_decline, result.message,
    )  # fmt: skip
    if result.gateway_payment_id is None and result.status.value == "succeeded":
        # paid out of band in Stripe before we charged: the payment sync records it once
        outcome = ledger.Outcome("succeeded", result.amount_minor, None, message="paid before the charge")
    ledger.record_outcome(engine, inv.number, attempt, outcome, summary.as_of)
    status = result.status.value
    if status == "succeeded":
        summary.charged += 1
        summary.charged_by_currency[result.currency] += result.amount_minor
    elif status == "declined":
        summary.declined += 1
        summary.declined_by_currency[result.currency] += result.amount_minor
    elif status == "processing":
        summary.pending += 1
    else:
        summary.requires_action += 1
    detail = f" ({result.decline_code}{', hard' if result.hard_decline else ''})" if result.decline_code else ""
    summary.by_org[inv.org_id] = f"{inv.number} attempt {attempt}: {status}{detail}"
