"""domain.catalog: parsing and validating the plan catalog document."""

from decimal import Decimal as D

import pytest

from billing_pipeline.domain.catalog import (
    Aggregation,
    CatalogError,
    Charge,
    ChargeModel,
    FlatParams,
    HourlyParams,
    PackageParams,
    PercentageParams,
    PerUnitParams,
    Tier,
    TieredParams,
    parse_catalog,
)
from billing_pipeline.domain.model import BillingInterval

from .examples import example_catalog


def test_example_catalog_parses_to_typed_objects():
    catalog = parse_catalog(example_catalog())
    assert catalog.version == 1
    assert list(catalog.metrics) == [
        "api_calls",
        "storage_gb",
        "active_users",
        "payment_volume",
        "instance_hours",
        "seats",
        "credits",
    ]
    assert catalog.metrics["active_users"].aggregation is Aggregation.UNIQUE_COUNT
    assert catalog.metrics["active_users"].unique_property == "user_id"
    assert catalog.metrics["credits"].allow_negative is True
    assert catalog.metrics["api_calls"].allow_negative is False

    starter = catalog.plans["starter"]
    assert (starter.currency, starter.interval, starter.minimum_spend) == ("USD", BillingInterval.MONTHLY, D("50.00"))
    assert [c.code for c in starter.charges] == ["platform", "api_calls", "users"]
    platform, calls, users = starter.charges
    assert platform == Charge("platform", "Platform fee", ChargeModel.FLAT, None, FlatParams(D("20.00")))
    assert calls.model is ChargeModel.VOLUME and calls.metric_code == "api_calls"
    assert calls.params.tiers[0] == Tier(D(10000), D("0.0010"), D(10))
    assert calls.params.tiers[-1].up_to is None
    assert users.params == PackageParams(D(100), D(5), D(100))

    pro = catalog.plans["pro_eu"]
    assert pro.interval is BillingInterval.WEEKLY and pro.minimum_spend is None
    storage, payments, compute, seats = pro.charges
    assert storage.params == TieredParams((Tier(D(5), D(7)), Tier(D(10), D("6.50")), Tier(None, D(6))))
    assert payments.params == PercentageParams(D("0.025"), D("0.10"), D(1000))
    assert compute.params == HourlyParams(D("73.00"), D(730))
    assert seats.params == PerUnitParams(D(12))


def test_charge_params_must_match_model():
    with pytest.raises(TypeError, match="TieredParams"):
        Charge("x", "X", ChargeModel.GRADUATED, "m", PerUnitParams(D(1)))


def _plan0(data):
    return data["plans"][0]


def _set(path_setter):
    data = example_catalog()
    path_setter(data)
    return data


# Each case: mutate the example, expect CatalogError with exactly this message.
INVALID = [
    ("version missing", lambda d: d.pop("version"), "version: is required"),
    ("version zero", lambda d: d.update(version=0), "version: must be an integer >= 1, got 0"),
    ("version string", lambda d: d.update(version="1"), "version: must be an integer >= 1, got '1'"),
    ("version bool", lambda d: d.update(version=True), "version: must be an integer >= 1, got True"),
    (
        "unknown root key",
        lambda d: d.update(currency="USD"),
        "currency: unknown field (allowed: metrics, plans, version)",
    ),
    ("metrics not list", lambda d: d.update(metrics={}), "metrics: must be a list, got dict"),
    (
        "duplicate metric",
        lambda d: d["metrics"].append(dict(d["metrics"][0])),
        "metrics[7].code: duplicate metric code 'api_calls'",
    ),
    (
        "bad aggregation",
        lambda d: d["metrics"][1].update(aggregation="avg"),
        "metrics[1].aggregation: must be one of count | sum | max | unique_count | latest, got 'avg'",
    ),
    (
        "unique_count without property",
        lambda d: d["metrics"][2].pop("unique_property"),
        "metrics[2].unique_property: is required for aggregation unique_count",
    ),
    (
        "property on non-unique metric",
        lambda d: d["metrics"][0].update(unique_property="x"),
        "metrics[0].unique_property: is only allowed with aggregation unique_count",
    ),
    (
        "allow_negative not bool",
        lambda d: d["metrics"][0].update(allow_negative="yes"),
        "metrics[0].allow_negative: must be true or false, got 'yes'",
    ),
    (
        "metric code with space",
        lambda d: d["metrics"][0].update(code="api calls"),
        "metrics[0].code: must not contain whitespace, got 'api calls'",
    ),
    (
        "metric typo key",
        lambda d: d["metrics"][0].update(agregation="count"),
        "metrics[0].agregation: unknown field (allowed: aggregation, allow_negative, code, name, unique_property)",
    ),
    ("duplicate plan", lambda d: d["plans"][1].update(code="starter"), "plans[1].code: duplicate plan code 'starter'"),
    ("unknown currency", lambda d: d["plans"][0].update(currency="usd"), "plans[0].currency: unknown currency 'usd'"),
    (
        "bad interval",
        lambda d: d["plans"][0].update(interval="daily"),
        "plans[0].interval: must be one of monthly | weekly, got 'daily'",
    ),
    ("no charges", lambda d: d["plans"][0].update(charges=[]), "plans[0].charges: must list at least one charge"),
    (
        "duplicate charge",
        lambda d: d["plans"][0]["charges"].append(dict(d["plans"][0]["charges"][0])),
        "plans[0].charges[3].code: duplicate charge code 'platform'",
    ),
    (
        "reserved charge code",
        lambda d: d["plans"][0]["charges"][0].update(code="minimum_spend"),
        "plans[0].charges[0].code: 'minimum_spend' is reserved",
    ),
    (
        "unknown metric",
        lambda d: d["plans"][1]["charges"][0].update(metric="disk"),
        "plans[1].charges[0].metric: unknown metric 'disk'",
    ),
    ("missing metric", lambda d: d["plans"][1]["charges"][3].pop("metric"), "plans[1].charges[3].metric: is required"),
    (
        "flat with metric",
        lambda d: d["plans"][0]["charges"][0].update(metric="api_calls"),
        "plans[0].charges[0].metric: unknown field",
    ),
    (
        "bad model",
        lambda d: d["plans"][0]["charges"][0].update(model="stairstep"),
        "plans[0].charges[0].model: must be one of flat | per_unit | graduated | volume | package | "
        "percentage | hourly, got 'stairstep'",
    ),
    (
        "float price",
        lambda d: d["plans"][1]["charges"][3].update(unit_price=0.1),
        "plans[1].charges[3].unit_price: must be a string or integer, got float 0.1 — quote decimal values",
    ),
    (
        "float tier price",
        lambda d: d["plans"][1]["charges"][0]["tiers"][1].update(unit_price=6.5),
        "plans[1].charges[0].tiers[1].unit_price: must be a string or integer, got float 6.5",
    ),
    (
        "negative price",
        lambda d: d["plans"][1]["charges"][3].update(unit_price="-1"),
        "plans[1].charges[3].unit_price: must be >= 0, got '-1'",
    ),
    (
        "non-numeric price",
        lambda d: d["plans"][1]["charges"][3].update(unit_price="twelve"),
        "plans[1].charges[3].unit_price: must be a finite decimal number, got 'twelve'",
    ),
    (
        "nan price",
        lambda d: d["plans"][1]["charges"][3].update(unit_price="NaN"),
        "plans[1].charges[3].unit_price: must be a finite decimal number, got 'NaN'",
    ),
    (
        "bool price",
        lambda d: d["plans"][1]["charges"][3].update(unit_price=True),
        "plans[1].charges[3].unit_price: must be a string or integer, got bool True",
    ),
    (
        "flat amount too precise",
        lambda d: d["plans"][0]["charges"][0].update(amount="20.001"),
        "plans[0].charges[0].amount: '20.001' has more decimals than USD allows (2)",
    ),
    (
        "minimum too precise",
        lambda d: d["plans"][0].update(minimum_spend="0.005"),
        "plans[0].minimum_spend: '0.005' has more decimals than USD allows (2)",
    ),
    (
        "tiers not ascending",
        lambda d: d["plans"][0]["charges"][1]["tiers"][2].update(up_to=10),
        "plans[0].charges[1].tiers[2].up_to: must be greater than the previous tier's up_to (50000)",
    ),
    (
        "tiers equal",
        lambda d: d["plans"][1]["charges"][0]["tiers"][1].update(up_to=5),
        "plans[1].charges[0].tiers[1].up_to: must be greater than the previous tier's up_to (5)",
    ),
    (
        "last tier bounded",
        lambda d: d["plans"][1]["charges"][0]["tiers"][2].update(up_to=100),
        "plans[1].charges[0].tiers[2].up_to: the last tier must be unbounded (up_to: null)",
    ),
    (
        "middle tier unbounded",
        lambda d: d["plans"][1]["charges"][0]["tiers"][1].update(up_to=None),
        "plans[1].charges[0].tiers[1].up_to: only the last tier may be unbounded (null)",
    ),
    (
        "first tier zero",
        lambda d: d["plans"][1]["charges"][0]["tiers"][0].update(up_to=0),
        "plans[1].charges[0].tiers[0].up_to: must be > 0, got 0",
    ),
    (
        "no tiers",
        lambda d: d["plans"][1]["charges"][0].update(tiers=[]),
        "plans[1].charges[0].tiers: must list at least one tier",
    ),
    (
        "tier typo",
        lambda d: d["plans"][1]["charges"][0]["tiers"][0].update(flatfee="1"),
        "plans[1].charges[0].tiers[0].flatfee: unknown field (allowed: flat_fee, unit_price, up_to)",
    ),
    (
        "rate above 1",
        lambda d: d["plans"][1]["charges"][1].update(rate="2.5"),
        "plans[1].charges[1].rate: must be a fraction between 0 and 1, got '2.5'",
    ),
    (
        "negative rate",
        lambda d: d["plans"][1]["charges"][1].update(rate="-0.1"),
        "plans[1].charges[1].rate: must be >= 0",
    ),
    (
        "percentage on count metric",
        lambda d: d["plans"][1]["charges"][1].update(metric="api_calls"),
        "plans[1].charges[1].metric: a percentage charge needs a sum metric; 'api_calls' aggregates by count",
    ),
    (
        "package size zero",
        lambda d: d["plans"][0]["charges"][2].update(package_size=0),
        "plans[0].charges[2].package_size: must be >= 1, got 0",
    ),
    (
        "hours_per_month zero",
        lambda d: d["plans"][1]["charges"][2].update(hours_per_month=0),
        "plans[1].charges[2].hours_per_month: must be > 0, got 0",
    ),
    (
        "missing param",
        lambda d: d["plans"][1]["charges"][2].pop("monthly_price"),
        "plans[1].charges[2].monthly_price: is required",
    ),
    (
        "param of another model",
        lambda d: d["plans"][1]["charges"][3].update(rate="0.1"),
        "plans[1].charges[3].rate: unknown field",
    ),
    (
        "empty description",
        lambda d: d["plans"][1]["charges"][3].update(description=" "),
        "plans[1].charges[3].description: must be a non-empty string, got ' '",
    ),
    ("plan not a mapping", lambda d: d["plans"].append("gold"), "plans[2]: must be a mapping, got str"),
]


@pytest.mark.parametrize(("mutate", "message"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_catalog_names_the_field(mutate, message):
    with pytest.raises(CatalogError) as excinfo:
        parse_catalog(_set(mutate))
    assert str(excinfo.value).startswith(message)


def test_catalog_error_is_a_value_error():
    assert issubclass(CatalogError, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.0010", D("0.0010")), (12, D(12)), ("1e-3", D("0.001")), ("0", D(0))],
)
def test_decimal_values_accept_strings_and_ints(value, expected):
    data = example_catalog()
    data["plans"][1]["charges"][3]["unit_price"] = value
    assert parse_catalog(data).plans["pro_eu"].charges[3].params.unit_price == expected


def test_optional_params_default_to_zero_and_730_hours():
    data = example_catalog()
    charge = data["plans"][1]["charges"][1]
    del charge["fixed_fee_per_event"], charge["free_units"]
    data["plans"][0]["charges"][2].pop("free_units")
    catalog = parse_catalog(data)
    assert catalog.plans["pro_eu"].charges[1].params == PercentageParams(D("0.025"))
    assert catalog.plans["starter"].charges[2].params.free_units == 0
    assert catalog.plans["pro_eu"].charges[0].params.tiers[0].flat_fee == 0
    assert catalog.plans["pro_eu"].charges[2].params.hours_per_month == 730


def test_single_unbounded_tier_is_allowed():
    data = example_catalog()
    data["plans"][1]["charges"][0]["tiers"] = [{"up_to": None, "unit_price": "1"}]
    tiers = parse_catalog(data).plans["pro_eu"].charges[0].params.tiers
    assert tiers == (Tier(None, D(1)),)


def test_parse_does_not_mutate_input():
    data = example_catalog()
    parse_catalog(data)
    assert data == example_catalog()
