"""End-to-end fixtures: a not-yet-started ``DagsterStack`` on the session's PostgreSQL server.

The test module seeds the billing database, then calls ``stack.start()``. On a failing test
the webserver and daemon log tails are attached to the report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from billing_pipeline_tests.e2e.months import BACKFILLED
from billing_pipeline_tests.e2e.stack import DagsterStack

E2E_SETTINGS = {
    "BILLING_PARTITIONS_START": BACKFILLED.key,  # the scenario's months follow the clock (months.py)
    # the monthly schedule ticks every minute so a test can watch the daemon fire it
    "MONTHLY_INVOICE_CRON": "* * * * *",
    # 1 January only: no hourly or weekly run sneaks into the scenario
    "HOURLY_USAGE_CRON": "0 0 1 1 *",
    "WEEKLY_INVOICE_CRON": "0 0 1 1 *",
    "AR_AGING_REPORT_CRON": "0 0 1 1 *",
    "MRR_REPORT_CRON": "0 0 1 1 *",
    "DAILY_ANALYTICS_REPORT_CRON": "0 0 1 1 *",
    "WEEKLY_BI_REPORT_CRON": "0 0 1 1 *",
    "PAYMENT_REMINDERS_CRON": "0 0 1 1 *",
    "HEALTH_CHECK_CRON": "0 0 1 1 *",
    "CHARGE_DUE_INVOICES_CRON": "0 0 1 1 *",
    "PAYMENT_SYNC_CRON": "0 0 1 1 *",
    "SCHEDULES_RUNNING": "true",
    "INVOICE_BATCH_SIZE": "3",
    "INVOICE_GRACE_HOURS": "0",  # the schedule's tick finalizes: the scenario watches it do so
    # invoicing is under test, not delivery: the delivery sensor then skips ("every channel is disabled")
    "INVOICE_ENABLE_PDF": "false",
    "INVOICE_ENABLE_S3": "false",
    "INVOICE_ENABLE_STRIPE": "false",
    "INVOICE_ENABLE_EMAIL": "false",
}


# Every schedule and sensor fires under the daemon: crons tick every minute, all channels
# deliver to the local folder and outbox (test_automation_e2e.py).
AUTOMATION_SETTINGS = {
    "BILLING_PARTITIONS_START": BACKFILLED.key,
    "HOURLY_USAGE_CRON": "* * * * *",
    "MONTHLY_INVOICE_CRON": "* * * * *",
    "WEEKLY_INVOICE_CRON": "* * * * *",
    "AR_AGING_REPORT_CRON": "* * * * *",  # the reports' last closed week and month, once each (run_key)
    "MRR_REPORT_CRON": "* * * * *",
    "DAILY_ANALYTICS_REPORT_CRON": "* * * * *",
    "WEEKLY_BI_REPORT_CRON": "* * * * *",
    "INVOICE_GRACE_HOURS": "0",  # the schedules finalize at once, and so does invoice_finalization_sensor
    "SCHEDULES_RUNNING": "true",
    "INVOICE_BATCH_SIZE": "10",
    "INVOICE_ENABLE_PDF": "true",
    "INVOICE_ENABLE_S3": "true",
    "INVOICE_ENABLE_STRIPE": "false",
    "INVOICE_ENABLE_EMAIL": "true",
}


@contextlib.contextmanager
def dagster_stack(postgres_server, settings: dict[str, str], name: str):
    """A not-yet-started stack on fresh billing and instance databases; logs kept in test-artifacts/."""
    suffix = uuid.uuid4().hex[:8]
    billing_db, instance_db = f"e2e_billing_{suffix}", f"e2e_dagster_{suffix}"
    billing_url = postgres_server.create_database(billing_db)
    postgres_server.create_database(instance_db)
    root = Path(tempfile.mkdtemp(prefix="billing-e2e-"))
    stack = DagsterStack(
        root,
        pg_host=postgres_server.host,
        pg_port=postgres_server.port,
        instance_db=instance_db,
        billing_url=billing_url,
        settings=settings,
    )
    # this process opens the same instance for assertions: its dagster.yaml reads DAGSTER_PG_*
    with pytest.MonkeyPatch.context() as mp:
        for key, value in stack.pg_env.items():
            mp.setenv(key, value)
        try:
            yield stack
        finally:
            stack.stop()
            from billing_pipeline.db.engine import get_engine

            get_engine(billing_url).dispose()  # the tests' pooled connections, before the drop
            for db in (billing_db, instance_db):
                try:
                    postgres_server.drop_database(db)
                except Exception:  # the cluster is thrown away at session end anyway
                    pass
            # the server logs outlive the run: CI uploads test-artifacts/
            logs = Path(__file__).resolve().parents[2] / "test-artifacts" / name
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(stack.logs, logs, dirs_exist_ok=True)
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def e2e_stack(postgres_server):
    with dagster_stack(postgres_server, E2E_SETTINGS, "e2e-logs") as stack:
        yield stack


# Schedules whose every tick launches a run (no run key per period): each fires at a few minutes
# of the hour, a few minutes after the stack starts, so they fire but do not crowd the run queue
# (every-minute ticks of four such jobs kept the queue full on a loaded machine).
REPEATING_CRONS = ("HEALTH_CHECK_CRON", "PAYMENT_REMINDERS_CRON", "CHARGE_DUE_INVOICES_CRON", "PAYMENT_SYNC_CRON")


def soon_crons(now: dt.datetime, first_minutes: int = 2, every: int = 3, times: int = 6) -> dict[str, str]:
    """``REPEATING_CRONS`` firing ``times`` times, ``every`` minutes apart, from ``first_minutes``
    after ``now`` (a tick missed while the stack starts is followed by another within the tests' waits)."""
    minutes = sorted({(now.minute + first_minutes + k * every) % 60 for k in range(times)})
    return dict.fromkeys(REPEATING_CRONS, f"{','.join(map(str, minutes))} * * * *")


@pytest.fixture(scope="module")
def automation_stack(postgres_server):
    settings = AUTOMATION_SETTINGS | soon_crons(dt.datetime.now(dt.UTC))
    with dagster_stack(postgres_server, settings, "e2e-automation-logs") as stack:
        yield stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    stack = (funcargs.get("e2e_stack") or funcargs.get("automation_stack")) if report.failed else None
    if stack is not None:
        report.sections.append(("dagster servers", stack.diagnostics()))
