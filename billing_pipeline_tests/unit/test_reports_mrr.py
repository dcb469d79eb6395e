"""MRR/ARR: hand-computed tables (Lago's worked example) and a naive recomputation on generated data."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from fractions import Fraction

import pytest

from billing_pipeline.domain import money
from billing_pipeline.domain.catalog import Charge, ChargeModel, FlatParams, PerUnitParams, Plan
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.reports import InvoicedLine, MrrSubscription, monthly_recurring, mrr_report
from billing_pipeline.domain.reports.mrr import ReportInconsistent, movements_between

UTC = dt.UTC


def _plan(code, amount, cur="USD", interval=BillingInterval.MONTHLY):
    return Plan(code, code, cur, interval, (
        Charge("base", "Base", ChargeModel.FLAT, None, FlatParams(Decimal(amount))),
        Charge("calls", "Calls", ChargeModel.PER_UNIT, "api_calls", PerUnitParams(Decimal("0.01"))),
    ))  # fmt: skip


def _t(y, m, d):
    return dt.datetime(y, m, d, tzinfo=UTC)


PLANS = {"p100": _plan("p100", "100"), "p200": _plan("p200", "200"), "w10": _plan("w10", "10.00", "EUR", "weekly")}


def test_normalization_and_rounding():
    assert monthly_recurring(_plan("m", "49.99")) == Decimal("49.99")
    assert monthly_recurring(_plan("w", "10.00", "EUR", BillingInterval.WEEKLY)) == Decimal("43.33")  # 520/12
    assert monthly_recurring(_plan("w", "10.01", "EUR", BillingInterval.WEEKLY)) == Decimal("43.38")  # 43.376..
    assert monthly_recurring(_plan("j", "1001", "JPY", BillingInterval.WEEKLY)) == Decimal("4338")  # 4337.67


def test_lago_worked_example_upgrade_then_termination():
    subs = [MrrSubscription("acme", "p100", _t(2026, 1, 1), _t(2026, 3, 15)),
            MrrSubscription("acme", "p200", _t(2026, 3, 15), _t(2026, 4, 10))]  # fmt: skip
    (march,) = mrr_report(subs, PLANS, [], dt.date(2026, 3, 1)).currencies
    assert (march.start_mrr, march.end_mrr) == (Decimal(100), Decimal(200))
    assert march.movements == {"new": 0, "reactivation": 0, "expansion": 100, "contraction": 0, "churn": 0}
    (april,) = mrr_report(subs, PLANS, [], dt.date(2026, 4, 1)).currencies
    assert (april.start_mrr, april.end_mrr, april.movements["churn"]) == (Decimal(200), Decimal(0), Decimal(-200))
    assert april.customer_moves == {"new": 0, "reactivated": 0, "churned": 1} and april.customers_end == 0
    assert [v for _, v in march.trend][-3:] == [Decimal(100), Decimal(100), Decimal(200)]
    assert march.trend[-1][0] == "2026-03" and march.trend[0][0] == "2025-04" and len(march.trend) == 12


def test_new_reactivation_contraction_currencies_apart_and_invoiced_labels():
    subs = [
        MrrSubscription("a", "p100", _t(2026, 5, 10), None),  # new in May
        MrrSubscription("b", "p100", _t(2026, 1, 1), _t(2026, 3, 1)),  # left in February...
        MrrSubscription("b", "p200", _t(2026, 5, 20), None),  # ... back in May: reactivation
        MrrSubscription("c", "p200", _t(2026, 1, 1), _t(2026, 5, 3)),
        MrrSubscription("c", "p100", _t(2026, 5, 3), None),  # downgrade: contraction
        MrrSubscription("d", "w10", _t(2026, 2, 1), None),  # EUR, weekly: 43.33, no movement
        MrrSubscription("e", "p100", _t(2026, 5, 2), _t(2026, 5, 20)),  # in and out inside May: nothing
    ]
    lines = [InvoicedLine("c", "USD", "base", None, Decimal("200.00")),
             InvoicedLine("c", "USD", "calls", "api_calls", Decimal("12.34")),
             InvoicedLine("c", "USD", "minimum_spend", None, Decimal("7.66")),
             InvoicedLine("d", "EUR", "calls", "api_calls", Decimal("1.00"))]  # fmt: skip
    report = mrr_report(subs, PLANS, lines, dt.date(2026, 5, 17))
    assert report.month == "2026-05" and report.as_of == dt.date(2026, 6, 1)
    eur, usd = report.currencies
    assert usd.movements == {"new": 100, "reactivation": 200, "expansion": 0, "contraction": -100, "churn": 0}
    assert (usd.start_mrr, usd.end_mrr, usd.arr) == (Decimal(200), Decimal(400), Decimal(4800))
    assert (usd.customers_start, usd.customers_end) == (1, 3)
    assert usd.customer_moves == {"new": 1, "reactivated": 1, "churned": 0}
    assert usd.invoiced == {"recurring": Decimal("200.00"), "usage": Decimal("12.34"), "minimum spend": Decimal("7.66")}
    assert (eur.start_mrr, eur.end_mrr, eur.net_change) == (Decimal("43.33"), Decimal("43.33"), 0)
    assert eur.invoiced["usage"] == Decimal("1.00") and eur.invoiced["recurring"] == 0


def test_a_subscription_from_the_1st_is_new_that_month_one_ending_on_the_1st_churns_that_month():
    subs = [MrrSubscription("a", "p100", _t(2026, 6, 1), _t(2026, 8, 1))]
    may, june, july, august, sept = (mrr_report(subs, PLANS, [], dt.date(2026, m, 1)).currencies for m in range(5, 10))
    assert may == () and june[0].movements["new"] == 100 and june[0].start_mrr == 0
    assert july[0].net_change == 0 and july[0].end_mrr == 100  # still there at July's close
    assert august[0].movements["churn"] == -100 and august[0].end_mrr == 0 and sept == ()


def test_unknown_plan_refused_and_reconciliation_is_checked():
    with pytest.raises(ValueError, match="nope"):
        mrr_report([MrrSubscription("a", "nope", _t(2026, 1, 1), None)], PLANS, [], dt.date(2026, 1, 1))
    moves, _ = movements_between("USD", {"a": Decimal(1)}, {"a": Decimal(3)}, set())
    assert moves["expansion"] == 2
    assert issubclass(ReportInconsistent, AssertionError)


def _naive_mrr(subs, plans, at):
    """Minor units per currency: every active subscription's flat amount x months factor, half-up once."""
    out: dict[str, int] = {}
    for s in subs:
        if s.starts_at < at and (s.ends_at is None or s.ends_at >= at):  # started before, not ended before
            p = plans[s.plan_code]
            flat = sum(c.params.amount for c in p.charges if c.model == ChargeModel.FLAT)
            units = (
                Fraction(flat) * 10 ** money.exponent(p.currency) * (Fraction(52, 12) if p.interval == "weekly" else 1)
            )
            out[p.currency] = out.get(p.currency, 0) + int(units + Fraction(1, 2))
    return out


def test_generated_subscriptions_match_the_naive_computation():
    rnd = random.Random(7)
    plans = {}
    for cur in ("USD", "EUR", "JPY"):
        for i in range(3):
            amount = money.from_minor(rnd.randint(100, 99_999), cur)
            interval = BillingInterval.WEEKLY if i == 2 else BillingInterval.MONTHLY
            plans[f"{cur}{i}"] = _plan(f"{cur}{i}", amount, cur, interval)
    subs = []
    for n in range(120):
        cur = rnd.choice(["USD", "EUR", "JPY"])
        t = _t(2025, 6, 1) + dt.timedelta(days=rnd.randint(0, 300))
        for _ in range(rnd.randint(1, 3)):  # up to 3 back-to-back or gapped subscriptions
            end = t + dt.timedelta(days=rnd.randint(10, 200)) if rnd.random() < 0.6 else None
            subs.append(MrrSubscription(f"org{n}", f"{cur}{rnd.randint(0, 2)}", t, end))
            if end is None:
                break
            t = end + dt.timedelta(days=rnd.choice([0, 0, 45]))  # 45-day gaps make churn then reactivation
    month = dt.date(2026, 2, 1)
    report = mrr_report(subs, plans, [], month)
    start, end = _naive_mrr(subs, plans, _t(2026, 2, 1)), _naive_mrr(subs, plans, _t(2026, 3, 1))
    assert {c.currency for c in report.currencies} == {"USD", "EUR", "JPY"}
    for c in report.currencies:
        assert money.to_minor(c.start_mrr, c.currency) == start.get(c.currency, 0)
        assert money.to_minor(c.end_mrr, c.currency) == end.get(c.currency, 0)
        assert c.start_mrr + c.net_change == c.end_mrr
        for i, (label, value) in enumerate(c.trend):
            first = _t(2025, 3 + i, 1) if i < 10 else _t(2026, i - 9, 1)
            assert label == f"{first:%Y-%m}"
            nxt = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
            assert money.to_minor(value, c.currency) == _naive_mrr(subs, plans, nxt).get(c.currency, 0)
    kinds = {k for c in report.currencies for k, v in c.movements.items() if v}
    assert {"new", "churn", "expansion", "contraction"} <= kinds
