"""A small billing history for the report tests (orchestration and integration): three currencies,
partial payments, a credit note, an uncollectible invoice, churn and reactivation.

``EXPECTED_AGING`` and ``EXPECTED_MRR`` are computed by hand from the rows written here.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Engine, insert, update

from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import lifecycle, reference
from billing_pipeline.db.schema import credit_notes, invoices, subscriptions
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceLine
from billing_pipeline_tests.builders import UTC, org

AS_OF = dt.date(2026, 11, 30)  # the Monday of the AR aging partition 2026-11-23
MONTH = dt.date(2026, 11, 1)  # the MRR partition 2026-11-01


def _t(y, m, d):
    return dt.datetime(y, m, d, tzinfo=UTC)


def _invoice(engine: Engine, org_id: str, cur: str, start: dt.datetime, lines, *, issued: dt.datetime, terms=30):
    """A finalized monthly invoice for the month starting ``start``: lines (code, metric, amount), no tax."""
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    items = tuple(InvoiceLine(c, c, m, Decimal(1), None, Decimal(a)) for c, m, a in lines)
    subtotal = sum((i.amount for i in items), Decimal(0))
    draft = Invoice(org_id, start, end, BillingInterval.MONTHLY, cur, items, subtotal, Decimal(0), Decimal(0), subtotal)
    with engine.begin() as conn:
        invoice_rows.save_draft(conn, draft, plan_code="starter", catalog_version=1)
        _, inv_id, number = invoice_rows.finalize(
            conn, org_id, BillingInterval.MONTHLY, f"{start:%Y-%m-%d}", prefix="INV", issued_at=issued, terms_days=terms
        )
    return inv_id, number


def seed(engine: Engine) -> dict[str, str]:
    """Writes the history; returns invoice numbers by name."""
    reference.upsert_organizations(
        engine,
        [org("us_a"), org("us_b"), org("us_c"), org("eu_a", currency="EUR"), org("jp_a", currency="JPY")],
    )
    with engine.begin() as conn:  # subscriptions as rows: history the validation of today need not re-check
        conn.execute(insert(subscriptions), [
            {"org_id": "us_a", "plan_code": "starter", "starts_at": _t(2026, 1, 1), "ends_at": None},
            {"org_id": "us_b", "plan_code": "starter", "starts_at": _t(2026, 2, 1), "ends_at": _t(2026, 11, 15)},
            {"org_id": "us_c", "plan_code": "starter", "starts_at": _t(2026, 3, 1), "ends_at": _t(2026, 6, 1)},
            {"org_id": "us_c", "plan_code": "starter", "starts_at": _t(2026, 11, 10), "ends_at": None},
            {"org_id": "eu_a", "plan_code": "growth_eur", "starts_at": _t(2026, 11, 5), "ends_at": None},
            {"org_id": "jp_a", "plan_code": "hosting_jpy", "starts_at": _t(2026, 1, 1), "ends_at": None},
        ])  # fmt: skip
    n = {}
    # due 10-31: 30 days past due on 11-30 -> 1-30; 25.00 of 40.00 paid -> 15.00 due
    n["a_oct"], inv = _invoice(engine, "us_a", "USD", _t(2026, 10, 1), [("platform", None, "10.00"),
                               ("api", "api_calls", "30.00")], issued=_t(2026, 10, 1))[::-1]  # fmt: skip
    # due 10-01: 60 days -> 31-60; 100.00 with a 20.00 credit note -> 80.00 due
    n["b_sep"], inv_b = _invoice(engine, "us_b", "USD", _t(2026, 9, 1), [("platform", None, "100.00")],
                                 issued=_t(2026, 9, 1))[::-1]  # fmt: skip
    # due 12-05: current; 200.00 EUR, nothing paid
    n["e_nov"], _ = _invoice(engine, "eu_a", "EUR", _t(2026, 11, 1), [("platform", None, "99.00"),
                             ("api", "api_calls", "101.00")], issued=_t(2026, 11, 5))[::-1]  # fmt: skip
    # due 08-01: 121 days -> 90+; 5,000 JPY, 1,000 paid -> 4,000 due
    n["j_jun"], inv_j = _invoice(engine, "jp_a", "JPY", _t(2026, 6, 1), [("seats", "seats", "5000")],
                                 issued=_t(2026, 7, 2))[::-1]  # fmt: skip
    # uncollectible, 12.00 USD: owed but outside the buckets
    n["c_may"], inv_c = _invoice(engine, "us_c", "USD", _t(2026, 5, 1), [("platform", None, "12.00")],
                                 issued=_t(2026, 5, 1))[::-1]  # fmt: skip
    with engine.begin() as conn:
        lifecycle.insert_payment(conn, inv, Decimal("25.00"), "USD", "bank_transfer", "t-1", _t(2026, 11, 2))
        lifecycle.insert_payment(conn, inv, Decimal("15.00"), "USD", "bank_transfer", "t-late", _t(2026, 12, 1))
        lifecycle.insert_payment(conn, inv_j, Decimal("1000"), "JPY", "bank_transfer", "t-2", _t(2026, 8, 1))
        conn.execute(insert(credit_notes).values(
            number="CN-2026-000001", invoice_id=inv_b, request_key="k1", currency="USD", subtotal_minor=2000,
            tax_rate=Decimal(0), tax_minor=0, total_minor=2000, reason="goodwill", actor="test",
            issued_at=_t(2026, 10, 15)))  # fmt: skip
        conn.execute(update(invoices).where(invoices.c.id == inv_c).values(status="uncollectible"))
    return n


#: currency -> bucket -> amount due on AS_OF
EXPECTED_AGING = {
    "USD": {"current": "0.00", "1-30": "15.00", "31-60": "80.00", "61-90": "0.00", "90+": "0.00"},
    "EUR": {"current": "200.00", "1-30": "0.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"},
    "JPY": {"current": "0", "1-30": "0", "31-60": "0", "61-90": "0", "90+": "4000"},
}
#: November 2026, by hand: USD start us_a + us_b = 20.00; us_b churns (-10.00), us_c comes back
#: (+10.00 reactivation); EUR eu_a is new (+99.00); JPY jp_a has no flat charge (0 MRR, 1 customer).
EXPECTED_MRR = {
    "USD": {
        "start": "20.00",
        "end": "20.00",
        "churn": "-10.00",
        "reactivation": "10.00",
        "new": "0.00",
        "arr": "240.00",
    },
    "EUR": {"start": "0.00", "end": "99.00", "churn": "0.00", "reactivation": "0.00", "new": "99.00", "arr": "1188.00"},
    "JPY": {"start": "0", "end": "0", "churn": "0", "reactivation": "0", "new": "0", "arr": "0"},
}
