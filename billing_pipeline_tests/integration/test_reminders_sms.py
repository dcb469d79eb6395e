"""Reminders by e-mail and SMS against PostgreSQL, the SMTP test server and the local Twilio API: one e-mail
and one SMS per notice; the SMS failing never holds the e-mail back, is retried by the next runs up to the
cap, then dead-lettered; a lost answer is never re-sent; re-runs send nothing twice."""

from __future__ import annotations

import pytest
import yaml

from billing_pipeline.clients.sms import TwilioSmsClient
from billing_pipeline.db import collections, dead_letters, notifications
from billing_pipeline.services.collections.policy import DEFAULT_POLICY_FILE, load_policy
from billing_pipeline.services.collections.reminders import send_payment_reminders
from billing_pipeline_tests.dunning_builders import (
    UTC,
    add_finalized_invoice,
    at,
    customer,
    reminders_database,
    smtp_sender,
)
from billing_pipeline_tests.support.sms_receiver import SmsReceiver

pytestmark = pytest.mark.integration
ISSUED = at("2026-03-01", "00:00").astimezone(UTC)  # net 30: due 2026-03-31
PHONE = "+14155550100"
OVERDUE_SMS = "Example Cloud Ltd: invoice INV-2026-000001, 120.00 USD, was due 2026-03-31 (1 day overdue)."


def policy_with(tmp_path, channels: list[str]):
    """The default policy with the overdue step (+1) sent on ``channels``."""
    doc = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    doc["steps"][1]["notify"][0]["channels"] = channels
    doc["version"] = 2
    path = tmp_path / "dunning.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_policy(path)


@pytest.fixture
def sms():
    with SmsReceiver() as receiver:
        yield receiver


@pytest.fixture
def engine(billing_db_url):
    orgs = [customer("acme", sms_phone=PHONE), customer("beta")]
    return reminders_database(billing_db_url, orgs)


@pytest.fixture
def acme_invoice(engine):
    return add_finalized_invoice(engine, "acme", "INV-2026-000001", issued=ISSUED)


def twilio(sms: SmsReceiver, **kw) -> TwilioSmsClient:
    values = {"max_retries": 0, "sleep": lambda s: None, **kw}
    return TwilioSmsClient(sms.account_sid, sms.auth_token, sms.from_number, api_base=sms.api_base, **values)


def test_a_step_with_email_and_sms_sends_one_of_each_and_reruns_send_nothing(
    engine, acme_invoice, smtp_server, sms, tmp_path
):
    beta_invoice = add_finalized_invoice(engine, "beta", "INV-2026-000002", issued=ISSUED)
    sender = smtp_sender(engine, smtp_server, policy=policy_with(tmp_path, ["email", "sms"]), sms=twilio(sms))
    summary = send_payment_reminders(engine, sender, at("2026-04-01"))
    assert (summary.sent, summary.failed, summary.dead) == (2, 0, 0)
    for hour in ("12:00", "18:00", "23:59"):
        again = send_payment_reminders(engine, sender, at("2026-04-01", hour))
        assert (again.decided, again.sent, again.failed, again.dead) == (0, 0, 0, 0)
    assert sorted(m.message["To"] for m in smtp_server.messages) == [
        "Acme Inc <billing@acme.test>",
        "Beta Inc <billing@beta.test>",
    ]
    [message] = sms.messages()  # beta has no sms_phone: e-mail only
    assert (message["To"], message["From"], message["Body"]) == (PHONE, sms.from_number, OVERDUE_SMS)
    key = collections.dedupe_key(acme_invoice, "overdue", "customer")
    row = notifications.get_row(engine, key, "sms")
    assert (row.status, row.attempts, row.recipient, row.external_id) == ("sent", 1, PHONE, message["sid"])
    assert notifications.get_row(engine, key, "email").status == "sent"
    assert notifications.get_row(engine, collections.dedupe_key(beta_invoice, "overdue", "customer"), "sms") is None


def test_sms_failing_never_blocks_the_email_and_is_retried_to_the_cap_then_dead_lettered(
    engine, acme_invoice, smtp_server, sms, tmp_path
):
    sender = smtp_sender(engine, smtp_server, policy=policy_with(tmp_path, ["email", "sms"]), sms=twilio(sms))
    key = collections.dedupe_key(acme_invoice, "overdue", "customer")
    sms.fail_next(3, 503)
    for day, attempts in (("2026-04-01", 1), ("2026-04-02", 2)):
        summary = send_payment_reminders(engine, sender, at(day))
        assert (summary.sent, summary.failed, summary.dead) == (0, 1, 0)
        row = notifications.get_row(engine, key, "sms")
        assert (row.status, row.attempts) == ("failed", attempts) and "Twilio error 20503" in row.last_error
        assert len(smtp_server.messages) == 1  # the e-mail went on the first run, and only then
    summary = send_payment_reminders(engine, sender, at("2026-04-03"))
    assert (summary.failed, summary.dead) == (0, 1)
    [letter] = dead_letters.open_dead_letters(engine)
    assert (letter.business_key, letter.attempts, letter.payload["recipient"]) == (f"{key}|sms", 3, PHONE)
    assert "gave up after 3 attempts" in letter.error
    for day in ("2026-04-04", "2026-04-05"):  # the sink is healthy again: a dead notice is not tried
        assert send_payment_reminders(engine, sender, at(day)).sent == 0
    assert (len(sms.requests), sms.messages(), len(smtp_server.messages)) == (3, [], 1)

    dead_letters.retry_dead_letter(engine, letter.id)  # an operator's retry: sent once, e-mail untouched
    assert send_payment_reminders(engine, sender, at("2026-04-06")).sent == 1
    assert send_payment_reminders(engine, sender, at("2026-04-06", "10:00")).sent == 0
    later = OVERDUE_SMS.replace("(1 day overdue)", "(6 days overdue)")  # rendered when it is sent
    assert [m["Body"] for m in sms.messages()] == [later] and len(smtp_server.messages) == 1
    assert {r.step: r.status for r in collections.reminder_rows(engine)}["overdue"] == "sent"


def test_a_lost_sms_answer_is_ambiguous_and_never_re_sent(engine, acme_invoice, smtp_server, sms, tmp_path):
    sms.stall_next(1, seconds=2)
    sender = smtp_sender(
        engine, smtp_server, policy=policy_with(tmp_path, ["email", "sms"]), sms=twilio(sms, timeout_seconds=0.5)
    )
    summary = send_payment_reminders(engine, sender, at("2026-04-01"))
    assert summary.dead == 1
    key = collections.dedupe_key(acme_invoice, "overdue", "customer")
    assert notifications.get_row(engine, key, "sms").status == "ambiguous"
    for day in ("2026-04-02", "2026-04-03"):
        send_payment_reminders(engine, sender, at(day))
    assert len(sms.requests) == 1 and len(sms.messages()) == 1 and len(smtp_server.messages) == 1
    [letter] = dead_letters.open_dead_letters(engine)
    assert letter.business_key == f"{key}|sms" and "may have been queued" in letter.error


def test_an_unsubscribed_phone_is_a_dead_letter_at_once(engine, acme_invoice, smtp_server, sms, tmp_path):
    sms.unsubscribed.add(PHONE)
    sender = smtp_sender(engine, smtp_server, policy=policy_with(tmp_path, ["email", "sms"]), sms=twilio(sms))
    assert send_payment_reminders(engine, sender, at("2026-04-01")).dead == 1
    [letter] = dead_letters.open_dead_letters(engine)
    assert "21610" in letter.error and letter.attempts == 1 and len(smtp_server.messages) == 1


def test_sms_not_configured_dead_letters_the_sms_and_sends_the_email(engine, acme_invoice, smtp_server, tmp_path):
    sender = smtp_sender(engine, smtp_server, policy=policy_with(tmp_path, ["email", "sms"]))  # SMS_PROVIDER=none
    assert send_payment_reminders(engine, sender, at("2026-04-01")).dead == 1
    [letter] = dead_letters.open_dead_letters(engine)
    assert "no 'sms' channel is configured" in letter.error and len(smtp_server.messages) == 1


def test_an_sms_only_step_stops_for_an_organization_without_a_phone(engine, smtp_server, sms, tmp_path):
    add_finalized_invoice(engine, "beta", "INV-2026-000002", issued=ISSUED)
    sender = smtp_sender(engine, smtp_server, policy=policy_with(tmp_path, ["sms"]), sms=twilio(sms))
    summary = send_payment_reminders(engine, sender, at("2026-04-01"))
    assert (summary.sent, summary.stopped) == (0, 1)
    [row] = [r for r in collections.reminder_rows(engine) if r.step == "overdue"]
    assert (row.status, row.reason) == ("stopped", "organization has no sms_phone (the step's only channel is sms)")
    assert sms.requests == [] and smtp_server.messages == []
