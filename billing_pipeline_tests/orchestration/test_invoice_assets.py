"""Invoice assets in process on SQLite: batched runs, per-organization status, idempotency."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import time_machine
from sqlalchemy import func, select

from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_lines, invoices
from billing_pipeline.definitions import INVOICE_JOBS, build_definitions, hourly_usage_job
from billing_pipeline.defs.partitions import billing_partitions
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import run_hours, run_period, sync_organization_partitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import (
    UTC,
    add_events,
    org,
    setup_database,
    store_unchecked_subscription,
    subscribe,
)

OCT = dt.datetime(2026, 10, 1, tzinfo=UTC)
MONTHLY = BillingInterval.MONTHLY


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url})
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("alpha"), org("beta"), org("gamma"), org("zeta", status="suspended")])
    for o in ("alpha", "beta", "zeta"):
        subscribe(url, o, "starter", OCT)
    store_unchecked_subscription(url, "gamma", "retired_plan", OCT)  # not in the catalog: gamma fails alone
    add_events(
        url,
        [
            ("alpha", "a1", "api_calls", "1", OCT + dt.timedelta(hours=1, minutes=5)),
            ("alpha", "a2", "api_calls", "1", OCT + dt.timedelta(days=3)),
            ("alpha", "a3", "storage_gb", "42.5", OCT + dt.timedelta(days=4)),
            ("beta", "b1", "storage_gb", "250", OCT + dt.timedelta(days=10, hours=3)),
        ],
    )
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    sync_organization_partitions(instance, engine)
    assert run_hours(
        defs, instance, hourly_usage_job.name, OCT, OCT + dt.timedelta(days=31) - dt.timedelta(hours=1)
    ).success
    return url, engine, instance, defs


@pytest.fixture
def issued_november_2026():
    """Invoice numbers carry the year the invoice is issued in (the clock's): pin it."""
    with time_machine.travel(dt.datetime(2026, 11, 5, 10, tzinfo=UTC), tick=True):
        yield


def statuses(instance, asset: str) -> dict[str, object]:
    pdef = billing_partitions(MONTHLY, dt.date(2026, 1, 1))
    keys = [f"2026-10-01|{o}" for o in ("alpha", "beta", "gamma", "zeta")]
    got = instance.get_status_by_partition(dg.AssetKey(asset), keys, pdef)
    return {k.split("|")[1]: (v.value if v else None) for k, v in got.items()}


def test_batched_run_isolates_the_failing_organization(env, issued_november_2026):
    url, engine, instance, defs = env
    [outcome] = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01")
    assert not outcome.success
    assert statuses(instance, "monthly_invoices") == {
        "alpha": "MATERIALIZED",
        "beta": "MATERIALIZED",
        "gamma": "FAILED",
        "zeta": "MATERIALIZED",
    }
    with engine.connect() as conn:
        rows = {r.org_id: r for r in conn.execute(select(invoices))}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"].status == "finalized" and rows["alpha"].number == "INV-2026-000001"
    # alpha: 10.00 platform + 2 calls * 0.001 = 0.002 -> 0.00
    #   + storage max 42.5 -> (42.5-10)*0.25 = 8.13 (half-up of 8.125)
    assert rows["alpha"].subtotal_minor == 2500  # minimum spend 25.00 true-up
    assert rows["alpha"].total_minor == 3000


def test_rerun_is_a_no_op_for_finalized_invoices(env, issued_november_2026):
    url, engine, instance, defs = env
    run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01")
    with engine.connect() as conn:
        before = conn.execute(
            select(invoices.c.id, invoices.c.number, invoices.c.total_minor).order_by(invoices.c.id)
        ).all()
        lines_before = conn.execute(select(func.count()).select_from(invoice_lines)).scalar()
    store_unchecked_subscription(url, "gamma", "starter", OCT)  # fix the bad data
    outcomes = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01", organizations=["gamma"])
    assert all(o.success for o in outcomes)
    outcomes = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01")
    assert all(o.success for o in outcomes)
    with engine.connect() as conn:
        after = conn.execute(
            select(invoices.c.id, invoices.c.number, invoices.c.total_minor).order_by(invoices.c.id)
        ).all()
        lines_after = conn.execute(select(func.count()).select_from(invoice_lines)).scalar()
    assert after[: len(before)] == before
    assert len(after) == 3 and after[2].number == "INV-2026-000003"
    assert lines_after > lines_before
    assert statuses(instance, "monthly_invoices")["gamma"] == "MATERIALIZED"


def test_dry_run_writes_nothing(env):
    url, engine, instance, defs = env
    outcomes = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01", dry_run=True)
    assert not any(o.success for o in outcomes)  # gamma's pricing fails, in a dry run too
    clean = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01", dry_run=True, organizations=["alpha"])
    assert all(o.success for o in clean)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar() == 0
    assert statuses(instance, "monthly_invoices") == {"alpha": None, "beta": None, "gamma": None, "zeta": None}
    assert statuses(instance, "monthly_invoice_drafts") == {"alpha": None, "beta": None, "gamma": None, "zeta": None}


def observations(instance, asset: str) -> dict[str, dict]:
    """The latest observation's metadata per organization of October."""
    records = instance.fetch_observations(dg.AssetKey(asset), limit=100).records
    latest: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        observation = record.asset_observation
        latest[observation.partition.split("|")[1]] = {k: v.value for k, v in observation.metadata.items()}
    return latest


def test_partition_statuses_of_failed_skipped_dry_run_and_good_organizations(env, issued_november_2026):
    url, engine, instance, defs = env
    [dry] = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01", dry_run=True, organizations=["beta"])
    assert dry.success
    assert observations(instance, "monthly_invoice_drafts")["beta"]["total"] == "57.00 USD"
    outcomes = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01", organizations=["alpha", "gamma", "zeta"])
    assert [o.success for o in outcomes] == [True, False]  # alpha alone; gamma..zeta (beta is left out)
    expected = {"alpha": "MATERIALIZED", "beta": None, "gamma": "FAILED", "zeta": "MATERIALIZED"}
    assert statuses(instance, "monthly_invoice_drafts") == expected
    assert statuses(instance, "monthly_invoices") == expected
    latest = {
        r.asset_materialization.partition.split("|")[1]: r.asset_materialization.metadata["outcome"].value
        for r in instance.fetch_materializations(dg.AssetKey("monthly_invoices"), limit=10).records
    }
    assert latest == {"alpha": "finalized", "zeta": "skipped"}
    with engine.connect() as conn:
        assert {r.org_id for r in conn.execute(select(invoices.c.org_id))} == {"alpha"}


def test_late_events_are_aggregated_before_drafting(env):
    url, engine, instance, defs = env
    add_events(url, [("beta", "late-1", "storage_gb", "900", OCT + dt.timedelta(days=20))])
    [outcome] = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01")
    assert not outcome.success  # gamma only
    with engine.connect() as conn:
        beta = conn.execute(select(invoices).where(invoices.c.org_id == "beta")).one()
    assert beta.status == "finalized" and beta.usage["storage_gb"] == "900"
    hour_key = "2026-10-21-00:00"
    status = instance.get_status_by_partition(
        dg.AssetKey("hourly_usage"), [hour_key], dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00")
    )
    assert status[hour_key].value == "MATERIALIZED"


def test_reconciliation_check_blocks_finalization_when_hourly_usage_is_stale(env):
    url, engine, instance, defs = env
    from billing_pipeline.db.schema import hourly_usage

    with engine.begin() as conn:  # hourly usage tampered with behind the pipeline's back
        conn.execute(hourly_usage.update().where(hourly_usage.c.org_id == "alpha").values(event_count=99))
    [outcome] = run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01")
    assert not outcome.success
    with engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(invoices).where(invoices.c.status == "finalized")).scalar()
            == 0
        )
    evaluations = [
        e.event_log_entry.dagster_event.event_specific_data
        for e in instance.get_records_for_run(outcome.run_id).records
        if e.event_log_entry.dagster_event
        and e.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    [batch] = [d for d in evaluations if d.partition is None]
    assert not batch.passed and "alpha" in batch.metadata["problems"].value
    by_org = {d.partition.split("|")[1]: d.passed for d in evaluations if d.partition}
    assert by_org == {"alpha": False, "beta": True, "gamma": True, "zeta": True}  # gamma, zeta: no draft


def test_invoices_are_issued_and_numbered_at_the_clock(env):
    url, engine, instance, defs = env
    new_year = dt.datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    with time_machine.travel(new_year, tick=True):
        run_period(defs, instance, INVOICE_JOBS[MONTHLY], "2026-10-01", organizations=["alpha"])
    with engine.connect() as conn:
        alpha = conn.execute(select(invoices).where(invoices.c.org_id == "alpha")).one()
    assert alpha.number == "INV-2027-000001"
    assert new_year <= alpha.issued_at < new_year + dt.timedelta(minutes=5)
    assert alpha.due_at == alpha.issued_at + dt.timedelta(days=30)  # net 30


def test_draft_recomputed_inside_the_grace_window_and_frozen_after(env):
    url, engine, instance, defs = env
    job, beta = INVOICE_JOBS[MONTHLY], ["beta"]

    def beta_invoice():
        with engine.connect() as conn:
            return conn.execute(select(invoices).where(invoices.c.org_id == "beta")).one()

    with time_machine.travel(dt.datetime(2026, 11, 1, 0, 5, tzinfo=UTC), tick=True):  # the schedule's tick
        assert all(o.success for o in run_period(defs, instance, job, "2026-10-01", organizations=beta))
        assert beta_invoice().status == "draft" and beta_invoice().usage["storage_gb"] == "250"
        assert observations(instance, "monthly_invoices")["beta"]["outcome"] == "awaiting_grace_window"
    with time_machine.travel(dt.datetime(2026, 11, 3, 12, tzinfo=UTC), tick=True):  # still inside the 72 h
        add_events(url, [("beta", "late-1", "storage_gb", "900", OCT + dt.timedelta(days=20))])
        assert all(o.success for o in run_period(defs, instance, job, "2026-10-01", organizations=beta))
        assert beta_invoice().status == "draft" and beta_invoice().usage["storage_gb"] == "900"
    with time_machine.travel(dt.datetime(2026, 11, 4, 0, 1, tzinfo=UTC), tick=True):  # the window closed
        assert all(o.success for o in run_period(defs, instance, job, "2026-10-01", organizations=beta))
        frozen = beta_invoice()
        assert frozen.status == "finalized" and frozen.number == "INV-2026-000001"
    with time_machine.travel(dt.datetime(2026, 11, 5, tzinfo=UTC), tick=True):
        add_events(url, [("beta", "late-2", "storage_gb", "5000", OCT + dt.timedelta(days=21))])
        assert all(o.success for o in run_period(defs, instance, job, "2026-10-01", organizations=beta))
    assert beta_invoice() == frozen  # finalized: late usage goes to the next invoice, this one stays
