"""Prove that each local test server behaves like the real thing where our code depends on it."""

from __future__ import annotations

import base64
import hashlib
import smtplib
import time
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage

import pytest

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- PostgreSQL
def test_postgres_select_1(billing_db_url, postgres_server):
    import sqlalchemy as sa

    assert billing_db_url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/")
    engine = sa.create_engine(billing_db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.execute(sa.text("show fsync")).scalar() == "off"
            assert conn.execute(sa.text("show max_connections")).scalar() == "200"
            assert str(conn.execute(sa.text("select inet_server_addr()")).scalar()) == "127.0.0.1"
    finally:
        engine.dispose()


def test_postgres_databases_are_fresh(postgres_server):
    import sqlalchemy as sa

    a, b = postgres_server.create_database(), postgres_server.create_database()
    assert a != b
    engine = sa.create_engine(a)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("create table t (x int)"))
    finally:
        engine.dispose()
    engine = sa.create_engine(b)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select to_regclass('t')")).scalar() is None
    finally:
        engine.dispose()


def test_postgres_missing_binaries_names_apt_package():
    from billing_pipeline_tests.support.postgres import PostgresNotInstalled, PostgresServer

    with pytest.raises(PostgresNotInstalled, match="apt-get install -y postgresql-15"):
        PostgresServer(bindir="/nonexistent/pg/bin")


# --------------------------------------------------------------------------- S3
@pytest.fixture
def bucket(s3_server):
    return s3_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")


def test_s3_put_head_with_checksums(s3_server, bucket):
    c = s3_server.client()
    body = b"%PDF-1.4 fake invoice"
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    c.put_object(
        Bucket=bucket,
        Key="2026-10/org0001.pdf",
        Body=body,
        ContentType="application/pdf",
        ChecksumSHA256=sha,
        ContentMD5=md5,
        Metadata={"invoice-id": "inv-1"},
    )
    head = c.head_object(Bucket=bucket, Key="2026-10/org0001.pdf", ChecksumMode="ENABLED")
    assert head["ContentType"] == "application/pdf"
    assert head["ContentLength"] == len(body)
    assert head["Metadata"] == {"invoice-id": "inv-1"}
    assert head.get("ChecksumSHA256") == sha
    # a wrong checksum is refused
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as ei:
        c.put_object(
            Bucket=bucket,
            Key="bad.pdf",
            Body=body,
            ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode(),
        )
    assert ei.value.response["Error"]["Code"] == "BadDigest"


def test_s3_document_store_is_write_once_by_conditional_put(s3_server, bucket):
    from billing_pipeline.clients.documents import DocumentConflict, S3DocumentStore

    store = S3DocumentStore(s3_server.client(), bucket)
    assert store.put("invoices/a.pdf", b"%PDF-1", "application/pdf").created
    assert not store.put("invoices/a.pdf", b"%PDF-1", "application/pdf").created
    with pytest.raises(DocumentConflict):
        store.put("invoices/a.pdf", b"%PDF-2", "application/pdf")
    assert store.get("invoices/a.pdf") == b"%PDF-1"  # the first write stays


def test_s3_presigned_url_and_expiry(s3_server, bucket):
    c = s3_server.client()
    c.put_object(Bucket=bucket, Key="a.txt", Body=b"hello", ContentType="text/plain")
    url = c.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a.txt"}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == b"hello"
    # tampered signature
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=5)
    assert ei.value.code == 403
    # expired
    short = c.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a.txt"}, ExpiresIn=1)
    time.sleep(2.2)
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(short, timeout=5)
    assert ei.value.code == 403
    assert b"expired" in ei.value.read().lower()
    # anonymous
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"{s3_server.endpoint_url}/{bucket}/a.txt", timeout=5)
    assert ei.value.code == 403


def test_s3_wrong_secret_refused(s3_server, bucket):
    from botocore.exceptions import ClientError

    bad = s3_server.client(aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as ei:
        bad.put_object(Bucket=bucket, Key="x", Body=b"1")
    assert ei.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as ei:
        bad.head_object(Bucket=bucket, Key="x")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# --------------------------------------------------------------------------- Stripe
def test_stripe_customer_create_and_search(stripe_client):
    cus = stripe_client.v1.customers.create(
        params={"email": "billing@acme.test", "name": "Acme", "metadata": {"org_id": "org0001"}}
    )
    assert cus.id.startswith("cus_") and cus.object == "customer" and cus.livemode is False
    assert cus.metadata["org_id"] == "org0001"
    stripe_client.v1.customers.create(params={"email": "other@x.test", "metadata": {"org_id": "org0002"}})
    found = stripe_client.v1.customers.search(params={"query": "metadata['org_id']:'org0001'"})
    assert found.object == "search_result"
    assert [c.id for c in found.data] == [cus.id]
    found = stripe_client.v1.customers.search(params={"query": "email:'billing@acme.test'"})
    assert [c.id for c in found.data] == [cus.id]
    listed = stripe_client.v1.customers.list(params={"email": "billing@acme.test"})
    assert listed.object == "list" and [c.id for c in listed.data] == [cus.id] and listed.has_more is False


def test_stripe_invoice_flow(stripe_client, stripe_server):
    c = stripe_client
    cus = c.v1.customers.create(params={"email": "a@b.test"})
    inv = c.v1.invoices.create(
        params={
            "customer": cus.id,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "currency": "usd",
            "metadata": {"invoice_id": "2026-10|org0001"},
        }
    )
    assert inv.id.startswith("in_") and inv.status == "draft" and inv.number is None
    i1 = c.v1.invoice_items.create(
        params={
            "customer": cus.id,
            "invoice": inv.id,
            "currency": "usd",
            "amount": 1999,
            "description": "Base fee",
            "metadata": {"invoice_id": "2026-10|org0001"},
        }
    )
    i2 = c.v1.invoice_items.create(
        params={
            "customer": cus.id,
            "invoice": inv.id,
            "currency": "usd",
            "quantity": 3,
            "unit_amount_decimal": "0.5",
            "description": "API calls",
        }
    )
    assert i1.id.startswith("ii_") and i2.amount == 2  # 1.5 rounded half up
    fin = c.v1.invoices.finalize_invoice(inv.id)
    assert fin.status == "open"
    assert fin.number == f"{cus.invoice_prefix}-0001"
    assert fin.total == fin.subtotal == fin.amount_due == 2001
    assert [line.amount for line in fin.lines.data] == [1999, 2]
    import stripe

    with pytest.raises(stripe.InvalidRequestError) as ei:
        c.v1.invoices.finalize_invoice(inv.id)
    assert ei.value.http_status == 400
    found = c.v1.invoices.search(params={"query": "metadata['invoice_id']:'2026-10|org0001'"})
    assert [i.id for i in found.data] == [inv.id]
    items = c.v1.invoice_items.list(params={"invoice": inv.id})
    assert {i.id for i in items.data} == {i1.id, i2.id}
    paid = c.v1.invoices.pay(inv.id, params={"paid_out_of_band": True})
    assert paid.status == "paid" and paid.amount_paid == 2001
    assert stripe_server.count("invoices", status="paid") == 1


def test_stripe_add_lines_is_all_or_none(stripe_client, stripe_server):
    import stripe

    c = stripe_client
    cus = c.v1.customers.create(params={"email": "lines@b.test"})
    inv = c.v1.invoices.create(params={"customer": cus.id, "currency": "eur", "auto_advance": False})
    with pytest.raises(stripe.InvalidRequestError) as ei:  # the second line is invalid: none is added
        c.v1.invoices.add_lines(
            inv.id, params={"lines": [{"amount": 100, "description": "ok"}, {"description": "no amount"}]}
        )
    assert ei.value.param == "lines[1][amount]"
    assert c.v1.invoices.retrieve(inv.id).lines.total_count == 0
    done = c.v1.invoices.add_lines(
        inv.id,
        params={
            "lines": [
                {"amount": 1999, "description": "Base fee", "metadata": {"line_index": "0"}},
                {"amount": 1, "description": "Tax", "period": {"start": 1, "end": 2}},
            ]
        },
    )
    assert done.total == 2000 and [line.amount for line in done.lines.data] == [1999, 1]
    assert done.lines.data[0].metadata["line_index"] == "0"
    assert c.v1.invoices.finalize_invoice(inv.id).total == 2000
    with pytest.raises(stripe.InvalidRequestError):  # not a draft any more
        c.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 1}]})


def test_stripe_customer_lookups_follow_updates(stripe_client):
    """List by e-mail and search by metadata use the emulator's indexes: they follow updates."""
    c = stripe_client
    tag = uuid.uuid4().hex[:8]
    cus = c.v1.customers.create(params={"email": f"old-{tag}@b.test", "metadata": {"org_id": f"o-{tag}"}})
    c.v1.customers.update(cus.id, params={"email": f"new-{tag}@b.test", "metadata": {"org_id": f"p-{tag}"}})
    assert c.v1.customers.list(params={"email": f"old-{tag}@b.test"}).data == []
    assert [x.id for x in c.v1.customers.list(params={"email": f"new-{tag}@b.test"}).data] == [cus.id]
    assert c.v1.customers.search(params={"query": f"metadata['org_id']:'o-{tag}'"}).data == []
    found = c.v1.customers.search(params={"query": f"metadata['org_id']:'p-{tag}' AND email:'new-{tag}@b.test'"})
    assert [x.id for x in found.data] == [cus.id]
    c.v1.customers.delete(cus.id)
    assert c.v1.customers.list(params={"email": f"new-{tag}@b.test"}).data == []


def test_stripe_keep_alive_survives_server_side_close(stripe_server):
    """The gateway's HTTP client keeps one connection per thread and reopens it when the
    server closed it while idle: no request fails and none is sent twice."""
    from billing_pipeline.clients.payments import stripe_client

    client = stripe_client(stripe_server.api_key, api_base=stripe_server.api_base)
    before = len(stripe_server.request_log)
    client.raw_request("get", "/v1/customers", limit=1)
    client.raw_request("get", "/v1/customers", limit=1)
    assert len(stripe_server._server._open) >= 1  # kept alive
    stripe_server._server.close_all()
    time.sleep(0.05)
    client.raw_request("post", "/v1/customers", email="after-close@b.test", idempotency_key=uuid.uuid4().hex)
    assert len(stripe_server.request_log) - before == 3
    assert stripe_server.count("customers", email="after-close@b.test") == 1


def test_stripe_pending_items_included_only_on_request(stripe_client):
    c = stripe_client
    cus = c.v1.customers.create(params={})
    c.v1.invoice_items.create(params={"customer": cus.id, "currency": "eur", "amount": 500})
    excluded = c.v1.invoices.create(params={"customer": cus.id})
    assert excluded.lines.data == [] and excluded.total == 0
    included = c.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include"})
    assert included.total == 500 and included.currency == "eur"


def test_stripe_idempotency_replay_and_mismatch(stripe_client, stripe_server):
    import stripe

    key = f"create-customer-{uuid.uuid4()}"
    a = stripe_client.v1.customers.create(params={"email": "x@y.test"}, options={"idempotency_key": key})
    b = stripe_client.v1.customers.create(params={"email": "x@y.test"}, options={"idempotency_key": key})
    assert a.id == b.id
    assert a.last_response.headers.get("Idempotent-Replayed") is None
    assert b.last_response.headers.get("Idempotent-Replayed") == "true"
    assert stripe_server.count("customers") == 1
    with pytest.raises(stripe.IdempotencyError) as ei:
        stripe_client.v1.customers.create(params={"email": "other@y.test"}, options={"idempotency_key": key})
    assert ei.value.http_status == 400
    assert stripe_server.requests[-1] == ("POST", "/v1/customers", key)
    stripe_server.expire_idempotency_keys()
    c = stripe_client.v1.customers.create(params={"email": "x@y.test"}, options={"idempotency_key": key})
    assert c.id != a.id


def test_stripe_lost_response_is_replayed_on_retry(stripe_server):
    """A response lost after the write: the library's retry (same Idempotency-Key) gets the saved result."""
    client = stripe_server.client(max_network_retries=2)
    cus = client.v1.customers.create(params={})
    stripe_server.fail_next(1, 500, "/v1/invoiceitems", after=True)
    item = client.v1.invoice_items.create(params={"customer": cus.id, "currency": "usd", "amount": 7})
    assert item.last_response.headers.get("Idempotent-Replayed") == "true"
    assert stripe_server.count("invoiceitems") == 1
    posts = [r for r in stripe_server.requests if r.path == "/v1/invoiceitems"]
    assert len(posts) == 2 and posts[0].idempotency_key == posts[1].idempotency_key


def test_stripe_card_declined(stripe_client, stripe_server):
    import stripe

    cus = stripe_client.v1.customers.create(
        params={"invoice_settings": {"default_payment_method": "pm_card_chargeDeclined"}}
    )
    stripe_client.v1.invoice_items.create(params={"customer": cus.id, "currency": "usd", "amount": 1000})
    inv = stripe_client.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include"})
    stripe_client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.CardError) as ei:
        stripe_client.v1.invoices.pay(inv.id)
    assert ei.value.http_status == 402
    assert ei.value.code == "card_declined"
    assert ei.value.error.decline_code == "generic_decline"
    after = stripe_client.v1.invoices.retrieve(inv.id)
    assert after.status == "open" and after.attempt_count == 1 and after.amount_paid == 0
    ok = stripe_client.v1.customers.create(params={"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    stripe_client.v1.invoice_items.create(params={"customer": ok.id, "currency": "usd", "amount": 1000})
    inv2 = stripe_client.v1.invoices.create(params={"customer": ok.id, "pending_invoice_items_behavior": "include"})
    stripe_client.v1.invoices.finalize_invoice(inv2.id)
    paid = stripe_client.v1.invoices.pay(inv2.id)
    assert paid.status == "paid" and paid.amount_paid == 1000
    assert paid.payments.data[0].payment.payment_intent.startswith("pi_")


def test_stripe_faults_and_auth(stripe_client, stripe_server):
    import stripe

    stripe_server.fail_next(1, status=500)
    with pytest.raises(stripe.APIError) as ei:
        stripe_client.v1.customers.list()
    assert ei.value.http_status == 500
    stripe_server.fail_next(1, status=429, path_prefix="/v1/invoices")
    stripe_client.v1.customers.list()  # other paths unaffected
    with pytest.raises(stripe.RateLimitError):
        stripe_client.v1.invoices.list()
    stripe_server.down()
    with pytest.raises(stripe.APIError) as ei:
        stripe_client.v1.customers.list()
    assert ei.value.http_status == 503
    stripe_server.down("refuse")
    with pytest.raises(stripe.APIConnectionError):
        stripe_client.v1.customers.list()
    stripe_server.up()
    assert stripe_client.v1.customers.list().data == []
    with pytest.raises(stripe.AuthenticationError) as ei:
        stripe_server.client(api_key="sk_test_wrong").v1.customers.list()
    assert ei.value.http_status == 401
    with pytest.raises(stripe.InvalidRequestError) as ei:
        stripe_client.v1.customers.retrieve("cus_missing")
    assert ei.value.http_status == 404 and ei.value.code == "resource_missing"


def test_stripe_global_module_style(stripe_server):
    import stripe

    restore = stripe_server.configure_stripe_module()
    try:
        cus = stripe.Customer.create(email="g@x.test")
        assert stripe.Customer.retrieve(cus.id).email == "g@x.test"
    finally:
        restore()


# --------------------------------------------------------------------------- SMTP
def _message(to: str = "customer@example.com") -> EmailMessage:
    m = EmailMessage()
    m["From"] = "billing@example.com"
    m["To"] = to
    m["Subject"] = "Your invoice INV-0001"
    m.set_content("Please find your invoice attached.")
    m.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="INV-0001.pdf")
    return m


def test_smtp_starttls_login_delivers(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as c:
        c.starttls(context=smtp_server.client_ssl_context())
        c.login(smtp_server.username, smtp_server.password)
        c.send_message(_message())
    (msg,) = smtp_server.wait_for_messages(1)
    assert msg.mail_from == "billing@example.com" and msg.rcpt_tos == ["customer@example.com"]
    assert msg.subject == "Your invoice INV-0001"
    assert msg.tls and msg.login == smtp_server.username
    attachments = list(msg.message.iter_attachments())
    assert attachments[0].get_filename() == "INV-0001.pdf"


def test_smtp_bad_password_and_no_tls_refused(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as c:
        c.starttls()
        with pytest.raises(smtplib.SMTPAuthenticationError) as ei:
            c.login(smtp_server.username, "wrong")
        assert ei.value.smtp_code == 535
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as c:
        c.ehlo()
        code, _ = c.mail("billing@example.com")
        assert code == 530  # STARTTLS first
    assert smtp_server.messages == []


def test_smtp_transient_failure(smtp_server):
    smtp_server.fail_next(1, code=451)
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as c:
        c.starttls()
        c.login(smtp_server.username, smtp_server.password)
        with pytest.raises(smtplib.SMTPDataError) as ei:
            c.send_message(_message())
        assert ei.value.smtp_code == 451
        assert isinstance(ei.value, smtplib.SMTPResponseException)
        c.send_message(_message())  # next attempt goes through
    assert len(smtp_server.messages) == 1
    smtp_server.fail_next(1, code=451, stage="RCPT")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as c:
        c.starttls()
        c.login(smtp_server.username, smtp_server.password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
            c.send_message(_message())
        assert ei.value.recipients["customer@example.com"][0] == 451


def test_smtp_implicit_tls():
    from billing_pipeline_tests.support.smtp import SMTPServer

    with SMTPServer(require_auth=True, implicit_tls=True) as server:
        with smtplib.SMTP_SSL(server.host, server.port, timeout=10, context=server.client_ssl_context()) as c:
            c.login(server.username, server.password)
            c.send_message(_message())
        assert server.wait_for_messages(1)[0].tls
