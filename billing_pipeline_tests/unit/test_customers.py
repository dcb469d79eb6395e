"""Customers: the organization rules, the customers-file records, and the file readers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from billing_pipeline.db.customer_files import CustomerFileError, read_customer_file
from billing_pipeline.db.schema import organizations
from billing_pipeline.domain import organizations as rules
from billing_pipeline.domain.catalog import parse_catalog
from billing_pipeline.domain.customers import (
    MAX_REPORTED_PROBLEMS,
    CustomersInvalid,
    Problem,
    SourceRecord,
    Subscription,
    parse_customers,
)
from billing_pipeline.domain.model import (
    BillingInterval,
    Invoice,
    InvoiceStatus,
    Organization,
    OrganizationStatus,
)
from billing_pipeline.rendering import Seller
from billing_pipeline.rendering.email import build_invoice_email

UTC = dt.UTC
EXAMPLES = Path(__file__).parents[2] / "billing_pipeline" / "examples"
PLANS = parse_catalog(yaml.safe_load((Path(__file__).parents[2] / "billing_pipeline/catalog/plans.yaml").read_text()))
LONGEST_ADDRESS = "a" * 64 + "@" + ".".join(["b" * 61, "b" * 61, "b" * 60]) + ".test"  # 254 characters
GOOD = {
    "org_id": "acme",
    "name": "Acme Analytics",
    "billing_email": "billing@acme.test",
    "status": "active",
    "currency": "USD",
    "tax_rate": "0.20",
    "billing_interval": "monthly",
    "auto_pay": "true",
    "payment_terms_days": "14",
    "plan": "starter",
    "starts_at": "2026-01-01",
    "ends_at": "",
}


def org(**changes) -> Organization:
    values = dict(
        id="acme",
        name="Acme Analytics",
        billing_email="billing@acme.test",
        status=OrganizationStatus.ACTIVE,
        currency="USD",
        tax_rate=D("0.20"),
        billing_interval=BillingInterval.MONTHLY,
        auto_pay=False,
        payment_terms_days=30,
    )
    return Organization(**{**values, **changes})


def test_limits_are_the_database_columns():
    assert organizations.c.id.type.length == rules.MAX_ID_LENGTH
    assert organizations.c.name.type.length == rules.MAX_NAME_LENGTH
    assert organizations.c.billing_email.type.length >= rules.MAX_EMAIL_LENGTH
    assert organizations.c.tax_rate.type.scale == rules.TAX_RATE_DECIMALS
    assert len(LONGEST_ADDRESS) == rules.MAX_EMAIL_LENGTH and rules.address_problem(LONGEST_ADDRESS) is None


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("id", "org|x", "must be 1-64 characters"),
        ("id", "a" * 65, "must be 1-64 characters"),
        ("id", "", "must be 1-64 characters"),
        ("name", "Evil\u202eCorp", "U+202E (RIGHT-TO-LEFT OVERRIDE), at position 4"),
        ("name", "Iso\u2066late", "bidi control character, U+2066"),
        ("name", "Crlf\r\nBcc: x@evil.test", "control character, U+000D"),
        ("name", "Line\u2028break", "U+2028"),
        ("name", "Nul\x00", "U+0000"),
        ("name", "Tab\there", "U+0009"),
        ("name", " padded", "must not start or end with spaces"),
        ("name", "N" * 256, "at most 255 characters, got 256"),
        ("name", "株" * 167, "at most 500 bytes in UTF-8"),
        ("name", "", "non-empty"),
        ("billing_email", "a@x.com, b@y.com", "must be one address, got 'a@x.com, b@y.com'"),
        ("billing_email", "a@x.com;b@y.com", "must be one address"),
        ("billing_email", "Acme <a@x.com>", "must be one address"),
        ("billing_email", "a@x.com\r\nBcc: v@evil.test", "must be one address"),
        ("billing_email", "a@x.com\x85", "on one line"),
        ("billing_email", "not an address", "must be one address"),
        ("billing_email", "nobody", "plain address"),
        ("billing_email", "a..b@x.com", "plain address"),
        ("billing_email", ".a@x.com", "plain address"),
        ("billing_email", "a@localhost", "plain address"),
        ("billing_email", "a" * 65 + "@x.com", "plain address"),
        ("billing_email", LONGEST_ADDRESS + "x", "at most 254"),
        ("currency", "usd", "unknown currency 'usd'"),
        ("tax_rate", D("1.01"), "between 0 and 1"),
        ("tax_rate", D("-0.1"), "between 0 and 1"),
        ("tax_rate", D("0.1234567"), "at most 6 decimals"),
        ("payment_terms_days", 366, "from 0 to 365"),
        ("payment_terms_days", -1, "from 0 to 365"),
    ],
)
def test_organization_rules_name_the_field(field, value, expected):
    problems = rules.organization_problems(org(**{field: value}))
    assert [f for f, _ in problems] == [field]
    assert expected in problems[0][1]
    with pytest.raises(rules.InvalidOrganization, match=field):
        rules.check_organization(org(**{field: value}))


@pytest.mark.parametrize(
    "name",
    ["Acme", "株式会社イニテック", "Emoji 😀 Co", "👨‍👩‍👧 Family (ZWJ)", "N" * 255, "株" * 166, '"' * 255, "Ünïcödé"],
)
def test_valid_names_pass(name):
    assert rules.organization_problems(org(name=name)) == []


def test_a_long_value_is_not_echoed_whole():
    message = rules.organization_problems(org(id="x|" * 5000))[0][1]
    assert len(message) < 250 and "(10000 characters)" in message


def _invoice() -> Invoice:
    start = dt.datetime(2026, 10, 1, tzinfo=UTC)
    return Invoice(
        "acme", start, start, BillingInterval.MONTHLY, "USD", (), D(0), D(0), D(0), D(0), InvoiceStatus.FINALIZED
    )


@pytest.mark.parametrize(
    "name", ["N" * 255, '"' * 255, "\\" * 255, "株" * 166, "😀" * 125, "é" * 250, "a " * 127 + "a"]
)
def test_every_accepted_name_keeps_email_header_lines_under_998(name):
    """SMTP refuses lines over 998 characters (RFC 5321 4.5.3.1.6): the name rule bounds the To: line."""
    seller = Seller(name="Seller", address_lines=(), tax_id=None, email="billing@seller.test", payment_instructions="")
    chosen = org(name=name, billing_email=LONGEST_ADDRESS)
    assert rules.organization_problems(chosen) == []
    message = build_invoice_email(
        _invoice(), chosen, seller, pdf=None, pdf_url=None, from_addr="b@seller.test", message_id_domain="seller.test"
    )
    assert max(len(line) for line in message.as_bytes().split(b"\n")) <= 998


@pytest.mark.parametrize(
    "address", ["billing@acme.test", "a.b+c@x.co.uk", "x@a-b.io", LONGEST_ADDRESS, "o'neil@x.ie", "UP@X.COM"]
)
def test_the_e_mail_renderer_accepts_every_address_the_rule_accepts(address):
    seller = Seller(name="Seller", address_lines=(), tax_id=None, email="billing@seller.test", payment_instructions="")
    assert rules.address_problem(address) is None
    build_invoice_email(
        _invoice(),
        org(billing_email=address),
        seller,
        pdf=None,
        pdf_url=None,
        from_addr="b@seller.test",
        message_id_domain="seller.test",
    )


def parse(*rows: dict, stored=None):
    records = [SourceRecord(i + 2, row) for i, row in enumerate(rows)]
    return parse_customers(records, PLANS.plans, stored or {})


def test_a_good_record():
    customers, problems = parse(GOOD)
    assert problems == []
    (customer,) = customers
    assert customer.organization == org(payment_terms_days=14, auto_pay=True)
    assert customer.subscriptions == (Subscription(dt.datetime(2026, 1, 1, tzinfo=UTC), None, "starter"),)


@pytest.mark.parametrize(
    "changes, path, expected",
    [
        ({"name": ""}, "name", "is required"),
        ({"extra": "x"}, "extra", "unknown field"),
        ({"tax_rate": 0.2}, "tax_rate", "quote it"),
        ({"tax_rate": "20 %"}, "tax_rate", "decimal fraction"),
        ({"tax_rate": "1_0"}, "tax_rate", "decimal fraction"),
        ({"tax_rate": "NaN"}, "tax_rate", "decimal fraction"),
        ({"auto_pay": "yes"}, "auto_pay", "true or false"),
        ({"payment_terms_days": "30.5"}, "payment_terms_days", "whole number"),
        ({"payment_terms_days": True}, "payment_terms_days", "whole number"),
        ({"billing_interval": "daily"}, "billing_interval", "monthly | weekly"),
        ({"currency": "EUR"}, "plan", "priced in USD, the organization in EUR"),
        ({"starts_at": "2026-13-01"}, "starts_at", "ISO date"),
        ({"starts_at": "2026-01-01T00:00:00+02:00"}, "starts_at", "offset"),
        ({"starts_at": "9999-12-31"}, "starts_at", "between 1970 and 2999"),
        ({"ends_at": "2026-01-01"}, "ends_at", "after starts_at"),
        ({"plan": ""}, "plan", "is required"),
        ({"subscriptions": [{"plan": "starter", "starts_at": "2026-02-01"}]}, "subscriptions", "not both"),
    ],
)
def test_record_problems_name_line_and_field(changes, path, expected):
    _, problems = parse({**GOOD, **changes})
    assert [(p.line, p.path) for p in problems] == [(2, path)], problems
    assert expected in problems[0].message


def test_yaml_style_values_and_subscription_lists():
    row = {**GOOD, "plan": None, "starts_at": None, "ends_at": None, "auto_pay": False, "payment_terms_days": 30}
    row["subscriptions"] = [
        {"plan": "starter", "starts_at": dt.date(2026, 1, 1), "ends_at": dt.date(2026, 6, 1)},
        {"plan": "starter", "starts_at": dt.datetime(2026, 6, 1, tzinfo=UTC)},
        {"plan": "nope", "starts_at": "2026-07-01", "colour": "red"},
    ]
    _, problems = parse(row)
    assert [p.path for p in problems] == ["subscriptions[2].colour", "subscriptions[2].plan"]
    row["subscriptions"] = row["subscriptions"][:2]
    customers, problems = parse(row)
    assert problems == [] and len(customers[0].subscriptions) == 2


def test_overlaps_and_stored_subscriptions():
    jan, jun = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 6, 1, tzinfo=UTC)
    stored = {"acme": [Subscription(jan, None, "starter")]}
    _, problems = parse({**GOOD, "starts_at": "2026-06-01"}, stored=stored)
    assert [p.path for p in problems] == ["starts_at"] and "overlaps starter from 2026-01-01 (open-ended)" in str(
        problems[0].message
    )
    # replacing the stored one (same start) with an end, plus the new one: fine
    row = {**GOOD, "plan": None, "starts_at": None}
    row["subscriptions"] = [
        {"plan": "starter", "starts_at": "2026-01-01", "ends_at": "2026-06-01"},
        {"plan": "starter", "starts_at": "2026-06-01"},
    ]
    customers, problems = parse(row, stored=stored)
    assert problems == [] and customers[0].subscriptions[0].ends_at == jun
    # changing the currency leaves the stored USD subscription behind: refused
    _, problems = parse({**GOOD, "currency": "EUR", "plan": "growth_eur", "starts_at": "2026-06-01"}, stored=stored)
    assert any(p.path == "currency" and "stored subscription starter" in p.message for p in problems)


def test_duplicates_and_the_report_cap():
    _, problems = parse(GOOD, {**GOOD, "name": "Again"})
    assert [(p.line, p.path, p.message) for p in problems] == [
        (3, "org_id", "duplicate organization 'acme' (first on line 2)")
    ]
    rows = [{**GOOD, "org_id": f"o{i}", "status": "paused"} for i in range(60)]
    _, problems = parse(*rows)
    text = str(CustomersInvalid("c.csv", problems))
    assert text.count("\n") == MAX_REPORTED_PROBLEMS and text.endswith("... and 10 more problem(s)")
    assert text.startswith("c.csv:2: status: must be one of active | suspended | closed, got 'paused'")


def test_csv_reader_lines(tmp_path):
    header = ",".join(GOOD)
    good = ",".join(GOOD.values())
    path = tmp_path / "c.csv"
    path.write_text(f'{header}\n{good}\n\n"x","multi\nline",{good.split(",", 2)[2]}\nshort,row\n')
    records, problems = read_customer_file(path)
    assert [r.line for r in records] == [2, 4]
    assert problems == [Problem(6, "", "expected 12 fields, got 2")]
    path.write_text(f"{header},colour\n{good},red\n")
    assert read_customer_file(path) == ([], [Problem(1, "colour", read_customer_file(path)[1][0].message)])


def test_jsonl_and_yaml_readers_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"org_id": "a", "tax_rate": 0.1}\n\n{"org_id": "a", "org_id": "b"}\n[1]\n{bad\n')
    records, problems = read_customer_file(path)
    assert records == [SourceRecord(1, {"org_id": "a", "tax_rate": "0.1"})]  # JSON numbers kept exact
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (3, "invalid JSON"),
        (4, "expected a JSON object, got list"),
        (5, "invalid JSON"),
    ]
    path = tmp_path / "c.yaml"
    path.write_text("customers:\n  - org_id: a\n    name: A\n  - org_id: b\n\n    name: B\n    name: C\n  - 7\n")
    records, problems = read_customer_file(path)
    assert [(r.line, r.label, dict(r.field_lines)) for r in records] == [
        (2, "customers[0]", {"org_id": 2, "name": 3}),
        (4, "customers[1]", {"org_id": 4, "name": 7}),
    ]
    assert problems == [
        Problem(7, "customers[1].name", "given twice"),
        Problem(8, "customers[2]", "must be a mapping of fields, got 7"),
    ]
    _, found = parse_customers(records, PLANS.plans, {})
    assert Problem(6, "customers[1].billing_email", "is required") not in found  # field line: the key's own
    assert Problem(4, "customers[1].billing_email", "is required") in found


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("c.txt", b"", "unknown customers file type"),
        ("c.csv", b"org_id\n\xff\n", "c.csv:2: not UTF-8"),
        ("c.yaml", b"customers: [\n", "invalid YAML"),
        ("c.yaml", b"- org_id: a\n", "expected a mapping with one key, customers"),
        ("c.yaml", b"customers:\n  - &c {org_id: a}\n  - *c\n", "c.yaml:2: invalid YAML: YAML aliases"),
    ],
)
def test_unreadable_files(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CustomerFileError, match=expected):
        read_customer_file(path)


@pytest.mark.parametrize("example", ["customers.csv", "customers.yaml"])
def test_the_examples_are_valid_and_alike(example):
    records, problems = read_customer_file(EXAMPLES / example)
    customers, problems = parse_customers(records, PLANS.plans, {}, problems)
    assert problems == [] and [c.organization.id for c in customers] == [
        "acme",
        "globex",
        "initech",
        "souq",
        "umbrella",
        "hooli",
    ]
    from billing_pipeline.demo import DEMO_ORGS

    assert [c.organization for c in customers] == [o for o, _ in DEMO_ORGS]


def test_a_bad_field_does_not_hide_the_plan_mismatch():
    _, problems = parse({**GOOD, "billing_email": "a@x.com, b@y.com", "currency": "EUR"})
    assert [(p.path, p.message) for p in problems] == [
        ("billing_email", "must be one address, got 'a@x.com, b@y.com'"),
        ("plan", "plan 'starter' is priced in USD, the organization in EUR"),
    ]
