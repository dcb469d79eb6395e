"""Bad configuration fails at load with the variable's name."""

import dataclasses

import pytest

from billing_pipeline.rendering.email import build_invoice_email
from billing_pipeline.services.delivery import seller_from_settings
from billing_pipeline.settings import Settings, SettingsError
from billing_pipeline_tests.builders import finalized_invoice, org


def test_defaults_are_embedded(tmp_path):
    s = Settings.from_env({"BILLING_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'billing.db'}"
    assert (s.document_store, s.payment_gateway, s.mailer) == ("local", "none", "outbox")
    assert s.monthly_invoice_cron == "0 0 1 * *" and s.hourly_usage_cron == "5 * * * *"
    assert s.dry_run is False and s.enable_email is True
    assert s.s3_conditional_writes is True


def test_every_field_is_read_from_one_variable():
    from billing_pipeline import settings

    table = {**settings._VARS, **{f"seller.{k}": v for k, v in settings._SELLER_VARS.items()}}
    assert set(settings._VARS) | {"seller"} == {f.name for f in dataclasses.fields(Settings)}
    names = [var.name for var in table.values()]
    assert len(names) == len(set(names)), "a variable read for two settings"


def test_derived_defaults_follow_the_settings_they_come_from(tmp_path):
    s = Settings.from_env({"BILLING_HOME": str(tmp_path), "SMTP_SECURITY": "ssl", "EMAIL_FROM": "bills@seller.test"})
    assert (s.documents_dir, s.outbox_dir) == (tmp_path / "documents", tmp_path / "outbox")
    assert s.smtp_port == 465 and s.seller["email"] == "bills@seller.test"
    assert Settings.from_env({"SMTP_SECURITY": "ssl", "SMTP_PORT": "2525"}).smtp_port == 2525


def test_s3_conditional_writes_and_rate_limit_reach_the_document_store():
    from billing_pipeline.settings import delivery_resources

    s = Settings.from_env(
        {"DOCUMENT_STORE": "s3", "S3_BUCKET": "bills", "S3_CONDITIONAL_WRITES": "false", "S3_REQUESTS_PER_SECOND": "7"}
    )
    store = delivery_resources(s)["document_store"].store()
    assert store.conditional is False and store.bucket == "bills" and store.rate_limit.rate == 7


def test_one_resource_class_per_implementation_chosen_by_settings(tmp_path, monkeypatch):
    from billing_pipeline.defs import delivery_resources as r
    from billing_pipeline.settings import delivery_resources

    local = delivery_resources(Settings.from_env({"BILLING_HOME": str(tmp_path)}))
    assert [type(v) for v in local.values()] == [
        r.LocalDocumentStoreResource,
        r.NoPaymentGatewayResource,
        r.OutboxMailerResource,
    ]
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    env = {"BILLING_HOME": str(tmp_path), "PAYMENT_GATEWAY": "stripe", "MAILER": "smtp", "SMTP_HOST": "mx"}
    real = delivery_resources(Settings.from_env(env))  # no secret needed to load
    assert type(real["payment_gateway"]) is r.StripePaymentGatewayResource
    assert type(real["mailer"]) is r.SMTPMailerResource and real["mailer"].messages_per_second == 20
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fromenv")
    gateway = real["payment_gateway"].process_config_and_initialize()  # read when a run starts
    assert gateway.secrets() == ["sk_test_fromenv"] and gateway.gateway().rate_limit.rate == 80


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INVOICE_BATCH_SIZE": "lots"}, "INVOICE_BATCH_SIZE: must be an integer"),
        ({"INVOICE_BATCH_SIZE": "0"}, "INVOICE_BATCH_SIZE: must be an integer from 1"),
        ({"MONTHLY_INVOICE_CRON": "every month"}, "MONTHLY_INVOICE_CRON: not a valid cron"),
        ({"DRY_RUN": "maybe"}, "DRY_RUN: must be true or false"),
        ({"DOCUMENT_STORE": "ftp"}, "DOCUMENT_STORE: must be one of local, s3"),
        ({"DOCUMENT_STORE": "s3"}, "S3_BUCKET: required"),
        ({"MAILER": "smtp"}, "SMTP_HOST: required"),
        ({"BILLING_DATABASE_URL": "mysql://x"}, "BILLING_DATABASE_URL: must be"),
        ({"BILLING_PARTITIONS_START": "2026-13-01"}, "BILLING_PARTITIONS_START: must be a date"),
        ({"EMAIL_FROM": "billing\r\nBcc: x@y"}, "EMAIL_FROM: must be an email address: contains a control character"),
        ({"EMAIL_FROM": "billing@@example.com"}, "EMAIL_FROM: must be an email address: must be one address"),
        ({"EMAIL_FROM": "billing@example"}, "EMAIL_FROM: must be an email address: must be a plain address"),
        (
            {"EMAIL_FROM": "Billing \u202eTeam <billing@example.com>"},
            "EMAIL_FROM: must be an email address: contains a bidi control",
        ),
        ({"SELLER_EMAIL": "billing at example.com"}, "SELLER_EMAIL: must be an email address: must be one address"),
        (
            {"SELLER_EMAIL": "Billing <billing@example.com>"},
            "SELLER_EMAIL: must be an email address: must be one address",
        ),
        (
            {"EMAIL_FROM": "N" * 256 + " <billing@example.com>"},
            "EMAIL_FROM: must be an email address: its name must be at most 255",
        ),
        ({"SELLER_NAME": "Example\u202eCloud"}, "SELLER_NAME: contains a bidi control character, U\\+202E"),
        ({"SELLER_NAME": "N" * 256}, "SELLER_NAME: must be at most 255 characters"),
        ({"SELLER_NAME": "株" * 200}, "SELLER_NAME: must be at most 500 bytes"),
        ({"INVOICE_NUMBER_PREFIX": "INV/1"}, "INVOICE_NUMBER_PREFIX"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT: must be an integer from 1 to 65535"),
        ({"S3_CONDITIONAL_WRITES": "sometimes"}, "S3_CONDITIONAL_WRITES: must be true or false"),
        ({"BILLING_DATABASE_URL": "postgresql://u:pw@db:notaport/billing"}, "BILLING_DATABASE_URL: not a valid"),
        ({"BILLING_DATABASE_URL": "postgresql://u:pw@/billing"}, "BILLING_DATABASE_URL: a postgresql URL needs a host"),
        ({"BILLING_DATABASE_URL": "postgresql://db:5432"}, "BILLING_DATABASE_URL: a postgresql URL needs a host"),
        ({"BILLING_DATABASE_URL": "postgresql://db:99999/b"}, "BILLING_DATABASE_URL: "),
        ({"BILLING_DATABASE_URL": "sqlite"}, "BILLING_DATABASE_URL: must be a sqlite"),
        ({"BILLING_DATABASE_URL": "postgresql+nodriver://u@db/billing"}, "BILLING_DATABASE_URL: no database driver"),
        ({"BILLING_DATABASE_URL": "postgresql+pg8000://u:pw@db/billing"}, "BILLING_DATABASE_URL: no database driver"),
        ({"BILLING_DATABASE_URL": "sqlite+x:///billing.db"}, "BILLING_DATABASE_URL: no database driver"),
        ({"S3_ENDPOINT_URL": "not a url"}, "S3_ENDPOINT_URL: must be an http"),
        ({"S3_ENDPOINT_URL": "http://127.0.0.1:port"}, "S3_ENDPOINT_URL: not a valid URL"),
        ({"STRIPE_API_BASE": "garbage"}, "STRIPE_API_BASE: must be an http"),
        ({"STRIPE_API_BASE": "ftp://stripe.example"}, "STRIPE_API_BASE: must be an http"),
        ({"STRIPE_REQUESTS_PER_SECOND": "fast"}, "STRIPE_REQUESTS_PER_SECOND: must be an integer from 0"),
        ({"SMTP_MESSAGES_PER_SECOND": "-1"}, "SMTP_MESSAGES_PER_SECOND: must be an integer from 0"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_a_named_sender_gives_the_seller_its_address_and_every_email_builds():
    """EMAIL_FROM may be "Name <address>": SELLER_EMAIL (the Reply-To) defaults to its address alone."""
    settings = Settings.from_env({"EMAIL_FROM": "Billing Team <billing@example.com>"})
    assert settings.seller["email"] == "billing@example.com"
    message = build_invoice_email(
        finalized_invoice("INV-2026-000001"),
        org("acme"),
        seller_from_settings(settings.seller),
        pdf=None,
        pdf_url=None,
        from_addr=settings.email_from,
        message_id_domain="example.com",
    )
    assert (message["From"], message["Reply-To"]) == (
        "Billing Team <billing@example.com>",
        "Example Cloud Ltd <billing@example.com>",
    )


def test_a_bad_database_url_error_masks_its_password():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"BILLING_DATABASE_URL": "postgresql://billing:s3cret@db:bad/billing"})
    assert "s3cret" not in str(raised.value) and "***" in str(raised.value)


def test_good_urls_load():
    s = Settings.from_env(
        {
            "BILLING_DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/billing",
            "S3_ENDPOINT_URL": "http://127.0.0.1:8333",
            "STRIPE_API_BASE": "https://api.stripe.com",
        }
    )
    assert (s.s3_endpoint_url, s.stripe_api_base) == ("http://127.0.0.1:8333", "https://api.stripe.com")


def test_secret_values_are_not_kept():
    s = Settings.from_env({"PAYMENT_GATEWAY": "stripe", "STRIPE_API_KEY": "sk_live_secret"})
    assert "sk_live_secret" not in repr(s)
