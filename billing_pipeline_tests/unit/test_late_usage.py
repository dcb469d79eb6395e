"""domain.late_usage: the rule for usage that arrives after its period was finalized.

Each case re-prices a whole finalized period and compares it charge by charge with what was
billed: the adjustment is the difference of the rounded charge amounts (never the extra units
at a marginal price), the minimum spend is re-applied, and a decrease is never credited.
"""

import dataclasses
import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.domain import periods
from billing_pipeline.domain.catalog import parse_catalog
from billing_pipeline.domain.invoices import build_invoice
from billing_pipeline.domain.late_usage import Billed, billed_by_charge, period_adjustment, with_adjustments
from billing_pipeline.domain.model import BillingInterval, InvoiceStatus
from billing_pipeline.domain.pricing import MetricUsage

from .examples import example_catalog, organization

CATALOG = parse_catalog(example_catalog())
STARTER, PRO_EU = CATALOG.plans["starter"], CATALOG.plans["pro_eu"]
OCTOBER = periods.monthly_period(2026, 10)
WEEK = periods.weekly_period(dt.date(2026, 10, 5))
EUR_WEEKLY = organization(currency="EUR", billing_interval=BillingInterval.WEEKLY)


def finalized(plan, period, usage, org=None):
    invoice = build_invoice(org or organization(), plan, period, usage)
    return dataclasses.replace(invoice, status=InvoiceStatus.FINALIZED, number="INV-2026-000001")


def adjust(plan, period, before, after, *, org=None, adjusted=None):
    source = finalized(plan, period, before, org)
    repriced = build_invoice(org or organization(), plan, period, after)
    return source, repriced, period_adjustment(source, repriced, plan, adjusted or {}, period_label=period.label)


def calls(n: int) -> dict:
    return {"api_calls": MetricUsage(D(n), n)}


def eur(storage: int, seats: int = 0) -> dict:
    return {"storage_gb": MetricUsage(D(storage), 1), "seats": MetricUsage(D(seats), 1)}


def deltas(adjustment):
    return [(c.charge_code, c.usage, c.quantity, str(c.amount)) for c in adjustment.charges]


def test_a_graduated_charge_bills_the_difference_of_the_whole_period_priced_again():
    # 4 GB: 4 x 7 = 28.00. Late peak 12 GB: 5 x 7 + 5 x 6.50 + 2 x 6 = 79.50. The 8 extra GB at the
    # marginal 6.00 would be 48.00; the period re-priced owes 51.50.
    _, _, adjustment = adjust(PRO_EU, WEEK, eur(4), eur(12), org=EUR_WEEKLY)
    assert deltas(adjustment) == [("storage", 8, 8, "51.50")]
    assert adjustment.reviews == () and adjustment.amount == D("51.50")
    [line] = adjustment.lines()
    assert line.description == "Adjustment for Week of 2026-10-05 (INV-2026-000001): Storage +8 (late usage)"
    assert (line.charge_code, line.metric_code, line.quantity, line.unit_price, line.amount) == (
        "storage",
        "storage_gb",
        8,
        None,
        D("51.50"),
    )


@pytest.mark.parametrize(
    ("late_calls", "api", "true_up_line", "true_up", "net", "lines"),
    [
        # billed: 20 platform + 10 (0 calls: the first tier's flat fee) + 0 users = 30, true-up 20 -> 50
        (15000, "12.00", 0, "-12.00", "0.00", 0),  # 22.00 for calls; charges 42: still under 50, nothing owed
        (30000, "24.00", -1, "-20.00", "4.00", 2),  # 34.00 for calls; charges 54: no true-up line, 4.00 owed
    ],
)
def test_the_minimum_spend_absorbs_late_usage_first(late_calls, api, true_up_line, true_up, net, lines):
    _, _, adjustment = adjust(STARTER, OCTOBER, calls(0), calls(late_calls))
    assert deltas(adjustment) == [
        ("api_calls", late_calls, late_calls, api),
        ("minimum_spend", 0, true_up_line, true_up),
    ]
    assert adjustment.amount == D(net) and len(adjustment.lines()) == lines


def test_nothing_changed_nothing_owed():
    _, _, adjustment = adjust(STARTER, OCTOBER, calls(39000), calls(39000))
    assert adjustment.charges == () and adjustment.reviews == () and adjustment.amount == 0


def test_a_cheaper_volume_tier_is_not_credited():
    # 9,000 calls: 9.00 + 10 = 19.00; 11,000 fall in the second tier: 8.80 + 10 = 18.80 (less)
    _, _, adjustment = adjust(STARTER, OCTOBER, calls(9000), calls(11000))
    assert adjustment.charges == () and adjustment.lines() == ()
    [review] = adjustment.reviews
    assert (review.charge_code, review.usage, str(review.amount)) == ("api_calls", 2000, "-0.20")


def test_a_decrease_is_left_for_review_and_the_other_charges_are_still_billed():
    # seats is `latest`: a late event with a later timestamp says 3 instead of 5 (-24.00), storage grew
    _, _, adjustment = adjust(PRO_EU, WEEK, eur(4, seats=5), eur(6, seats=3), org=EUR_WEEKLY)
    assert deltas(adjustment) == [("storage", 2, 2, "13.50")]  # 5 x 7 + 6.50 = 41.50 vs 28.00
    [review] = adjustment.reviews
    assert (review.charge_code, review.usage, str(review.amount)) == ("seats", -2, "-24.00")
    assert adjustment.amount == D("13.50")


def test_adjustments_already_on_other_invoices_count_as_billed():
    source, repriced, first = adjust(PRO_EU, WEEK, eur(4), eur(12), org=EUR_WEEKLY)
    already = {c.charge_code: Billed(c.usage, c.quantity, c.amount) for c in first.charges}
    again = period_adjustment(source, repriced, PRO_EU, already, period_label=WEEK.label)
    assert again.charges == () and again.reviews == ()
    later = build_invoice(EUR_WEEKLY, PRO_EU, WEEK, eur(20))  # a second late event: 20 GB
    more = period_adjustment(source, later, PRO_EU, already, period_label=WEEK.label)
    assert deltas(more) == [("storage", 8, 8, "48.00")]  # 127.50 for 20 GB, 79.50 billed so far


def test_every_charge_adds_up_to_the_period_priced_again_exactly():
    usage_before = {**calls(12345), "active_users": MetricUsage(D(150), 150)}
    usage_after = {**calls(67891), "active_users": MetricUsage(D(420), 420)}
    source, repriced, adjustment = adjust(STARTER, OCTOBER, usage_before, usage_after)
    billed = billed_by_charge(source)
    now = billed_by_charge(repriced)
    assert [c.charge_code for c in adjustment.charges] == ["api_calls", "users", "minimum_spend"]
    for charge in adjustment.charges:  # 19.88 + 30.85 = 50.73; 5.00 + 15.00 = 20.00; 5.12 - 5.12 = 0
        assert billed[charge.charge_code].amount + charge.amount == now.get(charge.charge_code, Billed()).amount
    assert source.subtotal + adjustment.amount == repriced.subtotal == D("90.73")


def test_adjustment_lines_join_the_next_invoice_and_its_tax():
    _, _, adjustment = adjust(STARTER, OCTOBER, calls(0), calls(30000))
    november = build_invoice(organization(), STARTER, periods.monthly_period(2026, 11), calls(40000))
    combined = with_adjustments(november, [adjustment])
    assert combined.lines[: len(november.lines)] == november.lines
    assert [line.amount for line in combined.lines[len(november.lines) :]] == [D("24.00"), D("-20.00")]
    assert combined.subtotal == november.subtotal + D("4.00")
    assert combined.tax == (combined.subtotal * D("0.20")).quantize(D("0.01"))
    assert combined.total == combined.subtotal + combined.tax
    assert with_adjustments(november, []) == november


def test_late_usage_is_never_added_in_another_currency():
    _, _, adjustment = adjust(PRO_EU, WEEK, eur(4), eur(12), org=EUR_WEEKLY)
    november = build_invoice(organization(), STARTER, periods.monthly_period(2026, 11), calls(1))
    with pytest.raises(ValueError, match="is in EUR; invoice of org_1 is in USD"):
        with_adjustments(november, [adjustment])
