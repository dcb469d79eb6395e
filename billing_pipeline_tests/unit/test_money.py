"""domain.money: currencies, the rounding rule, parsing and display."""

from decimal import Decimal as D

import pytest

from billing_pipeline.domain import money


@pytest.mark.parametrize(
    ("currency", "expected"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("CHF", 2),
        ("INR", 2),
        ("MXN", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("VND", 0),
        ("CLP", 0),
        ("ISK", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("OMR", 3),
        ("JOD", 3),
        ("TND", 3),
    ],
)
def test_exponent(currency, expected):
    assert money.exponent(currency) == expected


@pytest.mark.parametrize("currency", ["usd", "XXX", "", None])
def test_unknown_currency_is_named(currency):
    with pytest.raises(money.UnknownCurrency, match=repr(currency).replace("(", r"\(")):
        money.exponent(currency)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),  # half-up at the boundary
        ("0.004999", "USD", "0.00"),
        ("-0.005", "USD", "-0.01"),  # half away from zero
        ("-0.004", "USD", "0.00"),  # never "-0.00"
        ("2.675", "USD", "2.68"),  # a float would give 2.67
        ("1234.5", "JPY", "1235"),
        ("1234.4999", "JPY", "1234"),
        ("1.2345", "KWD", "1.235"),
        ("1.2344", "KWD", "1.234"),
        ("12345678901234567890123456789.005", "USD", "12345678901234567890123456789.01"),
    ],
)
def test_quantize_half_up(amount, currency, expected):
    result = money.quantize(D(amount), currency)
    assert result == D(expected)
    assert str(result) == expected


@pytest.mark.parametrize(
    ("num", "den", "currency", "expected"),
    [
        (73, 730, "USD", "0.10"),
        (100, 730, "USD", "0.14"),  # 0.13698...
        (1, 200, "USD", "0.01"),  # exactly half
        (1, 3, "KWD", "0.333"),
        (2000, 3, "JPY", "667"),
        (-1, 200, "USD", "-0.01"),
    ],
)
def test_quantize_ratio_rounds_the_exact_quotient(num, den, currency, expected):
    assert str(money.quantize_ratio(D(num), D(den), currency)) == expected


def test_quantize_ratio_rejects_zero_denominator():
    with pytest.raises(ZeroDivisionError):
        money.quantize_ratio(D(1), D(0), "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.345", "USD", 1235),
        ("12.34", "USD", 1234),
        ("1235", "JPY", 1235),
        ("1.2345", "KWD", 1235),
        ("-5", "USD", -500),
        ("0", "EUR", 0),
    ],
)
def test_to_minor(amount, currency, minor):
    assert money.to_minor(D(amount), currency) == minor


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(150, "USD", "1.50"), (1235, "JPY", "1235"), (1235, "KWD", "1.235"), (-5, "EUR", "-0.05")],
)
def test_from_minor(minor, currency, text):
    assert str(money.from_minor(minor, currency)) == text
    assert money.to_minor(money.from_minor(minor, currency), currency) == minor


@pytest.mark.parametrize("bad", [1.5, True, "150"])
def test_from_minor_requires_int(bad):
    with pytest.raises(TypeError):
        money.from_minor(bad, "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1234.5", "USD", "1,234.50 USD"),
        ("1234.5", "JPY", "1,235 JPY"),
        ("1.2345", "KWD", "1.235 KWD"),
        ("-5", "USD", "-5.00 USD"),
        ("-0.001", "USD", "0.00 USD"),
        ("1234567.891", "EUR", "1,234,567.89 EUR"),
        ("0", "JPY", "0 JPY"),
        ("1E+3", "GBP", "1,000.00 GBP"),
    ],
)
def test_format_amount(amount, currency, text):
    assert money.format_amount(D(amount), currency) == text


@pytest.mark.parametrize(
    ("quantity", "text"),
    [
        ("65000", "65,000"),
        ("6.5E+4", "65,000"),
        ("1.50", "1.5"),
        ("0", "0"),
        ("0.000", "0"),
        ("-0", "0"),
        ("1E-7", "0.0000001"),
        ("1234567.125", "1,234,567.125"),
        ("100", "100"),
    ],
)
def test_format_quantity(quantity, text):
    assert money.format_quantity(D(quantity)) == text


@pytest.mark.parametrize(
    ("price", "currency", "text"),
    [
        ("0.0010", "USD", "0.001 USD"),
        ("7", "GBP", "7.00 GBP"),
        ("6.50", "GBP", "6.50 GBP"),
        ("0.0004", "USD", "0.0004 USD"),
        ("1500", "USD", "1,500.00 USD"),
        ("0.5", "JPY", "0.5 JPY"),
        ("2", "KWD", "2.000 KWD"),
        ("1E+2", "USD", "100.00 USD"),
    ],
)
def test_format_unit_price(price, currency, text):
    assert money.format_unit_price(D(price), currency) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [(D("1.10"), D("1.10")), (3, D(3)), ("0.1", D("0.1")), (" 2.50 ", D("2.50")), ("-1e2", D(-100))],
)
def test_to_decimal_accepts_exact_inputs(value, expected):
    result = money.to_decimal(value)
    assert isinstance(result, D)
    assert result == expected


@pytest.mark.parametrize("value", [0.1, 1.0, True, None, [1]])
def test_to_decimal_rejects_floats_and_other_types(value):
    with pytest.raises(TypeError):
        money.to_decimal(value)


@pytest.mark.parametrize("value", ["abc", "", "1,000", "1_000", "nan", "Infinity", D("NaN")])
def test_to_decimal_rejects_non_numbers(value):
    with pytest.raises(ValueError):
        money.to_decimal(value)


def test_rule_is_stated_in_module_docstring():
    doc = money.__doc__ or ""
    assert "ROUND_HALF_UP" in doc and "once" in doc and "subtotal" in doc


def test_revenue_is_one_total_per_currency():
    totals = money.revenue_by_currency(
        [
            ("USD", D("45.19")),
            ("EUR", D("272.75")),
            ("USD", D("0.81")),
            ("JPY", D("4950")),
            (None, D("1")),
            ("KWD", None),
        ]
    )
    assert totals == {"EUR": D("272.75"), "JPY": D("4950"), "USD": D("46.00")}
    assert list(totals) == ["EUR", "JPY", "USD"]
    assert money.format_revenue(totals) == "272.75 EUR, 4,950 JPY, 46.00 USD"
    assert money.format_revenue({}) == "none"


@pytest.mark.parametrize(
    ("rate", "text"),
    [(D("0.20"), "20%"), (D("0.075"), "7.5%"), (D("0"), "0%"), (D("0.190000"), "19%"), (D("1"), "100%")],
)
def test_format_rate(rate, text):
    assert money.format_rate(rate) == text
