"""The auto-charge run and the payment sync against PostgreSQL, the Stripe test server and SMTP."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from billing_pipeline.db import charges as ledger
from billing_pipeline.db import dead_letters, lifecycle
from billing_pipeline.db.schema import payments
from billing_pipeline.services.collections.charges import charge_due_invoices
from billing_pipeline.services.collections.payment_sync import SyncOptions, sync_payment_status
from billing_pipeline_tests.charge_builders import (
    OPTIONS,
    add_charged_invoice,
    day,
    gateway_for,
    mirror,
    notice_sender,
    pay_requests,
)
from billing_pipeline_tests.dunning_builders import UTC, customer, reminders_database

pytestmark = pytest.mark.integration
ISSUED = dt.datetime(2026, 3, 1, tzinfo=UTC)  # net 14: due 2026-03-15 00:00 UTC


@pytest.fixture
def world(billing_db_url, stripe_server, smtp_server):
    orgs = [customer(name, auto_pay=True) for name in ("acme", "globex")] + [customer("manual")]
    engine = reminders_database(billing_db_url, orgs)
    gateway = gateway_for(stripe_server)
    ids = {}
    for i, name in enumerate(("acme", "globex", "manual")):
        ids[name] = add_charged_invoice(engine, name, f"INV-2026-{i + 1:06d}", issued=ISSUED, terms_days=14)
    return engine, gateway, notice_sender(engine, smtp_server), ids


def _payments(engine, invoice_id):
    with engine.connect() as conn:
        return [(r.external_id, r.amount_minor, r.status) for r in conn.execute(
            select(payments).where(payments.c.invoice_id == invoice_id).order_by(payments.c.id))]  # fmt: skip


def _subjects(smtp_server):
    return [" ".join(str(m.message["Subject"]).split()) for m in smtp_server.messages]


def test_due_invoices_are_charged_once_with_a_receipt(world, stripe_server, smtp_server):
    engine, gateway, notices, ids = world
    mirror(engine, gateway, stripe_server, ids["acme"], "acme")
    mirror(engine, gateway, stripe_server, ids["manual"], "manual")
    before_due = charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-14"))
    assert before_due.charged == 0 and pay_requests(stripe_server) == []
    summary = charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-15"))
    assert (summary.charged, summary.declined, summary.dead) == (1, 0, 1)
    [letter] = dead_letters.open_dead_letters(engine, ledger.CHARGE_KIND)  # globex was never synced to Stripe
    assert letter.business_key == "test-charge-INV-2026-000002-1" and "gateway refused" in letter.error
    assert summary.as_metadata()["charged_amounts"] == {"USD": "120.00 USD"}
    [(pi, amount, status)] = _payments(engine, ids["acme"])
    assert pi.startswith("pi_") and (amount, status) == (12_000, "succeeded")
    assert lifecycle.find_invoice(engine, "INV-2026-000001").status.value == "paid"
    assert [e.kind for e in lifecycle.history(engine, ids["acme"])] == ["payment", "transition"]
    assert _subjects(smtp_server) == ["Receipt: 120.00 USD paid for invoice INV-2026-000001"]
    assert smtp_server.messages[0].message["X-Billing-Notification"] == f"receipt:{pi}"
    assert [r.idempotency_key for r in pay_requests(stripe_server)] == ["test-charge-INV-2026-000001-1"]
    assert _payments(engine, ids["manual"]) == []  # not auto-pay: left to the reminders
    again = charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-15", 12))
    assert (again.charged, again.notices) == (0, 0) and len(pay_requests(stripe_server)) == 1
    assert len(smtp_server.messages) == 1 and len(_payments(engine, ids["acme"])) == 1


def test_soft_declines_retry_on_the_schedule_then_succeed(world, stripe_server, smtp_server):
    engine, gateway, notices, ids = world
    _, cus = mirror(engine, gateway, stripe_server, ids["acme"], "acme")
    stripe_server.decline_next(cus, 2, "insufficient_funds")
    runs = {}
    for iso in ("2026-03-15", "2026-03-16", "2026-03-20", "2026-03-21", "2026-03-22", "2026-03-28"):
        runs[iso] = charge_due_invoices(engine, gateway, notices, OPTIONS, day(iso))
    assert {k: (s.charged, s.declined) for k, s in runs.items()} == {
        "2026-03-15": (0, 1),
        "2026-03-16": (0, 0),
        "2026-03-20": (0, 0),
        "2026-03-21": (0, 1),
        "2026-03-22": (0, 0),
        "2026-03-28": (1, 0),
    }  # fmt: skip  retry days 6 and 13: one day before the +7 and +14 reminders
    rows = ledger.attempts_of(engine, [ids["acme"]])[ids["acme"]]
    assert [(r.attempt, r.status, r.decline_code) for r in rows] == [
        (1, "declined", "insufficient_funds"), (2, "declined", "insufficient_funds"), (3, "succeeded", None),
    ]  # fmt: skip
    assert _subjects(smtp_server) == [
        "Payment failed: invoice INV-2026-000001, 120.00 USD",
        "Payment failed: invoice INV-2026-000001, 120.00 USD",
        "Receipt: 120.00 USD paid for invoice INV-2026-000001",
    ]
    keys = [m.message["X-Billing-Notification"] for m in smtp_server.messages]
    assert keys[:2] == [f"charge-failed:{ids['acme']}:1", f"charge-failed:{ids['acme']}:2"]
    assert lifecycle.find_invoice(engine, "INV-2026-000001").status.value == "paid"


@pytest.mark.parametrize(("method", "code"), [("pm_card_chargeDeclinedLostCard", "lost_card"), (None, None)])
def test_hard_declines_and_no_payment_method_stop_the_retries(world, stripe_server, smtp_server, method, code):
    engine, gateway, notices, ids = world
    mirror(engine, gateway, stripe_server, ids["acme"], "acme", payment_method=method)
    for iso in ("2026-03-15", "2026-03-21", "2026-03-28", "2026-04-13"):
        charge_due_invoices(engine, gateway, notices, OPTIONS, day(iso))
    [row] = ledger.attempts_of(engine, [ids["acme"]])[ids["acme"]]
    assert row.status == "declined" and row.hard_decline and row.decline_code == (code or "no_payment_method")
    assert len(pay_requests(stripe_server)) == (1 if method else 0) and len(smtp_server.messages) == 1
    assert lifecycle.find_invoice(engine, "INV-2026-000001").status.value == "finalized"


def test_the_cap_moves_the_invoice_to_the_dead_letters(world, stripe_server, smtp_server):
    engine, gateway, notices, ids = world
    _, cus = mirror(engine, gateway, stripe_server, ids["acme"], "acme")
    stripe_server.decline_next(cus, 10, "generic_decline")
    for iso in ("2026-03-15", "2026-03-21", "2026-03-28", "2026-04-13", "2026-04-14", "2026-04-20"):
        charge_due_invoices(engine, gateway, notices, OPTIONS, day(iso))
    rows = ledger.attempts_of(engine, [ids["acme"]])[ids["acme"]]
    assert [r.status for r in rows] == ["declined", "declined", "declined", "dead"]
    letters = dead_letters.open_dead_letters(engine, ledger.CHARGE_KIND)
    [letter] = [x for x in letters if x.payload["invoice"] == "INV-2026-000001"]
    assert letter.business_key == "test-charge-INV-2026-000001-4" and letter.attempts == 4
    assert len(pay_requests(stripe_server)) == 4 and len(smtp_server.messages) == 4


class CrashAfterCharge:
    """The gateway, but the process "dies" right after the charge call returns (before the ledger write)."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway

    def __getattr__(self, name):
        return getattr(self.gateway, name)

    def charge_invoice(self, *args, **kwargs):
        self.gateway.charge_invoice(*args, **kwargs)
        raise SystemExit("killed between the charge and the ledger write")


def test_a_crash_after_the_charge_is_recorded_once_by_the_next_run(world, stripe_server, smtp_server):
    engine, gateway, notices, ids = world
    mirror(engine, gateway, stripe_server, ids["acme"], "acme")
    with pytest.raises(SystemExit):
        charge_due_invoices(engine, CrashAfterCharge(gateway), notices, OPTIONS, day("2026-03-15"))
    [row] = ledger.attempts_of(engine, [ids["acme"]])[ids["acme"]]
    assert (row.status, row.idempotency_key) == ("pending", "test-charge-INV-2026-000001-1")
    assert _payments(engine, ids["acme"]) == [] and len(pay_requests(stripe_server)) == 1
    summary = charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-15", 7))
    assert (summary.recovered, summary.charged) == (1, 1)
    assert len(pay_requests(stripe_server)) == 1  # found by find_charge: not charged again
    assert [(a, s) for _, a, s in _payments(engine, ids["acme"])] == [(12_000, "succeeded")]
    assert lifecycle.find_invoice(engine, "INV-2026-000001").status.value == "paid"
    assert len(smtp_server.messages) == 1


def test_processing_payments_settle_through_the_sync(world, stripe_server, smtp_server):
    engine, gateway, notices, ids = world
    mirror(engine, gateway, stripe_server, ids["acme"], "acme", payment_method="pm_usBankAccount")
    summary = charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-15"))
    assert summary.pending == 1
    [(pi, _, status)] = _payments(engine, ids["acme"])
    assert status == "processing" and lifecycle.find_invoice(engine, "INV-2026-000001").status.value == "finalized"
    options = SyncOptions(max_checks=2)
    first = sync_payment_status(engine, gateway, notices, options, day("2026-03-15", 6) + dt.timedelta(minutes=30))
    assert first.checked == 0  # younger than an hour
    later = day("2026-03-15", 8)
    assert sync_payment_status(engine, gateway, notices, options, later).still_processing == 1
    assert sync_payment_status(engine, gateway, notices, options, later + dt.timedelta(minutes=30)).checked == 0
    stripe_server.settle(pi)
    synced = sync_payment_status(engine, gateway, notices, options, later + dt.timedelta(hours=2))
    assert (synced.settled, synced.paid_elsewhere) == (1, 0)  # our own payment id is not recorded twice
    assert _payments(engine, ids["acme"]) == [(pi, 12_000, "succeeded")]
    assert lifecycle.find_invoice(engine, "INV-2026-000001").status.value == "paid"
    assert _subjects(smtp_server) == ["Receipt: 120.00 USD paid for invoice INV-2026-000001"]


def test_unsettled_payments_are_dead_lettered_after_the_check_cap(world, stripe_server, smtp_server):
    engine, gateway, notices, ids = world
    mirror(engine, gateway, stripe_server, ids["acme"], "acme", payment_method="pm_usBankAccount")
    charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-15"))
    start = day("2026-03-15", 8)
    for n in range(3):
        sync_payment_status(engine, gateway, notices, SyncOptions(max_checks=2), start + dt.timedelta(hours=2 * n))
    [letter] = dead_letters.open_dead_letters(engine, ledger.SYNC_KIND)
    assert letter.attempts == 2 and "still processing" in letter.error
    dead_letters.retry_dead_letter(engine, letter.id)
    assert [r.status for r in ledger.attempts_of(engine, [ids["acme"]])[ids["acme"]]] == ["processing"]


def test_invoices_paid_in_stripe_are_recorded_once(world, stripe_server, smtp_server, monkeypatch):
    engine, gateway, notices, ids = world
    paid_at = day("2026-03-20", 15)
    monkeypatch.setattr(stripe_server, "clock", paid_at.timestamp)  # Stripe stamps created / paid_at with it
    stripe_id, _ = mirror(engine, gateway, stripe_server, ids["manual"], "manual")
    stripe_server.client().v1.invoices.pay(stripe_id, params={"paid_out_of_band": True})
    too_late = paid_at + SyncOptions().lookback + dt.timedelta(minutes=1)  # its look-back starts after the payment
    assert sync_payment_status(engine, gateway, notices, SyncOptions(), too_late).paid_elsewhere == 0
    now = paid_at + dt.timedelta(minutes=30)
    assert sync_payment_status(engine, gateway, notices, SyncOptions(), now).paid_elsewhere == 1
    assert sync_payment_status(engine, gateway, notices, SyncOptions(), now).paid_elsewhere == 0
    assert _payments(engine, ids["manual"]) == [(f"stripe-paid:{stripe_id}", 12_000, "succeeded")]
    with engine.connect() as conn:
        recorded_at = conn.execute(select(payments.c.created_at).where(payments.c.invoice_id == ids["manual"]))
        assert recorded_at.scalar_one() == paid_at  # the payment is dated when Stripe says it was paid
    assert lifecycle.find_invoice(engine, "INV-2026-000003").status.value == "paid"


def test_status_shows_receivables_by_age_and_open_dead_letters(world, stripe_server, capsys):
    from billing_pipeline.cli.status import _print_receivables

    engine, gateway, notices, ids = world
    mirror(engine, gateway, stripe_server, ids["acme"], "acme", payment_method="pm_card_chargeDeclinedLostCard")
    charge_due_invoices(engine, gateway, notices, OPTIONS, day("2026-03-15"))  # globex: never synced, dead letter
    _print_receivables(engine, day("2026-04-20"))
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == [
        "Receivables:",
        "  overdue 31-60 days   3 invoice(s) 360.00 USD",
        "Open dead letters: charge: 1",
    ]
