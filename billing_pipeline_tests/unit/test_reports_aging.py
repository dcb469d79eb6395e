"""AR aging: bucket boundaries, and the report against a deliberately naive computation."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from billing_pipeline.domain import money
from billing_pipeline.domain.model import InvoiceStatus
from billing_pipeline.domain.receivables import Payment
from billing_pipeline.domain.reports import AGING_BUCKETS, AgingInvoice, aging_bucket, ar_aging, days_past_due

AS_OF = dt.date(2026, 11, 30)
UTC = dt.UTC


def _inv(n, *, due_days_ago, total="100.00", cur="USD", status=InvoiceStatus.FINALIZED, payments=(), credits=()):
    due = dt.datetime(2026, 11, 30, 9, 0, tzinfo=UTC) - dt.timedelta(days=due_days_ago)
    return AgingInvoice(
        n, f"INV-{n}", f"org{n % 3}", f"Org {n % 3}", cur, status, due - dt.timedelta(days=30), due,
        Decimal(total), tuple(payments), tuple(credits),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(-5, "current"), (0, "current"), (1, "1-30"), (30, "1-30"), (31, "31-60"), (60, "31-60"), (61, "61-90"),
     (90, "61-90"), (91, "90+"), (400, "90+")],
)  # fmt: skip
def test_bucket_boundaries(days, bucket):
    assert aging_bucket(days) == bucket
    report = ar_aging([_inv(1, due_days_ago=days)], AS_OF)
    (usd,) = report.currencies
    assert usd.totals[bucket] == Decimal("100.00")
    assert sum(usd.totals.values()) == Decimal("100.00")
    assert usd.oldest[0].days_past_due == days


def test_days_counted_on_the_due_date_in_utc():
    assert days_past_due(dt.date(2026, 11, 30), AS_OF) == 0
    # due 23:30 on the 29th in UTC-5 is the 30th in UTC: not yet past due on the 30th
    late = dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    inv = AgingInvoice(1, "INV-1", "o", "O", "USD", InvoiceStatus.FINALIZED, late - dt.timedelta(days=30), late,
                       Decimal("5.00"))  # fmt: skip
    assert ar_aging([inv], AS_OF).currencies[0].totals["current"] == Decimal("5.00")


def test_partial_payments_credit_notes_and_exclusions():
    at = dt.datetime(2026, 11, 1, tzinfo=UTC)
    after = dt.datetime(2026, 11, 30, 1, tzinfo=UTC)  # after the cutoff (as_of 00:00): not counted
    rows = [
        _inv(1, due_days_ago=10, payments=[Payment(Decimal("30.00"), "USD", "succeeded", at=at),
                                           Payment(Decimal("50.00"), "USD", "failed", at=at),
                                           Payment(Decimal("20.00"), "USD", "succeeded", at=after)]),
        _inv(2, due_days_ago=40, credits=[(at, Decimal("25.00"))]),
        _inv(3, due_days_ago=5, payments=[Payment(Decimal("100.00"), "USD", "succeeded", at=at)]),  # settled
        _inv(4, due_days_ago=5, status=InvoiceStatus.VOID),
        _inv(5, due_days_ago=5, status=InvoiceStatus.PAID),
        _inv(6, due_days_ago=200, status=InvoiceStatus.UNCOLLECTIBLE, total="12.00"),
        _inv(7, due_days_ago=3, cur="JPY", total="1500"),
    ]  # fmt: skip
    report = ar_aging(rows, AS_OF)
    jpy, usd = report.currencies
    assert usd.totals == {"current": 0, "1-30": Decimal("70.00"), "31-60": Decimal("75.00"), "61-90": 0, "90+": 0}
    assert usd.uncollectible == Decimal("12.00")
    assert usd.past_due == Decimal("145.00")
    assert [o.number for o in usd.oldest] == ["INV-2", "INV-1"]
    assert jpy.totals["1-30"] == Decimal("1500") and str(jpy.totals["current"]) == "0"
    assert report.open_invoices == 3


def _naive(rows, as_of):
    """Integer minor units, a loop per invoice, buckets as explicit ranges: nothing shared with ar_aging."""
    ranges = {"current": range(-100_000, 1), "1-30": range(1, 31), "31-60": range(31, 61), "61-90": range(61, 91),
              "90+": range(91, 100_000)}  # fmt: skip
    cutoff = dt.datetime.combine(as_of, dt.time(), tzinfo=UTC)
    out: dict[tuple[str, str, str], int] = {}
    for r in rows:
        if r.status != InvoiceStatus.FINALIZED or r.issued_at >= cutoff:
            continue
        units = round(r.total * 10 ** money.exponent(r.currency))
        for p in r.payments:
            if p.status == "succeeded" and p.at < cutoff:
                units -= round(p.amount * 10 ** money.exponent(r.currency))
        for at, amount in r.credit_notes:
            if at < cutoff:
                units -= round(amount * 10 ** money.exponent(r.currency))
        if units <= 0:
            continue
        days = (as_of - r.due_at.astimezone(UTC).date()).days
        bucket = next(b for b, rng in ranges.items() if days in rng)
        key = (r.currency, r.org_id, bucket)
        out[key] = out.get(key, 0) + units
    return out


def test_generated_data_matches_the_naive_computation():
    rnd = random.Random(12)
    rows = []
    statuses = [InvoiceStatus.FINALIZED] * 6 + [InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE]
    for n in range(400):
        cur = rnd.choice(["USD", "EUR", "JPY"])
        exp = money.exponent(cur)
        total = money.from_minor(rnd.randint(1, 500_000), cur)
        due = dt.datetime(2026, 12, 20, tzinfo=UTC) - dt.timedelta(days=rnd.randint(0, 150), hours=rnd.randint(0, 23))
        pays = []
        for _ in range(rnd.randint(0, 3)):
            amount = money.from_minor(rnd.randint(1, max(1, int(total.scaleb(exp)) // 2)), cur)
            at = due - dt.timedelta(days=rnd.randint(-20, 20))
            pays.append(Payment(amount, cur, rnd.choice(["succeeded", "succeeded", "failed", "pending"]), at=at))
        credits = [(due, money.from_minor(rnd.randint(1, 1000), cur))] if rnd.random() < 0.2 else []
        rows.append(AgingInvoice(n, f"INV-{n:04d}", f"org{rnd.randint(0, 11)}", "x", cur, rnd.choice(statuses),
                                 due - dt.timedelta(days=14), due, total, tuple(pays), tuple(credits)))  # fmt: skip
    report = ar_aging(rows, AS_OF)
    got = {}
    for c in report.currencies:
        assert c.currency in {"USD", "EUR", "JPY"}
        for r in c.rows:
            for b in AGING_BUCKETS:
                if r.buckets[b]:
                    got[(c.currency, r.org_id, b)] = money.to_minor(r.buckets[b], c.currency)
        assert c.total == sum(r.total for r in c.rows)
    expected = _naive(rows, AS_OF)
    assert got == expected
    assert len({k[0] for k in expected}) == 3 and len({k[2] for k in expected}) == 5  # every currency and bucket
