"""domain.invoices: building draft invoices, numbering, usage reconciliation."""

import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.domain import periods
from billing_pipeline.domain.catalog import parse_catalog
from billing_pipeline.domain.invoices import (
    PricingError,
    build_invoice,
    format_invoice_number,
    not_billable_reason,
    reconcile_usage,
)
from billing_pipeline.domain.model import BillingInterval, InvoiceStatus, OrganizationStatus
from billing_pipeline.domain.pricing import MetricUsage

from .examples import example_catalog, organization

CATALOG = parse_catalog(example_catalog())
STARTER = CATALOG.plans["starter"]
PRO_EU = CATALOG.plans["pro_eu"]
OCTOBER = periods.monthly_period(2026, 10)
WEEK = periods.weekly_period(dt.date(2026, 10, 5))


def test_starter_invoice_lines_totals_and_usage():
    usage = {"api_calls": MetricUsage(D(65000), 65000), "active_users": MetricUsage(D(201), 900)}
    invoice = build_invoice(organization(), STARTER, OCTOBER, usage)
    assert [(line.charge_code, str(line.amount)) for line in invoice.lines] == [
        ("platform", "20.00"),
        ("api_calls", "49.00"),
        ("users", "10.00"),
    ]
    assert invoice.subtotal == D("79.00")
    assert invoice.tax == D("15.80")
    assert invoice.total == D("94.80")
    assert invoice.status is InvoiceStatus.DRAFT and invoice.number is None
    assert (invoice.period_start, invoice.period_end) == (OCTOBER.start, OCTOBER.end)
    assert invoice.interval is OCTOBER.interval and invoice.currency == "USD"
    assert invoice.usage == {"api_calls": D(65000), "active_users": D(201)}
    assert invoice.tax_rate == D("0.20") and invoice.organization_id == "org_1"


@pytest.mark.parametrize(
    ("calls", "users", "lines_subtotal", "true_up"),
    [
        (0, 0, "30.00", "20.00"),  # flat 20 + first volume tier's flat fee 10
        (10000, 100, "40.00", "10.00"),
        (15000, 150, "47.00", "3.00"),  # 20 + (12 + 10) + 5
        (30000, 150, "59.00", None),  # 20 + (24 + 10) + 5
        (45000, 100, "66.00", None),
        (5000, 0, "35.00", "15.00"),
    ],
)
def test_minimum_spend_true_up(calls, users, lines_subtotal, true_up):
    usage = {"api_calls": MetricUsage(D(calls), calls), "active_users": MetricUsage(D(users), users)}
    invoice = build_invoice(organization(tax_rate=D(0)), STARTER, OCTOBER, usage)
    priced = sum(line.amount for line in invoice.lines if line.charge_code != "minimum_spend")
    assert priced == D(lines_subtotal)
    extra = [line for line in invoice.lines if line.charge_code == "minimum_spend"]
    if true_up is None:
        assert extra == []
        assert invoice.subtotal == D(lines_subtotal)
    else:
        (line,) = extra
        assert invoice.lines[-1] is line
        assert line.amount == D(true_up) and line.quantity == 1 and line.metric_code is None
        assert "50.00 USD" in line.description
        assert invoice.subtotal == D("50.00")


def test_missing_usage_bills_zero_and_records_it():
    invoice = build_invoice(organization(), STARTER, OCTOBER, {})
    assert invoice.usage == {"api_calls": D(0), "active_users": D(0)}
    assert invoice.total == D("60.00")  # minimum 50 + 20 % tax


def test_metrics_not_in_plan_are_ignored():
    usage = {"storage_gb": MetricUsage(D(1000), 3)}
    invoice = build_invoice(organization(), STARTER, OCTOBER, usage)
    assert "storage_gb" not in invoice.usage


@pytest.mark.parametrize(
    ("tax_rate", "subtotal", "tax"),
    [
        ("0.20", "79.00", "15.80"),
        ("0.19", "79.00", "15.01"),
        ("0.0825", "79.00", "6.52"),  # 6.5175
        ("0.0725", "79.00", "5.73"),  # 5.7275: half-up once on the subtotal
        ("0", "79.00", "0.00"),
    ],
)
def test_tax_is_rounded_once_on_the_subtotal(tax_rate, subtotal, tax):
    usage = {"api_calls": MetricUsage(D(65000), 65000), "active_users": MetricUsage(D(201), 1)}
    invoice = build_invoice(organization(tax_rate=D(tax_rate)), STARTER, OCTOBER, usage)
    assert invoice.subtotal == D(subtotal)
    assert str(invoice.tax) == tax
    assert invoice.total == invoice.subtotal + invoice.tax == sum(line.amount for line in invoice.lines) + invoice.tax


def test_weekly_eur_invoice_keeps_catalog_order():
    usage = {
        "storage_gb": MetricUsage(D(6), 10),
        "payment_volume": MetricUsage(D(1500), 3),
        "instance_hours": MetricUsage(D(10), 10),
        "seats": MetricUsage(D(3), 4),
    }
    org = organization(currency="EUR", tax_rate=D("0.21"))
    invoice = build_invoice(org, PRO_EU, WEEK, usage)
    assert [(line.charge_code, str(line.amount)) for line in invoice.lines] == [
        ("storage", "41.50"),
        ("payments", "12.80"),
        ("compute", "1.00"),
        ("seats", "36.00"),
    ]
    assert invoice.subtotal == D("91.30")
    assert invoice.tax == D("19.17")  # 19.173
    assert invoice.total == D("110.47")
    assert invoice.lines[0].tiers and invoice.lines[0].unit_price is None


def test_jpy_invoice_has_no_decimals():
    data = example_catalog()
    data["plans"][0].update(currency="JPY", minimum_spend="5000")
    data["plans"][0]["charges"][0]["amount"] = "2000"
    plan = parse_catalog(data).plans["starter"]
    invoice = build_invoice(
        organization(currency="JPY", tax_rate=D("0.10")), plan, OCTOBER, {"api_calls": MetricUsage(D(65000), 65000)}
    )
    assert [str(line.amount) for line in invoice.lines] == ["2000", "49", "0", "2951"]
    assert (str(invoice.subtotal), str(invoice.tax), str(invoice.total)) == ("5000", "500", "5500")


def test_currency_mismatch_names_both():
    with pytest.raises(PricingError, match="USD.*EUR"):
        build_invoice(organization(currency="EUR"), STARTER, OCTOBER, {})


def test_interval_mismatch_is_refused():
    with pytest.raises(PricingError, match="weekly"):
        build_invoice(organization(), STARTER, WEEK, {})


@pytest.mark.parametrize("rate", ["-0.1", "1.5"])
def test_tax_rate_out_of_range_is_refused(rate):
    with pytest.raises(PricingError, match="tax rate"):
        build_invoice(organization(tax_rate=D(rate)), STARTER, OCTOBER, {})


@pytest.mark.parametrize(
    ("prefix", "year", "seq", "number"),
    [
        ("INV", 2026, 42, "INV-2026-000042"),
        ("ACME", 2027, 1, "ACME-2027-000001"),
        ("INV", 2026, 1234567, "INV-2026-1234567"),
    ],
)
def test_format_invoice_number(prefix, year, seq, number):
    assert format_invoice_number(prefix, year, seq) == number


@pytest.mark.parametrize(("prefix", "seq"), [("", 1), ("IN V", 1), ("INV", 0), ("INV", -3)])
def test_format_invoice_number_rejects_bad_input(prefix, seq):
    with pytest.raises(ValueError):
        format_invoice_number(prefix, 2026, seq)


@pytest.mark.parametrize(
    ("billed", "recomputed", "messages"),
    [
        ({"a": D(10)}, {"a": D("10.0")}, []),
        ({}, {}, []),
        ({"a": D(0)}, {}, []),
        ({"a": D(10)}, {"a": D(12)}, ["metric a: invoice bills 10, events give 12 (difference +2)"]),
        ({"a": D("1.5")}, {"a": D(1)}, ["metric a: invoice bills 1.5, events give 1 (difference -0.5)"]),
        ({"b": D(65000)}, {}, ["metric b: invoice bills 65,000, events give 0 (difference -65,000)"]),
        (
            {"b": D(1), "a": D(1)},
            {"a": D(2), "c": D(3)},
            [
                "metric a: invoice bills 1, events give 2 (difference +1)",
                "metric b: invoice bills 1, events give 0 (difference -1)",
                "metric c: invoice bills 0, events give 3 (difference +3)",
            ],
        ),
    ],
)
def test_reconcile_usage(billed, recomputed, messages):
    assert reconcile_usage(billed, recomputed) == messages


def test_reconcile_round_trip_with_built_invoice():
    usage = {"api_calls": MetricUsage(D(65000), 65000), "active_users": MetricUsage(D(201), 1)}
    invoice = build_invoice(organization(), STARTER, OCTOBER, usage)
    assert reconcile_usage(invoice.usage, {k: v.quantity for k, v in usage.items()}) == []


@pytest.mark.parametrize(
    ("status", "billed", "interval", "reason"),
    [
        (OrganizationStatus.ACTIVE, BillingInterval.MONTHLY, BillingInterval.MONTHLY, None),
        (OrganizationStatus.ACTIVE, BillingInterval.WEEKLY, BillingInterval.WEEKLY, None),
        (OrganizationStatus.SUSPENDED, BillingInterval.MONTHLY, BillingInterval.MONTHLY, "organization is suspended"),
        (OrganizationStatus.CLOSED, BillingInterval.WEEKLY, BillingInterval.MONTHLY, "organization is closed"),
        (OrganizationStatus.ACTIVE, BillingInterval.WEEKLY, BillingInterval.MONTHLY, "organization is billed weekly"),
    ],
)
def test_only_active_organizations_on_their_own_interval_are_billed(status, billed, interval, reason):
    assert not_billable_reason(organization(status=status, billing_interval=billed), interval) == reason


def test_finalization_waits_for_the_period_end_and_the_grace_window():
    import datetime as dt

    from billing_pipeline.domain.invoices import finalization_opens_at, finalization_refusal
    from billing_pipeline.domain.periods import monthly_period

    october, grace = monthly_period(2026, 10), dt.timedelta(hours=72)
    end = october.end
    assert "still open" in finalization_refusal(october, end - dt.timedelta(seconds=1), grace)
    assert "still open" in finalization_refusal(october, end - dt.timedelta(seconds=1), grace, within_grace=True)
    assert "72 h grace window until 2026-11-04 00:00 UTC" in finalization_refusal(october, end, grace)
    assert finalization_refusal(october, end, grace, within_grace=True) is None
    assert finalization_refusal(october, end + grace, grace) is None
    assert finalization_refusal(october, end, dt.timedelta(0)) is None
    assert finalization_opens_at(october, grace) == dt.datetime(2026, 11, 4, tzinfo=dt.UTC)
