"""The alert settings: channels parsed and checked, the e-mail address required with e-mail."""

import pytest

from billing_pipeline.settings import Settings, SettingsError


def load(**env: str) -> Settings:
    return Settings.from_env({"BILLING_HOME": "/tmp/billing-alert-settings", **env})


def test_defaults_send_alerts_in_app_only_and_link_to_the_local_ui():
    s = load()
    assert s.alert_channels == ("inapp",) and s.alert_email_to is None
    assert s.dagster_webserver_url == "http://127.0.0.1:3000"
    assert (s.alert_failure_threshold, s.alert_failure_window_hours, s.alert_sensor_interval_seconds) == (10, 24, 300)


def test_channels_are_a_list_in_order_each_once():
    s = load(ALERT_CHANNELS=" Slack, inapp ,slack,email", ALERT_EMAIL_TO="ops@example.com")
    assert s.alert_channels == ("slack", "inapp", "email")
    assert load(ALERT_CHANNELS="none").alert_channels == ()
    assert load(DAGSTER_WEBSERVER_URL="https://dagster.example.com/").dagster_webserver_url == (
        "https://dagster.example.com"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_CHANNELS": "slack,sms"}, "ALERT_CHANNELS: unknown channel 'sms'"),
        ({"ALERT_CHANNELS": "email"}, "ALERT_EMAIL_TO: required when ALERT_CHANNELS includes email"),
        ({"ALERT_EMAIL_TO": "not-an-address"}, "ALERT_EMAIL_TO: must be an email address"),
        ({"ALERT_FAILURE_THRESHOLD": "-1"}, "ALERT_FAILURE_THRESHOLD: must be an integer from 0"),
        ({"ALERT_SENSOR_INTERVAL_SECONDS": "5"}, "ALERT_SENSOR_INTERVAL_SECONDS: must be an integer from 30"),
        ({"DAGSTER_WEBSERVER_URL": "localhost:3000"}, "DAGSTER_WEBSERVER_URL: must be an http:// or https:// URL"),
    ],
)
def test_bad_alert_settings_name_their_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load(**env)
