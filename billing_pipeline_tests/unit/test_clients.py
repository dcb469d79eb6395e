"""Clients without network: document stores, outbox/SMTP mailer, Stripe gateway logic."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import smtplib
from decimal import Decimal as D
from email.message import EmailMessage

import boto3
import pytest
import stripe
from botocore.stub import Stubber

from billing_pipeline.clients.documents import (
    DocumentStore,
    LocalDocumentStore,
    S3DocumentStore,
    invoice_pdf_key,
)
from billing_pipeline.clients.errors import (
    DeliveryError,
    DocumentConflict,
    DocumentNotFound,
    GatewayTotalMismatch,
    PermanentError,
    PermanentGatewayError,
    PermanentMailError,
    TransientError,
    TransientGatewayError,
    TransientMailError,
    TransientStorageError,
)
from billing_pipeline.clients.mailer import Mailer, OutboxMailer, SMTPMailer
from billing_pipeline.clients.payments import NullGateway, PaymentGateway, StripeGateway
from billing_pipeline.domain.model import (
    BillingInterval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Organization,
    OrganizationStatus,
)

UTC = dt.UTC


def make_org(**kw) -> Organization:
    values = dict(
        id="org_42",
        name="Acme Corp",
        billing_email="ap@acme.example",
        status=OrganizationStatus.ACTIVE,
        currency="USD",
        tax_rate=D("0.20"),
        billing_interval=BillingInterval.MONTHLY,
        auto_pay=False,
        payment_terms_days=14,
    )
    values.update(kw)
    return Organization(**values)


def make_invoice(number="INV-2026-000042", total=D("1362.60")) -> Invoice:
    lines = (
        InvoiceLine("base", "Platform fee", None, D("1"), D("99.00"), D("99.00")),
        InvoiceLine("api", "API requests", "api_calls", D("1250000"), None, D("1035.50")),
        InvoiceLine("storage", "Storage", "storage", D("12.5"), D("0.08"), D("1.00")),
    )
    return Invoice(
        organization_id="org_42",
        period_start=dt.datetime(2026, 10, 1, tzinfo=UTC),
        period_end=dt.datetime(2026, 11, 1, tzinfo=UTC),
        interval=BillingInterval.MONTHLY,
        currency="USD",
        lines=lines,
        subtotal=D("1135.50"),
        tax_rate=D("0.20"),
        tax=D("227.10"),
        total=total,
        status=InvoiceStatus.FINALIZED,
        number=number,
        issued_at=dt.datetime(2026, 11, 1, 6, tzinfo=UTC),
        due_at=dt.datetime(2026, 11, 15, tzinfo=UTC),
    )


# --- errors -------------------------------------------------------------------------------
def test_error_hierarchy_maps_to_retry_or_not():
    assert TransientGatewayError("x").transient and isinstance(TransientGatewayError("x"), TransientError)
    assert not PermanentMailError("x").transient and isinstance(PermanentMailError("x"), PermanentError)
    conflict = DocumentConflict("k", "a", "b")
    assert isinstance(conflict, DeliveryError) and not conflict.transient
    mismatch = GatewayTotalMismatch("INV-1", 100, 101, "USD")
    assert isinstance(mismatch, PermanentGatewayError) and mismatch.difference_minor == 1


# --- documents ------------------------------------------------------------------------------
def test_invoice_pdf_key():
    assert invoice_pdf_key(make_invoice()) == "invoices/2026/10/org_42/INV-2026-000042.pdf"
    with pytest.raises(ValueError):
        invoice_pdf_key(make_invoice(number="../../etc/passwd"))
    with pytest.raises(ValueError):
        invoice_pdf_key(make_invoice(number=None))


def test_local_store_idempotent_and_conflict(tmp_path):
    store = LocalDocumentStore(tmp_path)
    assert isinstance(store, DocumentStore)
    key = "invoices/2026/10/org_42/INV-1.pdf"
    first = store.put(key, b"%PDF-1", "application/pdf")
    assert first.created and first.size == 6 and first.sha256_hex == hashlib.sha256(b"%PDF-1").hexdigest()
    again = store.put(key, b"%PDF-1", "application/pdf")
    assert not again.created and again.sha256_hex == first.sha256_hex
    with pytest.raises(DocumentConflict) as err:
        store.put(key, b"%PDF-2", "application/pdf")
    assert not err.value.transient
    assert store.get(key) == b"%PDF-1"  # unchanged
    assert store.exists(key) and not store.exists("invoices/nope.pdf")
    assert store.presigned_url(key, 60).startswith("file://")
    assert [p.name for p in (tmp_path / "invoices/2026/10/org_42").iterdir()] == ["INV-1.pdf"]  # no temp left
    with pytest.raises(DocumentNotFound):
        store.get("invoices/nope.pdf")


@pytest.mark.parametrize("key", ["../x.pdf", "/etc/passwd", "a//b", "a/./b", "", "a/b\n.pdf"])
def test_local_store_rejects_bad_keys(tmp_path, key):
    with pytest.raises(ValueError):
        LocalDocumentStore(tmp_path).put(key, b"x", "application/pdf")


def _s3():
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        endpoint_url="http://127.0.0.1:1",  # never contacted: the Stubber answers
    )
    return client, Stubber(client)


def test_s3_store_put_new_then_idempotent_then_conflict():
    """Write-once by a conditional put: a new object is one request; an existing key answers
    412 and is compared by its sha256 metadata."""
    client, stub = _s3()
    store = S3DocumentStore(client, "bills", prefix="prod", server_side_encryption="AES256")
    data = b"%PDF-1"
    sha = hashlib.sha256(data).hexdigest()
    full_key = "prod/invoices/2026/10/org_42/INV-1.pdf"
    put_params = {
        "Bucket": "bills",
        "Key": full_key,
        "Body": data,
        "ContentType": "application/pdf",
        "Metadata": {"sha256": sha},
        "ServerSideEncryption": "AES256",
        "IfNoneMatch": "*",
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }
    stub.add_response("put_object", {"ETag": '"x"'}, expected_params=put_params)
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_response(
        "head_object",
        {"Metadata": {"sha256": sha}, "ContentLength": 6},
        expected_params={"Bucket": "bills", "Key": full_key},
    )
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_response(
        "head_object",
        {"Metadata": {"sha256": sha}, "ContentLength": 6},
        expected_params={"Bucket": "bills", "Key": full_key},
    )
    with stub:
        doc = store.put("invoices/2026/10/org_42/INV-1.pdf", data, "application/pdf")
        assert doc.created and doc.url_or_path == f"s3://bills/{full_key}"
        assert not store.put("invoices/2026/10/org_42/INV-1.pdf", data, "application/pdf").created
        with pytest.raises(DocumentConflict):
            store.put("invoices/2026/10/org_42/INV-1.pdf", b"%PDF-2", "application/pdf")
    stub.assert_no_pending_responses()


def test_s3_store_without_conditional_writes_heads_first():
    client, stub = _s3()
    store = S3DocumentStore(client, "bills", conditional=False, checksum=False)
    data = b"%PDF-1"
    stub.add_client_error("head_object", "404", http_status_code=404)
    stub.add_response(
        "put_object",
        {"ETag": '"x"'},
        expected_params={
            "Bucket": "bills",
            "Key": "a.pdf",
            "Body": data,
            "ContentType": "application/pdf",
            "Metadata": {"sha256": hashlib.sha256(data).hexdigest()},
        },
    )
    stub.add_response("head_object", {"Metadata": {"sha256": hashlib.sha256(data).hexdigest()}})
    with stub:
        assert store.put("a.pdf", data, "application/pdf").created
        assert not store.put("a.pdf", data, "application/pdf").created
    stub.assert_no_pending_responses()


def test_s3_store_falls_back_without_checksum_and_classifies_errors():
    client, stub = _s3()
    store = S3DocumentStore(client, "bills")
    stub.add_client_error("put_object", "NotImplemented", http_status_code=501)
    stub.add_response(
        "put_object",
        {"ETag": '"x"'},
        expected_params={
            "Bucket": "bills",
            "Key": "a.pdf",
            "Body": b"x",
            "ContentType": "application/pdf",
            "Metadata": {"sha256": hashlib.sha256(b"x").hexdigest()},
            "IfNoneMatch": "*",
        },
    )
    stub.add_client_error("head_object", "SlowDown", http_status_code=503)
    stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    with stub:
        assert store.put("a.pdf", b"x", "application/pdf").created
        assert store.checksum is False
        with pytest.raises(TransientStorageError):
            store.exists("a.pdf")
        with pytest.raises(TransientStorageError):
            store.put("b.pdf", b"x", "application/pdf")


def test_s3_presigned_url_is_signed_get():
    client, _ = _s3()
    url = S3DocumentStore(client, "bills", prefix="p/").presigned_url("a.pdf", 3600)
    assert "/bills/p/a.pdf?" in url and "Signature" in url


# --- mail ----------------------------------------------------------------------------------
def _msg(mid="<invoice-INV-1.invoice@mail.example.com>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "billing@example.com"
    msg["To"] = "ap@acme.example"
    msg["Subject"] = "Invoice"
    msg["Message-ID"] = mid
    msg.set_content("hello")
    return msg


def test_outbox_mailer_is_idempotent(tmp_path):
    mailer = OutboxMailer(tmp_path / "outbox")
    assert isinstance(mailer, Mailer)
    first = mailer.send(_msg())
    assert first.created and first.message_id == "<invoice-INV-1.invoice@mail.example.com>"
    assert not mailer.send(_msg()).created
    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == ["invoice-INV-1.invoice@mail.example.com.eml"]
    assert b"Subject: Invoice" in files[0].read_bytes()
    # a hostile Message-ID cannot escape the folder
    mailer.send(_msg("<../../etc/x@evil>"))
    assert all(p.parent == tmp_path / "outbox" for p in (tmp_path / "outbox").iterdir())


class FakeSMTP:
    instances: list[FakeSMTP] = []
    fail_with: BaseException | None = None

    def __init__(self, host, port, local_hostname=None, timeout=None, **kw):
        self.sent: list[EmailMessage] = []
        self.calls: list[str] = []
        FakeSMTP.instances.append(self)

    def ehlo(self):
        self.calls.append("ehlo")

    def starttls(self, context=None):
        self.calls.append("starttls")

    def login(self, user, password):
        self.calls.append(f"login:{user}")

    def send_message(self, msg):
        if FakeSMTP.fail_with is not None:
            raise FakeSMTP.fail_with
        self.sent.append(msg)
        return {}

    def quit(self):
        self.calls.append("quit")

    def close(self):
        pass


@pytest.fixture
def fake_smtp(monkeypatch):
    FakeSMTP.instances = []
    FakeSMTP.fail_with = None
    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    return FakeSMTP


def test_smtp_mailer_session_reuses_one_connection(fake_smtp):
    log = []
    mailer = SMTPMailer(
        "smtp.example.com", 587, "user", "s3cret", "starttls", 5, sent_log=lambda mid, refused: log.append(mid)
    )
    with mailer.session():
        mailer.send(_msg("<a@x>"))
        mailer.send(_msg("<b@x>"))
    mailer.send(_msg("<c@x>"))
    assert len(fake_smtp.instances) == 2
    assert fake_smtp.instances[0].calls == ["ehlo", "starttls", "ehlo", "login:user", "quit"]
    assert log == ["<a@x>", "<b@x>", "<c@x>"]
    assert "s3cret" not in repr(mailer)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (smtplib.SMTPServerDisconnected("gone"), TransientMailError),
        (TimeoutError("timed out"), TransientMailError),
        (ConnectionResetError(), TransientMailError),
        (smtplib.SMTPDataError(451, b"try later"), TransientMailError),
        (smtplib.SMTPDataError(554, b"rejected"), PermanentMailError),
        (smtplib.SMTPSenderRefused(550, b"no", "billing@example.com"), PermanentMailError),
        (smtplib.SMTPRecipientsRefused({"a@b": (450, b"greylisted")}), TransientMailError),
        (smtplib.SMTPRecipientsRefused({"a@b": (550, b"no such user")}), PermanentMailError),
    ],
)
def test_smtp_errors_are_classified(fake_smtp, exc, expected):
    fake_smtp.fail_with = exc
    with pytest.raises(expected):
        SMTPMailer("smtp.example.com", 25, security="none").send(_msg())


# --- payments ------------------------------------------------------------------------------
class _List:
    def __init__(self, items):
        self.data = items

    def __getitem__(self, key):
        return getattr(self, key)

    def auto_paging_iter(self):
        return iter(self.data)


class _RawResponse:
    def __init__(self, data, headers, code):
        self.data, self.headers, self.code = data, headers, code


def _plain(obj):
    if isinstance(obj, _List):
        return {"object": "list", "data": [_plain(o) for o in obj.data], "has_more": False}
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return obj


def _obj(values):
    return stripe.StripeObject.construct_from(values, "sk_test_fake")


class FakeStripe:
    """The subset of StripeClient.v1 the gateway uses, with Stripe-like idempotency keys."""

    def __init__(self):
        self.customers_db: dict[str, dict] = {}
        self.invoices_db: dict[str, dict] = {}
        self.items_db: dict[str, dict] = {}
        self.keys: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.search_visible = True  # False: Stripe search has not indexed new objects yet
        self.fail_next: dict[str, Exception] = {}
        self.total_skew = 0
        self.pay_error: Exception | None = None
        self.v1 = self
        self.customers = _Service(self, "customers")
        self.invoices = _Service(self, "invoices")
        self.invoice_items = _Service(self, "invoice_items")
        self.line_items = _Service(self, "line_items")

    # StripeClient.raw_request: the gateway's only entry point
    _ROUTES = [
        ("get", r"/v1/customers", "customers", "list"),
        ("get", r"/v1/customers/search", "customers", "search"),
        ("post", r"/v1/customers", "customers", "create"),
        ("post", r"/v1/customers/([^/]+)", "customers", "update"),
        ("get", r"/v1/invoices", "invoices", "list"),
        ("get", r"/v1/invoices/search", "invoices", "search"),
        ("post", r"/v1/invoices", "invoices", "create"),
        ("get", r"/v1/invoices/([^/]+)", "invoices", "retrieve"),
        ("get", r"/v1/invoices/([^/]+)/lines", "line_items", "list"),
        ("post", r"/v1/invoices/([^/]+)/add_lines", "invoices", "add_lines"),
        ("post", r"/v1/invoices/([^/]+)/finalize", "invoices", "finalize_invoice"),
        ("post", r"/v1/invoices/([^/]+)/pay", "invoices", "pay"),
    ]

    def raw_request(self, method_, url_, **params):
        import re

        key = params.pop("idempotency_key", None)
        for method, pattern, service, action in self._ROUTES:
            m = re.fullmatch(pattern, url_)
            if m and method == method_:
                call = getattr(getattr(self, service), action)
                result = call(*m.groups(), params=params, options={"idempotency_key": key} if key else None)
                response = getattr(result, "_last_response", None)
                return _RawResponse(_plain(result), getattr(response, "headers", None), getattr(response, "code", None))
        raise AssertionError(f"no fake route for {method_.upper()} {url_}")

    def _total(self, inv_id):
        return sum(i["amount"] for i in self.items_db.values() if i["invoice"] == inv_id) + self.total_skew

    def invoice_view(self, inv_id):
        inv = dict(self.invoices_db[inv_id])
        inv["total"] = self._total(inv_id)
        inv["lines"] = {
            "object": "list",
            "has_more": False,
            "data": [dict(i) for i in self.items_db.values() if i["invoice"] == inv_id],
        }
        return _obj(inv)


class _Service:
    def __init__(self, fake: FakeStripe, name: str):
        self.fake, self.name = fake, name

    def __getattr__(self, method):
        def call(*args, params=None, options=None):
            params = params or {}
            key = (options or {}).get("idempotency_key")
            self.fake.calls.append((self.name, method, args, params, key))
            failure = self.fake.fail_next.pop(f"{self.name}.{method}", None)
            if failure is not None:
                raise failure
            if key is not None and key in self.fake.keys:
                return self.fake.keys[key]
            result = getattr(self, f"_{method}")(*args, params=params)
            if key is not None:
                self.fake.keys[key] = result
            return result

        return call

    # customers / invoices / items
    def _db(self):
        return {
            "customers": self.fake.customers_db,
            "invoices": self.fake.invoices_db,
            "invoice_items": self.fake.items_db,
            "line_items": self.fake.items_db,
        }[self.name]

    def _create(self, params):
        db = self._db()
        prefix = {"customers": "cus", "invoices": "in", "invoice_items": "ii"}[self.name]
        obj_id = f"{prefix}_{len(db) + 1}"
        row = {"id": obj_id, "created": 1_800_000_000 + len(db), **params}  # 2027: after any test period
        if self.name == "invoices":
            row.update(status="draft", number=None, hosted_invoice_url=None)
        db[obj_id] = row
        return self._view(obj_id)

    def _view(self, obj_id):
        if self.name == "invoices":
            return self.fake.invoice_view(obj_id)
        return _obj(self._db()[obj_id])

    def _update(self, obj_id, params):
        self._db()[obj_id].update(params)
        return self._view(obj_id)

    def _retrieve(self, obj_id, params):
        return self._view(obj_id)

    def _search(self, params):
        field, value = params["query"].split(":", 1)
        meta_key = field.split("'")[1]
        value = value.strip("'")
        rows = [r for r in self._db().values() if r.get("metadata", {}).get(meta_key) == value]
        return _List([self._view(r["id"]) for r in rows] if self.fake.search_visible else [])

    def _list(self, *invoice_id, params):
        rows = self._db().values()
        if invoice_id:  # GET /v1/invoices/:id/lines
            rows = [r for r in rows if r.get("invoice") == invoice_id[0]]
        if "email" in params:
            rows = [r for r in rows if r.get("email") == params["email"]]
        if "customer" in params:
            rows = [r for r in rows if r.get("customer") == params["customer"]]
        if "invoice" in params:
            rows = [r for r in rows if r.get("invoice") == params["invoice"]]
        if "created" in params:
            rows = [r for r in rows if r["created"] >= params["created"]["gte"]]
        return _List([self._view(r["id"]) for r in rows])

    def _add_lines(self, inv_id, params):  # all lines or none, like Stripe
        inv = self.fake.invoices_db[inv_id]
        for line in params["lines"]:
            obj_id = f"ii_{len(self.fake.calls)}_{len(self.fake.items_db) + 1}"
            self.fake.items_db[obj_id] = {"id": obj_id, "invoice": inv_id, "customer": inv["customer"], **line}
        return self._view(inv_id)

    def _finalize_invoice(self, inv_id, params):
        inv = self.fake.invoices_db[inv_id]
        inv.update(status="open", number=f"STRIPE-{inv_id}", hosted_invoice_url=f"https://pay.example/{inv_id}")
        return self._view(inv_id)

    def _pay(self, inv_id, params):
        if self.fake.pay_error is not None:
            raise self.fake.pay_error
        inv = self.fake.invoices_db[inv_id]
        if inv["status"] == "paid":
            raise stripe.InvalidRequestError(
                "Invoice is already paid", None, code="invoice_already_paid", http_status=400
            )
        inv["status"] = "paid"
        return self._view(inv_id)


def test_null_gateway_skips():
    gateway = NullGateway()
    assert isinstance(gateway, PaymentGateway)
    result = gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="t")
    assert result.status == "skipped" and result.total_minor == 136260


def test_stripe_sync_creates_everything_with_deterministic_keys():
    fake = FakeStripe()
    gateway = StripeGateway(fake)
    assert isinstance(gateway, PaymentGateway)
    result = gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="v1")
    assert result.status == "open" and result.total_minor == 136260 and result.currency == "USD"
    assert result.hosted_url == "https://pay.example/in_1"
    keys = [c[4] for c in fake.calls if c[4]]
    assert keys == ["v1-cus-org_42", "v1-inv-INV-2026-000042", "v1-lines-INV-2026-000042", "v1-fin-INV-2026-000042"]
    [inv] = fake.invoices_db.values()
    assert inv["collection_method"] == "send_invoice" and inv["days_until_due"] == 14
    assert inv["auto_advance"] is False and inv["pending_invoice_items_behavior"] == "exclude"
    assert inv["metadata"] == {"invoice_id": "INV-2026-000042", "org_id": "org_42", "period": "2026-10-01/2026-11-01"}
    amounts = sorted(i["amount"] for i in fake.items_db.values())
    assert amounts == [100, 9900, 22710, 103550]


def test_stripe_sync_is_idempotent_on_rerun():
    fake = FakeStripe()
    gateway = StripeGateway(fake)
    first = gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    fake.keys.clear()  # idempotency keys expired (24 h): metadata lookups must still dedupe
    second = gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    assert second == first
    assert len(fake.customers_db) == 1 and len(fake.invoices_db) == 1 and len(fake.items_db) == 4


def test_stripe_sync_resumes_after_crash_midway_and_search_lag():
    fake = FakeStripe()
    fake.search_visible = False  # search has not indexed our objects: list fallbacks must find them
    gateway = StripeGateway(fake)
    org, inv = make_org(auto_pay=True), make_invoice()
    fake.fail_next["invoices.add_lines"] = stripe.APIConnectionError("connection reset")
    with pytest.raises(TransientGatewayError):
        gateway.sync_invoice(inv, org, idempotency_prefix="")
    assert len(fake.items_db) == 0 and len(fake.invoices_db) == 1  # a draft, no lines (all or none)
    fake.keys.clear()
    result = gateway.sync_invoice(inv, org, idempotency_prefix="")
    assert result.status == "open" and result.total_minor == 136260
    assert len(fake.items_db) == 4 and len(fake.invoices_db) == 1
    [stripe_inv] = fake.invoices_db.values()
    assert stripe_inv["collection_method"] == "charge_automatically" and "days_until_due" not in stripe_inv


def test_stripe_sync_completes_a_draft_that_has_some_of_its_lines():
    """A draft left with part of its lines (one item per request, as earlier versions did) gets
    only the missing ones, under a key that names them."""
    fake = FakeStripe()
    gateway = StripeGateway(fake)
    inv = make_invoice()
    fake.fail_next["invoices.finalize_invoice"] = stripe.APIConnectionError("reset")
    with pytest.raises(TransientGatewayError):
        gateway.sync_invoice(inv, make_org(), idempotency_prefix="")
    for item_id in [k for k, v in fake.items_db.items() if v["metadata"]["line_index"] in ("1", "tax")]:
        del fake.items_db[item_id]
    fake.keys.clear()
    fake.calls.clear()
    result = gateway.sync_invoice(inv, make_org(), idempotency_prefix="")
    assert result.total_minor == 136260 and len(fake.items_db) == 4
    assert [c[4] for c in fake.calls if c[1] == "add_lines"] == ["lines-INV-2026-000042-1.tax"]


def test_stripe_customer_is_updated_when_changed():
    fake = FakeStripe()
    gateway = StripeGateway(fake)
    gateway.upsert_customer(make_org())
    gateway.upsert_customer(make_org(name="Acme Inc", billing_email="billing@acme.example"))
    [cus] = fake.customers_db.values()
    assert cus["name"] == "Acme Inc" and cus["email"] == "billing@acme.example"


def test_stripe_total_mismatch_blocks_finalize():
    fake = FakeStripe()
    fake.total_skew = 1
    with pytest.raises(GatewayTotalMismatch) as err:
        StripeGateway(fake).sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    assert (err.value.ours_minor, err.value.theirs_minor) == (136260, 136261)
    assert not any(c[1] == "finalize_invoice" for c in fake.calls)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (stripe.APIConnectionError("timeout"), TransientGatewayError),
        (stripe.RateLimitError("slow down", http_status=429), TransientGatewayError),
        (stripe.APIError("boom", http_status=500), TransientGatewayError),
        (stripe.InvalidRequestError("bad", "currency", http_status=400), PermanentGatewayError),
        (
            stripe.AuthenticationError("Invalid API Key provided: sk_test_abcdef123456", http_status=401),
            PermanentGatewayError,
        ),
        (stripe.InvalidRequestError("locked", None, code="lock_timeout", http_status=409), TransientGatewayError),
    ],
)
def test_stripe_errors_are_classified_without_secrets(exc, expected):
    fake = FakeStripe()
    fake.fail_next["customers.search"] = exc
    with pytest.raises(expected) as err:
        StripeGateway(fake).sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    assert "sk_test_abcdef" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_stripe_sync_returns_existing_open_invoice_without_writes():
    fake = FakeStripe()
    gateway = StripeGateway(fake)
    gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    writes_before = [c for c in fake.calls if c[1] in ("create", "finalize_invoice")]
    gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    writes_after = [c for c in fake.calls if c[1] in ("create", "finalize_invoice")]
    assert writes_after == writes_before
    with pytest.raises(GatewayTotalMismatch):
        gateway.sync_invoice(make_invoice(total=D("1362.61")), make_org(), idempotency_prefix="")


def test_smtp_mailer_sessions_are_per_thread(fake_smtp):
    import threading

    mailer = SMTPMailer("smtp.example.com", 587, "user", "pw", "starttls", 5)
    barrier = threading.Barrier(3)

    def work(tag):
        with mailer.session():
            barrier.wait()  # all three sessions open at once
            mailer.send(_msg(f"<{tag}-1@x>"))
            mailer.send(_msg(f"<{tag}-2@x>"))

    threads = [threading.Thread(target=work, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_smtp.instances) == 3  # one connection per thread, reused within it
    assert sorted(len(i.sent) for i in fake_smtp.instances) == [2, 2, 2]
    for inst in fake_smtp.instances:
        assert len({str(m["Message-ID"])[1] for m in inst.sent}) == 1  # never shared across threads
        assert inst.calls[-1] == "quit"


class _Response:
    def __init__(self, headers):
        self.headers, self.code = headers, 200


def test_stripe_sync_skips_lookups_after_fresh_creates_and_caches_customers():
    fake = FakeStripe()
    original = _Service._create

    def fresh(self, params):  # what StripeClient returns for a create that was not replayed
        obj = original(self, params)
        obj._last_response = _Response({"Request-Id": "req_1"})
        return obj

    _Service._create = fresh
    try:
        gateway = StripeGateway(fake)
        result = gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    finally:
        _Service._create = original
    assert result.status == "open" and result.total_minor == 136260
    reads = [(c[0], c[1]) for c in fake.calls if c[1] in ("list", "search", "retrieve")]
    # the customer is looked up (it may exist); the new customer's invoices and the new
    # draft's lines are not; the total is checked on add_lines' answer before finalizing
    assert reads == [("customers", "list"), ("customers", "search")]
    assert len(fake.items_db) == 4

    # same org again (e.g. another period): the customer comes from the cache
    fake.calls.clear()
    gateway.sync_invoice(make_invoice(number="INV-2026-000043"), make_org(), idempotency_prefix="")
    assert not any(c[0] == "customers" for c in fake.calls)
    assert len(fake.customers_db) == 1 and len(fake.invoices_db) == 2


def test_stripe_replayed_create_still_looks_up():
    fake = FakeStripe()
    original = _Service._create

    def replayed(self, params):
        obj = original(self, params)
        obj._last_response = _Response({"Idempotent-Replayed": "true"})
        return obj

    _Service._create = replayed
    try:
        StripeGateway(fake).sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    finally:
        _Service._create = original
    reads = [(c[0], c[1]) for c in fake.calls if c[1] in ("list", "search")]
    assert ("invoices", "list") in reads


def test_stripe_customer_cache_is_dropped_after_a_failure():
    fake = FakeStripe()
    gateway = StripeGateway(fake)
    gateway.sync_invoice(make_invoice(), make_org(), idempotency_prefix="")
    fake.fail_next["invoices.list"] = stripe.APIConnectionError("reset")
    with pytest.raises(TransientGatewayError):
        gateway.sync_invoice(make_invoice(number="INV-2026-000043"), make_org(), idempotency_prefix="")
    fake.calls.clear()
    gateway.sync_invoice(make_invoice(number="INV-2026-000043"), make_org(), idempotency_prefix="")
    assert ("customers", "list") in [(c[0], c[1]) for c in fake.calls]
