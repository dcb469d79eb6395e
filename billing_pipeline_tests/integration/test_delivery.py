"""Delivery against real local servers: PostgreSQL, S3 (SeaweedFS), Stripe-compatible, SMTP.

One month is delivered, crashed in the middle (after a side effect, before the ledger
commit), re-executed with faults injected and a channel down, and re-executed again after
Stripe forgot its idempotency keys: every invoice ends with exactly one S3 object, one
Stripe invoice, one e-mail (by Message-ID at the SMTP server) and one ledger row per channel.
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import uuid

import dagster as dg
import pytest
from sqlalchemy import delete, select

from billing_pipeline.clients.payments import StripeGateway
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import delivery_views, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_deliveries, invoices
from billing_pipeline.definitions import build_definitions, delivery_resources
from billing_pipeline.defs.delivery import run_delivery
from billing_pipeline.defs.partitions import billing_partitions
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.launch import sync_organization_partitions
from billing_pipeline.services import invoicing
from billing_pipeline.services.delivery import (
    DeliveryOptions,
    InvoiceDeliveryService,
    RetryPolicy,
    seller_from_settings,
)
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, org, setup_database, store_unchecked_organizations, subscribe
from billing_pipeline_tests.support.settings import real_servers_env

pytestmark = pytest.mark.integration

MONTHLY = BillingInterval.MONTHLY
PERIOD = "2026-10-01"
EVIL_NAME = '<img src="file:///etc/passwd">'
CRLF_NAME = "Crlf Corp\r\nBcc: victim@evil.test\r\nX-Injected: yes"
ORGS = ("alpha", "beta", "crlf", "evil", "zed")


class Crash(BaseException):
    """The process dies here (nothing catches a BaseException that is not an Exception)."""


@pytest.fixture
def world(billing_db_url, s3_server, stripe_server, smtp_server, tmp_path, monkeypatch):
    bucket = s3_server.create_bucket(f"invoices-{uuid.uuid4().hex[:8]}")
    env = {
        **real_servers_env(
            billing_url=billing_db_url,
            billing_home=str(tmp_path),
            bucket=bucket,
            s3=s3_server,
            stripe=stripe_server,
            smtp=smtp_server,
        ),
        "PRESIGNED_URL_EXPIRY_SECONDS": "3600",
        "EMAIL_FROM": "billing@seller.test",
        "DELIVERY_IO_WORKERS": "0",  # the faults below are scripted in order
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings.from_env(env)
    setup_database(billing_db_url)
    engine = get_engine(billing_db_url)
    orgs = [org(o) for o in ORGS]
    orgs[2] = type(orgs[2])(**{**orgs[2].__dict__, "name": CRLF_NAME})
    orgs[3] = type(orgs[3])(**{**orgs[3].__dict__, "name": EVIL_NAME})
    reference.upsert_organizations(engine, [orgs[i] for i in (0, 1, 3, 4)])
    store_unchecked_organizations(billing_db_url, orgs[2:3])  # upsert_organizations refuses the CRLF name
    for o in ORGS:
        subscribe(billing_db_url, o, "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    period = period_from_key(MONTHLY, PERIOD)
    invoicing.draft_batch(engine, period, list(ORGS), dry_run=False)
    invoicing.finalize_batch(
        engine, period, list(ORGS), prefix="INV", now=dt.datetime(2026, 11, 1, tzinfo=UTC), dry_run=False
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    sync_organization_partitions(instance, engine)
    return settings, engine, defs, instance, bucket


def service(settings, engine, io_workers=0, **patches) -> InvoiceDeliveryService:
    res = {k: r.process_config_and_initialize() for k, r in delivery_resources(settings).items()}
    store, gw, mail = res["document_store"], res["payment_gateway"], res["mailer"]
    return InvoiceDeliveryService(
        engine,
        seller=seller_from_settings(settings.seller),
        options=DeliveryOptions.from_settings(
            settings, io_workers=io_workers, retry=RetryPolicy(max_attempts=3, base_delay=0.05)
        ),
        store=store.store(),
        gateway=patches.get("gateway") or gw.gateway(),
        mailer=patches.get("mailer") or mail.mailer(),
        secrets=[*store.secrets(), *gw.secrets(), *mail.secrets()],
    )


def deliver(svc: InvoiceDeliveryService, ids: list[int]) -> list:
    """The channels in the order of the delivery job's ops (here without Dagster, to inject crashes)."""
    for step in (svc.render_pdfs, svc.store_pdfs, svc.sync_payments, svc.send_emails):
        step(ids)
    return svc.report(ids)


def invoice_ids(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r.org_id: r.id for r in conn.execute(select(invoices.c.org_id, invoices.c.id))}


def statuses(instance) -> dict[str, str | None]:
    pdef = billing_partitions(MONTHLY, dt.date(2026, 1, 1))
    got = instance.get_status_by_partition(
        dg.AssetKey("monthly_invoice_deliveries"), [f"{PERIOD}|{o}" for o in ORGS], pdef
    )
    return {k.split("|")[1]: (v.value if v else None) for k, v in got.items()}


def event_log_text(instance) -> str:
    parts = []
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id):
            parts.append(repr(record))
    return "\n".join(parts)


def test_exactly_once_across_crashes_faults_and_reruns(world, s3_server, stripe_server, smtp_server):
    settings, engine, defs, instance, bucket = world
    ids = invoice_ids(engine)

    # 1. beta's Stripe invoice is created, then the process dies before the ledger commit.
    class CrashingGateway(StripeGateway):
        def sync_invoice(self, invoice, org, **kw):
            result = super().sync_invoice(invoice, org, **kw)
            if org.id == "beta":
                raise Crash()
            return result

    real_gw = delivery_resources(settings)["payment_gateway"].process_config_and_initialize().gateway()
    with pytest.raises(Crash):
        deliver(service(settings, engine, gateway=CrashingGateway(real_gw.client)), [ids["alpha"], ids["beta"]])
    assert ledger.get_rows(engine, [ids["beta"]])[(ids["beta"], "stripe")].status == "pending"

    # 2. beta again: Stripe finds the invoice by metadata; this time the SMTP server accepts
    #    the e-mail and the process dies before the ledger commit (the ambiguous window).
    real_mailer = delivery_resources(settings)["mailer"].process_config_and_initialize().mailer()

    class CrashingMailer:
        def send(self, msg):
            real_mailer.send(msg)
            raise Crash()

    with pytest.raises(Crash):
        deliver(service(settings, engine, mailer=CrashingMailer()), [ids["beta"]])
    assert stripe_server.count("invoices") == 2
    beta_email = ledger.get_rows(engine, [ids["beta"]])[(ids["beta"], "email")]
    assert beta_email.status == "pending" and beta_email.external_id

    # 3. The month through Dagster, with a transient Stripe fault (retried) and a permanent
    #    SMTP rejection for the next e-mail (alpha's: step 1 stopped in the Stripe op, before any
    #    e-mail). beta's e-mail is reported, not resent.
    stripe_server.fail_next(2, 503, "/v1/")
    smtp_server.fail_next(1, code=550)
    [outcome] = run_delivery(defs, instance, MONTHLY, PERIOD)
    assert not outcome.success
    assert statuses(instance) == {
        "alpha": "FAILED",
        "beta": "FAILED",
        "crlf": "MATERIALIZED",
        "evil": "MATERIALIZED",
        "zed": "MATERIALIZED",
    }
    rows = ledger.get_rows(engine, list(ids.values()))
    assert rows[(ids["beta"], "email")].status == "ambiguous"
    assert "ambiguous" in rows[(ids["beta"], "email")].last_error
    assert rows[(ids["alpha"], "email")].status == "failed" and rows[(ids["alpha"], "email")].attempts == 1

    # 4. The operator finds beta's Message-ID in the mail server log and marks it delivered.
    received = [str(m.message["Message-ID"]) for m in smtp_server.messages]
    assert beta_email.external_id in received
    assert delivery_views.resolve_ambiguous(engine, ids["beta"], "email", sent=True) == beta_email.external_id

    # 5. Stripe is down: nothing left needs it, so the re-run completes alpha's e-mail.
    stripe_server.down()
    try:
        outcomes = run_delivery(defs, instance, MONTHLY, PERIOD)
    finally:
        stripe_server.up()
    assert all(o.success for o in outcomes)
    assert set(statuses(instance).values()) == {"MATERIALIZED"}

    # 6. Stripe forgot its idempotency keys (24 h) and the ledger lost alpha's Stripe row:
    #    the lookup by invoice number still prevents a duplicate.
    stripe_server.expire_idempotency_keys()
    with engine.begin() as conn:
        conn.execute(
            delete(invoice_deliveries).where(
                invoice_deliveries.c.invoice_id == ids["alpha"], invoice_deliveries.c.channel == "stripe"
            )
        )
    assert all(o.success for o in run_delivery(defs, instance, MONTHLY, PERIOD))

    # Exactly once, everywhere.
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 5 and all(k.endswith(".pdf") for k in keys)
    stripe_invoices = stripe_server.objects("invoices")
    assert len(stripe_invoices) == 5
    assert collections.Counter(i["metadata"]["invoice_id"] for i in stripe_invoices).most_common(1)[0][1] == 1
    assert all(i["status"] == "open" for i in stripe_invoices)
    mids = collections.Counter(str(m.message["Message-ID"]) for m in smtp_server.messages)
    assert len(mids) == 5 and set(mids.values()) == {1}
    rows = ledger.get_rows(engine, list(ids.values()))
    assert len(rows) == 20 and {r.status for r in rows.values()} == {"succeeded"}

    # Hostile organization names: plain text in the PDF, no extra e-mail headers.
    from pypdf import PdfReader

    evil_key = next(k for k in keys if "/evil/" in k)
    text = PdfReader(io.BytesIO(s3.get_object(Bucket=bucket, Key=evil_key)["Body"].read())).pages[0].extract_text()
    assert EVIL_NAME in text and "root:" not in text
    crlf_msg = next(m for m in smtp_server.messages if "crlf" in " ".join(m.rcpt_tos))
    assert crlf_msg.rcpt_tos == ["billing@crlf.test"]
    assert crlf_msg.message["Bcc"] is None and crlf_msg.message["X-Injected"] is None
    assert "\n" not in str(crlf_msg.message["To"])
    # The e-mail links a presigned URL for the stored PDF and attaches it.
    body = crlf_msg.message.get_body(("plain",)).get_content()
    assert "X-Amz-Signature=" in body and "X-Amz-Expires=3600" in body
    assert [p.get_content_type() for p in crlf_msg.message.iter_attachments()] == ["application/pdf"]

    # Secrets never reach the event log or the ledger.
    log_text = event_log_text(instance)
    assert "monthly_invoice_deliveries" in log_text
    for secret in (smtp_server.password, stripe_server.api_key, s3_server.secret_key):
        assert secret not in log_text
        assert all(secret not in (r.last_error or "") for r in rows.values())


def test_io_threads_deliver_exactly_once_against_the_servers(world, s3_server, stripe_server, smtp_server):
    """The threaded path (one SMTP session per thread, fresh-create shortcuts in the gateway)."""
    settings, engine, defs, instance, bucket = world
    ids = invoice_ids(engine)
    sent_before = len(smtp_server.messages)
    results = deliver(service(settings, engine, io_workers=3), sorted(ids.values()))
    assert all(r.ok for r in results), [r.failure for r in results]
    new = [str(m.message["Message-ID"]) for m in smtp_server.messages[sent_before:]]
    assert len(new) == len(ids) and len(set(new)) == len(ids)
    numbers = {r.number for r in results}
    per_number = collections.Counter(
        (i.get("metadata") or {}).get("invoice_id")
        for i in stripe_server.objects("invoices")
        if i.get("status") not in ("void",)
    )
    assert all(per_number[n] == 1 for n in numbers)
    rows = ledger.get_rows(engine, list(ids.values()))
    assert len(rows) == 4 * len(ids) and {r.status for r in rows.values()} == {"succeeded"}

    assert all(r.ok for r in deliver(service(settings, engine, io_workers=3), sorted(ids.values())))
    assert len(smtp_server.messages) == sent_before + len(ids)
