"""Health probes against the real local servers: PostgreSQL, SeaweedFS (S3 with SigV4), the
Stripe-compatible server and SMTP (STARTTLS + AUTH) in its own process. An SMTP server stopped
between scheduled runs flips ``mailer_health`` to unhealthy once and back once, and
``billing-pipeline health`` exits 1 while it is down."""

import time
import uuid

import dagster as dg
import pytest
from click.testing import CliRunner

from billing_pipeline import definitions
from billing_pipeline.cli import main
from billing_pipeline.clients.health import run_probes, s3_probe, smtp_probe, stripe_probe
from billing_pipeline.defs.health import health_changes, health_probes
from billing_pipeline.domain.health import HealthStatus, Transition
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import setup_database
from billing_pipeline_tests.support._util import free_port
from billing_pipeline_tests.support.settings import real_servers_env
from billing_pipeline_tests.support.smtp import SMTPServerProcess

pytestmark = pytest.mark.integration
UP, DOWN = HealthStatus.UP, HealthStatus.DOWN


@pytest.fixture
def smtp():
    """This test's own SMTP server: the scenario kills it and starts it again on the same port."""
    with SMTPServerProcess() as server:
        yield server


@pytest.fixture
def env(billing_db_url, s3_server, stripe_server, smtp, tmp_path, monkeypatch):
    setup_database(billing_db_url)
    bucket = s3_server.create_bucket(f"health-{uuid.uuid4().hex[:8]}")
    values = real_servers_env(
        billing_url=billing_db_url,
        billing_home=tmp_path / "billing",
        bucket=bucket,
        s3=s3_server,
        stripe=stripe_server,
        smtp=smtp,
    )
    values["DAGSTER_HOME"] = str(tmp_path / "dagster")
    values["HEALTH_PROBE_TIMEOUT_SECONDS"] = "3"
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def probe_all(env) -> dict:
    settings = Settings.from_env(env)
    ready = {k: v.process_config_and_initialize() for k, v in definitions.resources(settings).items()}
    probes = health_probes(ready["billing_db"], ready["document_store"], ready["payment_gateway"], ready["mailer"], 3)
    return {r.component: r for r in run_probes(probes, 3)}


def test_every_probe_is_up_against_the_real_servers(env, smtp):
    results = probe_all(env)
    assert {c: r.status for c, r in results.items()} == {
        "database": UP,
        "payment_gateway": UP,
        "document_store": UP,
        "mailer": UP,
    }, {c: r.detail for c, r in results.items()}
    assert results["database"].detail.startswith("postgresql 127.0.0.1:") and "schema " in results["database"].detail
    assert results["mailer"].detail == f"SMTP {smtp.host}:{smtp.port} (starttls), authenticated as billing"
    assert f"S3 bucket {env['S3_BUCKET']}" in results["document_store"].detail
    assert all(r.latency_ms < 3000 for r in results.values())


def test_each_probe_reports_what_is_wrong(env, smtp, s3_server, stripe_server):
    wrong_password = smtp_probe(
        smtp.host,
        smtp.port,
        username="billing",
        password="wrong-pass",
        security="starttls",
        timeout=3,
        ca_file=smtp.cert_path,
    )
    bad_key = stripe_probe("sk_test_not_a_key", api_base=stripe_server.api_base, timeout=3)
    no_bucket = s3_probe(
        "no-such-bucket-health",
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
        timeout=3,
    )
    mail, pay, docs = run_probes([wrong_password, bad_key, no_bucket], 3)
    assert mail.status is DOWN and "535" in mail.detail and "wrong-pass" not in mail.detail
    assert pay.status is DOWN and "AuthenticationError" in pay.detail and "sk_test_not_a_key" not in pay.detail
    assert docs.status is DOWN and "404" in docs.detail


def test_a_database_that_does_not_answer_is_down_within_the_timeout(env, monkeypatch):
    closed = f"postgresql://billing:hunter22@127.0.0.1:{free_port()}/billing"
    monkeypatch.setenv("BILLING_DATABASE_URL", closed)
    started = time.monotonic()
    results = probe_all({**env, "BILLING_DATABASE_URL": closed})
    assert results["database"].status is DOWN and "hunter22" not in results["database"].detail
    assert "OperationalError" in results["database"].detail
    assert results["mailer"].status is UP
    assert time.monotonic() - started < 5


def test_a_stopped_smtp_server_flips_unhealthy_once_and_back_once(env, smtp, tmp_path):
    resources = definitions.resources(Settings.from_env(env))
    cli = CliRunner()

    def scheduled_run() -> dict[str, bool]:
        result = dg.materialize([definitions.service_health], resources=resources, instance=instance)
        assert result.success
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    with dg.instance_for_test() as instance:
        for _ in range(2):
            assert all(scheduled_run().values())
        assert cli.invoke(main, ["health"]).exit_code == 0
        smtp.kill()
        for _ in range(3):
            checks = scheduled_run()
            assert checks.pop("mailer_health") is False and all(checks.values()), checks
        down = cli.invoke(main, ["health"])
        assert down.exit_code == 1 and "DOWN: mailer" in down.output, down.output
        assert "mailer           down" in down.output and "ConnectionRefusedError" in down.output
        smtp.start()  # same port, same certificate
        for _ in range(2):
            assert all(scheduled_run().values())
        assert cli.invoke(main, ["health"]).exit_code == 0
        changes = list(health_changes(instance))
    assert [(c.component, c.transition) for c in changes] == [
        ("mailer", Transition.BECAME_UNHEALTHY),
        ("mailer", Transition.RECOVERED),
    ]
    assert changes[0].at < changes[1].at
    assert changes[0].dedupe_key != changes[1].dedupe_key
