"""domain.pricing: charge models against published worked examples (Stripe, Lago)."""

from decimal import Decimal as D

import pytest

from billing_pipeline.domain import periods
from billing_pipeline.domain.catalog import (
    Charge,
    ChargeModel,
    FlatParams,
    HourlyParams,
    PackageParams,
    PercentageParams,
    PerUnitParams,
    Tier,
    TieredParams,
)
from billing_pipeline.domain.model import TierLine
from billing_pipeline.domain.pricing import MetricUsage, PricingError, price_charge

OCTOBER = periods.monthly_period(2026, 10)


def tiers(*rows):
    """(up_to, unit_price, flat_fee) rows -> Tier tuple."""
    return tuple(Tier(None if up is None else D(up), D(price), D(flat)) for up, price, flat in rows)


def charge(model, params, metric="units"):
    return Charge("c", "Charge", model, None if model is ChargeModel.FLAT else metric, params)


def price(model, params, quantity, currency="USD", events=None):
    usage = MetricUsage(D(quantity), int(D(quantity)) if events is None else events)
    return price_charge(charge(model, params), usage, currency, OCTOBER)


G, V = ChargeModel.GRADUATED, ChargeModel.VOLUME
# Stripe docs, "Tiered pricing": 1-5 at 7 GBP, 6-10 at 6.50, 11+ at 6.
STRIPE_TIERS = tiers((5, "7", 0), (10, "6.50", 0), (None, "6", 0))
# Stripe docs, flat fees per tier: 1-5: 5/unit + 10, 6-10: 4 + 20, ... 21+: 1 + 50.
STRIPE_FLAT_TIERS = tiers((5, 5, 10), (10, 4, 20), (15, 3, 30), (20, 2, 40), (None, 1, 50))
# Lago docs, volume: API calls, each tier + 10 flat.
LAGO_VOLUME_TIERS = tiers((10000, "0.0010", 10), (50000, "0.0008", 10), (100000, "0.0006", 10), (None, "0.0004", 10))


@pytest.mark.parametrize(
    ("source", "model", "tier_table", "quantity", "currency", "amount"),
    [
        ("stripe: volume, 6 units", V, STRIPE_TIERS, 6, "GBP", "39.00"),
        ("stripe: graduated, 6 units", G, STRIPE_TIERS, 6, "GBP", "41.50"),
        ("stripe flat fees: volume, 12 units", V, STRIPE_FLAT_TIERS, 12, "GBP", "66.00"),
        ("stripe flat fees: graduated, 12 units", G, STRIPE_FLAT_TIERS, 12, "GBP", "111.00"),
        ("stripe flat fees: volume, 0 units", V, STRIPE_FLAT_TIERS, 0, "GBP", "10.00"),
        ("stripe flat fees: graduated, 0 units", G, STRIPE_FLAT_TIERS, 0, "GBP", "10.00"),
        ("lago: volume, 65,000 calls", V, LAGO_VOLUME_TIERS, 65000, "USD", "49.00"),
        ("boundary: volume at 5 is tier 1", V, STRIPE_TIERS, 5, "GBP", "35.00"),
        ("boundary: volume at 10 is tier 2", V, STRIPE_TIERS, 10, "GBP", "65.00"),
        ("boundary: graduated at 10", G, STRIPE_TIERS, 10, "GBP", "67.50"),
        ("graduated into the open tier", G, STRIPE_TIERS, 25, "GBP", "157.50"),
        ("volume in the open tier", V, STRIPE_TIERS, 25, "GBP", "150.00"),
        ("graduated fractional units", G, STRIPE_TIERS, "5.5", "GBP", "38.25"),
        ("no flat fees, 0 units", G, STRIPE_TIERS, 0, "GBP", "0.00"),
        ("graduated 21 units, all five flat fees", G, STRIPE_FLAT_TIERS, 21, "GBP", "221.00"),
    ],
)
def test_tiered_worked_examples(source, model, tier_table, quantity, currency, amount):
    line = price(model, TieredParams(tier_table), quantity, currency)
    assert line.amount == D(amount)
    assert str(line.amount) == amount
    assert line.unit_price is None
    assert line.quantity == D(quantity)
    assert line.amount == sum(t.amount for t in line.tiers)  # exact tiers add up (no rounding here)


def test_graduated_tier_breakdown_stripe_12_units():
    line = price(G, TieredParams(STRIPE_FLAT_TIERS), 12, "GBP")
    assert line.tiers == (
        TierLine(D(1), D(5), D(5), D(5), D(10), D(35)),
        TierLine(D(6), D(10), D(5), D(4), D(20), D(40)),
        TierLine(D(11), D(15), D(2), D(3), D(30), D(36)),
    )


def test_graduated_zero_units_shows_first_tier_only():
    line = price(G, TieredParams(STRIPE_FLAT_TIERS), 0, "GBP")
    assert line.tiers == (TierLine(D(1), D(5), D(0), D(5), D(10), D(10)),)


def test_volume_breakdown_lago():
    line = price(V, TieredParams(LAGO_VOLUME_TIERS), 65000)
    assert line.tiers == (TierLine(D(50001), D(100000), D(65000), D("0.0006"), D(10), D("49.0000")),)


def test_tier_amounts_stay_exact_and_line_rounds_once():
    # 3 units at 0.0015 = 0.0045 per tier, two tiers: per-tier rounding would give 0.00 + 0.00
    table = tiers((3, "0.0015", 0), (None, "0.0015", 0))
    line = price(G, TieredParams(table), 6)
    assert [t.amount for t in line.tiers] == [D("0.0045"), D("0.0045")]
    assert line.amount == D("0.01")


@pytest.mark.parametrize(
    ("size", "pkg_price", "free", "quantity", "packages", "amount"),
    [
        (100, "5", 100, 201, 2, "10.00"),  # Lago docs: first 100 free, 201 units -> 10
        (100, "5", 100, 100, 0, "0.00"),
        (100, "5", 100, 101, 1, "5.00"),  # a started package is billed in full
        (100, "5", 100, 300, 2, "10.00"),
        (100, "5", 0, 0, 0, "0.00"),
        (100, "5", 0, 1, 1, "5.00"),
        ("2.5", "1.25", 0, 5, 2, "2.50"),
        (3, "1", 0, 10, 4, "4.00"),  # 10/3 is not exact: still 4 packages, no error
    ],
)
def test_package(size, pkg_price, free, quantity, packages, amount):
    line = price(ChargeModel.PACKAGE, PackageParams(D(size), D(pkg_price), D(free)), quantity)
    assert line.quantity == packages
    assert line.unit_price == D(pkg_price)
    assert str(line.amount) == amount
    assert f"{quantity} units" in line.description


@pytest.mark.parametrize(
    ("rate", "fee", "free", "total", "events", "amount"),
    [
        ("0.025", "0", "0", "1000", 1, "25.00"),
        ("0.025", "0.10", "0", "1000", 12, "26.20"),
        ("0.025", "0.10", "1000", "1500", 3, "12.80"),  # 500 * 2.5 % + 0.30
        ("0.025", "0.10", "1000", "800", 3, "0.30"),  # free amount not reached: floor at 0
        ("0.029", "0.30", "0", "0.17", 1, "0.30"),  # 0.00493 + 0.30 = 0.30493
        ("0.01", "0", "0", "0.50", 1, "0.01"),  # 0.005: half-up
        ("0", "0", "0", "99", 5, "0.00"),
        ("1", "0", "0", "12.34", 1, "12.34"),
    ],
)
def test_percentage(rate, fee, free, total, events, amount):
    params = PercentageParams(D(rate), D(fee), D(free))
    line = price(ChargeModel.PERCENTAGE, params, total, events=events)
    assert str(line.amount) == amount
    assert line.unit_price is None
    assert line.quantity == D(total)


def test_percentage_description_explains_the_amount():
    params = PercentageParams(D("0.025"), D("0.10"), D(1000))
    line = price(ChargeModel.PERCENTAGE, params, 1500, events=3)
    assert line.description == "Charge (2.5% of 500 + 3 x 0.10 USD)"


@pytest.mark.parametrize(
    ("monthly", "hours_per_month", "hours", "currency", "unit", "amount"),
    [
        ("73.00", 730, 10, "USD", "0.1", "1.00"),
        ("73.00", 730, 730, "USD", "0.1", "73.00"),
        ("73.00", 730, 744, "USD", "0.1", "74.40"),  # a 31-day month uses more than 730 h
        ("73.00", 730, 0, "USD", "0.1", "0.00"),
        ("100", 730, 1, "USD", None, "0.14"),  # 0.136986...: rounded from the exact ratio
        ("10000", 730, 5, "JPY", None, "68"),  # 68.49...
        ("1", 730, 365, "USD", None, "0.50"),  # exactly 0.5
        ("7.300", 730, 3, "KWD", "0.01", "0.030"),
    ],
)
def test_hourly(monthly, hours_per_month, hours, currency, unit, amount):
    params = HourlyParams(D(monthly), D(hours_per_month))
    line = price(ChargeModel.HOURLY, params, hours, currency)
    assert str(line.amount) == amount
    assert line.quantity == hours
    if unit is not None:
        assert line.unit_price == D(unit)


@pytest.mark.parametrize(
    ("unit_price", "quantity", "currency", "amount"),
    [
        ("0.005", 1, "USD", "0.01"),  # half-up at the boundary
        ("0.0049", 1, "USD", "0.00"),
        ("0.0010", 65000, "USD", "65.00"),
        ("0.5", 3, "JPY", "2"),  # 1.5 -> 2
        ("0.4", 3, "JPY", "1"),  # 1.2 -> 1
        ("0.0005", 3, "KWD", "0.002"),  # 0.0015 -> 0.002
        ("0.0004", 3, "KWD", "0.001"),  # 0.0012 -> 0.001
        ("12", "2.5", "EUR", "30.00"),
        ("0.1", 3, "USD", "0.30"),  # 0.1 * 3 is 0.30000000000000004 in floats
    ],
)
def test_per_unit_rounding(unit_price, quantity, currency, amount):
    line = price(ChargeModel.PER_UNIT, PerUnitParams(D(unit_price)), quantity, currency)
    assert str(line.amount) == amount
    assert line.unit_price == D(unit_price)


@pytest.mark.parametrize("usage", [None, MetricUsage(D(500), 500)])
def test_flat_ignores_usage(usage):
    line = price_charge(charge(ChargeModel.FLAT, FlatParams(D("20"))), usage, "USD", OCTOBER)
    assert (line.quantity, line.unit_price, str(line.amount)) == (1, D(20), "20.00")
    assert line.metric_code is None


@pytest.mark.parametrize(
    ("model", "params", "amount"),
    [
        (ChargeModel.PER_UNIT, PerUnitParams(D(3)), "0.00"),
        (G, TieredParams(STRIPE_FLAT_TIERS), "10.00"),
        (V, TieredParams(STRIPE_FLAT_TIERS), "10.00"),
        (ChargeModel.PACKAGE, PackageParams(D(10), D(1)), "0.00"),
        (ChargeModel.PERCENTAGE, PercentageParams(D("0.1"), D("0.5")), "0.00"),
        (ChargeModel.HOURLY, HourlyParams(D(73)), "0.00"),
    ],
)
def test_no_usage_means_zero_quantity(model, params, amount):
    line = price_charge(charge(model, params), None, "USD", OCTOBER)
    assert str(line.amount) == amount
    assert line.quantity == 0


def test_line_carries_charge_identity():
    c = Charge("api", "API calls", ChargeModel.PER_UNIT, "api_calls", PerUnitParams(D(1)))
    line = price_charge(c, MetricUsage(D(2), 2), "USD", OCTOBER)
    assert (line.charge_code, line.description, line.metric_code) == ("api", "API calls", "api_calls")


def test_negative_quantity_is_refused():
    with pytest.raises(PricingError, match="negative quantity"):
        price(ChargeModel.PER_UNIT, PerUnitParams(D(1)), -1)


def test_unknown_currency_is_refused():
    from billing_pipeline.domain.money import UnknownCurrency

    with pytest.raises(UnknownCurrency):
        price(ChargeModel.PER_UNIT, PerUnitParams(D(1)), 1, currency="XXX")
