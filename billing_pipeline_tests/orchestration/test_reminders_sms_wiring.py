"""The payment_reminders asset with the sms resource: SMS_PROVIDER=twilio reaches the Twilio API (the local
one), the Auth Token comes from the environment at run time, and SMS_PROVIDER=none dead-letters the channel."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import yaml

from billing_pipeline.db import dead_letters
from billing_pipeline.db.engine import get_engine
from billing_pipeline.definitions import resources
from billing_pipeline.defs import reminders
from billing_pipeline.services.collections.policy import DEFAULT_POLICY_FILE, load_policy
from billing_pipeline.services.delivery import seller_from_settings
from billing_pipeline.settings import Settings
from billing_pipeline_tests.dunning_builders import UTC, add_finalized_invoice, customer, reminders_database
from billing_pipeline_tests.support.sms_receiver import SmsReceiver

RUN_CONFIG = {"ops": {"payment_reminders": {"config": {"as_of": "2026-04-01T09:00:00+00:00"}}}}
PHONE = "+14155550100"


@pytest.fixture
def sms():
    with SmsReceiver() as receiver:
        yield receiver


def world(tmp_path, env: dict[str, str]) -> tuple[Settings, dg.AssetsDefinition]:
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), **env})
    engine = reminders_database(settings.database_url, [customer("acme", sms_phone=PHONE)])
    add_finalized_invoice(engine, "acme", "INV-2026-000001", issued=dt.datetime(2026, 3, 1, tzinfo=UTC))
    doc = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    doc["steps"][1]["notify"][0]["channels"] = ["email", "sms"]
    (tmp_path / "dunning.yaml").write_text(yaml.safe_dump(doc))
    asset = reminders.payment_reminders_asset(
        policy=load_policy(tmp_path / "dunning.yaml"),
        seller=seller_from_settings(settings.seller),
        email_from=settings.email_from,
        max_attempts=3,
    )
    return settings, asset


def test_twilio_settings_send_the_sms_through_the_resource(tmp_path, sms, monkeypatch):
    env = {
        "SMS_PROVIDER": "twilio",
        "TWILIO_ACCOUNT_SID": sms.account_sid,
        "TWILIO_FROM": sms.from_number,
        "TWILIO_API_BASE": sms.api_base,
    }
    settings, asset = world(tmp_path, env)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", sms.auth_token)  # read when the run starts, not at load
    runs = [dg.materialize([asset], resources=resources(settings), run_config=RUN_CONFIG) for _ in range(2)]
    first, again = (run.asset_materializations_for_node("payment_reminders")[0].metadata for run in runs)
    assert (first["sent"].value, first["dead_letters"].value, again["sent"].value) == (1, 0, 0)
    [message] = sms.messages()  # the re-run sent nothing more
    assert message["To"] == PHONE and "INV-2026-000001" in message["Body"]
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1


def test_sms_off_dead_letters_the_channel_and_sends_the_email(tmp_path):
    settings, asset = world(tmp_path, {})
    result = dg.materialize([asset], resources=resources(settings), run_config=RUN_CONFIG)
    [materialization] = result.asset_materializations_for_node("payment_reminders")
    assert materialization.metadata["dead_letters"].value == 1
    [letter] = dead_letters.open_dead_letters(get_engine(settings.database_url))
    assert "no 'sms' channel is configured" in letter.error
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1


def test_a_policy_naming_sms_without_an_sms_provider_stops_the_load(tmp_path):
    """The code location refuses it, naming the field and the setting, instead of dead-lettering every notice."""
    import os
    import subprocess
    import sys

    world(tmp_path, {})  # writes dunning.yaml with sms on steps[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "TWILIO_"))}
    env.update(BILLING_HOME=str(tmp_path), DUNNING_POLICY_FILE=str(tmp_path / "dunning.yaml"))
    load = [sys.executable, "-c", "import billing_pipeline.definitions"]
    refused = subprocess.run(load, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "steps[1].notify[0].channels[1]: sms is not configured (set SMS_PROVIDER=twilio" in refused.stderr
    env.update(SMS_PROVIDER="twilio", TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_FROM="+14155550199")
    assert subprocess.run(load, env=env, capture_output=True, text=True, timeout=120).returncode == 0
