"""Auto-charge processes SIGKILLed at a charge, then run again: each invoice charged once, recorded once,
one receipt each, against PostgreSQL, the Stripe test server and SMTP.

Every run is a process (``support/charge_run.py``: the project's ``auto_charges`` asset materialized
from its definitions, settings from the environment). The kill is a real SIGKILL the process sends
itself at a chosen point of its first charge (no ``finally``, no rollback, no atexit), not an exception:

* ``after-charge``: Stripe has taken the money; our ledger holds a ``pending`` attempt and nothing
  else. The next run's ``find_charge`` finds the payment on the Stripe invoice and records it once.
* ``before-charge``: the ``pending`` attempt is committed, Stripe was never asked. The next run finds
  nothing there and charges with the same idempotency key.

Two more runs after the recovery change nothing: not the ledger, Stripe or the mailbox.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import select

from billing_pipeline.db.schema import charge_attempts, invoices, payments
from billing_pipeline_tests.charge_builders import add_charged_invoice, gateway_for, mirror, pay_requests
from billing_pipeline_tests.dunning_builders import UTC, customer, reminders_database
from billing_pipeline_tests.support.settings import real_servers_env

pytestmark = pytest.mark.integration
RUN = [sys.executable, "-m", "billing_pipeline_tests.support.charge_run"]
ISSUED = dt.datetime(2026, 3, 1, tzinfo=UTC)  # net 14: due 2026-03-15 00:00 UTC
NUMBERS = {"acme": "INV-2026-000001", "globex": "INV-2026-000002"}


@pytest.fixture
def world(billing_db_url, stripe_server, smtp_server, tmp_path):
    """Two auto-pay organizations, an invoice each (120.00 USD, due 2026-03-15) mirrored to Stripe with
    a card on file; the environment a charge run reads."""
    engine = reminders_database(billing_db_url, [customer(name, auto_pay=True) for name in NUMBERS])
    gateway = gateway_for(stripe_server)
    stripe_ids = {}
    for name, number in NUMBERS.items():
        invoice_id = add_charged_invoice(engine, name, number, issued=ISSUED, terms_days=14)
        stripe_ids[number], _ = mirror(engine, gateway, stripe_server, invoice_id, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "SMTP_", "STRIPE_", "S3_"))}
    env.update(
        real_servers_env(
            billing_url=billing_db_url, billing_home=tmp_path / "billing", bucket=None, s3=None,
            stripe=stripe_server, smtp=smtp_server,
        )
    )  # fmt: skip
    return engine, env, stripe_ids


def charge_run(env, hour: int, kill: str | None = None) -> subprocess.CompletedProcess:
    as_of = f"2026-03-15T{hour:02d}:00:00+00:00"
    return subprocess.run(
        [*RUN, as_of, *(["--kill", kill] if kill else [])],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("charge-run: ")]
    return json.loads(line.removeprefix("charge-run: "))


def ledger(engine) -> dict:
    """Our side: attempts, payments and each invoice's status, by invoice number."""
    with engine.connect() as conn:
        numbers = dict(conn.execute(select(invoices.c.id, invoices.c.number)).all())
        status = dict(conn.execute(select(invoices.c.number, invoices.c.status)).all())
        attempts = conn.execute(select(charge_attempts).order_by(charge_attempts.c.id)).all()
        paid = conn.execute(select(payments).order_by(payments.c.id)).all()
    return {
        "attempts": [(numbers[a.invoice_id], a.attempt, a.status, a.idempotency_key) for a in attempts],
        "payments": [(numbers[p.invoice_id], p.external_id, p.amount_minor, p.status) for p in paid],
        "status": status,
    }


def stripe_view(stripe_server, stripe_ids) -> dict:
    """Stripe's side: each invoice's status, amount paid and PaymentIntents; every pay request's key."""
    view = {}
    for number, stripe_id in stripe_ids.items():
        inv = stripe_server.get(stripe_id)
        intents = [p["payment"]["payment_intent"] for p in inv["payments"]["data"]]
        view[number] = (inv["status"], inv["amount_paid"], intents)
    return {
        "invoices": view,
        "payment_intents": stripe_server.count("payment_intents"),
        "pay_keys": [r.idempotency_key for r in pay_requests(stripe_server)],
    }


def mailbox(smtp_server) -> list[tuple[str, str]]:
    return [
        (str(m.message["X-Billing-Notification"]), " ".join(str(m.message["Subject"]).split()))
        for m in smtp_server.messages
    ]


def killed_run(world, stripe_server, smtp_server, point: str) -> str:
    """Kill the first charge at *point*; returns the killed invoice's number (its attempt stays pending)."""
    engine, env, stripe_ids = world
    killed = charge_run(env, 6, kill=point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    state = ledger(engine)
    [(number, attempt, status, key)] = state["attempts"]  # the kill came at the first charge
    assert (attempt, status, key) == (1, "pending", f"billing-charge-{number}-1")
    assert state["payments"] == [] and set(state["status"].values()) == {"finalized"}
    assert mailbox(smtp_server) == []
    return number


def assert_each_charged_once(world, stripe_server, smtp_server) -> None:
    engine, _, stripe_ids = world
    state, stripe = ledger(engine), stripe_view(stripe_server, stripe_ids)
    keys = [f"billing-charge-{n}-1" for n in sorted(NUMBERS.values())]
    assert sorted(state["attempts"]) == [(n, 1, "succeeded", f"billing-charge-{n}-1") for n in sorted(NUMBERS.values())]
    assert sorted(stripe["pay_keys"]) == keys  # each attempt's key sent once
    assert stripe["payment_intents"] == 2
    for number in NUMBERS.values():
        [(pi, amount, status)] = [(p, a, s) for n, p, a, s in state["payments"] if n == number]
        assert (amount, status) == (12_000, "succeeded")
        assert stripe["invoices"][number] == ("paid", 12_000, [pi])  # Stripe's one payment is the one recorded
        assert state["status"][number] == "paid"
    receipts = collections.Counter(key for key, _ in mailbox(smtp_server))
    assert receipts == collections.Counter(f"receipt:{p}" for _, p, _, _ in state["payments"])
    assert sorted(subject for _, subject in mailbox(smtp_server)) == [
        f"Receipt: 120.00 USD paid for invoice {n}" for n in sorted(NUMBERS.values())
    ]


def assert_reruns_change_nothing(world, stripe_server, smtp_server) -> None:
    engine, env, stripe_ids = world
    before = (ledger(engine), stripe_view(stripe_server, stripe_ids), mailbox(smtp_server))
    for hour in (8, 9):
        again = summary_of(charge_run(env, hour))
        assert (again["charged"], again["recovered"], again["notices"], again["errors"]) == (0, 0, 0, 0)
        assert (ledger(engine), stripe_view(stripe_server, stripe_ids), mailbox(smtp_server)) == before


def test_killed_after_the_charge_the_next_run_records_the_payment_once(world, stripe_server, smtp_server):
    _, env, stripe_ids = world
    number = killed_run(world, stripe_server, smtp_server, "after-charge")
    stripe = stripe_view(stripe_server, stripe_ids)
    assert stripe["pay_keys"] == [f"billing-charge-{number}-1"]  # the money was taken before the kill
    status, amount_paid, [_] = stripe["invoices"][number]
    assert (status, amount_paid) == ("paid", 12_000)

    recovery = summary_of(charge_run(env, 7))
    assert (recovery["recovered"], recovery["charged"], recovery["notices"]) == (1, 2, 2)
    assert pay_requests(stripe_server)[0].idempotency_key == f"billing-charge-{number}-1"
    assert_each_charged_once(world, stripe_server, smtp_server)  # the killed one: found, not charged again
    assert_reruns_change_nothing(world, stripe_server, smtp_server)


def test_killed_before_the_charge_the_next_run_charges_once_with_the_same_key(world, stripe_server, smtp_server):
    _, env, stripe_ids = world
    number = killed_run(world, stripe_server, smtp_server, "before-charge")
    stripe = stripe_view(stripe_server, stripe_ids)
    assert stripe["pay_keys"] == [] and stripe["payment_intents"] == 0  # Stripe was never asked
    assert {s for s, _, _ in stripe["invoices"].values()} == {"open"}

    recovery = summary_of(charge_run(env, 7))
    assert (recovery["recovered"], recovery["charged"], recovery["notices"]) == (0, 2, 2)
    assert f"billing-charge-{number}-1" in stripe_view(stripe_server, stripe_ids)["pay_keys"]
    assert_each_charged_once(world, stripe_server, smtp_server)
    assert_reruns_change_nothing(world, stripe_server, smtp_server)
