"""A delivery run that fails mid-step, re-executed from failure with Dagster's own re-execution
on a dagster-postgres instance (the project's deploy/dagster.yaml), against the real local servers:
nothing is sent twice (counted at the S3, Stripe and SMTP servers) and no organization is
reported FAILED once the re-execution has run."""

import collections
import datetime as dt
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest

from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import delivery_views, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.defs.delivery import delivery_run_config
from billing_pipeline.defs.partitions import billing_partitions
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.launch import sync_organization_partitions
from billing_pipeline.services import invoicing
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe
from billing_pipeline_tests.support.settings import real_servers_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MONTHLY = BillingInterval.MONTHLY
PERIOD = "2026-10-01"
ORGS = [f"org{i:02d}" for i in range(8)]


def delivery_job() -> dg.JobDefinition:
    """The job as a run worker loads it (reconstructable: from the environment)."""
    from billing_pipeline.definitions import build_definitions

    return build_definitions(Settings.from_env()).resolve_job_def("deliver_monthly_invoices_job")


@pytest.fixture
def world(postgres_server, billing_db_url, s3_server, stripe_server, smtp_server, tmp_path, monkeypatch):
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    bucket = s3_server.create_bucket(f"reexec-{uuid.uuid4().hex[:8]}")
    env = {
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": name,
        **real_servers_env(
            billing_url=billing_db_url,
            billing_home=tmp_path / "billing",
            bucket=bucket,
            s3=s3_server,
            stripe=stripe_server,
            smtp=smtp_server,
        ),
        "DELIVERY_IO_WORKERS": "3",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    setup_database(billing_db_url)
    engine = get_engine(billing_db_url)
    reference.upsert_organizations(engine, [org(o) for o in ORGS])
    for o in ORGS:
        subscribe(billing_db_url, o, "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    period = period_from_key(MONTHLY, PERIOD)
    invoicing.draft_batch(engine, period, ORGS, dry_run=False)
    invoicing.finalize_batch(
        engine, period, ORGS, prefix="INV", now=dt.datetime(2026, 11, 1, tzinfo=UTC), dry_run=False
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        sync_organization_partitions(instance, engine)
        yield instance, engine, bucket


def statuses(instance) -> dict[str, str | None]:
    got = instance.get_status_by_partition(
        dg.AssetKey("monthly_invoice_deliveries"),
        [f"{PERIOD}|{o}" for o in ORGS],
        billing_partitions(MONTHLY, dt.date(2026, 1, 1)),
    )
    return {k.split("|")[1]: (v.value if v else None) for k, v in got.items()}


def test_reexecution_from_failure_sends_nothing_twice(world, s3_server, stripe_server, smtp_server, monkeypatch):
    instance, engine, bucket = world
    # The ledger database drops the connection on the 5th Stripe claim: the Stripe step fails
    # (not one invoice: the step), after some Stripe invoices were created but not recorded.
    real_claim = ledger.claim
    stripe_claims = []

    def flaky_claim(bind, invoice_id, channel, *args, **kwargs):
        if channel == "stripe":
            stripe_claims.append(invoice_id)
            if len(stripe_claims) == 5:
                raise ConnectionError("server closed the connection unexpectedly")
        return real_claim(bind, invoice_id, channel, *args, **kwargs)

    monkeypatch.setattr(ledger, "claim", flaky_claim)
    tags = {
        "dagster/asset_partition_range_start": f"{PERIOD}|{ORGS[0]}",
        "dagster/asset_partition_range_end": f"{PERIOD}|{ORGS[-1]}",
    }
    job = dg.reconstructable(delivery_job)
    first = dg.execute_job(job, instance, run_config=delivery_run_config(MONTHLY), tags=tags, raise_on_error=False)
    assert not first.success
    failed_steps = {e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed_steps == {"monthly_invoice_deliveries.sync_monthly_stripe_invoices"}
    assert len(smtp_server.messages) == 0 and "MATERIALIZED" not in statuses(instance).values()
    created_before = stripe_server.count("invoices")
    assert 4 <= created_before <= len(ORGS)

    monkeypatch.setattr(ledger, "claim", real_claim)
    options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
    parent = instance.get_run_by_id(first.run_id)
    again = dg.execute_job(
        job, instance, run_config=parent.run_config, tags=parent.tags, reexecution_options=options, raise_on_error=False
    )
    assert again.success
    steps = {e.step_key for e in again.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {
        "monthly_invoice_deliveries.sync_monthly_stripe_invoices",
        "monthly_invoice_deliveries.send_monthly_invoice_emails",
        "monthly_invoice_deliveries.report_monthly_invoice_deliveries",
    }  # the pdf and s3 steps are not run again
    assert set(statuses(instance).values()) == {"MATERIALIZED"}  # nothing falsely FAILED

    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == len(ORGS)
    per_invoice = collections.Counter(i["metadata"]["invoice_id"] for i in stripe_server.objects("invoices"))
    assert len(per_invoice) == len(ORGS) and set(per_invoice.values()) == {1}
    mids = collections.Counter(str(m.message["Message-ID"]) for m in smtp_server.messages)
    assert len(mids) == len(ORGS) and set(mids.values()) == {1}
    ids = delivery_views.finalized_invoice_ids(engine, "monthly", PERIOD)
    rows = ledger.get_rows(engine, list(ids.values()))
    assert len(rows) == 4 * len(ORGS) and {r.status for r in rows.values()} == {"succeeded"}
