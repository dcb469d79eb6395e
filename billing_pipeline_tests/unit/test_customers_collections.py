"""The customers file's optional collections fields: dunning_excluded, account_manager_email, time_zone."""

from __future__ import annotations

import pytest

from billing_pipeline.db.customer_files import read_customer_file
from billing_pipeline.db.schema import organizations
from billing_pipeline.domain import organizations as rules
from billing_pipeline_tests.unit.test_customers import GOOD, org, parse


def test_the_columns_hold_what_the_rules_accept():
    assert organizations.c.account_manager_email.type.length >= rules.MAX_EMAIL_LENGTH
    assert organizations.c.time_zone.type.length == rules.MAX_TIME_ZONE_LENGTH


def test_omitted_they_are_not_given_and_default():
    (customer,), problems = parse(GOOD)
    assert problems == [] and customer.given == frozenset()
    assert (customer.organization.dunning_excluded, customer.organization.account_manager_email) == (False, None)
    assert customer.organization.time_zone == "UTC"


def test_given_they_are_parsed_and_marked_given():
    row = {**GOOD, "dunning_excluded": "true", "account_manager_email": "am@seller.test", "time_zone": "Europe/Paris"}
    (customer,), problems = parse(row)
    assert problems == []
    assert customer.given == {"dunning_excluded", "account_manager_email", "time_zone"}
    assert customer.organization == org(
        payment_terms_days=14,
        auto_pay=True,
        dunning_excluded=True,
        account_manager_email="am@seller.test",
        time_zone="Europe/Paris",
    )


def test_none_removes_the_account_manager():
    (customer,), problems = parse({**GOOD, "account_manager_email": "none"})
    assert problems == [] and customer.organization.account_manager_email is None
    assert "account_manager_email" in customer.given


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dunning_excluded", "sometimes", "dunning_excluded: must be true or false, got 'sometimes'"),
        ("account_manager_email", "a@x.com, b@y.com", "account_manager_email: must be one address"),
        ("account_manager_email", "Boss <b@x.com>", "(or none to remove the account manager)"),
        ("time_zone", "Mars/Olympus_Mons", "time_zone: unknown time zone 'Mars/Olympus_Mons'"),
        ("time_zone", "Europe/\u202eParis", "time_zone: must be an IANA time zone name"),
        ("time_zone", "+02:00", "time_zone: unknown time zone"),
    ],
)
def test_bad_values_name_line_and_field(field, value, message):
    _, problems = parse({**GOOD, field: value})
    assert len(problems) == 1 and message in problems[0].describe("customers.csv")
    assert problems[0].describe("customers.csv").startswith(f"customers.csv:2: {field}: ")
    assert problems and problems[0].line == 2 and problems[0].path == field


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("dunning_excluded", "no", "must be true or false"),
        ("account_manager_email", "not an address", "must be one address"),
        ("time_zone", "Nowhere/City", "unknown time zone"),
        ("time_zone", "", "IANA time zone name"),
    ],
)
def test_organization_rules_name_the_collections_fields(field, value, expected):
    problems = rules.organization_problems(org(**{field: value}))
    assert [f for f, _ in problems] == [field] and expected in problems[0][1]


def test_a_csv_file_may_carry_the_columns(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(
        "org_id,name,billing_email,status,currency,tax_rate,billing_interval,auto_pay,payment_terms_days,"
        "dunning_excluded,account_manager_email,time_zone\n"
        "acme,Acme Analytics,billing@acme.test,active,USD,0.20,monthly,false,30,false,am@seller.test,Asia/Tokyo\n"
        "beta,Beta,billing@beta.test,active,USD,0.20,monthly,false,30,,,\n"
    )
    records, problems = read_customer_file(path)
    customers, found = parse(*(r.fields for r in records))
    assert problems == [] and found == []
    assert customers[0].organization.time_zone == "Asia/Tokyo" and customers[1].given == frozenset()
