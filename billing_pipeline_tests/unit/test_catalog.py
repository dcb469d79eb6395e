"""domain.catalog: parsing and validating the plan catalog document."""

from decimal import Decimal as D

import pytest

from billing_pipeline.domain.catalog import (
    MAX_CODE_LENGTH,
    MAX_TEXT_LENGTH,
    Aggregation,
    CatalogError,
    Charge,
    ChargeModel,
    FlatParams,
    HourlyParams,
    PackageParams,
    PercentageParams,
    PerUnitParams,
    Rounding,
    Tier,
    TieredParams,
    TransformQuantity,
    decode_catalog,
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
        "plans[1].charges[0].tiers[0].flatfee: unknown field (allowed: block_size, flat_fee, unit_price, up_to)",
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
    # what the database can hold (db/schema.py; see test_limits_fit_the_database_columns)
    (
        "metric code longer than the column",
        lambda d: d["metrics"][0].update(code="m" * 100),
        "metrics[0].code: must be at most 64 characters, got 100",
    ),
    (
        "plan code longer than the column",
        lambda d: d["plans"][0].update(code="p" * 65),
        "plans[0].code: must be at most 64 characters, got 65",
    ),
    (
        "charge code longer than the column",
        lambda d: d["plans"][0]["charges"][0].update(code="c" * 65),
        "plans[0].charges[0].code: must be at most 64 characters",
    ),
    (
        "description too long",
        lambda d: d["plans"][0]["charges"][0].update(description="d" * 256),
        "plans[0].charges[0].description: must be at most 255 characters, got 256",
    ),
    (
        "amount 1e200",
        lambda d: d["plans"][0]["charges"][0].update(amount="1e200"),
        "plans[0].charges[0].amount: out of range: must be below 10^12 with at most 12 decimals, got '1e200'",
    ),
    (
        "unit price with 13 decimals",
        lambda d: d["plans"][1]["charges"][3].update(unit_price="0.0000000000001"),
        "plans[1].charges[3].unit_price: out of range",
    ),
    (
        "huge integer up_to",
        lambda d: d["plans"][1]["charges"][0]["tiers"][0].update(up_to=10**30),
        "plans[1].charges[0].tiers[0].up_to: out of range",
    ),
    (
        "version beyond the column",
        lambda d: d.update(version=2**31),
        "version: must be an integer >= 1, got 2147483648",
    ),
    (
        "bidi override in a plan name",
        lambda d: d["plans"][0].update(name="Starter \u202egnp.exe"),
        "plans[0].name: must not contain control or bidi characters, got U+202E at 8",
    ),
    (
        "bidi isolate in a description",
        lambda d: d["plans"][1]["charges"][3].update(description="Seats \u2066x"),
        "plans[1].charges[3].description: must not contain control or bidi characters, got U+2066",
    ),
    (
        "newline in a metric name",
        lambda d: d["metrics"][0].update(name="API\ncalls"),
        "metrics[0].name: must not contain control or bidi characters, got U+000A at 3",
    ),
    (
        "C1 control in a code",
        lambda d: d["metrics"][0].update(code="api\x85"),
        "metrics[0].code: must not contain control or bidi characters, got U+0085",
    ),
    ("too many metrics", lambda d: d.update(metrics=[{}] * 10_001), "metrics: has 10,001 items; at most 10,000"),
    ("too many plans", lambda d: d.update(plans=[{}] * 10_001), "plans: has 10,001 items; at most 10,000"),
    (
        "too many tiers",
        lambda d: d["plans"][1]["charges"][0].update(tiers=[{}] * 101),
        "plans[1].charges[0].tiers: has 101 items; at most 100",
    ),
    # the vendors' features
    (
        "block size zero",
        lambda d: d["plans"][1]["charges"][0]["tiers"][2].update(block_size=0),
        "plans[1].charges[0].tiers[2].block_size: must be > 0, got 0",
    ),
    (
        "tier not a whole number of blocks",
        lambda d: d["plans"][1]["charges"][0]["tiers"][1].update(block_size=2),
        "plans[1].charges[0].tiers[1].block_size: the tier holds 5 units, not a whole number of blocks of 2",
    ),
    (
        "transform on a tiered charge",
        lambda d: d["plans"][1]["charges"][0].update(transform_quantity={"divide_by": 5, "round": "up"}),
        "plans[1].charges[0].transform_quantity: unknown field",
    ),
    (
        "transform without round",
        lambda d: d["plans"][1]["charges"][3].update(transform_quantity={"divide_by": 5}),
        "plans[1].charges[3].transform_quantity.round: is required",
    ),
    (
        "transform round sideways",
        lambda d: d["plans"][1]["charges"][3].update(transform_quantity={"divide_by": 5, "round": "nearest"}),
        "plans[1].charges[3].transform_quantity.round: must be one of up | down, got 'nearest'",
    ),
    (
        "transform divide by zero",
        lambda d: d["plans"][1]["charges"][3].update(transform_quantity={"divide_by": 0, "round": "up"}),
        "plans[1].charges[3].transform_quantity.divide_by: must be an integer from 1",
    ),
    (
        "transform divide by a decimal",
        lambda d: d["plans"][1]["charges"][3].update(transform_quantity={"divide_by": "2.5", "round": "up"}),
        "plans[1].charges[3].transform_quantity.divide_by: must be an integer, got '2.5'",
    ),
    (
        "free events negative",
        lambda d: d["plans"][1]["charges"][1].update(free_units_per_events=-1),
        "plans[1].charges[1].free_units_per_events: must be an integer from 0",
    ),
    (
        "both free amounts",
        lambda d: d["plans"][1]["charges"][1].update(free_units_per_total_aggregation="500"),
        "plans[1].charges[1].free_units_per_total_aggregation: cannot be combined with free_units",
    ),
    (
        "min above max",
        lambda d: d["plans"][1]["charges"][1].update(per_transaction_min_amount="5", per_transaction_max_amount="1"),
        "plans[1].charges[1].per_transaction_max_amount: must be >= per_transaction_min_amount (5)",
    ),
    (
        "min with more decimals than the currency",
        lambda d: d["plans"][1]["charges"][1].update(per_transaction_min_amount="0.001"),
        "plans[1].charges[1].per_transaction_min_amount: '0.001' has more decimals than EUR allows (2)",
    ),
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


def test_vendor_features_parse_to_typed_objects():
    data = example_catalog()
    payments = data["plans"][1]["charges"][1]
    del payments["free_units"]
    payments.update(
        free_units_per_events=3,
        free_units_per_total_aggregation="500",
        per_transaction_min_amount="1",
        per_transaction_max_amount="5.00",
    )
    data["plans"][1]["charges"][0]["tiers"] = [
        {"up_to": 1000, "unit_price": "1.00", "block_size": 10},
        {"up_to": None, "unit_price": "0.50", "block_size": 30},
    ]
    data["plans"][1]["charges"][3]["transform_quantity"] = {"divide_by": 60, "round": "down"}
    catalog = parse_catalog(data)
    storage, payments, _, seats = catalog.plans["pro_eu"].charges
    assert payments.params == PercentageParams(D("0.025"), D("0.10"), D(0), 3, D(500), D(1), D(5))
    assert storage.params.tiers == (Tier(D(1000), D(1), D(0), D(10)), Tier(None, D("0.50"), D(0), D(30)))
    assert seats.params.transform_quantity == TransformQuantity(60, Rounding.DOWN)
    assert catalog.metrics["payment_volume"].keeps_event_values
    assert not catalog.metrics["api_calls"].keeps_event_values


def test_only_lago_options_keep_event_values():
    assert not parse_catalog(example_catalog()).metrics["payment_volume"].keeps_event_values


def test_limits_fit_the_database_columns():
    from billing_pipeline.db import schema

    code_columns = [
        schema.usage_events.c.metric_code,
        schema.hourly_usage.c.metric_code,
        schema.invoice_lines.c.metric_code,
        schema.invoice_lines.c.charge_code,
        schema.subscriptions.c.plan_code,
        schema.invoices.c.plan_code,
    ]
    assert {column.type.length for column in code_columns} == {MAX_CODE_LENGTH}
    # a description plus the pricing detail "(...)" the line adds
    assert schema.invoice_lines.c.description.type.length >= 2 * MAX_TEXT_LENGTH
    # 12 integer digits, the point, 12 decimals, sign: the exact unit price text fits
    assert schema.invoice_lines.c.unit_price.type.length >= 26


@pytest.mark.parametrize("value", ["999999999999.999999999999", "1.000000000000000000", "0.000000000001"])
def test_decimals_at_the_edge_of_the_range_load(value):
    data = example_catalog()
    data["plans"][1]["charges"][3]["unit_price"] = value
    assert parse_catalog(data).plans["pro_eu"].charges[3].params.unit_price == D(value)


def test_decode_catalog_names_the_file_and_the_byte():
    data = "version: 1\nmetrics:\n  - {code: caf\u00e9}\n".encode("latin-1")
    with pytest.raises(CatalogError) as excinfo:
        decode_catalog(data, "plans.yaml")
    assert str(excinfo.value) == (
        "plans.yaml: not UTF-8: byte 0xe9 at offset 34 (line 3, column 15); save the catalog as UTF-8"
    )


def test_decode_catalog_caps_the_size():
    with pytest.raises(CatalogError, match=r"plans.yaml: file is 2,000,001 bytes; a catalog may be at most 2,000,000"):
        decode_catalog(b" " * 2_000_001, "plans.yaml")
    assert decode_catalog("name: caf\u00e9".encode(), "x") == "name: caf\u00e9"


def test_the_shipped_catalog_parses():
    import pathlib

    import yaml

    path = pathlib.Path(__file__).parents[2] / "billing_pipeline" / "catalog" / "plans.yaml"
    catalog = parse_catalog(yaml.safe_load(decode_catalog(path.read_bytes(), str(path))))
    assert catalog.plans
