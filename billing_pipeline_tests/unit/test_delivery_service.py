"""The delivery service with fakes for the store, gateway and mailer (SQLite ledger, no Dagster)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib

import pytest
from sqlalchemy import select

from billing_pipeline.clients.documents import DocumentConflict, StoredDocument
from billing_pipeline.clients.errors import (
    DocumentNotFound,
    PermanentGatewayError,
    TransientGatewayError,
    TransientMailError,
)
from billing_pipeline.clients.mailer import SentMail
from billing_pipeline.clients.payments import GatewayInvoice
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_deliveries
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.money import to_minor
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services import invoicing
from billing_pipeline.services.delivery import (
    ChannelStatus,
    DeliveryOptions,
    InvoiceDeliveryService,
    RetryPolicy,
    summarize,
)
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe

SECRET = "sk_test_SUPERSECRET123"
SELLER = Seller("Seller Ltd", ("1 Road",), None, "billing@seller.test", "Pay by transfer.")
ORGS = ("alpha", "beta", "gamma")


def fake_render(invoice, org, seller) -> bytes:
    return f"%PDF-fake {invoice.number} {org.name}".encode()


class Crash(BaseException):
    """Stands in for the process being killed (not an Exception: nothing may catch it)."""


class FakeStore:
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put(self, key, data, content_type):
        self.puts += 1
        sha = hashlib.sha256(data).hexdigest()
        if key in self.objects:
            old = hashlib.sha256(self.objects[key]).hexdigest()
            if old != sha:
                raise DocumentConflict(key, old, sha)
            return StoredDocument(key, sha, len(data), f"mem://{key}", created=False)
        self.objects[key] = data
        return StoredDocument(key, sha, len(data), f"mem://{key}", created=True)

    def exists(self, key):
        return key in self.objects

    def get(self, key):
        if key not in self.objects:
            raise DocumentNotFound(f"no document {key!r}", code="not_found")
        return self.objects[key]

    def presigned_url(self, key, expires_in):
        return f"https://files.test/{key}?X-Amz-Expires={expires_in}&X-Amz-Signature=abc"


class FakeGateway:
    """Idempotent by invoice number, like StripeGateway's lookup-before-create."""

    def __init__(self):
        self.invoices: dict[str, GatewayInvoice] = {}
        self.calls = 0
        self.script: list = []  # exceptions to raise (in order) before doing anything
        self.crash_after = False
        self.total_offset = 0

    def sync_invoice(self, invoice, org, *, idempotency_prefix):
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        if invoice.number not in self.invoices:
            self.invoices[invoice.number] = GatewayInvoice(
                f"in_{invoice.number}",
                invoice.number,
                "open",
                to_minor(invoice.total, invoice.currency) + self.total_offset,
                invoice.currency,
                None,
            )
        if self.crash_after:
            self.crash_after = False
            raise Crash()
        return self.invoices[invoice.number]


class FakeMailer:
    def __init__(self):
        self.sent: list = []
        self.script: list = []
        self.crash_after = False

    def send(self, msg):
        if self.script:
            raise self.script.pop(0)
        self.sent.append(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
        if self.crash_after:
            self.crash_after = False
            raise Crash()
        return SentMail(str(msg["Message-ID"]), created=True)


SPOOL: list = [None]


@pytest.fixture
def db(tmp_path):
    SPOOL[0] = tmp_path / "rendered"
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    setup_database(url)
    engine = get_engine(url)
    oct1 = dt.datetime(2026, 10, 1, tzinfo=UTC)
    reference.upsert_organizations(engine, [org(o) for o in ORGS])
    for o in ORGS:
        subscribe(url, o, "starter", oct1)
    period = period_from_key(BillingInterval.MONTHLY, "2026-10-01")
    invoicing.draft_batch(engine, period, list(ORGS), dry_run=False)
    batch = invoicing.finalize_batch(
        engine, period, list(ORGS), prefix="INV", now=dt.datetime(2026, 11, 1, tzinfo=UTC), dry_run=False
    )
    ids = [r.invoice_id for r in batch.results]
    assert all(ids)
    return engine, ids


@pytest.fixture
def fakes():
    return FakeStore(), FakeGateway(), FakeMailer()


def make(engine, fakes, sleeps=None, **options):
    store, gateway, mailer = fakes
    opts = DeliveryOptions(
        retry=RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.5),
        spool_dir=SPOOL[0],
        email_from="billing@seller.test",
        **options,
    )
    return InvoiceDeliveryService(
        engine,
        seller=SELLER,
        options=opts,
        store=store,
        gateway=gateway,
        mailer=mailer,
        secrets=[SECRET],
        render=fake_render,
        sleep=(sleeps.append if sleeps is not None else (lambda s: None)),
        rand=lambda: 1.0,
    )


class Delivered:
    """The channels in the order the Dagster job's ops run them, each over the whole batch."""

    def __init__(self, svc, ids):
        reports = [svc.render_pdfs(ids), svc.store_pdfs(ids), svc.sync_payments(ids), svc.send_emails(ids)]
        self.dry_run = svc.dry_run
        self.results = svc.report(ids)
        for r in self.results:  # what this run did (the ledger alone cannot tell "already done")
            for report in reports:
                if r.invoice_id in report.results:
                    r.channels[report.channel] = report.results[r.invoice_id]

    def summary(self):
        return summarize(self.results, dry_run=self.dry_run)


def deliver(svc, ids) -> Delivered:
    return Delivered(svc, ids)


def rows(engine):
    with engine.connect() as conn:
        return {(r.invoice_id, r.channel): r for r in conn.execute(select(invoice_deliveries))}


def test_delivers_every_channel_once_and_reruns_are_no_ops(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    batch = deliver(make(engine, fakes), ids)
    summary = batch.summary()
    assert summary.delivered == 3 and summary.failed == 0
    assert summary.errors_by_channel == {"pdf": 0, "s3": 0, "stripe": 0, "email": 0}
    assert set(summary.revenue_by_currency) == {"USD"}
    assert len(store.objects) == 3 and len(gateway.invoices) == 3 and len(mailer.sent) == 3
    msg = mailer.sent[0]
    assert "files.test" in msg.get_body(("plain",)).get_content()  # presigned link
    assert [p.get_content_type() for p in msg.iter_attachments()] == ["application/pdf"]
    ledger = rows(engine)
    assert len(ledger) == 12 and {r.status for r in ledger.values()} == {"succeeded"}
    assert all(r.attempts == 1 for r in ledger.values())

    again = deliver(make(engine, fakes), ids)
    assert {cr.status for r in again.results for cr in r.channels.values()} == {ChannelStatus.ALREADY_DONE}
    assert gateway.calls == 3 and len(mailer.sent) == 3 and store.puts == 3
    assert rows(engine) == ledger


def test_crash_after_side_effect_before_commit_does_not_duplicate(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    gateway.crash_after = True
    with pytest.raises(Crash):
        deliver(make(engine, fakes), ids[:1])
    assert rows(engine)[(ids[0], "stripe")].status == "pending"
    deliver(make(engine, fakes), ids[:1])
    assert len(gateway.invoices) == 1  # found by number, not created again
    assert rows(engine)[(ids[0], "stripe")].status == "succeeded"
    assert rows(engine)[(ids[0], "stripe")].attempts == 2


def test_email_crash_in_the_ambiguous_window_is_not_resent_by_default(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.crash_after = True
    with pytest.raises(Crash):
        deliver(make(engine, fakes), ids[:1])
    row = rows(engine)[(ids[0], "email")]
    assert row.status == "pending" and row.external_id.startswith("<invoice-INV-")
    for _ in range(3):  # every later run leaves it alone, not just the next one
        result = deliver(make(engine, fakes), ids[:1]).results[0]
        assert result.channels["email"].status is ChannelStatus.AMBIGUOUS and not result.ok
        assert "ambiguous" in result.failure and row.external_id in result.failure
        assert rows(engine)[(ids[0], "email")].status == "ambiguous"
    assert len(mailer.sent) == 1
    # The operator checked the mail log and chose to resend: same Message-ID.
    deliver(make(engine, fakes, resend_ambiguous_email=True), ids[:1])
    assert len(mailer.sent) == 2 and mailer.sent[0]["Message-ID"] == mailer.sent[1]["Message-ID"]
    assert rows(engine)[(ids[0], "email")].status == "succeeded"


def test_transient_errors_retry_with_backoff_permanent_ones_do_not(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    sleeps: list[float] = []
    gateway.script = [TransientGatewayError("HTTP 503", status=503), TransientGatewayError("HTTP 429", status=429)]
    batch = deliver(make(engine, fakes, sleeps), ids[:1])
    assert batch.results[0].ok
    assert sleeps == [1.5, 3.0]  # base 1 s doubling, jitter factor 1.5 (rand=1.0)
    assert rows(engine)[(ids[0], "stripe")].attempts == 3

    sleeps.clear()
    gateway.script = [PermanentGatewayError("card declined", code="card_declined")]
    result = deliver(make(engine, fakes, sleeps), ids[1:2]).results[0]
    assert result.channels["stripe"].status is ChannelStatus.FAILED and result.channels["stripe"].attempts == 1
    assert result.channels["email"].status is ChannelStatus.BLOCKED
    assert sleeps == []
    row = rows(engine)[(ids[1], "stripe")]
    assert row.status == "failed" and "card declined" in row.last_error

    mailer.script = [TransientMailError("451 try later")] * 3
    result = deliver(make(engine, fakes, sleeps), ids[2:3]).results[0]
    assert result.channels["email"].status is ChannelStatus.FAILED and result.channels["email"].attempts == 3
    assert len(sleeps) == 2


def test_retry_delays_are_bounded():
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=4.0, jitter=0.5)
    assert policy.delay(1, 0.0) == 0.25 and policy.delay(1, 1.0) == 0.75
    assert all(policy.delay(n, 1.0) <= 4.0 for n in range(1, 20))


def test_one_invoice_failing_never_stops_the_others(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    gateway.script = [PermanentGatewayError("bad request")]
    batch = deliver(make(engine, fakes), ids)
    assert [r.ok for r in batch.results] == [False, True, True]
    summary = batch.summary()
    assert summary.errors_by_channel["stripe"] == 1 and list(summary.failed_orgs) == ["alpha"]
    assert len(mailer.sent) == 2


def test_total_mismatch_stops_that_invoice(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    gateway.total_offset = 1
    result = deliver(make(engine, fakes), ids[:1]).results[0]
    assert result.channels["stripe"].status is ChannelStatus.FAILED
    assert "total" in result.failure and result.channels["email"].status is ChannelStatus.BLOCKED
    assert mailer.sent == []


def test_toggles(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    deliver(make(engine, fakes, s3=False, stripe=False), ids[:1])
    assert store.objects == {} and gateway.calls == 0 and len(mailer.sent) == 1
    assert "files.test" not in mailer.sent[0].get_body(("plain",)).get_content()
    assert {c for (_, c) in rows(engine)} == {"pdf", "email"}
    # enabling S3 later delivers just that channel
    deliver(make(engine, fakes), ids[:1])
    assert len(store.objects) == 1 and len(mailer.sent) == 1 and gateway.calls == 1
    with pytest.raises(ValueError):
        InvoiceDeliveryService(engine, seller=SELLER, options=DeliveryOptions(), store=None)


def test_dry_run_renders_and_validates_but_sends_and_writes_nothing(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    batch = deliver(make(engine, fakes, dry_run=True), ids)
    assert all(r.ok for r in batch.results)
    assert {cr.status for r in batch.results for cr in r.channels.values()} == {ChannelStatus.DRY_RUN}
    assert rows(engine) == {} and store.objects == {} and gateway.calls == 0 and mailer.sent == []


def test_secrets_are_redacted_everywhere(db, fakes, caplog):
    engine, ids = db
    store, gateway, mailer = fakes
    gateway.script = [PermanentGatewayError(f"auth failed for key {SECRET} (Bearer {SECRET})")]
    result = deliver(make(engine, fakes), ids[:1]).results[0]
    assert SECRET not in result.failure and "[redacted]" in result.failure
    assert SECRET not in rows(engine)[(ids[0], "stripe")].last_error
    assert SECRET not in caplog.text


def test_stored_pdf_is_reused_when_only_email_is_missing(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    deliver(make(engine, fakes, email=False), ids[:1])
    renders = []

    def counting_render(*args):
        renders.append(1)
        return fake_render(*args)

    svc = make(engine, fakes)
    svc.render = counting_render
    deliver(svc, ids[:1])
    assert renders == [] and len(mailer.sent) == 1
    att = next(mailer.sent[0].iter_attachments()).get_content()
    assert att == next(iter(store.objects.values()))


def test_io_threads_deliver_every_channel_once(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    batch = deliver(make(engine, fakes, io_workers=3), ids)
    assert batch.summary().delivered == 3 and [r.invoice_id for r in batch.results] == ids
    assert len(store.objects) == 3 and len(gateway.invoices) == 3 and len(mailer.sent) == 3
    ledger = rows(engine)
    assert len(ledger) == 12 and {r.status for r in ledger.values()} == {"succeeded"}
    assert all(r.attempts == 1 for r in ledger.values())
    again = deliver(make(engine, fakes, io_workers=3), ids)
    assert {cr.status for r in again.results for cr in r.channels.values()} == {ChannelStatus.ALREADY_DONE}
    assert gateway.calls == 3 and len(mailer.sent) == 3 and store.puts == 3


def test_a_crash_in_an_io_thread_stops_the_run(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    gateway.crash_after = True
    with pytest.raises(Crash):
        deliver(make(engine, fakes, io_workers=2), ids)
    stripe_rows = [r for (_, c), r in rows(engine).items() if c == "stripe"]
    assert "pending" in {r.status for r in stripe_rows}
    batch = deliver(make(engine, fakes, io_workers=2), ids)
    assert batch.summary().delivered == 3 and len(gateway.invoices) == 3 and len(mailer.sent) == 3


def test_previous_channel_success_is_committed_before_the_next_side_effect(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    gateway.script = [Crash()]  # dies inside the Stripe call, after its claim
    with pytest.raises(Crash):
        deliver(make(engine, fakes), ids[:1])
    ledger = rows(engine)
    assert ledger[(ids[0], "pdf")].status == "succeeded" and ledger[(ids[0], "s3")].status == "succeeded"
    assert ledger[(ids[0], "s3")].checksum == hashlib.sha256(next(iter(store.objects.values()))).hexdigest()
    assert ledger[(ids[0], "stripe")].status == "pending" and (ids[0], "email") not in ledger


def test_each_step_reads_the_ledger_so_a_re_executed_step_is_exact(db, fakes):
    """A step run again on its own (Dagster re-execution from failure) sees what the others recorded."""
    engine, ids = db
    store, gateway, mailer = fakes
    svc = make(engine, fakes, io_workers=2)
    svc.render_pdfs(ids)
    svc.store_pdfs(ids)
    gateway.script = [TransientGatewayError("down")] * 9  # the stripe step fails for every invoice
    svc.sync_payments(ids)
    assert {r.status.value for r in svc.send_emails(ids).results.values()} == {"blocked"}
    again = make(engine, fakes, io_workers=2)
    assert {r.status.value for r in again.store_pdfs(ids).results.values()} == {"already_done"}
    assert {r.status.value for r in again.sync_payments(ids).results.values()} == {"succeeded"}
    assert {r.status.value for r in again.send_emails(ids).results.values()} == {"succeeded"}
    assert all(r.ok for r in again.report(ids)) and len(mailer.sent) == 3 and store.puts == 3
    assert {r.status for r in rows(engine).values()} == {"succeeded"}
