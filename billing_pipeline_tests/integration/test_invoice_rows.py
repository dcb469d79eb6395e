"""Invoice rows on SQLite and PostgreSQL: immutability once finalized, gapless numbering."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from billing_pipeline.db import invoices as rows
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceLine
from billing_pipeline_tests.builders import UTC, org, setup_database

pytestmark = pytest.mark.integration
OCT, NOV = dt.datetime(2026, 10, 1, tzinfo=UTC), dt.datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'billing.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("billing_db_url")
    )
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org(f"o{i}") for i in range(20)])
    return engine


def draft(org_id: str, amount: str = "10.00") -> Invoice:
    line = InvoiceLine("platform", "Platform fee", None, Decimal(1), Decimal(amount), Decimal(amount))
    return Invoice(
        org_id,
        OCT,
        NOV,
        BillingInterval.MONTHLY,
        "USD",
        (line,),
        Decimal(amount),
        Decimal("0.2"),
        Decimal(amount) * Decimal("0.2"),
        Decimal(amount) * Decimal("1.2"),
    )


def test_finalized_invoice_is_never_rewritten(engine):
    with engine.begin() as conn:
        rows.save_draft(conn, draft("o1"), plan_code="starter", catalog_version=1)
        rows.save_draft(conn, draft("o1", "12.00"), plan_code="starter", catalog_version=1)  # drafts: replaced
    with engine.begin() as conn:
        outcome, invoice_id, number = rows.finalize(
            conn, "o1", BillingInterval.MONTHLY, "2026-10-01", prefix="INV", issued_at=NOV, terms_days=30
        )
    assert outcome is rows.FinalizeOutcome.FINALIZED and number == "INV-2026-000001"
    stored = rows.load_invoices(engine, [invoice_id])[invoice_id].invoice
    assert stored.total == Decimal("14.40") and stored.due_at == NOV + dt.timedelta(days=30)
    with engine.begin() as conn, pytest.raises(rows.FinalizedInvoiceError):
        rows.save_draft(conn, draft("o1", "99.00"), plan_code="starter", catalog_version=1)
    with engine.begin() as conn:
        again = rows.finalize(
            conn, "o1", BillingInterval.MONTHLY, "2026-10-01", prefix="INV", issued_at=NOV, terms_days=30
        )
    assert again == (rows.FinalizeOutcome.ALREADY_FINALIZED, invoice_id, "INV-2026-000001")
    assert rows.load_invoices(engine, [invoice_id])[invoice_id].invoice.total == Decimal("14.40")


def test_numbers_are_gapless_under_concurrent_finalization(engine):
    orgs = [f"o{i}" for i in range(20)]
    with engine.begin() as conn:
        for o in orgs:
            rows.save_draft(conn, draft(o), plan_code="starter", catalog_version=1)

    def finalize(o: str, fail: bool) -> str | None:
        try:
            with engine.begin() as conn:
                _, _, number = rows.finalize(
                    conn, o, BillingInterval.MONTHLY, "2026-10-01", prefix="INV", issued_at=NOV, terms_days=30
                )
                if fail:
                    raise RuntimeError("rolled back after taking a number")
                return number
        except RuntimeError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(finalize, orgs, [i % 5 == 0 for i in range(20)]))
    taken = sorted(n for n in numbers if n)
    assert taken == [f"INV-2026-{i:06d}" for i in range(1, 17)]  # 4 rollbacks gave their numbers back
