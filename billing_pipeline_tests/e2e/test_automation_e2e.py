"""Every schedule and sensor fires under the daemon, and nothing is delivered twice.

One stack (PostgreSQL instance, webserver, daemon) with every cron at ``* * * * *`` and the
local channels on (PDF, document folder, outbox): a monthly and a weekly organization are
invoiced by their schedules, the organizations sensor adds their partitions, the delivery
sensor delivers each invoice once, the hourly schedule aggregates the last hour, and a late
event re-aggregates its hour through the late-usage sensor. At the end every schedule and
sensor of the definitions has ticked, and the outbox holds exactly one e-mail per invoice.
The periods follow the clock the daemon ticks on (``months.py``).
"""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import pytest
from sqlalchemy import func, select

from billing_pipeline.db import alerts, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import hourly_usage, invoice_deliveries, invoices
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import previous_period
from billing_pipeline_tests.builders import add_events, org, setup_database, subscribe
from billing_pipeline_tests.e2e.months import BACKFILLED, SCHEDULED, STARTED_AT, usage_hours
from billing_pipeline_tests.e2e.stack import DagsterStack

pytestmark = pytest.mark.e2e

MONTHLY_ORG, WEEKLY_ORG = "acme", "wkly"
WEEK = previous_period(BillingInterval.WEEKLY, STARTED_AT)
LATE_HOUR = SCHEDULED.start + dt.timedelta(days=1, hours=5)  # aggregated before the servers start
CHANNELS = {"pdf", "s3", "email"}
SCHEDULES = {
    "hourly_usage_job_schedule",
    "monthly_invoices_job_schedule",
    "weekly_invoices_job_schedule",
    "service_health_schedule",
    "send_payment_reminders_job_schedule",
    "charge_due_invoices_job_schedule",
    "sync_payment_status_job_schedule",
    "ar_aging_report_schedule",
    "mrr_report_schedule",
    "daily_analytics_report_schedule",
    "weekly_bi_report_schedule",
}
REPORT_SCHEDULES = {
    "ar_aging_report_schedule": "ar_aging",
    "mrr_report_schedule": "mrr",
    "daily_analytics_report_schedule": "daily_analytics",
    "weekly_bi_report_schedule": "weekly_bi",
}
#: alert sensors launch no runs: they tick (skipped: nothing to tell) and raise no alert in this scenario
ALERT_SENSORS = {
    "run_failure_alert_sensor",
    "failure_rate_alert_sensor",
    "service_health_alert_sensor",
    "invoice_failures_alert_sensor",
    "late_usage_alert_sensor",
    "alert_redelivery_sensor",
}
SENSORS = {
    "organizations_sensor",
    "invoice_delivery_sensor",
    "late_usage_sensor",
    "invoice_finalization_sensor",
} | ALERT_SENSORS
INVOICE_SCHEDULES = ("monthly_invoices_job_schedule", "weekly_invoices_job_schedule")
REPOSITORY = {"repositoryLocationName": "billing_pipeline", "repositoryName": "__repository__"}

INSTIGATORS = """
query Instigators($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      schedules { name cronSchedule scheduleState { id status ticks(limit: 100) { status runIds } } }
      sensors {
        name
        sensorState {
          id status
          ticks(limit: 100) { status runIds dynamicPartitionsRequestResults { partitionsDefName partitionKeys } }
        }
      }
    }
  }
}"""
STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) { __typename ... on ScheduleStateResult { scheduleState { status } } }
}"""
STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) { __typename ... on StopSensorMutationResult { instigationState { status } } }
}"""


def hour_range(start: dt.datetime, hours: int) -> tuple[str, str]:
    last = start + dt.timedelta(hours=hours - 1)
    return start.strftime("%Y-%m-%dT%H:%M"), last.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture(scope="module")
def stack(automation_stack: DagsterStack) -> DagsterStack:
    url = automation_stack.billing_url
    setup_database(url)
    reference.upsert_organizations(get_engine(url), [org(MONTHLY_ORG), org(WEEKLY_ORG, interval="weekly")])
    subscribe(url, MONTHLY_ORG, "starter", BACKFILLED.start)
    subscribe(url, WEEKLY_ORG, "weekly_usd", BACKFILLED.start)
    add_events(
        url,
        [
            (MONTHLY_ORG, "m-1", "storage_gb", "150", SCHEDULED.start + dt.timedelta(days=1, hours=5, minutes=7)),
            (MONTHLY_ORG, "m-2", "api_calls", "1", SCHEDULED.start + dt.timedelta(days=2, minutes=7)),
            (WEEKLY_ORG, "w-1", "api_calls", "1", WEEK.start + dt.timedelta(days=1, hours=3, minutes=7)),
        ],
    )
    for first, last in (usage_hours(SCHEDULED), hour_range(WEEK.start, 48)):
        done = automation_stack.cli("billing-pipeline", "aggregate-usage", first, last)
        assert done.returncode == 0, f"aggregate-usage failed:\n{done.stdout}\n{done.stderr}"
    automation_stack.start()
    return automation_stack


def instigators(stack: DagsterStack) -> dict[str, dict]:
    repo = stack.graphql(INSTIGATORS, {"selector": REPOSITORY})["repositoryOrError"]
    assert repo["__typename"] == "Repository", repo
    states = {s["name"]: s["scheduleState"] for s in repo["schedules"]}
    states.update({s["name"]: s["sensorState"] for s in repo["sensors"]})
    return states


def stop(stack: DagsterStack, name: str) -> None:
    state = instigators(stack)[name]
    if state["status"] != "RUNNING":
        return
    mutation, field = (STOP_SCHEDULE, "stopRunningSchedule") if name in SCHEDULES else (STOP_SENSOR, "stopSensor")
    result = stack.graphql(mutation, {"id": state["id"]})[field]
    assert result["__typename"] in {"ScheduleStateResult", "StopSensorMutationResult"}, result


def runs(stack: DagsterStack, **tags: str) -> list:
    return stack.instance().get_runs(dg.RunsFilter(tags=tags))


def finalized_invoices(stack: DagsterStack) -> list:
    with get_engine(stack.billing_url).connect() as conn:
        return conn.execute(
            select(invoices.c.id, invoices.c.org_id, invoices.c.interval, invoices.c.number).where(
                # the weekly organization's week totals 0.00: ZERO_TOTAL_INVOICES=finalize_paid makes it paid
                invoices.c.status.in_(["finalized", "paid"])
            )
        ).all()


def ledger(stack: DagsterStack) -> list:
    with get_engine(stack.billing_url).connect() as conn:
        return conn.execute(
            select(invoice_deliveries.c.invoice_id, invoice_deliveries.c.channel, invoice_deliveries.c.status)
        ).all()


def late_hour_events(stack: DagsterStack) -> int:
    with get_engine(stack.billing_url).connect() as conn:
        query = select(func.coalesce(func.sum(hourly_usage.c.event_count), 0)).where(hourly_usage.c.hour == LATE_HOUR)
        return int(conn.execute(query).scalar_one())


@pytest.mark.parametrize(
    ("schedule", "job", "asset"),
    [
        ("charge_due_invoices_job_schedule", "charge_due_invoices_job", "auto_charges"),
        ("sync_payment_status_job_schedule", "sync_payment_status_job", "payment_status_sync"),
    ],
)
def test_charge_and_payment_sync_schedules_run_first(stack, schedule, job, asset):
    def succeeded():
        return [r for r in runs(stack, **{"dagster/schedule_name": schedule}) if r.is_success]

    [run, *_] = stack.wait_for(succeeded, 240, f"a {job} run launched by its schedule", interval=3)
    assert run.job_name == job and run.tags["billing/as_of"].endswith("+00:00")
    record = stack.instance().get_latest_materialization_event(dg.AssetKey(asset))
    # no payment gateway in this stack (INVOICE_ENABLE_STRIPE=false): the run says so and charges nothing
    assert record.asset_materialization.metadata["skipped"].value == "no payment gateway"
    stop(stack, schedule)  # first in the module: stopped after one run, its runs do not crowd the invoices' runs


def test_invoice_schedules_bill_the_monthly_and_the_weekly_organization(stack):
    def both_billed():  # the finalization sensor (grace 0) may finalize before a schedule's run is launched
        billed = {(r.org_id, r.interval) for r in finalized_invoices(stack)}
        launched = all(runs(stack, **{"dagster/schedule_name": name}) for name in INVOICE_SCHEDULES)
        return {(MONTHLY_ORG, "monthly"), (WEEKLY_ORG, "weekly")} <= billed and launched

    stack.wait_for(both_billed, 300, "the monthly and weekly schedules to invoice their organizations", interval=3)
    for name in INVOICE_SCHEDULES:
        launched = runs(stack, **{"dagster/schedule_name": name})
        assert launched and {r.job_name for r in launched} <= {"monthly_invoices_job", "weekly_invoices_job"}


def test_hourly_schedule_aggregates_the_last_closed_hour(stack):
    def succeeded():
        return [r for r in runs(stack, **{"dagster/schedule_name": "hourly_usage_job_schedule"}) if r.is_success]

    [first, *_] = stack.wait_for(succeeded, 180, "an hourly_usage run launched by its schedule", interval=3)
    tick = dt.datetime.fromisoformat(first.tags[".dagster/scheduled_execution_time"])
    expected = (tick.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)).strftime(
        "%Y-%m-%d-%H:%M"
    )
    assert first.tags["dagster/partition"] == expected
    stop(stack, "hourly_usage_job_schedule")  # it ticks every minute here: one run is the point


def test_health_schedule_probes_every_component(stack):
    def succeeded():
        return [r for r in runs(stack, **{"dagster/schedule_name": "service_health_schedule"}) if r.is_success]

    [first, *_] = stack.wait_for(succeeded, 180, "a service_health run launched by its schedule", interval=3)
    assert first.job_name == "service_health_job"
    # PostgreSQL, the document folder and the outbox are up, no payment gateway is configured
    event = stack.instance().get_latest_materialization_event(dg.AssetKey("service_health"))
    metadata = event.asset_materialization.metadata
    assert metadata["down"].value == 0, metadata["summary"].value
    assert set(metadata["state"].value) == {"database", "payment_gateway", "document_store", "mailer"}
    stop(stack, "service_health_schedule")  # it ticks every minute here: one run is the point


def test_delivery_sensor_delivers_every_invoice_once(stack):
    def delivered():
        billed = finalized_invoices(stack)
        rows = {(r.invoice_id, r.channel): r.status for r in ledger(stack)}
        done = billed and all(rows.get((i.id, c)) == "succeeded" for i in billed for c in CHANNELS)
        return billed if done else None

    billed = stack.wait_for(delivered, 300, "the delivery sensor to deliver every invoice", interval=3)
    assert runs(stack, **{"dagster/sensor_name": "invoice_delivery_sensor"})
    outbox = sorted((stack.billing_home / "outbox").glob("*.eml"))
    assert len(outbox) == len(billed), [p.name for p in outbox]
    documents = stack.billing_home / "documents"
    invoice_pdfs = [p for p in documents.rglob("*.pdf") if not p.is_relative_to(documents / "reports")]
    assert len(invoice_pdfs) == len(billed), invoice_pdfs  # the reports keep theirs under reports/


def test_late_usage_sensor_reaggregates_an_hour_that_got_a_late_event(stack, tmp_path):
    before = late_hour_events(stack)
    assert before == 1  # m-1, aggregated by the CLI before the servers started
    late = tmp_path / "late.csv"
    occurred = (LATE_HOUR + dt.timedelta(minutes=40)).isoformat()
    late.write_text(
        f"org_id,event_id,metric,value,occurred_at,properties\n{MONTHLY_ORG},m-late,api_calls,1,{occurred},\n"
    )
    done = stack.cli("billing-pipeline", "import-events", str(late))
    assert done.returncode == 0 and "accepted 1" in done.stdout, f"{done.stdout}\n{done.stderr}"
    stack.wait_for(lambda: late_hour_events(stack) == 2, 240, "the late-usage sensor to re-aggregate", interval=3)
    # the hour is written before its run reaches SUCCESS: wait for the status too
    stack.wait_for(
        lambda: [r for r in runs(stack, **{"billing/trigger": "late_usage_sensor"}) if r.is_success],
        120,
        "the late-usage run to succeed",
        interval=3,
    )
    [run] = [r for r in runs(stack, **{"billing/trigger": "late_usage_sensor"}) if r.is_success]
    assert run.tags["dagster/sensor_name"] == "late_usage_sensor"


def test_reminders_schedule_runs_the_payment_reminders(stack):
    def reminder_runs():
        return [
            r for r in runs(stack, **{"dagster/schedule_name": "send_payment_reminders_job_schedule"}) if r.is_success
        ]

    stack.wait_for(lambda: reminder_runs(), 240, "the reminders schedule to run", interval=3)
    run = reminder_runs()[0]
    assert run.job_name == "send_payment_reminders_job" and run.tags["billing/as_of"].endswith("+00:00")
    record = stack.instance().get_latest_materialization_event(dg.AssetKey("payment_reminders"))
    assert record is not None and "sent" in record.asset_materialization.metadata
    # nothing is due yet (the invoices were just finalized, net 30): nothing sent, nothing dead
    assert record.asset_materialization.metadata["dead_letters"].value == 0


def test_every_schedule_and_sensor_fired_and_nothing_was_sent_twice(stack):
    states = instigators(stack)
    assert SCHEDULES | SENSORS == set(states), sorted(states)  # a new one must join this scenario
    for name in sorted(states):
        stop(stack, name)
    stack.wait_for(lambda: all(r.is_finished for r in stack.instance().get_runs()), 180, "every run to finish")
    states = instigators(stack)
    for name, state in states.items():
        ticks = state["ticks"]
        if name == "organizations_sensor":  # it adds partitions instead of launching runs
            added = {k for t in ticks for r in t["dynamicPartitionsRequestResults"] or [] for k in r["partitionKeys"]}
            assert {MONTHLY_ORG, WEEKLY_ORG} <= added, (name, ticks[-3:])
        elif name in ALERT_SENSORS:
            assert ticks and {t["status"] for t in ticks} <= {"SKIPPED", "SUCCESS"}, (name, ticks[:5])
        else:
            assert any(t["status"] == "SUCCESS" and t["runIds"] for t in ticks), (name, ticks[:5])
    partitions = stack.instance().get_dynamic_partitions
    assert MONTHLY_ORG in partitions("monthly_billed_organizations")
    assert WEEKLY_ORG in partitions("weekly_billed_organizations")

    time.sleep(2)  # a delivery run finishing last would have written by now
    billed = finalized_invoices(stack)
    rows = ledger(stack)
    assert sorted((r.invoice_id, r.channel) for r in rows) == sorted((i.id, c) for i in billed for c in CHANNELS)
    assert {r.status for r in rows} == {"succeeded"}
    emails = [p.read_bytes() for p in (stack.billing_home / "outbox").glob("*.eml")]
    for invoice in billed:
        assert sum(invoice.number.encode() in e for e in emails) == 1, invoice.number
    failed = [r for r in stack.instance().get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
    assert not failed, [(r.job_name, r.tags) for r in failed]
    for name, report in REPORT_SCHEDULES.items():  # each fired once per partition, and stored its PDF
        fired = runs(stack, **{"dagster/schedule_name": name})
        assert fired and all(r.is_success for r in fired), name
        assert len({r.tags["dagster/partition"] for r in fired}) == len(fired), name
        stored = list((stack.billing_home / "documents" / "reports" / report).rglob("*.pdf"))
        assert stored and all(p.read_bytes().startswith(b"%PDF") for p in stored), report
    assert alerts.list_alerts(get_engine(stack.billing_url)) == []  # no run failed, every component stayed healthy
