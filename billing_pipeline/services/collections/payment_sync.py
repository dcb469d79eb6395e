"""One payment-status sync run: settle what was processing, pick up what was paid in Stripe.

1. Every charge attempt ``processing`` for more than ``min_age`` is re-read (``payment_status``):
   ``succeeded`` -> its payment becomes ``succeeded`` (the invoice ``paid`` when nothing remains
   due) and the attempt ``settled``; ``canceled`` or back to ``requires_payment_method`` -> the
   attempt ``failed`` (the auto-charge retries it on its schedule) and the payment row ``failed``;
   anything else counts one check, and ``max_checks`` checks give up into a dead letter.
2. ``invoices_paid_out_of_band(as_of - lookback)``: invoices paid in Stripe outside our charges
   (hosted page, marked paid out of band) are recorded once: payment ids already recorded are
   skipped, and nothing beyond the amount due is ever recorded (partial payments reduce it).
Receipts and failure notices go out as for charges (``charge_notices``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from billing_pipeline.clients.errors import GatewayError
from billing_pipeline.clients.payments import ChargeGateway, PaidInvoice
from billing_pipeline.db import charges as ledger
from billing_pipeline.db.lifecycle import InvoiceNotFound
from billing_pipeline.domain import money
from billing_pipeline.services.collections.charge_notices import NoticeSender, notify_attempts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncOptions:
    min_age: dt.timedelta = dt.timedelta(hours=1)
    max_checks: int = 48
    lookback: dt.timedelta = dt.timedelta(days=3)


@dataclass
class SyncRunSummary:
    as_of: dt.datetime
    checked: int = 0
    settled: int = 0
    failed: int = 0
    still_processing: int = 0
    paid_elsewhere: int = 0
    errors: int = 0
    dead: int = 0
    notices: int = 0
    settled_by_currency: Counter = field(default_factory=Counter)
    elsewhere_by_currency: Counter = field(default_factory=Counter)

    def amounts(self, counter: Counter) -> dict[str, str]:
        return {c: money.format_amount(money.from_minor(m, c), c) for c, m in sorted(counter.items())}

    def as_metadata(self) -> dict[str, object]:
        return {
            "as_of": self.as_of.isoformat(), "checked": self.checked, "synced": self.checked + self.paid_elsewhere,
            "settled": self.settled, "failed": self.failed, "still_processing": self.still_processing,
            "paid_elsewhere": self.paid_elsewhere, "errors": self.errors, "dead_letters": self.dead,
            "notices": self.notices, "settled_amounts": self.amounts(self.settled_by_currency),
            "paid_elsewhere_amounts": self.amounts(self.elsewhere_by_currency),
        }  # fmt: skip

    def describe(self) -> str:
        return (
            f"payment sync at {self.as_of:%Y-%m-%d %H:%M} UTC: {self.checked} checked, {self.settled} settled, "
            f"{self.failed} failed, {self.still_processing} still processing, {self.paid_elsewhere} paid in "
            f"Stripe recorded, {self.errors} gateway errors, {self.dead} dead letter(s), {self.notices} notice(s)"
        )


def sync_payment_status(
    engine, gateway: ChargeGateway, notices: NoticeSender, options: SyncOptions, as_of: dt.datetime
) -> SyncRunSummary:
    summary = SyncRunSummary(as_of)
    for row in ledger.attempt_rows(engine, status=("processing",)):
        if row.updated_at > as_of - options.min_age:
            continue
        _check(engine, gateway, options, row, summary)
    try:
        paid = gateway.invoices_paid_out_of_band(as_of - options.lookback)
    except GatewayError as exc:
        logger.warning("payment sync: listing paid invoices failed: %s", exc)
        summary.errors += 1
        paid = []
    for item in paid:
        _paid_elsewhere(engine, item, summary)
    summary.notices = notify_attempts(engine, notices)
    logger.info(summary.describe())
    return summary


def _check(engine, gateway: ChargeGateway, options: SyncOptions, row: ledger.AttemptRow, summary) -> None:
    number = _number(engine, row.invoice_id)
    summary.checked += 1
    try:
        status = gateway.payment_status(row.gateway_payment_id or "")
    except GatewayError as exc:
        logger.warning("payment sync %s: %s", row.gateway_payment_id, exc)
        summary.errors += 1
        status = None
    if status is not None and status.succeeded:
        ledger.record_outcome(
            engine, number, row.attempt, ledger.Outcome("settled", status.amount_minor, row.gateway_payment_id),
            summary.as_of,
        )  # fmt: skip
        summary.settled += 1
        summary.settled_by_currency[status.currency] += status.amount_minor
        return
    if status is not None and status.failed:
        outcome = ledger.Outcome("failed", row.amount_minor, row.gateway_payment_id, status.decline_code)
        ledger.record_outcome(engine, number, row.attempt, outcome, summary.as_of)
        ledger.fail_payment(engine, row.gateway_payment_id or "")
        summary.failed += 1
        return
    checks = ledger.count_sync_check(engine, row.invoice_id, row.attempt, summary.as_of)
    if checks >= options.max_checks:
        error = (
            f"payment {row.gateway_payment_id} still {status.status if status else 'unreadable'} after {checks} checks"
        )
        summary.dead += ledger.give_up(engine, ledger.SYNC_KIND, row, number, error, checks)
    else:
        summary.still_processing += 1


def _paid_elsewhere(engine, item: PaidInvoice, summary: SyncRunSummary) -> None:
    recorded = ledger.recorded_payment_ids(engine, list(item.gateway_payment_ids))
    if item.gateway_payment_ids and recorded == set(item.gateway_payment_ids):
        return
    already = ledger.amount_of_payments(engine, sorted(recorded))
    fresh = [p for p in item.gateway_payment_ids if p not in recorded]
    external_id = fresh[0] if fresh else f"stripe-paid:{item.gateway_invoice_id}"
    try:
        amount = ledger.record_paid_elsewhere(
            engine, item.number, external_id, item.amount_paid_minor - already, item.paid_at
        )
    except InvoiceNotFound:
        logger.warning(
            "payment sync: Stripe invoice %s names no invoice of ours (%s)", item.gateway_invoice_id, item.number
        )
        return
    if amount:
        summary.paid_elsewhere += 1
        summary.elsewhere_by_currency[item.currency] += amount


def _number(engine, invoice_id: int) -> str:
    return ledger.invoice_number(engine, invoice_id)
