"""Daily analytics against hand-computed days and a naive recomputation on generated data."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from billing_pipeline.domain import money
from billing_pipeline.domain.model import InvoiceStatus
from billing_pipeline.domain.receivables import Payment
from billing_pipeline.domain.reports import AgingInvoice, MrrSubscription, daily_analytics
from billing_pipeline_tests.unit.test_reports_mrr import PLANS, _t

UTC = dt.UTC
DAY = dt.date(2026, 11, 10)


def _inv(n, issued, total, cur="USD", status=InvoiceStatus.FINALIZED, payments=()):
    return AgingInvoice(n, f"INV-{n}", "o", "O", cur, status, issued, issued + dt.timedelta(days=30),
                        Decimal(total), tuple(payments))  # fmt: skip


def test_a_day_by_hand():
    pay = Payment(Decimal("30.00"), "USD", "succeeded", at=dt.datetime(2026, 11, 10, 23, 59, tzinfo=UTC))
    invoices = [
        _inv(1, dt.datetime(2026, 11, 10, 0, 0, tzinfo=UTC), "100.00"),  # issued today, open
        _inv(2, dt.datetime(2026, 11, 10, 12, tzinfo=UTC), "50.00", status=InvoiceStatus.VOID),  # void: nothing
        _inv(3, dt.datetime(2026, 11, 1, tzinfo=UTC), "40.00", status=InvoiceStatus.PAID, payments=[pay]),
        _inv(4, dt.datetime(2026, 9, 1, tzinfo=UTC), "70.00", payments=[
            Payment(Decimal("5.00"), "USD", "failed", at=dt.datetime(2026, 11, 10, 9, tzinfo=UTC))]),  # overdue
        _inv(5, dt.datetime(2026, 11, 11, tzinfo=UTC), "999.00"),  # tomorrow
        _inv(6, dt.datetime(2026, 11, 10, 8, tzinfo=UTC), "1500", cur="JPY"),
    ]  # fmt: skip
    subs = [MrrSubscription("new", "p100", _t(2026, 11, 10), None),
            MrrSubscription("gone", "p100", _t(2026, 1, 1), _t(2026, 11, 10) + dt.timedelta(hours=5)),
            MrrSubscription("back", "p100", _t(2026, 1, 1), _t(2026, 2, 1)),
            MrrSubscription("back", "p200", _t(2026, 11, 10) + dt.timedelta(hours=1), None)]  # fmt: skip
    jpy, usd = daily_analytics(invoices, subs, PLANS, DAY).currencies
    assert (usd.invoiced, usd.invoices_issued, usd.collected, usd.payments) == (
        Decimal("100.00"),
        1,
        Decimal("30.00"),
        1,
    )
    assert usd.customers == {"new": 1, "reactivated": 1, "churned": 1}
    assert (usd.conversion_paid, usd.conversion_issued, usd.conversion) == (1, 2, Decimal("0.5000"))
    assert usd.overdue == Decimal("70.00")  # invoice 4 due 2026-10-01; invoice 1 not yet due
    assert (jpy.invoiced, jpy.overdue, jpy.customers["new"]) == (Decimal("1500"), Decimal("0"), 0)


def test_generated_days_match_a_naive_count():
    rnd = random.Random(3)
    invoices = []
    for n in range(300):
        cur = rnd.choice(["USD", "EUR", "JPY"])
        issued = dt.datetime(2026, 10, 1, tzinfo=UTC) + dt.timedelta(hours=rnd.randint(0, 24 * 60))
        pays = tuple(
            Payment(money.from_minor(rnd.randint(1, 999), cur), cur, rnd.choice(["succeeded", "failed"]),
                    at=issued + dt.timedelta(hours=rnd.randint(0, 24 * 20)))
            for _ in range(rnd.randint(0, 2))
        )  # fmt: skip
        status = rnd.choice([InvoiceStatus.FINALIZED, InvoiceStatus.PAID, InvoiceStatus.VOID])
        invoices.append(_inv(n, issued, money.from_minor(rnd.randint(1, 99_999), cur), cur, status, pays))
    for day in (dt.date(2026, 10, 20), dt.date(2026, 11, 3)):
        start = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
        end = start + dt.timedelta(days=1)
        for c in daily_analytics(invoices, [], {}, day).currencies:
            mine = [i for i in invoices if i.currency == c.currency and i.status != "void"]
            assert c.invoiced == sum((i.total for i in mine if start <= i.issued_at < end), Decimal(0))
            assert c.collected == sum(
                (p.amount for i in mine for p in i.payments if p.status == "succeeded" and start <= p.at < end),
                Decimal(0),
            )
            recent = [i for i in mine if start - dt.timedelta(days=29) <= i.issued_at < end]
            assert (c.conversion_paid, c.conversion_issued) == (sum(i.status == "paid" for i in recent), len(recent))


def test_weekly_bi_is_seven_days_and_their_sums():
    from billing_pipeline.domain.reports import weekly_bi

    pay = Payment(Decimal("7.00"), "USD", "succeeded", at=dt.datetime(2026, 11, 12, 5, tzinfo=UTC))
    invoices = [
        _inv(1, dt.datetime(2026, 11, 8, 1, tzinfo=UTC), "10.00", payments=[pay]),
        _inv(2, dt.datetime(2026, 11, 14, 23, tzinfo=UTC), "5.00"),
        _inv(3, dt.datetime(2026, 11, 15, 0, tzinfo=UTC), "99.00"),
    ]  # fmt: skip  (next week)
    week = weekly_bi(invoices, [], {}, dt.date(2026, 11, 8))
    assert [d.day.isoformat() for d in week.days][::6] == ["2026-11-08", "2026-11-14"]
    assert week.total("USD", "invoiced") == Decimal("15.00") and week.total("USD", "collected") == Decimal("7.00")
    assert week.series("USD", "collected")[4] == ("2026-11-12", Decimal("7.00"))
    assert week.currencies == ("USD",)
