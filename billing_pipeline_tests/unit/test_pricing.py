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
    Plan,
    Rounding,
    Tier,
    TieredParams,
    TransformQuantity,
)
from billing_pipeline.domain.model import TierLine
from billing_pipeline.domain.pricing import MetricUsage, PricingError, free_period, price_charge

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
    assert line.tiers == (TierLine(D(50001), D(100000), D(65000), D("0.0006"), D(10), D("49.00")),)


def test_tier_shares_are_the_rounded_line_by_largest_remainder():
    # 3 units at 0.0015 = 0.0045 per tier: the line is rounded once from 0.009 to 0.01, and the
    # cent goes to the first of the two equal remainders (money.allocate); each tier prints in cents
    table = tiers((3, "0.0015", 0), (None, "0.0015", 0))
    line = price(G, TieredParams(table), 6)
    assert [str(t.amount) for t in line.tiers] == ["0.01", "0.00"]
    assert line.amount == D("0.01")


@pytest.mark.parametrize(
    ("quantity", "shares", "amount"),
    [
        # issue 10: "4.959 USD" printed on a USD invoice. Each tier is 3 x 0.551 = 1.653 exactly:
        # the line 4.959 rounds once to 4.96; floors 1.65 x 3 = 4.95, the missing cent goes to the
        # largest remainder, the first tier on a tie
        (9, ["1.66", "1.65", "1.65"], "4.96"),
        (6, ["1.66", "1.65"], "3.31"),  # 3.306 -> 3.31
        (3, ["1.65"], "1.65"),
    ],
)
def test_tier_shares_add_up_to_the_line(quantity, shares, amount):
    table = tiers((3, "0.551", 0), (6, "0.551", 0), (None, "0.551", 0))
    line = price(G, TieredParams(table), quantity)
    assert [str(t.amount) for t in line.tiers] == shares
    assert str(line.amount) == amount
    assert sum(t.amount for t in line.tiers) == line.amount


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


def blocks(*rows):
    """(up_to, price per block, block size) rows -> Tier tuple."""
    return tuple(Tier(None if up is None else D(up), D(p), D(0), D(size)) for up, p, size in rows)


# Kill Bill docs, "Catalog Examples" > Usage Billing (docs.killbill.io/latest/catalog-examples.html).
# "Consumable Billing All Tiers": liters, size 1, 1.50 for the first 1000 (max 1000), then 2.0.
KB_WATER = blocks((1000, "1.50", 1), (None, "2.0", 1))
# "Block Size Greater Than One": minutes in blocks of 10, 1.00 per block for 100 blocks, then 0.5.
KB_MINUTES = blocks((1000, "1.00", 10), (None, "0.5", 10))
# issue 10: 1.00 EUR per block of 10 minutes, 10 blocks, then 0.80 per block of 30 minutes.
ISSUE_BLOCKS = blocks((100, "1.00", 10), (None, "0.80", 30))


@pytest.mark.parametrize(
    ("source", "model", "table", "quantity", "amount", "tier_quantities"),
    [
        # the invoices are 630 and 1930 with the 30 USD recurring price: usage is 600 and 1900
        ("kill bill ALL_TIERS: 400 liters = 400 x 1.5", G, KB_WATER, 400, "600.00", [400]),
        ("kill bill ALL_TIERS: 1200 liters = 1000 x 1.5 + 200 x 2.0", G, KB_WATER, 1200, "1900.00", [1000, 200]),
        ("kill bill TOP_TIER: 400 liters = 400 x 1.5", V, KB_WATER, 400, "600.00", [400]),
        ("kill bill TOP_TIER: 1200 liters = 1200 x 2.0", V, KB_WATER, 1200, "2400.00", [1200]),
        # the invoices are 70 and 140: 40 blocks x 1.0; 100 blocks x 1.0 + 20 blocks x 0.5
        ("kill bill blocks of 10: 400 minutes", G, KB_MINUTES, 400, "40.00", [40]),
        ("kill bill blocks of 10: 1200 minutes", G, KB_MINUTES, 1200, "110.00", [100, 20]),
        ("a started block is billed in full: 401 minutes", G, KB_MINUTES, 401, "41.00", [41]),
        ("blocks of 10: 1 minute is one block", G, KB_MINUTES, 1, "1.00", [1]),
        ("blocks of 10: 0 minutes", G, KB_MINUTES, 0, "0.00", [0]),
        ("a started block per tier: 1001 minutes", G, KB_MINUTES, 1001, "100.50", [100, 1]),
        ("block size per tier: 100 + 31 minutes", G, ISSUE_BLOCKS, 131, "11.60", [10, 2]),
        ("block size per tier: top tier 131 minutes / 30", V, ISSUE_BLOCKS, 131, "4.00", [5]),
    ],
)
def test_kill_bill_tiered_blocks(source, model, table, quantity, amount, tier_quantities):
    line = price(model, TieredParams(table), quantity, "USD")
    assert str(line.amount) == amount
    assert [t.quantity for t in line.tiers] == tier_quantities  # blocks billed per tier
    assert sum(t.amount for t in line.tiers) == line.amount
    assert line.quantity == quantity and "units in blocks of" in line.description


@pytest.mark.parametrize(
    ("source", "price_", "divide_by", "rounding", "quantity", "billed", "amount"),
    [
        # Stripe docs, "Transform quantities" (docs.stripe.com/billing/subscriptions/usage-based/
        # transform-quantities): 10 USD per hour, minutes reported, round up: 150 minutes = 30 USD
        ("stripe car rental: 150 minutes", "10", 60, Rounding.UP, 150, 3, "30.00"),
        # Stripe docs, "Quantity transformation" (stripe.com/docs/billing/subscriptions/
        # quantity-transformation): 10 USD for every 5 users or portion thereof
        ("stripe per 5 users: 1", "10", 5, Rounding.UP, 1, 1, "10.00"),
        ("stripe per 5 users: 3", "10", 5, Rounding.UP, 3, 1, "10.00"),
        ("stripe per 5 users: 5", "10", 5, Rounding.UP, 5, 1, "10.00"),
        ("stripe per 5 users: 6", "10", 5, Rounding.UP, 6, 2, "20.00"),
        ("stripe per 5 users: 7", "10", 5, Rounding.UP, 7, 2, "20.00"),
        # same page: round down "for every full gigabyte" (no figures given; ours)
        ("round down: 1,999 MB per full GB", "2", 1000, Rounding.DOWN, 1999, 1, "2.00"),
        ("round down: 999 MB is no full GB", "2", 1000, Rounding.DOWN, 999, 0, "0.00"),
        ("round up: 0 stays 0", "10", 5, Rounding.UP, 0, 0, "0.00"),
        ("round up: fractional usage", "10", 5, Rounding.UP, "5.000001", 2, "20.00"),
    ],
)
def test_stripe_transform_quantity(source, price_, divide_by, rounding, quantity, billed, amount):
    params = PerUnitParams(D(price_), TransformQuantity(divide_by, rounding))
    line = price(ChargeModel.PER_UNIT, params, quantity)
    assert (line.quantity, str(line.amount), line.unit_price) == (billed, amount, D(price_))
    assert line.description.endswith(f" / {divide_by}, rounded {rounding.value})")


def test_transform_quantity_description():
    params = PerUnitParams(D(10), TransformQuantity(60, Rounding.UP))
    assert price(ChargeModel.PER_UNIT, params, 150).description == "Charge (150 / 60, rounded up)"


def lago(rate, fixed="0", events=0, free_total="0", low=None, high=None):
    return PercentageParams(
        D(rate),
        D(fixed),
        free_units_per_events=events,
        free_units_per_total_aggregation=D(free_total),
        per_transaction_min_amount=None if low is None else D(low),
        per_transaction_max_amount=None if high is None else D(high),
    )


def price_events(params, values, currency="USD"):
    values = tuple(D(v) for v in values)
    usage = MetricUsage(sum(values, D(0)), len(values), values)
    return price_charge(charge(ChargeModel.PERCENTAGE, params), usage, currency, OCTOBER)


# Lago's own examples: the docs page "Percentage" (getlago.com/docs/guide/plans/charges/charge-models/
# percentage): 1.2 % + 0.10 per transaction, the first 3 events or 500 USD free; the product
# update "Minimum / Maximum per transaction": 1 % + 0.50, at least 1 and at most 5 USD; and the
# cases of lago-api's spec/services/charges/charge_models/percentage_service_spec.rb (events
# 50, 100, 250, 400: running totals 50, 150, 400; total 800; rate 1.3 %, fixed 2.0).
LAGO_SPEC = ("50", "100", "250", "400")
MINMAX = lago("0.01", "0.50", low="1", high="5")


@pytest.mark.parametrize(
    ("source", "params", "values", "amount"),
    [
        (
            "lago docs: 4th transaction = 0.10 + 1.2% of 50",
            lago("0.012", "0.10", 3, "500"),
            (200, 100, 100, 50),
            "0.70",
        ),
        ("lago docs: the first 3 transactions are free", lago("0.012", "0.10", 3, "500"), (200, 100, 100), "0.00"),
        (
            "lago update: 20 USD at 1% + 0.50 = 0.70 -> minimum 1",
            MINMAX,
            (20,),
            "1.00",
        ),
        (
            "lago update: 600 USD at 1% + 0.50 = 6.50 -> maximum 5",
            MINMAX,
            (600,),
            "5.00",
        ),
        ("lago update: both transactions", MINMAX, (20, 600), "6.00"),
        ("lago update: 100 USD within the bounds = 1.50", MINMAX, (100,), "1.50"),
        # spec: (800 - 250) x 1.3 % + (4 - 2) x 2.0 = 7.15 + 4 (the 3rd event reaches 250)
        ("lago spec: 3 events and 250 free", lago("0.013", "2.0", 3, "250"), LAGO_SPEC, "11.15"),
        ("lago spec: 250 free only", lago("0.013", "2.0", 0, "250"), LAGO_SPEC, "11.15"),
        # spec: (800 - 400) x 1.3 % + (4 - 3) x 2.0
        ("lago spec: 3 events free only", lago("0.013", "2.0", 3, "0"), LAGO_SPEC, "7.20"),
        ("lago spec: 500 free, more than the 3 free events hold", lago("0.013", "2.0", 3, "500"), LAGO_SPEC, "7.20"),
        ("lago spec: nothing free = 800 x 1.3 % + 4 x 2.0", lago("0.013", "2.0"), LAGO_SPEC, "18.40"),
        ("lago spec: 5 free events, 4 events", lago("0.013", "2.0", 5), ("50", "100", "250", "0"), "0.00"),
        ("lago spec: rate 0 = 4 x 2.0", lago("0", "2.0", low="0"), LAGO_SPEC, "8.00"),
        # ours: a free amount reached exactly by an event: that event pays the fixed fee
        ("free amount reached exactly", lago("0.01", "1", 0, "300"), (100, 200, 50), "2.50"),
        ("free events then min/max per event", lago("0.01", "0.50", 1, low="1", high="5"), (20, 20, 600), "6.00"),
        ("free amount split inside an event, then min", lago("0.01", "0", 0, "150", low="1"), (100, 100), "1.00"),
        ("no events", lago("0.012", "0.10", 3, "500"), (), "0.00"),
    ],
)
def test_lago_percentage(source, params, values, amount):
    line = price_events(params, values)
    assert str(line.amount) == amount
    assert line.quantity == sum((D(v) for v in values), D(0))


def test_lago_percentage_description():
    line = price_events(lago("0.012", "0.10", 3, "500"), (200, 100, 100, 50))
    assert line.description == "Charge (1.2% of 50 + 1 x 0.10 USD; 3 of 4 events free)"
    line = price_events(MINMAX, (20, 600))
    assert line.description == "Charge (1% of 620 + 2 x 0.50 USD, each event 1.00 USD - 5.00 USD)"


@pytest.mark.parametrize(
    ("values", "events", "amount", "expected"),
    [
        ((200, 100, 100, 50), 3, "500", (3, "400")),  # lago docs: the 4th event ends it (3 events)
        ((50, 100, 250, 400), 3, "250", (2, "250")),  # the 3rd event reaches the free amount
        ((50, 100, 250, 400), 0, "250", (2, "250")),
        ((50, 100), 0, "250", (2, "150")),  # never reached: everything free
        ((50, 100), 0, "0", (0, "0")),  # no free options
        ((300,), 3, "250", (0, "250")),  # the 1st event already exceeds it: it pays the fixed fee
    ],
)
def test_free_period(values, events, amount, expected):
    count, free = free_period(tuple(D(v) for v in values), events, D(amount))
    assert (count, free) == (expected[0], D(expected[1]))


def test_lago_percentage_needs_the_event_values():
    usage = MetricUsage(D(450), 4)  # totals only (e.g. rebuilt from hourly aggregates)
    with pytest.raises(PricingError, match="needs each event's value"):
        price_charge(charge(ChargeModel.PERCENTAGE, lago("0.012", "0.10", 3)), usage, "USD", OCTOBER)


def test_lago_percentage_refuses_values_that_disagree_with_the_totals():
    usage = MetricUsage(D(450), 4, (D(200), D(100), D(100)))
    with pytest.raises(PricingError, match="disagree with the usage"):
        price_charge(charge(ChargeModel.PERCENTAGE, lago("0.012", "0.10", 3)), usage, "USD", OCTOBER)


def test_printed_tier_amounts_add_up_to_the_printed_line():
    # issue 10: "4.959 USD" was printed under a USD line; the view prints the rounded shares
    from billing_pipeline.domain.invoices import build_invoice
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.rendering.context import invoice_view

    from .examples import organization
    from .test_rendering import SELLER

    c = Charge("api", "API", G, "api_calls", TieredParams(tiers((3, "0.551", 0), (6, "0.551", 0), (None, "0.551", 0))))
    plan = Plan("p", "P", "USD", BillingInterval.MONTHLY, (c,))
    invoice = build_invoice(organization(), plan, OCTOBER, {"api_calls": MetricUsage(D(9), 9)})
    (line,) = invoice_view(invoice, organization(), SELLER)["lines"]
    assert [t.amount for t in line.tiers] == ["1.66 USD", "1.65 USD", "1.65 USD"]
    assert line.amount == "4.96 USD"
