"""``invoices``, ``payments`` and ``credit-notes`` commands on embedded defaults (SQLite, local folders)."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceLine
from billing_pipeline_tests.builders import UTC, org, setup_database

OCT, NOV = dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "billing"))
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    monkeypatch.delenv("PAYMENT_GATEWAY", raising=False)
    url = f"sqlite:///{tmp_path / 'billing' / 'billing.db'}"
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("acme"), org("souq", currency="KWD", tax_rate="0")])
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return run, engine, tmp_path


def finalized(engine, org_id: str, currency: str, amount: str, tax: str) -> str:
    line = InvoiceLine("platform", "Platform fee", None, Decimal(1), Decimal(amount), Decimal(amount))
    draft = Invoice(
        org_id, OCT, NOV, BillingInterval.MONTHLY, currency, (line,), Decimal(amount), Decimal(tax),
        Decimal(amount) * Decimal(tax), Decimal(amount) * (1 + Decimal(tax)),
    )  # fmt: skip
    with engine.begin() as conn:
        invoice_rows.save_draft(conn, draft, plan_code="starter", catalog_version=1)
        return invoice_rows.finalize(
            conn, org_id, BillingInterval.MONTHLY, "2026-10-01", prefix="INV", issued_at=NOV, terms_days=30
        )[2]


def test_payments_credit_notes_and_history(cli):
    run, engine, tmp_path = cli
    usd = finalized(engine, "acme", "USD", "10.00", "0.2")  # 12.00 USD
    out = run("payments", "record", usd, "2.50", "--method", "bank_transfer", "--reference", "TRX1", "--actor", "ops")
    assert f"{usd}: payment 2.50 USD by bank_transfer recorded; status finalized, amount due 9.50 USD" in out
    out = run("payments", "record", usd, "2.50", "--method", "bank_transfer", "--reference", "TRX1", "--actor", "ops")
    assert f"payment manual:{usd}:TRX1 already recorded" in out and "amount due 9.50 USD" in out
    out = run("payments", "record", usd, "2.505", "--method", "cash", code=1)
    assert "Error: AMOUNT: '2.505' has 3 decimals; USD amounts have 2 decimals" in out
    out = run("payments", "record", usd, "9.51", "--method", "cash", code=1)
    assert "9.51 USD is more than the amount due 9.50 USD; overpayments are refused" in out
    out = run("payments", "record", usd, "1", "--method", "wire", code=2)
    assert "Invalid value for '--method'" in out
    out = run("payments", "record", usd, "1", "--method", "cash", "--at", "yesterday", code=2)
    assert "not an ISO date or time: 'yesterday'" in out
    out = run("credit-notes", "create", usd, "--amount", "4.50", "--reason", "SLA breach", "--actor", "ops")
    assert "credit note CN-2026-000001 for 4.50 USD; status finalized, amount due 5.00 USD" in out
    document = re.search(r"document: (\S+)", out).group(1)
    assert (tmp_path / "billing" / "documents" / document).read_bytes().startswith(b"%PDF")
    assert "gateway credit-note-CN-2026-000001: skipped" in out
    out = run("payments", "record", usd, "5", "--method", "check", "--at", "2026-11-20T10:00", "--actor", "ops")
    assert "status paid, amount due 0.00 USD" in out and f"gateway paid-{usd}: skipped" in out
    history = run("invoices", "history", usd)
    assert (
        f"{usd}  acme  status paid  total 12.00 USD  paid 7.50 USD  credited 4.50 USD  amount due 0.00 USD" in history
    )
    assert re.search(r"payment +finalized +by ops: payment recorded: 2.50 USD by bank_transfer", history)
    assert re.search(r"credit_note +finalized +by ops: SLA breach", history)
    assert re.search(r"transition +finalized -> paid +by ops: paid in full: 5.00 USD by check", history)
    assert f"Credit note CN-2026-000001: 4.50 USD (1 line), document {document}" in history
    assert "2026-11-20T10:00:00+00:00" in history  # when the money arrived, UTC without an offset
    assert "Error: no invoice numbered 'INV-1999-000001'" in run("invoices", "history", "INV-1999-000001", code=1)
    for command in (["payments", "record", "INV-1999-000001", "1", "--method", "cash"],
                    ["invoices", "void", "INV-1999-000001", "--reason", "x"],
                    ["credit-notes", "create", "INV-1999-000001", "--full", "--reason", "x"]):  # fmt: skip
        assert "Error: no invoice numbered 'INV-1999-000001'" in run(*command, code=1)


def test_void_uncollectible_mark_paid_and_reruns(cli):
    run, engine, _ = cli
    usd = finalized(engine, "acme", "USD", "10.00", "0.2")
    kwd = finalized(engine, "souq", "KWD", "1.234", "0")
    out = run("invoices", "void", usd, "--reason", "issued by mistake", "--actor", "alice")
    assert f"{usd}: void; status void, amount due 0.00 USD" in out and f"gateway void-{usd}: skipped" in out
    assert f"{usd}: already void" in run("invoices", "void", usd, "--reason", "again")
    out = run("invoices", "mark-paid", usd, "--reason", "x", code=1)
    assert f"Error: invoice {usd} is void: it cannot become paid (void is final)" in out
    out = run("invoices", "mark-uncollectible", kwd, "--reason", "bankrupt")
    assert "status uncollectible, amount due 1.234 KWD" in out
    out = run("invoices", "mark-paid", kwd, "--reason", "liquidator paid", "--method", "bank_transfer")
    assert f"{kwd}: paid (1.234 KWD recorded, bank_transfer); status paid, amount due 0.000 KWD" in out
    assert f"{kwd}: already paid" in run("invoices", "mark-paid", kwd, "--reason", "liquidator paid")
    history = run("invoices", "history", kwd)
    assert history.count("transition") == 2 and history.count("payment ") == 1
    assert f"Gateway: uncollectible-{kwd} skipped, paid-{kwd} skipped" in history
    assert "Missing option '--reason'" in run("invoices", "void", kwd, code=2)


def test_stripe_mirrors_the_change_and_a_failed_mirror_is_retried(cli, monkeypatch, stripe_server):
    """PAYMENT_GATEWAY=stripe (the Stripe-compatible test server): the change is mirrored with the
    ledger's key; Stripe answering 503 fails the effect (exit 1, the change kept), and the same
    command again retries it once."""
    from billing_pipeline.clients.payments import StripeGateway, stripe_client

    run, engine, _ = cli
    usd = finalized(engine, "acme", "USD", "10.00", "0.2")
    invoice = invoice_rows.load_invoices(engine, [1])[1].invoice
    synced = StripeGateway(stripe_client(stripe_server.api_key, api_base=stripe_server.api_base)).sync_invoice(
        invoice, org("acme"), idempotency_prefix="billing"
    )  # as the delivery does after finalization
    monkeypatch.setenv("PAYMENT_GATEWAY", "stripe")
    monkeypatch.setenv("STRIPE_API_KEY", stripe_server.api_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_server.api_base)
    stripe_server.fail_next(1, 503, f"/v1/invoices/{synced.external_id}/void", method="POST")
    out = run("invoices", "void", usd, "--reason", "issued twice", code=1)
    assert f"gateway void-{usd}: failed" in out and "503" in out
    assert "status void" in run("invoices", "history", usd)
    out = run("invoices", "void", usd, "--reason", "issued twice")
    assert f"gateway void-{usd}: succeeded" in out
    assert stripe_server.get(synced.external_id)["status"] == "void"
    voids = [r.idempotency_key for r in stripe_server.requests if r.path.endswith("/void")]
    assert voids == [f"billing-void-{usd}"] * 2  # the refused one and its retry: one key
