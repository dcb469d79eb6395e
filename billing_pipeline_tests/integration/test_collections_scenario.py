"""Issue 11's scenario: 45 simulated days, five organizations, PostgreSQL + the SMTP test server.

The clock is injected: each day's jobs run at that day's times (``as_of``), twice, and the second
pass must change nothing. ``DAILY_JOBS`` is the day's job list in schedule order: bank transfers
arrive, the auto-charge job (06:00 UTC) charges the auto-pay organizations' due invoices through
the Stripe test server (the declined customer's card is declined twice, then works: attempts on
the due date, +6 and +13, one day before the +7 and +14 reminders), the payment sync (07:00)
re-reads Stripe, the reminders go out at 09:00.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
from sqlalchemy import select

from billing_pipeline.db import charges as charge_ledger
from billing_pipeline.db import collections, dead_letters
from billing_pipeline.db.schema import payments
from billing_pipeline.domain.dunning import amounts_due
from billing_pipeline.services.collections.charge_notices import NoticeSender
from billing_pipeline.services.collections.charges import charge_due_invoices
from billing_pipeline.services.collections.payment_sync import SyncOptions, sync_payment_status
from billing_pipeline.services.collections.reminders import send_payment_reminders
from billing_pipeline_tests.charge_builders import OPTIONS, add_charged_invoice, gateway_for, mirror, pay_requests
from billing_pipeline_tests.dunning_builders import (
    SELLER,
    UTC,
    customer,
    record_payment,
    reminders_database,
    smtp_sender,
)

pytestmark = pytest.mark.integration
FIRST_DAY = dt.date(2026, 3, 1)  # invoices issued at 00:00 UTC, net 14: due 2026-03-15
DAYS = 45  # 2026-03-01 .. 2026-04-14 (due + 30)
TOTAL = 12_000  # 120.00 USD each
ORGS = ["early", "after_overdue", "partial", "autopay_ok", "autopay_declined"]
#: (org, day, amount): customers paying by bank transfer, as ``payments record`` will record it
TRANSFERS = [("early", "2026-03-10", TOTAL), ("after_overdue", "2026-03-18", TOTAL), ("partial", "2026-03-17", 4_800)]


class World:
    def __init__(self, engine, smtp, stripe) -> None:
        self.engine, self.smtp, self.stripe = engine, smtp, stripe
        self.invoice = {
            name: add_charged_invoice(
                engine, name, f"INV-2026-{i + 1:06d}", issued=dt.datetime(2026, 3, 1, tzinfo=UTC), terms_days=14
            )
            for i, name in enumerate(ORGS)
        }
        self.org_of = {invoice_id: name for name, invoice_id in self.invoice.items()}
        self.sender = smtp_sender(engine, smtp)
        self.notices = NoticeSender(self.sender.dispatcher, SELLER)
        self.gateway = gateway_for(stripe)
        for name in ("autopay_ok", "autopay_declined"):
            _, stripe_customer = mirror(engine, self.gateway, stripe, self.invoice[name], name)
            if name == "autopay_declined":
                stripe.decline_next(stripe_customer, 2, "insufficient_funds")

    def pay(self, name: str, amount: int, reference: str) -> None:
        record_payment(self.engine, self.invoice[name], amount, external_id=reference)


def bank_transfers(world: World, day: dt.date, at: dt.datetime) -> None:
    for name, when, amount in TRANSFERS:
        if when == day.isoformat() and not _paid(world, f"wire-{name}"):
            world.pay(name, amount, f"wire-{name}")


def auto_charge(world: World, day: dt.date, at: dt.datetime) -> None:
    charge_due_invoices(world.engine, world.gateway, world.notices, OPTIONS, at)


def payment_sync(world: World, day: dt.date, at: dt.datetime) -> None:
    sync_payment_status(world.engine, world.gateway, world.notices, SyncOptions(), at)


def payment_reminders(world: World, day: dt.date, at: dt.datetime) -> None:
    send_payment_reminders(world.engine, world.sender, at)


def _paid(world: World, reference: str) -> bool:
    with world.engine.connect() as conn:
        return conn.execute(select(payments.c.id).where(payments.c.external_id == reference)).first() is not None


#: (job, hour UTC), in schedule order
DAILY_JOBS = [(bank_transfers, 0), (auto_charge, 6), (payment_sync, 7), (payment_reminders, 9)]


def _state(world: World):
    with world.engine.connect() as conn:
        paid = sorted(tuple(r) for r in conn.execute(select(payments.c.external_id, payments.c.status)))
    attempts = [(r.invoice_id, r.attempt, r.status, r.notified) for r in charge_ledger.attempt_rows(world.engine)]
    return collections.reminder_rows(world.engine), attempts, paid, len(pay_requests(world.stripe))


def test_forty_five_days_of_collections(billing_db_url, smtp_server, stripe_server):
    orgs = [customer(name, auto_pay=name.startswith("autopay")) for name in ORGS]
    orgs[2] = customer("partial", account_manager_email="am@seller.test")
    world = World(reminders_database(billing_db_url, orgs), smtp_server, stripe_server)
    sent_on: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for offset in range(DAYS):
        day = FIRST_DAY + dt.timedelta(days=offset)
        before = len(smtp_server.messages)
        for rerun in (0, 1):  # the second pass (15:00) must change nothing
            for job, hour in DAILY_JOBS:
                job(world, day, dt.datetime(day.year, day.month, day.day, hour + 6 * rerun, tzinfo=UTC))
            if rerun == 0:
                new = smtp_server.messages[before:]
                sent_on[day.isoformat()] += [_describe(world, m.message) for m in new]
                ledger_after_first = _state(world)
            else:
                assert len(smtp_server.messages) == before + len(sent_on[day.isoformat()]), day
                assert _state(world) == ledger_after_first, day

    assert {d: sorted(v) for d, v in sent_on.items() if v} == {
        "2026-03-08": sorted((name, "upcoming", "customer") for name in ORGS),
        "2026-03-15": [("autopay_declined", "payment_failed", "attempt 1"), ("autopay_ok", "receipt", "")],
        "2026-03-16": [("after_overdue", "overdue", "customer"), ("autopay_declined", "overdue", "customer")]
        + [("partial", "overdue", "customer")],
        "2026-03-21": [("autopay_declined", "payment_failed", "attempt 2")],
        "2026-03-22": [("autopay_declined", "escalation_7", "customer"), ("partial", "escalation_7", "customer")],
        "2026-03-28": [("autopay_declined", "receipt", "")],
        "2026-03-29": [("partial", "escalation_14", "account_manager"), ("partial", "escalation_14", "customer")],
        "2026-04-14": [("partial", "final_30", "account_manager"), ("partial", "final_30", "customer")],
    }
    assert [m.message["X-Billing-Notification"] for m in smtp_server.messages].count(None) == 0
    assert len({m.message["Message-ID"] for m in smtp_server.messages}) == len(smtp_server.messages) == 18
    # one pay request per attempt: autopay_ok once, autopay_declined three times (two declines, then paid)
    assert sorted(r.idempotency_key for r in pay_requests(stripe_server)) == [
        "test-charge-INV-2026-000004-1",
        "test-charge-INV-2026-000005-1",
        "test-charge-INV-2026-000005-2",
        "test-charge-INV-2026-000005-3",
    ]
    partial_subjects = [
        " ".join(m.message["Subject"].split()) for m in smtp_server.messages if "000003" in str(m.message["Subject"])
    ]
    assert partial_subjects[0].startswith("Upcoming: invoice INV-2026-000003") and "72.00 USD" in partial_subjects[-1]
    assert _final(world) == {
        "early": ("paid", 0),
        "after_overdue": ("paid", 0),
        "partial": ("finalized", 7_200),
        "autopay_ok": ("paid", 0),
        "autopay_declined": ("paid", 0),
    }
    assert dead_letters.open_dead_letters(world.engine) == []


def _describe(world: World, message) -> tuple[str, str, str]:
    kind, *rest = message["X-Billing-Notification"].split(":")
    if kind == "receipt":  # receipt:{payment id}
        return (world.org_of[_invoice_of(world, rest[0])], "receipt", "")
    if kind == "charge-failed":  # charge-failed:{invoice}:{attempt}
        return (world.org_of[int(rest[0])], "payment_failed", f"attempt {rest[1]}")
    invoice_id, step, audience = rest
    return (world.org_of[int(invoice_id)], step, audience)


def _invoice_of(world: World, payment_id: str) -> int:
    with world.engine.connect() as conn:
        return conn.execute(select(payments.c.invoice_id).where(payments.c.external_id == payment_id)).scalar_one()


def _final(world: World) -> dict[str, tuple[str, int]]:
    data = collections.load_receivables(world.engine, list(world.invoice.values()))
    due = amounts_due(data.invoices, data.balances)
    return {world.org_of[i.invoice_id]: (i.status.value, due[i.invoice_id]) for i in data.invoices}
