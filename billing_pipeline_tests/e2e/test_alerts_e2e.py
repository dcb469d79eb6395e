"""Alerts end to end, with the webserver and the daemon running: a failed run is one Slack message
(the local receiver), one e-mail (the SMTP test server) and one in-app notification; 11 failures
of a job are one failure-rate alert, not 11; a stopped SMTP server turns the mailer unhealthy
once and healthy again once, each told once.

Runs are made to fail for real: ``dagster job execute`` of ``hourly_usage_job`` with the billing
database URL pointing at a database that does not exist (the run starts, its step cannot
connect). The daemon's sensors, on the right database, see the failures in the shared instance.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from billing_pipeline.db import alerts, inbox
from billing_pipeline.db.engine import get_engine
from billing_pipeline_tests.builders import setup_database
from billing_pipeline_tests.e2e.conftest import dagster_stack
from billing_pipeline_tests.e2e.months import BACKFILLED
from billing_pipeline_tests.e2e.stack import BIN, REPO, DagsterStack
from billing_pipeline_tests.support.slack_receiver import SlackReceiver
from billing_pipeline_tests.support.smtp import SMTPServerProcess

pytestmark = pytest.mark.e2e
NEVER = "0 0 1 1 *"  # 1 January only: no schedule runs in this scenario
SENSOR_INTERVAL = 30  # ALERT_SENSOR_INTERVAL_SECONDS (the minimum); run_failure_alert_sensor: 30 s


@pytest.fixture(scope="module")
def slack():
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def smtp():
    with SMTPServerProcess() as server:
        yield server


@pytest.fixture(scope="module")
def stack(postgres_server, slack, smtp):
    settings = {
        "BILLING_PARTITIONS_START": BACKFILLED.key,
        **{
            cron: NEVER
            for cron in (
                "HOURLY_USAGE_CRON",
                "MONTHLY_INVOICE_CRON",
                "WEEKLY_INVOICE_CRON",
                "HEALTH_CHECK_CRON",
                "PAYMENT_REMINDERS_CRON",
            )
        },
        "SCHEDULES_RUNNING": "true",
        "ALERT_CHANNELS": "email,slack,inapp",
        "ALERT_EMAIL_TO": "ops@seller.test",
        "SLACK_WEBHOOK_URL": slack.webhook_url,
        "SLACK_TIMEOUT_SECONDS": "5",
        "ALERT_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL),
        "MAILER": "smtp",
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_USERNAME": smtp.username,
        "SMTP_PASSWORD": smtp.password,
        "SMTP_SECURITY": "starttls",
        "SMTP_CA_FILE": smtp.cert_path,
        "SMTP_TIMEOUT_SECONDS": "5",
        "HEALTH_PROBE_TIMEOUT_SECONDS": "3",
        "NOTIFICATION_MAX_ATTEMPTS": "10",
        "INVOICE_ENABLE_PDF": "false",
        "INVOICE_ENABLE_S3": "false",
        "INVOICE_ENABLE_STRIPE": "false",
        "INVOICE_ENABLE_EMAIL": "false",
    }
    with dagster_stack(postgres_server, settings, "e2e-alerts-logs") as s:
        setup_database(s.billing_url)
        s.start()
        yield s


def fail_a_run(stack: DagsterStack) -> None:
    """One real failed run of hourly_usage_job (its billing database does not exist)."""
    broken = stack.billing_url.rsplit("/", 1)[0] + "/no_such_database"
    env = {**stack.env, "BILLING_DATABASE_URL": broken}
    tags = json.dumps({"dagster/partition": f"{BACKFILLED.key}-00:00"})
    argv = [str(BIN / "dagster"), "job", "execute", "-m", "billing_pipeline.definitions", "-j", "hourly_usage_job"]
    done = subprocess.run(
        [*argv, "--tags", tags], cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode != 0, done.stdout[-2000:]


def slack_with(slack: SlackReceiver, words: str) -> list[str]:
    return [m["text"] for m in slack.messages() if words in m["text"]]


def emails_with(smtp: SMTPServerProcess, words: str) -> list:
    return [m for m in smtp.messages() if words in str(m["Subject"])]


def inbox_kinds(stack: DagsterStack, kind: str) -> list:
    return [i for i in inbox.list_items(get_engine(stack.billing_url), limit=1000) if i.kind == kind]


def test_a_failed_run_is_one_slack_message_one_email_one_inbox_item(stack, slack, smtp):
    fail_a_run(stack)

    def told_everywhere():
        return (
            slack_with(slack, "Run failed: hourly_usage_job")
            and emails_with(smtp, "Run failed")
            and (inbox_kinds(stack, "run_failure"))
        )

    stack.wait_for(told_everywhere, 180, "the run-failure alert on Slack, e-mail and in-app", interval=2)
    time.sleep(SENSOR_INTERVAL + 5)  # another sensor tick: nothing more
    [message] = slack_with(slack, "Run failed: hourly_usage_job")
    [email] = emails_with(smtp, "Run failed")
    [item] = inbox_kinds(stack, "run_failure")
    [run] = [r for r in stack.instance().get_runs() if r.job_name == "hourly_usage_job"]
    assert item.dedupe_key == f"run_failure:{run.run_id}"
    assert item.link == f"http://127.0.0.1:3000/runs/{run.run_id}"  # DAGSTER_WEBSERVER_URL's default
    assert f"Partitions: {BACKFILLED.key}-00:00" in message and run.run_id in message
    assert email["To"] == "ops@seller.test" and run.run_id in email.get_body(("plain",)).get_content()
    assert "no_such_database" in item.text  # the error that failed the step


def test_eleven_failures_are_one_failure_rate_alert_not_eleven(stack, slack):
    for _ in range(10):  # the first test's run makes 11
        fail_a_run(stack)
    stack.wait_for(lambda: slack_with(slack, "failed runs in 24 h"), 240, "the failure-rate alert", interval=3)
    stack.wait_for(
        lambda: len(slack_with(slack, "Run failed: hourly_usage_job")) >= 11, 240, "a run-failure alert per run"
    )
    time.sleep(SENSOR_INTERVAL + 5)
    [rate] = slack_with(slack, "failed runs in 24 h")
    assert "hourly_usage_job: 11 failed runs in 24 h (more than 10)" in rate
    assert len(slack_with(slack, "Run failed: hourly_usage_job")) == 11
    assert len(alerts.list_alerts(get_engine(stack.billing_url), kind="failure_rate")) == 1


def probe(stack: DagsterStack) -> None:
    done = stack.cli("dagster", "job", "execute", "-m", "billing_pipeline.definitions", "-j", "service_health_job")
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_stopped_smtp_server_is_unhealthy_once_and_back_once(stack, slack, smtp):
    probe(stack)  # the first probe: every component healthy, nothing to tell
    smtp.kill()
    probe(stack)
    probe(stack)
    stack.wait_for(lambda: slack_with(slack, "mailer is unhealthy"), 180, "the mailer-down alert", interval=2)
    smtp.start()
    probe(stack)
    probe(stack)
    stack.wait_for(lambda: slack_with(slack, "mailer is healthy again"), 180, "the mailer-back alert", interval=2)
    time.sleep(SENSOR_INTERVAL + 5)
    assert len(slack_with(slack, "mailer is unhealthy")) == 1
    assert len(slack_with(slack, "mailer is healthy again")) == 1
    assert [i.subject for i in reversed(inbox_kinds(stack, "service_health"))] == [
        "mailer is unhealthy",
        "mailer is healthy again",
    ]
    assert not slack_with(slack, "database is"), "only the mailer changed"
