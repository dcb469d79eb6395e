"""The default zero-total policy against the real local servers (PostgreSQL, S3, Stripe-compatible,
SMTP): the monthly invoices job, then the delivery job as ``deliver`` runs it, twice each.

A zero invoice is numbered and ``paid``; the Stripe-compatible server never hears of it (no
customer, no invoice, no request naming it); its e-mail goes out once, saying nothing to pay.
The organization on auto-pay with a non-zero total is told it will be charged automatically.
"""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import pytest
from sqlalchemy import select

from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoices
from billing_pipeline.definitions import INVOICE_JOBS, build_definitions
from billing_pipeline.defs.delivery import run_delivery
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import run_period, sync_organization_partitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe
from billing_pipeline_tests.support.settings import real_servers_env

pytestmark = pytest.mark.integration

MONTHLY = BillingInterval.MONTHLY
PERIOD = "2026-10-01"  # ended, and past its grace window, whatever today is from now on


def test_zero_invoice_is_paid_e_mailed_once_and_never_reaches_stripe(
    billing_db_url, s3_server, stripe_server, smtp_server, tmp_path, monkeypatch
):
    bucket = s3_server.create_bucket(f"invoices-{uuid.uuid4().hex[:8]}")
    env = real_servers_env(
        billing_url=billing_db_url,
        billing_home=tmp_path,
        bucket=bucket,
        s3=s3_server,
        stripe=stripe_server,
        smtp=smtp_server,
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # secrets are read through EnvVar when a run starts
    settings = Settings.from_env(env)
    setup_database(billing_db_url)
    engine = get_engine(billing_db_url)
    reference.upsert_organizations(engine, [org("alpha", auto_pay=True), org("free", currency="JPY", auto_pay=True)])
    subscribe(billing_db_url, "alpha", "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    subscribe(billing_db_url, "free", "hosting_jpy", dt.datetime(2026, 10, 1, tzinfo=UTC))  # no usage: 0 JPY
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    sync_organization_partitions(instance, engine)

    for _ in range(2):
        assert all(o.success for o in run_period(defs, instance, INVOICE_JOBS[MONTHLY], PERIOD))
        assert all(o.success for o in run_delivery(defs, instance, MONTHLY, PERIOD))

    with engine.connect() as conn:
        rows = {r.org_id: r for r in conn.execute(select(invoices))}
    assert (rows["free"].status, rows["free"].total_minor) == ("paid", 0) and rows["free"].number
    assert (rows["alpha"].status, rows["alpha"].total_minor) == ("finalized", 3000)
    stripe_invoices = stripe_server.objects("invoices")
    assert [i["metadata"]["invoice_id"] for i in stripe_invoices] == [rows["alpha"].number]
    assert stripe_server.count("customers") == 1
    assert not [r for r in stripe_server.requests if rows["free"].number in (r.idempotency_key or "")]
    ledger_rows = ledger.get_rows(engine, [rows["free"].id])
    assert {c: r.status for (_, c), r in ledger_rows.items()} == {
        "pdf": "succeeded",
        "s3": "succeeded",
        "stripe": "skipped",
        "email": "succeeded",
    }
    assert ledger_rows[(rows["free"].id, "stripe")].external_id is None

    by_recipient: dict[str, list] = {}
    for m in smtp_server.messages:
        by_recipient.setdefault(m.rcpt_tos[0], []).append(m.message)
    assert sorted((k, len(v)) for k, v in by_recipient.items()) == [("billing@alpha.test", 1), ("billing@free.test", 1)]
    free_text = by_recipient["billing@free.test"][0].get_body(preferencelist=("plain",)).get_content()
    assert "Nothing to pay: the total of this invoice is 0 JPY and is marked paid." in free_text
    assert "automatically" not in free_text
    alpha_text = by_recipient["billing@alpha.test"][0].get_body(preferencelist=("plain",)).get_content()
    due = rows["alpha"].due_at.date().isoformat()
    assert f"will be charged automatically to the payment method on file on {due}" in alpha_text
    assert "Payment instructions" not in alpha_text
