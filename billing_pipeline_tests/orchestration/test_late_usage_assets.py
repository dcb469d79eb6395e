"""Late usage through the Dagster assets: ``dg.materialize`` of the monthly drafts and invoices.

October is finalized on 4 November; an October event arrives on 10 November, its hour is
re-aggregated; November's invoice, materialized any number of times, carries exactly one
adjustment line for it. Every step runs at an explicit time (time-machine), never today's.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dagster as dg
import pytest
import time_machine
from sqlalchemy import func, select

from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.late_usage_ledger import pending_late_usage
from billing_pipeline.db.schema import late_usage_adjustments
from billing_pipeline.definitions import build_definitions, hourly_usage_job
from billing_pipeline.domain.periods import monthly_period
from billing_pipeline.launch import run_hours, sync_organization_partitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import add_events, org, setup_database, subscribe

OCT, NOV, DEC = monthly_period(2026, 10), monthly_period(2026, 11), monthly_period(2026, 12)
INVOICE_ASSETS = [dg.AssetKey("monthly_invoice_drafts"), dg.AssetKey("monthly_invoices")]


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url})
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("acme")])
    subscribe(url, "acme", "starter", OCT.start)
    with time_machine.travel(OCT.start + dt.timedelta(days=4, hours=1), tick=True):
        add_events(url, [("acme", "oct-1", "storage_gb", "100", OCT.start + dt.timedelta(days=4))])
    instance = dg.DagsterInstance.ephemeral()
    sync_organization_partitions(instance, engine)
    return url, engine, instance, build_definitions(settings)


def aggregate(defs, instance, period, at: dt.datetime) -> None:
    with time_machine.travel(at, tick=True):
        last = period.end - dt.timedelta(hours=1)
        assert run_hours(defs, instance, hourly_usage_job.name, period.start, last).success


def materialize(defs, instance, period) -> dg.ExecuteInProcessResult:
    with time_machine.travel(period.end + dt.timedelta(days=4), tick=True):  # the grace window has closed
        return dg.materialize(
            list(defs.assets),
            selection=INVOICE_ASSETS,
            instance=instance,
            resources=defs.resources,
            partition_key=f"{period.key}|acme",
            raise_on_error=False,
        )


def invoice(engine, period):
    invoice_id, status, _ = invoice_rows.get_invoice_states(engine, period.interval, period.key, ["acme"])["acme"]
    return status, invoice_rows.load_invoices(engine, [invoice_id])[invoice_id].invoice


def test_late_event_billed_once_on_the_next_monthly_invoice(env):
    url, engine, instance, defs = env
    aggregate(defs, instance, OCT, at=NOV.start + dt.timedelta(minutes=5))
    assert materialize(defs, instance, OCT).success  # on 4 November
    status, october = invoice(engine, OCT)
    assert status == "finalized" and october.total == Decimal("39.00")

    late = NOV.start + dt.timedelta(days=10)
    with time_machine.travel(late, tick=True):
        add_events(url, [("acme", "oct-late", "storage_gb", "200", OCT.start + dt.timedelta(days=20))])
        assert pending_late_usage(engine)[0].state.startswith("blocked: late events in hours of October 2026")
    aggregate(defs, instance, OCT, at=late + dt.timedelta(minutes=1))  # what late_usage_sensor launches
    with time_machine.travel(late + dt.timedelta(minutes=2), tick=True):
        assert [p.state for p in pending_late_usage(engine)] == ["not on an invoice yet"]
    aggregate(defs, instance, NOV, at=DEC.start + dt.timedelta(minutes=5))
    for _ in range(3):
        assert materialize(defs, instance, NOV).success
        status, november = invoice(engine, NOV)
        adjustments = [line for line in november.lines if line.description.startswith("Adjustment for October 2026")]
        assert status == "finalized" and [line.amount for line in adjustments] == [Decimal("10.00")]
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(late_usage_adjustments)).scalar_one() == 1
    assert november.total == Decimal("42.00")  # (25.00 November + 10.00 October's late storage) + 20 %
    assert invoice(engine, OCT) == ("finalized", october)
    with time_machine.travel(DEC.end, tick=True):
        assert pending_late_usage(engine) == []
    latest = instance.get_latest_materialization_event(dg.AssetKey("monthly_invoice_drafts"))
    assert latest is not None and latest.asset_materialization.partition == "2026-11-01|acme"
