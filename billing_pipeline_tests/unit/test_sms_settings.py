"""SMS configuration: the customers file's sms_phone (E.164), the policy's sms channel, SMS_PROVIDER/TWILIO_*."""

from __future__ import annotations

import pytest
import yaml

from billing_pipeline.db.customer_files import read_customer_file
from billing_pipeline.db.schema import organizations
from billing_pipeline.domain import organizations as rules
from billing_pipeline.domain.dunning_policy import DunningPolicyError, parse_policy
from billing_pipeline.services.collections.policy import DEFAULT_POLICY_FILE, load_policy
from billing_pipeline.settings import Settings, SettingsError, sms_resource
from billing_pipeline_tests.unit.test_customers import GOOD, org, parse

SID = "AC" + "0123456789abcdef" * 2


def test_the_column_holds_the_longest_e164_number():
    assert organizations.c.sms_phone.type.length == rules.MAX_PHONE_LENGTH == len("+" + "1" * 15)


def test_sms_phone_is_optional_parsed_and_removable():
    (customer,), problems = parse(GOOD)
    assert problems == [] and customer.organization.sms_phone is None and "sms_phone" not in customer.given
    (customer,), problems = parse({**GOOD, "sms_phone": " +447911123456 "})
    assert problems == [] and customer.organization == org(
        payment_terms_days=14, auto_pay=True, sms_phone="+447911123456"
    )
    assert "sms_phone" in customer.given
    (customer,), problems = parse({**GOOD, "sms_phone": "none"})
    assert problems == [] and customer.organization.sms_phone is None and "sms_phone" in customer.given


@pytest.mark.parametrize(
    "value",
    ["4155550123", "+1 415 555 0123", "+1-415-555-0123", "+0123456789", "+1234567", "+1234567890123456", "+١٢٣٤٥٦٧٨٩"],
)
def test_a_number_not_in_e164_is_refused_naming_line_and_field(value):
    _, problems = parse({**GOOD, "sms_phone": value})
    [problem] = problems
    described = problem.describe("customers.csv")
    assert described.startswith("customers.csv:2: sms_phone: must be an E.164 phone number")
    assert "(or none to remove it)" in described and (problem.line, problem.path) == (2, "sms_phone")


def test_a_yaml_number_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "customers.yaml"
    doc = {"customers": [{**GOOD, "sms_phone": 14155550123}]}
    path.write_text(yaml.safe_dump(doc))
    records, read_problems = read_customer_file(path)
    _, problems = parse(*(r.fields for r in records))
    assert read_problems == [] and len(problems) == 1
    assert "must be text (quote it in YAML: '+14155550123')" in problems[0].message


def test_the_organization_rule_names_sms_phone():
    assert [f for f, _ in rules.organization_problems(org(sms_phone="0044 7911"))] == ["sms_phone"]
    assert rules.organization_problems(org(sms_phone="+14155550123")) == []


def test_a_csv_file_may_carry_the_column(tmp_path):
    path = tmp_path / "customers.csv"
    header = ",".join(GOOD) + ",sms_phone\n"
    path.write_text(header + ",".join(str(v) for v in GOOD.values()) + ",+14155550123\n")
    records, read_problems = read_customer_file(path)
    (customer,), problems = parse(*(r.fields for r in records))
    assert read_problems == problems == [] and customer.organization.sms_phone == "+14155550123"


def _policy_with(channels: list[str], notice: int = 0, step: int = 0) -> dict:
    doc = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    doc["steps"][step]["notify"][notice]["channels"] = channels
    return doc


def test_the_default_policy_sends_e_mail_only():
    assert {c for s in load_policy().steps for n in s.notify for c in n.channels} == {"email"}


def test_a_customer_step_may_name_sms():
    policy = parse_policy(_policy_with(["email", "sms"], step=1))
    assert policy.steps[1].notify[0].channels == ("email", "sms")
    assert parse_policy(_policy_with(["sms"])).steps[0].notify[0].channels == ("sms",)


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        (["sms", "sms"], "steps[0].notify[0].channels[1]: is listed twice, got 'sms'"),
        (["email", "slack"], "steps[0].notify[0].channels[1]: must be one of email | sms"),  # an operators' channel
        (["SMS"], "steps[0].notify[0].channels[0]: must be one of email | sms"),
    ],
)
def test_bad_sms_channels_are_refused_naming_the_field(channels, message):
    with pytest.raises(DunningPolicyError, match="^dunning.yaml: ") as caught:
        parse_policy(_policy_with(channels), "dunning.yaml")
    assert message in str(caught.value)


def test_an_account_manager_notice_cannot_name_sms():
    with pytest.raises(DunningPolicyError) as caught:
        parse_policy(_policy_with(["email", "sms"], notice=1, step=3), "dunning.yaml")
    assert "steps[3].notify[1].channels[1]: sms goes to the organization's sms_phone" in str(caught.value)


def test_sms_is_off_by_default_and_needs_no_secret_to_load(tmp_path):
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path)})
    assert (settings.sms_provider, settings.twilio_api_base) == ("none", "https://api.twilio.com")
    assert sms_resource(settings).sender() is None
    env = {"BILLING_HOME": str(tmp_path), "SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": SID}
    twilio = Settings.from_env({**env, "TWILIO_FROM": "+15005550006", "TWILIO_API_BASE": "http://127.0.0.1:8999/"})
    resource = sms_resource(twilio)  # TWILIO_AUTH_TOKEN is an EnvVar: read when a run starts
    assert (resource.account_sid, resource.from_number, resource.api_base) == (
        SID,
        "+15005550006",
        "http://127.0.0.1:8999",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMS_PROVIDER": "carrier-pigeon"}, "SMS_PROVIDER: must be one of none, twilio"),
        ({"SMS_PROVIDER": "twilio", "TWILIO_FROM": "+15005550006"}, "TWILIO_ACCOUNT_SID: required when SMS_PROVIDER"),
        ({"SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": SID}, "TWILIO_FROM: required when SMS_PROVIDER=twilio"),
        ({"TWILIO_ACCOUNT_SID": "SK123"}, "TWILIO_ACCOUNT_SID: must be a Twilio Account SID"),
        ({"TWILIO_FROM": "555-0100"}, "TWILIO_FROM: must be an E.164 phone number"),
        ({"TWILIO_API_BASE": "ftp://x"}, "TWILIO_API_BASE: must be an http:// or https:// URL"),
        ({"SMS_TIMEOUT_SECONDS": "0"}, "SMS_TIMEOUT_SECONDS: must be an integer from 1 to 120"),
    ],
)
def test_bad_sms_settings_fail_at_load_naming_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace("+", r"\+")):
        Settings.from_env({"BILLING_HOME": str(tmp_path), **env})
