"""Invoice deliveries in process on SQLite: local store + outbox + no payment gateway."""

from __future__ import annotations

import datetime as dt
import email
import re
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from billing_pipeline import launch
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_deliveries, invoices
from billing_pipeline.definitions import build_definitions
from billing_pipeline.defs.delivery import delivery_run_requests, run_delivery
from billing_pipeline.defs.partitions import billing_partitions
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import sync_organization_partitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import (
    UTC,
    add_events,
    org,
    setup_database,
    store_unchecked_organizations,
    subscribe,
)

OCT = dt.datetime(2026, 10, 1, tzinfo=UTC)
MONTHLY = BillingInterval.MONTHLY
ORGS = ("alpha", "beta", "delta", "gamma", "zeta")


def run_hours(defs, instance, first, last):
    from billing_pipeline import definitions

    return launch.run_hours(defs, instance, definitions.hourly_usage_job.name, first, last)


def run_period(defs, instance, interval, period_key, *, organizations=(), dry_run=False, batch_size=1000):
    from billing_pipeline import definitions

    job = definitions.INVOICE_JOBS[interval]
    return launch.run_period(
        defs, instance, job, period_key, organizations=organizations, dry_run=dry_run, batch_size=batch_size
    )


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url})
    setup_database(url)
    engine = get_engine(url)
    bad_mail = org("delta")
    bad_mail = type(bad_mail)(**{**bad_mail.__dict__, "billing_email": "not an address"})
    reference.upsert_organizations(engine, [org("alpha"), org("beta"), org("gamma"), org("zeta", status="suspended")])
    store_unchecked_organizations(url, [bad_mail])  # upsert_organizations refuses it
    for o in ("alpha", "beta", "delta", "zeta"):
        subscribe(url, o, "starter", OCT)
    add_events(url, [("alpha", "a1", "api_calls", "1", OCT + dt.timedelta(hours=1))])
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    sync_organization_partitions(instance, engine)
    assert run_hours(defs, instance, OCT, OCT + dt.timedelta(days=31) - dt.timedelta(hours=1)).success
    run_period(defs, instance, MONTHLY, "2026-10-01")  # gamma fails (no subscription)
    return settings, engine, instance, defs


def statuses(instance) -> dict[str, object]:
    pdef = billing_partitions(MONTHLY, dt.date(2026, 1, 1))
    keys = [f"2026-10-01|{o}" for o in ORGS]
    got = instance.get_status_by_partition(dg.AssetKey("monthly_invoice_deliveries"), keys, pdef)
    return {k.split("|")[1]: (v.value if v else None) for k, v in got.items()}


def ledger(engine) -> dict[tuple[str, str], tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                invoices.c.org_id,
                invoice_deliveries.c.channel,
                invoice_deliveries.c.status,
                invoice_deliveries.c.attempts,
            ).join(invoices, invoices.c.id == invoice_deliveries.c.invoice_id)
        )
        return {(r.org_id, r.channel): (r.status, r.attempts) for r in rows}


def test_per_organization_status_and_idempotent_reruns(env):
    settings, engine, instance, defs = env
    [outcome] = run_delivery(defs, instance, MONTHLY, "2026-10-01")
    assert not outcome.success
    assert statuses(instance) == {
        # gamma (no invoice) and zeta (suspended) have nothing to deliver: neither failed nor delivered
        "alpha": "MATERIALIZED",
        "beta": "MATERIALIZED",
        "delta": "FAILED",
        "gamma": None,
        "zeta": None,
    }
    rows = ledger(engine)
    for o in ("alpha", "beta"):
        assert {c: rows[(o, c)][0] for c in ("pdf", "s3", "stripe", "email")} == {
            "pdf": "succeeded",
            "s3": "succeeded",
            "stripe": "skipped",
            "email": "succeeded",
        }
    assert rows[("delta", "email")][0] == "failed" and rows[("delta", "email")][1] == 1  # permanent: no retry
    outbox = sorted(Path(settings.outbox_dir).glob("*.eml"))
    assert len(outbox) == 2
    msg = email.message_from_bytes(outbox[0].read_bytes())
    assert re.match(r"<invoice-INV-\d{4}-\d{6}\.invoice@", msg["Message-ID"]), msg["Message-ID"]  # issued this year
    pdfs = sorted(Path(settings.documents_dir).rglob("*.pdf"))
    assert len(pdfs) == 3  # delta's PDF is stored; only its e-mail failed

    # Re-running changes nothing that succeeded; alpha and beta stay materialized.
    for _ in range(2):
        run_delivery(defs, instance, MONTHLY, "2026-10-01")
    assert ledger(engine) == {**rows, ("delta", "email"): ("failed", 3)}
    assert len(sorted(Path(settings.outbox_dir).glob("*.eml"))) == 2
    assert statuses(instance)["alpha"] == "MATERIALIZED"

    # Fix delta's address: only its e-mail goes out.
    fixed = org("delta")
    reference.upsert_organizations(engine, [fixed])
    outcomes = run_delivery(defs, instance, MONTHLY, "2026-10-01", organizations=["delta"])
    assert all(o.success for o in outcomes)
    assert statuses(instance)["delta"] == "MATERIALIZED"
    assert len(sorted(Path(settings.outbox_dir).glob("*.eml"))) == 3


def test_dry_run_sends_and_writes_nothing(env):
    settings, engine, instance, defs = env
    outcomes = run_delivery(defs, instance, MONTHLY, "2026-10-01", organizations=["alpha", "beta"], dry_run=True)
    assert all(o.success for o in outcomes)
    assert ledger(engine) == {}
    assert not Path(settings.outbox_dir).exists() or not list(Path(settings.outbox_dir).iterdir())
    assert statuses(instance)["alpha"] is None


def test_sensor_launches_one_run_per_period_batch_and_is_idempotent(env):
    settings, engine, instance, defs = env
    sensor = defs.resolve_sensor_def("invoice_delivery_sensor")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"billing_db": defs.resources["billing_db"]}
    ) as context:
        result = sensor(context)
    [request] = result.run_requests
    assert request.job_name == "deliver_monthly_invoices_job"
    assert request.tags["dagster/asset_partition_range_start"] == "2026-10-01|alpha"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-10-01|delta"
    run_delivery(defs, instance, MONTHLY, "2026-10-01")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"billing_db": defs.resources["billing_db"]}
    ) as context:
        again = sensor(context)
    assert isinstance(again, dg.SkipReason)  # delivered or failed: nothing new to launch


def test_sensor_does_not_request_a_batch_that_is_queued_or_running(env):
    """A batch waiting for a pool slot is not requested again under another run key (the
    10,000-invoice benchmark saw 47 such duplicate runs before)."""
    settings, engine, instance, defs = env
    sensor = defs.resolve_sensor_def("invoice_delivery_sensor")
    resources = {"billing_db": defs.resources["billing_db"]}
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        [request] = sensor(context).run_requests
    job = defs.resolve_job_def(request.job_name)
    queued = instance.create_run_for_job(job_def=job, tags=request.tags, status=dg.DagsterRunStatus.NOT_STARTED)
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        assert isinstance(sensor(context), dg.SkipReason)
    instance.report_run_canceled(queued)  # gone without delivering: the next tick asks again
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        [again] = sensor(context).run_requests
    assert again.tags == request.tags


def test_run_requests_cover_wanted_orgs_in_contiguous_batches():
    all_orgs = [f"o{i:02d}" for i in range(10)]
    reqs = delivery_run_requests(all_orgs, MONTHLY, "2026-10-01", ["o07", "o01", "o03", "o09"], 3)
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in reqs
    ]
    assert ranges == [("2026-10-01|o01", "2026-10-01|o07"), ("2026-10-01|o09", "2026-10-01|o09")]
    assert (
        reqs[0].run_key
        == delivery_run_requests(all_orgs, MONTHLY, "2026-10-01", ["o01", "o03", "o07", "o09"], 3)[0].run_key
    )
