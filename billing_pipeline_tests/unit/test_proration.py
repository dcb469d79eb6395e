"""domain.proration: plan changes inside a period, prorated by day, each line rounded once."""

import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.domain import periods
from billing_pipeline.domain.catalog import Charge, ChargeModel, FlatParams, Plan
from billing_pipeline.domain.catalog.types import PerUnitParams
from billing_pipeline.domain.customers import Subscription
from billing_pipeline.domain.invoices import build_invoice
from billing_pipeline.domain.model import BillingInterval, OrganizationStatus
from billing_pipeline.domain.pricing import MetricUsage
from billing_pipeline.domain.proration import (
    ProrationError,
    billing_refusal,
    days_split,
    prorated_amount,
    prorated_flat_lines,
    segments,
)

from .examples import organization

UTC = dt.UTC


def _plan(code: str, fee: str, unit: str = "0.001", interval=BillingInterval.MONTHLY) -> Plan:
    return Plan(
        code=code,
        name=code.title(),
        currency="USD",
        interval=interval,
        charges=(
            Charge("platform", "Platform fee", ChargeModel.FLAT, None, FlatParams(D(fee))),
            Charge("api_calls", "API calls", ChargeModel.PER_UNIT, "api_calls", PerUnitParams(D(unit))),
        ),
    )


BASIC, PRO = _plan("basic", "49"), _plan("pro", "199", "0.0005")
NOVEMBER = periods.monthly_period(2026, 11)  # 30 days


def _day(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "at", "split", "old", "new"),
    [
        # the 10th of a 30-day month: 9 days on 49 USD, 21 days on 199 USD
        (NOVEMBER, _day(2026, 11, 10), (9, 21), "14.70", "139.30"),
        # February 2026 (28 days), change on the 15th: 49 x 14/28, 199 x 14/28
        (periods.monthly_period(2026, 2), _day(2026, 2, 15), (14, 14), "24.50", "99.50"),
        # leap February 2028 (29 days): 49 x 14/29 = 23.655... , 199 x 15/29 = 102.931...
        (periods.monthly_period(2028, 2), _day(2028, 2, 15), (14, 15), "23.66", "102.93"),
        # first day: the whole period on the new plan, no old line
        (NOVEMBER, _day(2026, 11, 1), (0, 30), None, "199.00"),
        # last day: 29 days old, 1 day new (199 / 30 = 6.6333...)
        (NOVEMBER, _day(2026, 11, 30), (29, 1), "47.37", "6.63"),
        # 31-day month, the 10th: 49 x 9/31 = 14.2258..., 199 x 22/31 = 141.2258...
        (periods.monthly_period(2026, 12), _day(2026, 12, 10), (9, 22), "14.23", "141.23"),
    ],
)
def test_monthly_changes_prorated_by_day_to_the_cent(period, at, split, old, new):
    assert days_split(period, at) == split
    parts = segments(period, [(BASIC, _day(2026, 1, 1), at), (PRO, at, None)])
    lines = prorated_flat_lines(period, parts, "USD")
    expected = ([("platform", D(split[0]), D(old))] if old else []) + [("platform", D(split[1]), D(new))]
    assert [(line.charge_code, line.quantity, line.amount) for line in lines] == expected


def test_lagos_published_example_january_upgrade_on_the_15th():
    """Lago (upgrades-downgrades, paid in arrears): Plan A 100/month, upgrade on 15 January:
    "14 days prorated = 45.16 (14/31 x 100)"."""
    january = periods.monthly_period(2026, 1)
    assert days_split(january, _day(2026, 1, 15)) == (14, 17)
    assert prorated_amount(D(100), 14, 31, "EUR") == D("45.16")
    assert prorated_amount(D(200), 17, 31, "EUR") == D("109.68")


def test_weekly_interval_prorates_over_seven_days():
    week = periods.weekly_period(dt.date(2026, 10, 5))
    weekly_basic = _plan("wbasic", "10", interval=BillingInterval.WEEKLY)
    weekly_pro = _plan("wpro", "35", interval=BillingInterval.WEEKLY)
    at = _day(2026, 10, 8)  # Thursday: Mon-Wed old (3 days), Thu-Sun new (4 days)
    parts = segments(week, [(weekly_basic, _day(2026, 9, 1), at), (weekly_pro, at, None)])
    assert [line.amount for line in prorated_flat_lines(week, parts, "USD")] == [D("4.29"), D("20.00")]


def test_upgrade_invoice_usage_on_the_new_plan_and_totals():
    at = _day(2026, 11, 10)
    parts = segments(NOVEMBER, [(BASIC, _day(2026, 1, 1), at), (PRO, at, None)])
    usage = {"api_calls": MetricUsage(D(100000), 3)}
    invoice = build_invoice(
        organization(), PRO, NOVEMBER, usage, flat_lines=prorated_flat_lines(NOVEMBER, parts, "USD")
    )
    assert [(line.charge_code, line.amount) for line in invoice.lines] == [
        ("platform", D("14.70")),
        ("platform", D("139.30")),
        ("api_calls", D("50.00")),  # the whole month's usage at the new plan's 0.0005
    ]
    assert invoice.lines[0].description == "Platform fee (Basic, 9 of 30 days, 2026-11-01 to 2026-11-09)"
    assert invoice.subtotal == D("204.00") and invoice.tax == D("40.80") and invoice.total == D("244.80")


def test_suspension_keeps_only_the_days_before_it():
    parts = segments(NOVEMBER, [(PRO, _day(2026, 1, 1), _day(2026, 11, 16))])
    assert [line.amount for line in prorated_flat_lines(NOVEMBER, parts, "USD")] == [D("99.50")]


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (_day(2026, 12, 1), "outside November 2026"),
        (_day(2026, 10, 31), "outside November 2026"),
        (_day(2026, 11, 10, 12), "midnight UTC"),
    ],
)
def test_change_dates_refused(at, message):
    with pytest.raises(ProrationError, match=message):
        days_split(NOVEMBER, at)


def test_overlapping_spans_and_bad_day_counts_refused():
    with pytest.raises(ProrationError, match="overlap"):
        segments(NOVEMBER, [(BASIC, _day(2026, 1, 1), None), (PRO, _day(2026, 11, 10), None)])
    with pytest.raises(ProrationError, match="31 day"):
        prorated_amount(D(10), 31, 30, "USD")
    with pytest.raises(ValueError, match="naive"):
        days_split(NOVEMBER, dt.datetime(2026, 11, 10))


@pytest.mark.parametrize(
    ("status", "ends_at", "expected"),
    [
        (OrganizationStatus.ACTIVE, None, None),
        (OrganizationStatus.SUSPENDED, _day(2026, 11, 16), None),  # the days before the suspension are billed
        (OrganizationStatus.CLOSED, _day(2026, 11, 16), None),
        (OrganizationStatus.SUSPENDED, None, "organization is suspended"),
        (OrganizationStatus.SUSPENDED, _day(2026, 12, 1), "organization is suspended"),  # stopped at the period end
    ],
)
def test_billing_refusal_bills_the_period_a_suspension_cut(status, ends_at, expected):
    subs = [Subscription(_day(2026, 1, 1), ends_at, "pro")]
    assert billing_refusal(organization(status=status), NOVEMBER, subs) == expected
    weekly = organization(status=status, billing_interval=BillingInterval.WEEKLY)
    assert billing_refusal(weekly, NOVEMBER, subs) is not None  # never a monthly period for a weekly organization
