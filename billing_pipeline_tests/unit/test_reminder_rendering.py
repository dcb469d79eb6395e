"""Reminder e-mails: every template of the default policy renders (subject, text, HTML), escaped, exact amounts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email import message_from_bytes, policy

import pytest

from billing_pipeline.clients.mailer import OutboxMailer
from billing_pipeline.rendering.reminders import ReminderFacts, render_reminder
from billing_pipeline.services.collections.policy import load_policy
from billing_pipeline.services.notifications import EmailChannel, Notification, Recipient
from billing_pipeline_tests.dunning_builders import SELLER
from billing_pipeline_tests.unit.test_dunning import org

FACTS = ReminderFacts(
    org(name="Acme <script>alert(1)</script> & Co"),
    "INV-2026-000042",
    "escalation_14",
    14,
    dt.date(2026, 3, 31),
    dt.date(2026, 4, 14),
    7_205,
    12_000,
    "USD",
)


@pytest.mark.parametrize("template", sorted(load_policy().templates()))
def test_every_policy_template_renders_with_a_subject_and_escaped_html(template):
    out = render_reminder(template, FACTS, SELLER)
    assert out.subject and "\n" not in out.subject and "{{" not in out.subject
    assert "72.05 USD" in out.text and "72.05 USD" in out.html
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert "{{" not in out.text + out.html and "{%" not in out.text + out.html


def test_days_are_counted_in_the_organization_s_calendar():
    upcoming = render_reminder("reminder_upcoming", dataclasses.replace(FACTS, today=dt.date(2026, 3, 24)), SELLER)
    assert "is due on 2026-03-31, in 7 day(s)" in upcoming.text
    final = render_reminder("reminder_final", dataclasses.replace(FACTS, today=dt.date(2026, 4, 30)), SELLER)
    assert final.subject == "Final notice: invoice INV-2026-000042 is 30 days overdue (72.05 USD)"


def test_a_zero_decimal_currency_prints_no_decimals():
    out = render_reminder("reminder_overdue", dataclasses.replace(FACTS, currency="JPY", amount_due_minor=7205), SELLER)
    assert "7,205 JPY" in out.text


def test_the_email_channel_builds_a_multipart_message_with_the_deterministic_message_id(tmp_path):
    rendered = render_reminder("reminder_escalation", FACTS, SELLER)
    notice = Notification(
        "reminder:42:escalation_14:customer",
        "reminder",
        "customer",
        Recipient("billing@acme.test", "Acme, Inc. \u00e9"),
        ("email",),
        rendered.subject,
        rendered.text,
        rendered.html,
    )
    channel = EmailChannel(OutboxMailer(tmp_path), "Example Cloud <billing@seller.test>", "seller.test")
    assert channel.external_id(notice) == "<reminder.42.escalation_14.customer@seller.test>"
    assert channel.deliver(notice, channel.external_id(notice)) == "<reminder.42.escalation_14.customer@seller.test>"
    [eml] = tmp_path.glob("*.eml")
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed["To"].addresses[0].addr_spec == "billing@acme.test"
    assert parsed["X-Billing-Notification"] == "reminder:42:escalation_14:customer"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    channel.deliver(notice, channel.external_id(notice))  # the outbox writes a Message-ID once
    assert len(list(tmp_path.glob("*.eml"))) == 1
