"""The alert sensors on a test instance with local channels (in-app inbox, outbox e-mail): a failed
run -> one alert; 11 failures -> one failure-rate alert, cleared once; a health flip -> one alert
each way; redelivery finishes a channel that failed."""

from __future__ import annotations

import dagster as dg
import pytest

from billing_pipeline import definitions
from billing_pipeline.clock import utc_now
from billing_pipeline.db import alerts as store
from billing_pipeline.db import inbox
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.invoices import record_error
from billing_pipeline.defs.alerts import AlertsResource
from billing_pipeline.defs.delivery_resources import (
    LocalDocumentStoreResource,
    NoPaymentGatewayResource,
    OutboxMailerResource,
)
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import previous_period
from billing_pipeline_tests.builders import setup_database


@dg.op
def explode():
    raise RuntimeError("organization acme has no plan")


@dg.job
def exploding_job():
    explode()


@pytest.fixture
def local(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    setup_database(url)
    resources = {
        "billing_db": BillingDatabaseResource(url=url),
        "document_store": LocalDocumentStoreResource(documents_dir=str(tmp_path / "documents")),
        "payment_gateway": NoPaymentGatewayResource(),
        "mailer": OutboxMailerResource(outbox_dir=str(tmp_path / "outbox")),
        "alerts": AlertsResource(
            channels=["inapp", "email"], email_to="ops@seller.test", webserver_url="http://ui.test:3000"
        ),
    }
    return resources, get_engine(url), tmp_path


def fail(instance, **tags) -> dg.ExecuteInProcessResult:
    result = exploding_job.execute_in_process(instance=instance, raise_on_error=False, tags=tags)
    assert not result.success
    return result


def outbox(tmp_path) -> list:
    return sorted((tmp_path / "outbox").glob("*.eml")) if (tmp_path / "outbox").is_dir() else []


def test_a_failed_run_is_one_alert_however_often_the_sensor_sees_it(local):
    resources, engine, tmp_path = local
    with dg.instance_for_test() as instance:
        result = fail(instance, **{"dagster/partition": "2026-10-01|acme"})
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        for _ in range(2):
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=run,
                resources=resources,
            ).for_run_failure()
            definitions.run_failure_alert_sensor(context)
    (item,) = inbox.list_items(engine)
    assert item.dedupe_key == f"run_failure:{run.run_id}"
    assert item.subject == "Run failed: exploding_job (2026-10-01|acme)"
    assert "explode: RuntimeError: organization acme has no plan" in item.text
    assert item.link == f"http://ui.test:3000/runs/{run.run_id}"
    assert len(outbox(tmp_path)) == 1


def evaluate(sensor, instance, resources, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)
    return result, context.cursor


def test_eleven_failures_make_one_failure_rate_alert_not_eleven(local):
    resources, engine, tmp_path = local
    sensor = definitions.failure_rate_alert_sensor
    with dg.instance_for_test() as instance:
        for _ in range(10):
            fail(instance)
        result, cursor = evaluate(sensor, instance, resources, None)
        assert isinstance(result, dg.SkipReason) and cursor == "{}"
        fail(instance)
        _, cursor = evaluate(sensor, instance, resources, cursor)
        fail(instance)
        result, cursor = evaluate(sensor, instance, resources, cursor)
        assert isinstance(result, dg.SkipReason) and "exploding_job" in result.skip_message
    rates = store.list_alerts(engine, kind="failure_rate")
    assert len(rates) == 1 and rates[0].subject.startswith("exploding_job: 11 failed runs in 24 h")
    assert [i.kind for i in inbox.list_items(engine)] == ["failure_rate"]
    with dg.instance_for_test() as empty:  # the window is empty now: cleared once
        evaluate(sensor, empty, resources, cursor)
        _, cursor = evaluate(sensor, empty, resources, cursor)
    assert cursor == "{}"
    assert [a.kind for a in store.list_alerts(engine)] == ["failure_rate", "failure_rate_cleared"]


def probe(instance, resources):
    assert dg.materialize([definitions.service_health], resources=resources, instance=instance).success


def test_a_health_flip_is_one_alert_down_and_one_back(local):
    resources, engine, tmp_path = local
    resources = {**resources, "alerts": AlertsResource(channels=["inapp"], webserver_url="http://ui.test:3000")}
    sensor = definitions.service_health_alert_sensor
    blocker = tmp_path / "outbox"
    with dg.instance_for_test() as instance:
        probe(instance, resources)
        _, cursor = evaluate(sensor, instance, resources, None)
        blocker.write_text("a file where the outbox folder should be")
        for _ in range(3):
            probe(instance, resources)
            _, cursor = evaluate(sensor, instance, resources, cursor)
        assert [a.subject for a in store.list_alerts(engine)] == ["mailer is unhealthy"]
        blocker.unlink()
        for _ in range(2):
            probe(instance, resources)
            _, cursor = evaluate(sensor, instance, resources, cursor)
        result, _ = evaluate(definitions.alert_redelivery_sensor, instance, resources, None)
    assert result.skip_message == "every alert is settled"
    assert [i.subject for i in reversed(inbox.list_items(engine))] == ["mailer is unhealthy", "mailer is healthy again"]


def test_organizations_left_failed_are_one_alert_per_period_listing_them(local):
    resources, engine, tmp_path = local
    period = previous_period(BillingInterval.MONTHLY, utc_now())  # the sensor looks at the last closed ones
    with engine.begin() as conn:
        for org in ("globex", "acme"):
            record_error(conn, org, BillingInterval.MONTHLY, period.key, "pricing", f"{org}: no plan on {period.key}")
    sensor = definitions.invoice_failures_alert_sensor
    with dg.instance_for_test() as instance:
        for _ in range(3):
            result, _ = evaluate(sensor, instance, resources, None)
    assert result.skip_message.startswith(f"invoice_failures:monthly:{period.key}: ")
    (alert,) = store.list_alerts(engine)
    assert alert.subject == f"2 organization(s) not invoiced for the monthly period {period.key}"
    assert alert.text.splitlines()[1:3] == [
        f"acme: pricing: acme: no plan on {period.key}",
        f"globex: pricing: globex: no plan on {period.key}",
    ]
    assert len(inbox.list_items(engine)) == 1 and len(outbox(tmp_path)) == 1


def test_the_late_usage_hook_tells_a_backlog_once(local):
    from dataclasses import dataclass
    from decimal import Decimal

    from billing_pipeline.defs.alerts import late_usage_alert_sensor

    @dataclass(frozen=True)
    class Pending:  # the shape of db.late_usage_ledger.PendingLateUsage (branch lateusage)
        org_id: str
        source_number: str
        period_label: str
        charge_code: str
        amount: Decimal
        currency: str
        state: str

    resources, engine, tmp_path = local
    backlog: list = []
    sensor = late_usage_alert_sensor(
        name="late_usage_alert_sensor", pending_late_usage=lambda e: backlog, interval_seconds=300, running=False
    )
    with dg.instance_for_test() as instance:
        result, _ = evaluate(sensor, instance, resources, None)
        assert result.skip_message == "no late-usage adjustment pending"
        backlog.append(Pending("acme", "INV-1", "October 2026", "api_calls", Decimal("1.50"), "USD", "not invoiced"))
        for _ in range(2):
            evaluate(sensor, instance, resources, None)
    assert [a.subject for a in store.list_alerts(engine)] == ["1 late-usage adjustment(s) pending"]
    assert len(outbox(tmp_path)) == 1
