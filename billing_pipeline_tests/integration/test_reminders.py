"""Reminders against PostgreSQL and the SMTP test server: once each, re-runs send nothing, SMTP down is
retried then dead-lettered at the cap, and a dead letter's retry re-sends it exactly once."""

from __future__ import annotations

import dataclasses
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from billing_pipeline.cli import main
from billing_pipeline.db import collections, dead_letters, notifications
from billing_pipeline.db.schema import invoices
from billing_pipeline.domain.dunning import due_reminders
from billing_pipeline.domain.dunning_policy import StepAction
from billing_pipeline.services.collections.policy import load_policy
from billing_pipeline.services.collections.reminders import send_payment_reminders
from billing_pipeline.services.notifications import Notification, Recipient
from billing_pipeline_tests.dunning_builders import (
    UTC,
    add_finalized_invoice,
    at,
    customer,
    record_payment,
    reminders_database,
    smtp_sender,
)
from billing_pipeline_tests.support._util import free_port

pytestmark = pytest.mark.integration
ISSUED = at("2026-03-01", "00:00").astimezone(UTC)  # net 30: due 2026-03-31


@pytest.fixture
def engine(billing_db_url):
    orgs = [customer("acme", account_manager_email="am@seller.test"), customer("beta")]
    return reminders_database(billing_db_url, orgs)


@pytest.fixture
def acme_invoice(engine):
    return add_finalized_invoice(engine, "acme", "INV-2026-000001", issued=ISSUED)


def ledger(engine):
    return {(r.invoice_id, r.step, r.audience): r.status for r in collections.reminder_rows(engine)}


def subjects(smtp):
    return [m.message["Subject"] for m in smtp.messages]


def test_each_reminder_is_sent_once_and_rerunning_the_day_sends_nothing(engine, acme_invoice, smtp_server):
    sender = smtp_sender(engine, smtp_server)
    summary = send_payment_reminders(engine, sender, at("2026-03-24"))
    assert (summary.sent, summary.sent_by_step) == (1, {"upcoming": 1})
    assert summary.amounts() == {"USD": "120.00 USD"}
    for _ in range(3):
        again = send_payment_reminders(engine, sender, at("2026-03-24", "17:00"))
        assert (again.decided, again.sent, again.failed) == (0, 0, 0)
    [message] = smtp_server.messages
    assert message.message["Message-ID"] == f"<reminder.{acme_invoice}.upcoming.customer@seller.test>"
    assert message.message["To"] == "Acme Inc <billing@acme.test>"
    assert "INV-2026-000001 from Example Cloud Ltd is due on 2026-03-31" in message.message["Subject"]
    body = message.message.get_body(("plain",)).get_content()
    assert "120.00 USD" in body and "in 7 day(s)" in body

    send_payment_reminders(engine, sender, at("2026-04-14"))  # +14: missed +1 and +7 are recorded skipped
    assert ledger(engine) == {
        (acme_invoice, "upcoming", "customer"): "sent",
        (acme_invoice, "overdue", "customer"): "skipped",
        (acme_invoice, "escalation_7", "customer"): "skipped",
        (acme_invoice, "escalation_14", "customer"): "sent",
        (acme_invoice, "escalation_14", "account_manager"): "sent",
    }
    assert sorted(m.message["To"] for m in smtp_server.messages[1:]) == [
        "Account manager of Acme Inc <am@seller.test>",
        "Acme Inc <billing@acme.test>",
    ]
    send_payment_reminders(engine, sender, at("2026-04-14", "23:00"))
    assert len(smtp_server.messages) == 3


def test_smtp_down_is_retried_next_run_then_dead_lettered_at_the_cap(engine, acme_invoice, smtp_server):
    down = smtp_sender(engine, smtp_server, port=free_port(), max_attempts=3)  # nothing listens there
    key = collections.dedupe_key(acme_invoice, "overdue", "customer")
    for day, attempts in (("2026-04-01", 1), ("2026-04-02", 2)):
        summary = send_payment_reminders(engine, down, at(day))
        assert (summary.failed, summary.dead) == (1, 0)
        row = notifications.get_row(engine, key, "email")
        assert (row.status, row.attempts) == ("failed", attempts) and "connection" in row.last_error.lower()
    summary = send_payment_reminders(engine, down, at("2026-04-03"))
    assert (summary.failed, summary.dead) == (0, 1)
    assert notifications.get_row(engine, key, "email").status == "dead"
    [letter] = dead_letters.open_dead_letters(engine)
    assert (letter.kind, letter.business_key, letter.attempts) == ("notification", f"{key}|email", 3)
    assert letter.payload["recipient"] == "billing@acme.test" and "gave up after 3 attempts" in letter.error

    up = smtp_sender(engine, smtp_server)
    for _ in range(2):  # a dead notice is not tried again, even with SMTP back
        assert send_payment_reminders(engine, up, at("2026-04-04")).sent == 0
    assert smtp_server.messages == []

    dead_letters.retry_dead_letter(engine, letter.id)
    assert dead_letters.open_dead_letters(engine) == []
    assert send_payment_reminders(engine, up, at("2026-04-05")).sent == 1
    assert send_payment_reminders(engine, up, at("2026-04-05", "10:00")).sent == 0
    assert len(smtp_server.messages) == 1 and notifications.get_row(engine, key, "email").status == "sent"
    assert ledger(engine)[(acme_invoice, "overdue", "customer")] == "sent"
    with pytest.raises(dead_letters.DeadLetterStateError, match="is retried, not open"):
        dead_letters.retry_dead_letter(engine, letter.id)


def test_smtp_down_once_is_sent_by_the_next_run(engine, acme_invoice, smtp_server):
    send_payment_reminders(engine, smtp_sender(engine, smtp_server, port=free_port()), at("2026-04-01"))
    assert send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-02")).sent == 1
    assert subjects(smtp_server) == ["Overdue: invoice INV-2026-000001 from Example Cloud Ltd (120.00 USD)"]


def test_a_rejected_recipient_is_a_dead_letter_at_once(engine, acme_invoice, smtp_server):
    smtp_server.fail_next(1, code=550, stage="RCPT")
    summary = send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-01"))
    assert summary.dead == 1
    [letter] = dead_letters.open_dead_letters(engine)
    assert letter.attempts == 1 and "550" in letter.error


def test_paid_between_the_decision_and_the_retry_stops_it(engine, acme_invoice, smtp_server):
    send_payment_reminders(engine, smtp_sender(engine, smtp_server, port=free_port()), at("2026-04-01"))
    record_payment(engine, acme_invoice, 7_000, external_id="wire-1")
    summary = send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-02"))
    assert summary.sent == 1 and "50.00 USD" in smtp_server.messages[0].message["Subject"]  # the fresh amount due
    record_payment(engine, acme_invoice, 5_000, external_id="wire-2")
    send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-20"))
    assert len(smtp_server.messages) == 1  # paid: nothing more


def test_paid_while_a_reminder_waits_for_smtp_is_stopped_not_sent(engine, acme_invoice, smtp_server):
    send_payment_reminders(engine, smtp_sender(engine, smtp_server, port=free_port()), at("2026-04-01"))
    record_payment(engine, acme_invoice, 12_000, external_id="wire-1")
    summary = send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-02"))
    assert (summary.sent, summary.stopped) == (0, 1)
    assert smtp_server.messages == []
    [overdue] = [r for r in collections.reminder_rows(engine) if r.step == "overdue"]
    assert (overdue.status, overdue.reason) == ("stopped", "invoice is paid")


def test_an_excluded_organization_and_one_without_manager(engine, smtp_server):
    beta = add_finalized_invoice(engine, "beta", "INV-2026-000002", issued=ISSUED)
    send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-14"))
    assert ledger(engine)[(beta, "escalation_14", "account_manager")] == "skipped"
    assert len(smtp_server.messages) == 1
    from billing_pipeline.db import reference

    reference.upsert_organizations(engine, [customer("beta", dunning_excluded=True)])
    send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-30"))
    assert len(smtp_server.messages) == 1 and (beta, "final_30", "customer") not in ledger(engine)


def test_a_step_action_marks_the_invoice_uncollectible_once(engine, acme_invoice, smtp_server):
    policy = load_policy()
    steps = tuple(
        dataclasses.replace(s, action=StepAction.MARK_INVOICE_UNCOLLECTIBLE) if s.code == "final_30" else s
        for s in policy.steps
    )
    sender = smtp_sender(engine, smtp_server, policy=dataclasses.replace(policy, steps=steps))
    assert send_payment_reminders(engine, sender, at("2026-04-29")).actions == 0
    summary = send_payment_reminders(engine, sender, at("2026-04-30"))
    assert (summary.sent, summary.actions) == (2, 1)  # customer + account manager, then the write-off
    with engine.connect() as conn:
        assert conn.execute(select(invoices.c.status).where(invoices.c.id == acme_invoice)).scalar_one() == (
            "uncollectible"
        )
    assert send_payment_reminders(engine, sender, at("2026-05-30")).actions == 0


def test_one_channel_failing_never_blocks_the_others(engine, smtp_server):
    dispatcher = smtp_sender(engine, smtp_server).dispatcher
    notice = Notification(
        dedupe_key="alert:test:1",
        kind="alert",
        audience="operator",
        recipient=Recipient("ops@seller.test", "Ops"),
        channels=("sms", "email"),
        subject="Test alert",
        text="hello",
    )
    result = dispatcher.send(notice)
    assert [(o.channel, o.status) for o in result.outcomes] == [("sms", "dead"), ("email", "sent")]
    assert [(o.channel, o.status) for o in dispatcher.send(notice).outcomes] == [
        ("sms", "dead"),
        ("email", "already_sent"),
    ]
    assert len(smtp_server.messages) == 1
    [letter] = dead_letters.open_dead_letters(engine)
    assert letter.business_key == "alert:test:1|sms" and "no 'sms' channel is configured" in letter.error


def test_a_run_that_died_after_its_claim_leaves_an_ambiguous_notice_never_resent(engine, acme_invoice, smtp_server):
    sender = smtp_sender(engine, smtp_server)
    data = collections.load_receivables(engine)
    decided = due_reminders(data.invoices, data.payments, sender.policy, at("2026-04-01"), data.organizations)
    collections.record_reminders(engine, decided, sender.policy.version)
    key = collections.dedupe_key(acme_invoice, "overdue", "customer")
    # what a run leaves when it is killed between its claim and the SMTP reply
    notifications.claim(
        engine, key, "email", kind="reminder", recipient="billing@acme.test", seen=None, external_id="<m>"
    )
    for _ in range(2):
        summary = send_payment_reminders(engine, sender, at("2026-04-01"))
        assert summary.sent == 0
    assert notifications.get_row(engine, key, "email").status == "ambiguous"
    assert smtp_server.messages == []
    [letter] = dead_letters.open_dead_letters(engine)
    assert "may have been delivered" in letter.error and letter.payload["external_id"] == "<m>"


def test_the_dead_letters_commands(engine, billing_db_url, acme_invoice, smtp_server, tmp_path, monkeypatch):
    send_payment_reminders(engine, smtp_sender(engine, smtp_server, port=free_port(), max_attempts=1), at("2026-04-01"))
    [letter] = dead_letters.open_dead_letters(engine)
    monkeypatch.setenv("BILLING_DATABASE_URL", billing_db_url)
    monkeypatch.setenv("BILLING_HOME", str(tmp_path))
    runner = CliRunner()
    listed = runner.invoke(main, ["dead-letters", "list"])
    assert listed.exit_code == 0 and f"reminder:{acme_invoice}:overdue:customer|email" in listed.output
    retried = runner.invoke(main, ["dead-letters", "retry", str(letter.id)])
    assert retried.exit_code == 0 and "retried by the next run" in retried.output
    assert runner.invoke(main, ["dead-letters", "list"]).output.strip() == "no open dead letters"
    again = runner.invoke(main, ["dead-letters", "retry", str(letter.id)])
    assert again.exit_code != 0 and "is retried, not open" in again.output
    assert runner.invoke(main, ["dead-letters", "dismiss", "999"]).output.strip().endswith("no dead letter 999")

    send_payment_reminders(engine, smtp_sender(engine, smtp_server, port=free_port(), max_attempts=1), at("2026-04-02"))
    [letter] = dead_letters.open_dead_letters(engine)
    dismissed = runner.invoke(main, ["dead-letters", "dismiss", str(letter.id)])
    assert dismissed.exit_code == 0 and "dismissed" in dismissed.output
    send_payment_reminders(engine, smtp_sender(engine, smtp_server), at("2026-04-03"))
    assert smtp_server.messages == []  # dismissed: never sent
    assert ledger(engine)[(acme_invoice, "overdue", "customer")] == "stopped"
    shown = runner.invoke(main, ["reminders", "list"])
    assert shown.exit_code == 0 and re.search(r"overdue +customer +2026-04-01 +stopped +\(dismissed\)", shown.output)
