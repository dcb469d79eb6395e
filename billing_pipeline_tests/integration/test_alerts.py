"""Operator alerts through the dispatcher on PostgreSQL: Slack (local receiver), e-mail (SMTP test
server) and in-app, each once per dedupe key; a failing channel never blocks the others; a later
redelivery finishes it once; what fails for good is a dead letter; the inbox CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline.clients.mailer import SMTPMailer
from billing_pipeline.clients.slack import SlackWebhookClient
from billing_pipeline.db import alerts as store
from billing_pipeline.db import dead_letters, inbox, notifications
from billing_pipeline.db.engine import get_engine, migrate
from billing_pipeline.domain.alerts import run_failure_alert
from billing_pipeline.services.alerts import AlertRouting, AlertService, alert_channels
from billing_pipeline.services.notifications import NotificationDispatcher
from billing_pipeline_tests.support.slack_receiver import SlackReceiver

pytestmark = pytest.mark.integration
ALL = ("email", "slack", "inapp")


@pytest.fixture
def slack():
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture
def engine(billing_db_url):
    migrate(billing_db_url)
    return get_engine(billing_db_url)


def service(engine, slack, smtp, *, channels=ALL, max_attempts=3) -> AlertService:
    poster = SlackWebhookClient(slack.webhook_url, max_retries=0, sleep=lambda s: None, timeout_seconds=2)
    mailer = SMTPMailer(smtp.host, smtp.port, smtp.username, smtp.password, "starttls", 5.0, ca_file=smtp.cert_path)
    built = alert_channels(engine, slack=poster, mailer=mailer, email_from="billing@seller.test")
    routing = AlertRouting(channels, "ops@seller.test")
    return AlertService(engine, NotificationDispatcher(engine, built, max_attempts=max_attempts), routing)


def alert(run_id: str = "run-1"):
    return run_failure_alert(
        run_id=run_id,
        job_name="monthly_invoices_job",
        tags={"dagster/partition": "2026-10-01|acme"},
        error="boom",
        webserver_url="http://ui.test",
    )


def test_one_alert_is_one_slack_message_one_email_and_one_inbox_item(engine, slack, smtp_server):
    alerts = service(engine, slack, smtp_server)
    first = alerts.raise_alert(alert())
    assert {o.channel: o.status for o in first.outcomes} == {"email": "sent", "slack": "sent", "inapp": "sent"}
    for _ in range(3):
        again = alerts.raise_alert(alert())
        assert {o.status for o in again.outcomes} == {"already_sent"}
    assert alerts.redeliver() == []  # settled
    assert len(slack.messages()) == 1
    assert "*Run failed: monthly_invoices_job (2026-10-01|acme)*" in slack.messages()[0]["text"]
    assert [m.message["Subject"] for m in smtp_server.messages] == [
        "Run failed: monthly_invoices_job (2026-10-01|acme)"
    ]
    assert smtp_server.messages[0].message["To"] == "ops@seller.test"
    items = inbox.list_items(engine)
    assert [(i.dedupe_key, i.level, i.link, i.unread) for i in items] == [
        ("run_failure:run-1", "error", "http://ui.test/runs/run-1", True)
    ]


def test_slack_down_blocks_nothing_and_a_redelivery_posts_it_once(engine, slack, smtp_server):
    alerts = service(engine, slack, smtp_server)
    slack.fail_next(1, 500)
    first = alerts.raise_alert(alert())
    assert {o.channel: o.status for o in first.outcomes} == {"email": "sent", "slack": "failed", "inapp": "sent"}
    assert [a.dedupe_key for a in store.unsettled(engine)] == ["run_failure:run-1"]
    (retried,) = alerts.redeliver()
    assert {o.channel: o.status for o in retried.outcomes} == {
        "email": "already_sent",
        "slack": "sent",
        "inapp": "already_sent",
    }
    assert store.unsettled(engine) == [] and alerts.redeliver() == []
    assert len(slack.messages()) == 1 and len(smtp_server.messages) == 1 and len(inbox.list_items(engine)) == 1
    assert notifications.get_row(engine, "run_failure:run-1", "slack").attempts == 2


def test_slack_failing_to_the_cap_or_refusing_ends_in_the_dead_letters(engine, slack, smtp_server):
    alerts = service(engine, slack, smtp_server, max_attempts=2)
    slack.fail_next(2, 503)
    alerts.raise_alert(alert("run-1"))
    (last,) = alerts.redeliver()
    assert {o.channel: o.status for o in last.outcomes}["slack"] == "dead"
    slack.fail_next(1, 404, body="channel_not_found")
    refused = alerts.raise_alert(alert("run-2"))
    assert {o.channel: o.status for o in refused.outcomes}["slack"] == "dead"
    letters = dead_letters.list_dead_letters(engine, kind="notification")
    assert [letter.business_key for letter in letters] == ["run_failure:run-1|slack", "run_failure:run-2|slack"]
    assert "channel_not_found" in letters[1].error
    assert store.unsettled(engine) == [] and slack.messages() == []
    assert len(smtp_server.messages) == 2  # e-mail went out for both


def test_a_stalled_slack_answer_is_ambiguous_never_posted_twice(engine, slack, smtp_server):
    alerts = service(engine, slack, smtp_server, channels=("slack",))
    slack.stall_next(1, seconds=3)
    first = alerts.raise_alert(alert())
    assert [o.status for o in first.outcomes] == ["ambiguous"]
    assert alerts.redeliver() == []
    assert len(slack.requests) == 1
    assert [x.business_key for x in dead_letters.list_dead_letters(engine)] == ["run_failure:run-1|slack"]


def test_a_routed_channel_without_configuration_is_a_dead_letter_not_a_crash(engine):
    built = alert_channels(engine, slack=None, mailer=None, email_from="billing@seller.test")
    alerts = AlertService(engine, NotificationDispatcher(engine, built), AlertRouting(("slack", "inapp")))
    result = alerts.raise_alert(alert())
    assert {o.channel: o.status for o in result.outcomes} == {"slack": "dead", "inapp": "sent"}


def test_routing_is_validated():
    with pytest.raises(ValueError, match="ALERT_EMAIL_TO: required"):
        AlertRouting(("email",))
    with pytest.raises(ValueError, match="unknown channel 'sms'"):
        AlertRouting(("sms",))


def test_the_notifications_cli_lists_and_marks_read(engine, billing_db_url, monkeypatch):
    monkeypatch.setenv("BILLING_DATABASE_URL", billing_db_url)
    for key, subject in [("a", "first"), ("b", "second")]:
        inbox.add(engine, dedupe_key=key, kind="run_failure", level="error", subject=subject, text="t", link="L")
    runner = CliRunner()
    listed = runner.invoke(main, ["notifications"])
    assert listed.exit_code == 0, listed.output
    assert "second" in listed.output and "2 unread" in listed.output
    first_id = inbox.list_items(engine)[-1].id
    shown = runner.invoke(main, ["notifications", "read", str(first_id)])
    assert shown.exit_code == 0 and "first" in shown.output and "L" in shown.output
    unread = runner.invoke(main, ["notifications", "--unread"])
    assert "second" in unread.output and "first" not in unread.output and "1 unread" in unread.output
    assert "1 notification(s) marked read" in runner.invoke(main, ["notifications", "read", "--all"]).output
    assert inbox.unread_count(engine) == 0
    assert runner.invoke(main, ["notifications", "read"]).exit_code == 2
    assert "no notification 999" in runner.invoke(main, ["notifications", "read", "999"]).output
