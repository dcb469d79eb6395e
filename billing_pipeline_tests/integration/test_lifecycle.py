"""Lifecycle commands on SQLite and PostgreSQL: each once, re-run changes nothing, audit rows,
gapless credit note numbers under concurrency, the credit note PDF, gateway effects exactly once."""

import datetime as dt
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing_pipeline.clients.documents import LocalDocumentStore
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import lifecycle as rows
from billing_pipeline.db import mirror_effects, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import credit_notes, invoice_events, payments
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceLine, InvoiceStatus
from billing_pipeline.domain.receivables import ManualMethod
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services import lifecycle_credit_notes
from billing_pipeline.services.lifecycle import LifecycleError
from billing_pipeline.services.lifecycle_credit_notes import CreditNoteService
from billing_pipeline_tests.builders import UTC, org, setup_database
from billing_pipeline_tests.mirror_fakes import RecordingMirror

pytestmark = pytest.mark.integration
OCT, NOV = dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC)
NOW = dt.datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
SELLER = Seller("Example Cloud Ltd", ("1 Example Street",), None, "billing@example.com", "Pay by transfer.")


def fake_pdf(note, org, seller) -> bytes:
    return f"%PDF-fake {note.number} {note.total}".encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}" if request.param == "sqlite" else request.getfixturevalue("billing_db_url")
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org(f"o{i}") for i in range(12)] + [org("yen", currency="JPY")])
    return engine


def finalized(engine, org_id: str, amounts=("30.00", "12.34"), currency="USD") -> str:
    lines = tuple(
        InvoiceLine(f"c{i}", f"Charge {i}", None, Decimal(1), Decimal(a), Decimal(a)) for i, a in enumerate(amounts)
    )
    subtotal = sum((line.amount for line in lines), Decimal(0))
    tax = (subtotal * Decimal("0.2")).quantize(Decimal(1) if currency == "JPY" else Decimal("0.01"))
    draft = Invoice(
        org_id, OCT, NOV, BillingInterval.MONTHLY, currency, lines, subtotal, Decimal("0.2"), tax, subtotal + tax
    )
    with engine.begin() as conn:
        invoice_rows.save_draft(conn, draft, plan_code="starter", catalog_version=1)
        _, _, number = invoice_rows.finalize(
            conn, org_id, BillingInterval.MONTHLY, "2026-10-01", prefix="INV", issued_at=NOV, terms_days=30
        )
    return number


def service(engine, tmp_path, mirror=None, render=fake_pdf) -> CreditNoteService:
    store = LocalDocumentStore(tmp_path / "documents")
    return CreditNoteService(
        engine, store=store, seller=SELLER, render=render, mirror=mirror, now=lambda: NOW, secrets=["sk_test_secret123"]
    )


def counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar() for t in (payments, credit_notes, invoice_events)
        )


def test_void_once_and_rerun_changes_nothing(engine, tmp_path):
    number = finalized(engine, "o1")
    mirror = RecordingMirror()
    svc = service(engine, tmp_path, mirror)
    first = svc.void(number, actor="alice", reason="issued twice")
    assert first.changed and first.status is InvoiceStatus.VOID and first.amount_due == 0
    again = svc.void(number, actor="bob", reason="again")
    assert not again.changed and again.message == "already void"
    assert mirror.calls == [("void", number, f"void-{number}")]
    events = rows.history(engine, rows.find_invoice(engine, number).id)
    assert [(e.kind, e.from_status, e.to_status, e.actor, e.reason, e.at) for e in events] == [
        ("transition", "finalized", "void", "alice", "issued twice", NOW)
    ]
    with pytest.raises(LifecycleError, match="is void: it cannot become uncollectible"):
        svc.mark_uncollectible(number, actor="a", reason="r")
    with pytest.raises(LifecycleError, match="no payment can be recorded"):
        svc.record_payment(number, "1.00", method=ManualMethod.CASH, actor="a")


def test_uncollectible_then_paid_records_the_payment_once(engine, tmp_path):
    number = finalized(engine, "o2")
    mirror = RecordingMirror()
    svc = service(engine, tmp_path, mirror)
    assert (
        svc.mark_uncollectible(number, actor="a", reason="customer in liquidation").status
        is InvoiceStatus.UNCOLLECTIBLE
    )
    assert not svc.mark_uncollectible(number, actor="a", reason="again").changed
    paid = svc.mark_paid(
        number, actor="a", reason="liquidator paid", method=ManualMethod.BANK_TRANSFER, reference="L-1"
    )
    assert paid.status is InvoiceStatus.PAID and paid.amount_due == 0
    for _ in range(2):
        assert not svc.mark_paid(number, actor="a", reason="again").changed
    assert counts(engine) == (1, 0, 3)  # one payment; uncollectible, payment, paid
    with engine.connect() as conn:
        row = conn.execute(select(payments)).one()
    assert (row.amount_minor, row.method, row.external_id, row.status) == (
        5081,
        "bank_transfer",
        f"manual:{number}:L-1",
        "succeeded",
    )
    assert [c[0] for c in mirror.calls] == ["mark_uncollectible", "mark_paid_out_of_band"]
    assert mirror.calls[1][2] == f"paid-{number}"


def test_partial_payments_reduce_the_amount_due_and_the_last_one_pays(engine, tmp_path):
    number = finalized(engine, "o3")  # 50.81 USD
    mirror = RecordingMirror()
    svc = service(engine, tmp_path, mirror)
    at = dt.datetime(2026, 11, 20, 14, tzinfo=UTC)
    for _ in range(3):  # the same command three times: one payment
        result = svc.record_payment(number, "20.00", method=ManualMethod.CHECK, actor="a", at=at)
    assert result.amount_due == Decimal("30.81") and result.status is InvoiceStatus.FINALIZED
    assert counts(engine)[0] == 1
    with pytest.raises(
        LifecycleError, match=r"30.82 USD is more than the amount due 30.81 USD; overpayments are refused"
    ):
        svc.record_payment(number, "30.82", method=ManualMethod.CASH, actor="a")
    with pytest.raises(LifecycleError, match="has 3 decimals; USD amounts have 2 decimals"):
        svc.record_payment(number, "1.001", method=ManualMethod.CASH, actor="a")
    with pytest.raises(LifecycleError, match="--at: must be an aware time not after now"):
        svc.record_payment(number, "1.00", method=ManualMethod.CASH, actor="a", at=NOW + dt.timedelta(seconds=1))
    svc.record_payment(number, "5.00", method=ManualMethod.CASH, actor="a", reference="R1")
    with pytest.raises(LifecycleError, match="R1 is already recorded on .* as 5.00 USD by cash: not recorded again"):
        svc.record_payment(number, "6.00", method=ManualMethod.CASH, actor="a", reference="R1")
    last = svc.record_payment(number, "25.81", method=ManualMethod.BANK_TRANSFER, actor="a", reference="TRX-7")
    assert last.status is InvoiceStatus.PAID and last.amount_due == 0
    assert not svc.record_payment(
        number, "25.81", method=ManualMethod.BANK_TRANSFER, actor="a", reference="TRX-7"
    ).changed
    assert counts(engine) == (3, 0, 4)  # 3 payments + paid
    assert mirror.calls == [("mark_paid_out_of_band", number, f"paid-{number}")]
    with engine.connect() as conn:
        stored_at = conn.execute(select(payments.c.created_at).order_by(payments.c.id)).scalars().first()
    assert stored_at == at


def test_credit_notes_partial_then_full_and_reruns(engine, tmp_path):
    number = finalized(engine, "o4")  # 50.81 USD
    mirror = RecordingMirror()
    svc = service(engine, tmp_path, mirror)
    svc.record_payment(number, "10.00", method=ManualMethod.CASH, actor="a", reference="C1")
    first = svc.create_credit_note(number, amount_text="5.00", full=False, reason="SLA breach", actor="carol")
    assert first.amount_due == Decimal("35.81") and first.document == "credit-notes/2026/12/o4/CN-2026-000001.pdf"
    again = svc.create_credit_note(number, amount_text="5.00", full=False, reason="SLA  breach", actor="carol")
    assert not again.changed and again.message.startswith("credit note CN-2026-000001 for 5.00 USD already issued")
    with pytest.raises(LifecycleError, match=r"35.82 USD is more than what remains creditable \(35.81 USD"):
        svc.create_credit_note(number, amount_text="35.82", full=False, reason="too much", actor="carol")
    with pytest.raises(LifecycleError, match="either --amount A or --full"):
        svc.create_credit_note(number, amount_text="1", full=True, reason="x", actor="carol")
    full = svc.create_credit_note(number, amount_text=None, full=True, reason="closing the account", actor="carol")
    assert full.status is InvoiceStatus.PAID and full.amount_due == 0
    assert not svc.create_credit_note(
        number, amount_text=None, full=True, reason="closing the account", actor="c"
    ).changed
    with engine.connect() as conn:
        notes = conn.execute(
            select(credit_notes.c.number, credit_notes.c.total_minor).order_by(credit_notes.c.id)
        ).all()
    assert [tuple(n) for n in notes] == [("CN-2026-000001", 500), ("CN-2026-000002", 3581)]
    assert (
        tmp_path / "documents" / "credit-notes/2026/12/o4/CN-2026-000002.pdf"
    ).read_bytes() == b"%PDF-fake CN-2026-000002 35.81"
    assert [c[2] for c in mirror.calls] == [
        "credit-note-CN-2026-000001",
        "credit-note-CN-2026-000002",
        f"paid-{number}",
    ]
    events = rows.history(engine, rows.find_invoice(engine, number).id)
    assert [(e.kind, e.to_status, e.actor) for e in events] == [
        ("payment", "finalized", "a"), ("credit_note", "finalized", "carol"), ("credit_note", "finalized", "carol"),
        ("transition", "paid", "carol"),
    ]  # fmt: skip
    assert events[-1].reason == "settled by credit note CN-2026-000002"
    with pytest.raises(LifecycleError, match="is paid: only a finalized invoice is credited"):
        svc.create_credit_note(number, amount_text="1.00", full=False, reason="more", actor="c")
    with pytest.raises(LifecycleError, match="is paid: it cannot become void"):
        svc.void(number, actor="a", reason="x")
    other = finalized(engine, "o5")
    svc.record_payment(other, "10.00", method=ManualMethod.CASH, actor="a")
    with pytest.raises(LifecycleError, match="has 10.00 USD paid and 0.00 USD credited: it is not voided"):
        svc.void(other, actor="a", reason="x")


def test_a_full_credit_of_an_untouched_invoice_in_jpy(engine, tmp_path):
    number = finalized(engine, "yen", amounts=("3000", "1234"), currency="JPY")
    svc = service(engine, tmp_path)
    result = svc.create_credit_note(number, amount_text=None, full=True, reason="cancelled order", actor="a")
    assert result.status is InvoiceStatus.PAID and str(result.amount_due) == "0"
    stored = lifecycle_credit_notes.note_rows.load_credit_note(engine, 1)
    assert [(line.amount, line.invoice_line_number) for line in stored.note.lines] == [
        (Decimal(3000), 1),
        (Decimal(1234), 2),
    ]
    assert (stored.note.subtotal, stored.note.tax, stored.note.total) == (Decimal(4234), Decimal(847), Decimal(5081))
    with pytest.raises(LifecycleError, match="'1.5' has 1 decimal; JPY amounts have no decimals"):
        svc.create_credit_note(number, amount_text="1.5", full=False, reason="x", actor="a")


def test_a_failed_gateway_effect_is_retried_with_the_same_key_and_redacted(engine, tmp_path):
    number = finalized(engine, "o7")
    mirror = RecordingMirror(fail=1)
    svc = service(engine, tmp_path, mirror)
    first = svc.void(number, actor="a", reason="x")
    assert first.status is InvoiceStatus.VOID and [e.status for e in first.mirror] == ["failed"]
    assert (
        "gateway down during void" in first.mirror[0].last_error
        and "sk_test_secret123" not in first.mirror[0].last_error
    )
    second = svc.void(number, actor="a", reason="x")
    assert [(e.status, e.attempts, e.external_id) for e in second.mirror] == [("succeeded", 2, f"gw_void_{number}")]
    assert svc.void(number, actor="a", reason="x").mirror == second.mirror
    assert mirror.calls == [("void", number, f"void-{number}")] * 2
    assert counts(engine)[2] == 1


def test_the_credit_note_pdf_shows_the_credited_amount_exactly(engine, tmp_path):
    from pypdf import PdfReader

    number = finalized(engine, "o8")
    from billing_pipeline.services.lifecycle_credit_notes import render_credit_note_pdf

    svc = service(engine, tmp_path, render=render_credit_note_pdf)
    result = svc.create_credit_note(number, amount_text="12.34", full=False, reason="Outage on 2026-10-12", actor="a")
    data = (tmp_path / "documents" / result.document).read_bytes()
    text = " ".join(PdfReader(io.BytesIO(data)).pages[0].extract_text().split())
    for expected in (
        "CN-2026-000001",
        number,
        "12.34 USD",
        "10.28 USD",
        "2.06 USD",
        "Outage on 2026-10-12",
        "Tax (20%)",
    ):
        assert expected in text
    assert (
        render_credit_note_pdf(lifecycle_credit_notes.note_rows.load_credit_note(engine, 1).note, org("o8"), SELLER)
        == data
    )


def test_credit_note_numbers_are_gapless_under_concurrent_creation(engine, tmp_path, monkeypatch):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers: concurrency is PostgreSQL's")
    numbers = [finalized(engine, f"o{i}") for i in range(10)]
    failing = set(numbers[::4])  # these roll back after taking a number
    real_add = mirror_effects.add_effect

    def add_effect(conn, invoice_id, action, key, **kw):
        if action == "create_credit_note" and any(rows.find_invoice(engine, n).id == invoice_id for n in failing):
            raise RuntimeError("crash after the number was taken")
        return real_add(conn, invoice_id, action, key, **kw)

    monkeypatch.setattr(lifecycle_credit_notes.mirror_effects, "add_effect", add_effect)
    svc = service(engine, tmp_path)
    start = threading.Barrier(8)

    def create(number: str) -> str | None:
        start.wait() if number in numbers[:8] else None
        try:
            return svc.create_credit_note(number, amount_text="1.00", full=False, reason="r", actor="a").message
        except RuntimeError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, numbers))
    assert sum(r is not None for r in results) == 7
    with engine.connect() as conn:
        taken = sorted(conn.execute(select(credit_notes.c.number)).scalars())
    assert taken == [f"CN-2026-{i:06d}" for i in range(1, 8)]  # the rolled-back ones gave their numbers back


def test_two_credit_notes_racing_on_one_invoice_never_exceed_the_amount_due(engine, tmp_path):
    if engine.dialect.name != "postgresql":
        pytest.skip("the row lock is PostgreSQL's")
    number = finalized(engine, "o9")  # 50.81 USD
    svc = service(engine, tmp_path)
    start = threading.Barrier(4)

    def credit(i: int) -> str:
        start.wait()
        try:
            return svc.create_credit_note(number, amount_text="30.00", full=False, reason=f"r{i}", actor="a").message
        except LifecycleError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(credit, range(4)))
    assert sum("more than what remains creditable" in r for r in results) == 3
    assert rows.receivables(engine, [rows.find_invoice(engine, number).id]).popitem()[1].amount_due == Decimal("20.81")


def test_a_run_killed_after_claiming_an_effect_is_finished_by_the_next_with_the_same_key(engine, tmp_path):
    number = finalized(engine, "o10")
    mirror = RecordingMirror()
    svc = service(engine, tmp_path, mirror)
    invoice_id = rows.find_invoice(engine, number).id

    class Killed(BaseException):  # what a killed process leaves: nothing catches it
        pass

    def killed(*args, **kwargs):
        mirror.calls.append(("mark_uncollectible", number, kwargs["idempotency_key"]))
        raise Killed

    mirror.mark_uncollectible = killed
    with pytest.raises(Killed):
        svc.mark_uncollectible(number, actor="a", reason="r")
    (effect,) = mirror_effects.effects_of(engine, invoice_id)
    assert (effect.status, effect.attempts) == ("pending", 1)  # claimed, never finished
    del mirror.mark_uncollectible
    result = svc.mark_uncollectible(number, actor="a", reason="r")
    assert not result.changed and [(e.status, e.attempts) for e in result.mirror] == [("succeeded", 2)]
    assert (
        mirror.calls == [("mark_uncollectible", number, f"uncollectible-{number}")] * 2
    )  # same key: the gateway dedupes
    assert counts(engine)[2] == 1


def test_a_credit_note_whose_pdf_failed_is_stored_by_the_rerun(engine, tmp_path):
    number = finalized(engine, "o11")
    failures = [OSError("document store down")]

    def flaky(note, org, seller):
        if failures:
            raise failures.pop()
        return fake_pdf(note, org, seller)

    svc = service(engine, tmp_path, render=flaky)
    with pytest.raises(OSError, match="document store down"):
        svc.create_credit_note(number, amount_text="1.00", full=False, reason="r", actor="a")
    assert lifecycle_credit_notes.note_rows.load_credit_note(engine, 1).document_key is None  # issued, no PDF yet
    result = svc.create_credit_note(number, amount_text="1.00", full=False, reason="r", actor="a")
    assert not result.changed and result.document == "credit-notes/2026/12/o11/CN-2026-000001.pdf"
    assert (tmp_path / "documents" / result.document).read_bytes() == b"%PDF-fake CN-2026-000001 1.00"
    assert counts(engine)[1:] == (1, 1)
