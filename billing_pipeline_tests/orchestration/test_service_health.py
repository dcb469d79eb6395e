"""service_health: the asset and its checks on local implementations, state across runs in the
instance, the schedule's run request, and ``billing-pipeline health``'s exit codes."""

import datetime as dt

import dagster as dg
import pytest
from click.testing import CliRunner

from billing_pipeline import definitions
from billing_pipeline.cli import main
from billing_pipeline.defs.delivery_resources import (
    LocalDocumentStoreResource,
    NoPaymentGatewayResource,
    OutboxMailerResource,
)
from billing_pipeline.defs.health import SERVICE_HEALTH_KEY, health_changes, stored_states
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.health import Transition
from billing_pipeline_tests.builders import setup_database


@pytest.fixture
def local(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    setup_database(url)
    resources = {
        "billing_db": BillingDatabaseResource(url=url),
        "document_store": LocalDocumentStoreResource(documents_dir=str(tmp_path / "documents")),
        "payment_gateway": NoPaymentGatewayResource(),
        "mailer": OutboxMailerResource(outbox_dir=str(tmp_path / "outbox")),
    }
    return resources, tmp_path


def probe(instance, resources):
    result = dg.materialize([definitions.service_health], resources=resources, instance=instance)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    [materialization] = result.asset_materializations_for_node("service_health")
    return checks, materialization.metadata


def test_local_implementations_are_healthy_or_not_configured(local):
    resources, tmp_path = local
    with dg.instance_for_test() as instance:
        checks, metadata = probe(instance, resources)
    assert set(checks) == {"database_health", "payment_gateway_health", "document_store_health", "mailer_health"}
    assert all(c.passed for c in checks.values())
    assert checks["payment_gateway_health"].metadata["status"].value == "not_configured"
    assert checks["database_health"].metadata["detail"].value.startswith("sqlite ")
    assert metadata["down"].value == 0 and metadata["changes"].value == []
    assert "| mailer | up |" in metadata["summary"].value


def test_an_outbox_that_cannot_be_written_flips_once_and_back_once(local):
    resources, tmp_path = local
    blocker = tmp_path / "outbox"
    with dg.instance_for_test() as instance:
        probe(instance, resources)
        blocker.write_text("a file where the outbox folder should be")
        for _ in range(3):
            checks, _ = probe(instance, resources)
            assert not checks["mailer_health"].passed and checks["database_health"].passed
        assert not stored_states(instance)["mailer"].healthy
        blocker.unlink()
        for _ in range(2):
            checks, _ = probe(instance, resources)
            assert checks["mailer_health"].passed
        changes = list(health_changes(instance))
        assert instance.get_latest_materialization_event(SERVICE_HEALTH_KEY) is not None
    assert [(c.component, c.transition) for c in changes] == [
        ("mailer", Transition.BECAME_UNHEALTHY),
        ("mailer", Transition.RECOVERED),
    ]
    assert "is not a folder" in changes[0].detail
    assert len({c.dedupe_key for c in changes}) == 2


def test_health_changes_since_leaves_out_earlier_ones(local):
    resources, tmp_path = local
    with dg.instance_for_test() as instance:
        (tmp_path / "outbox").write_text("blocked")
        probe(instance, resources)
        assert [c.transition for c in health_changes(instance)] == [Transition.BECAME_UNHEALTHY]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        assert list(health_changes(instance, since=later)) == []


def test_schedule_requests_one_run_per_tick():
    with dg.instance_for_test() as instance:
        tick = dt.datetime(2026, 11, 2, 9, 15, tzinfo=dt.UTC)
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        request = definitions.service_health_schedule(ctx)
    assert request.run_key == "service-health-2026-11-02T09:15"
    assert definitions.service_health_schedule.job_name == "service_health_job"
    assert definitions.service_health_schedule.cron_schedule == "*/15 * * * *"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "billing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return run


def test_cli_exits_1_while_the_database_is_missing_and_0_once_it_exists(cli):
    code, out = cli("health", "--timeout", "2")
    assert code == 1, out
    assert "database         down" in out and "does not exist" in out and out.rstrip().endswith("DOWN: database")
    assert "payment_gateway  not_configured" in out
    code, out = cli("init-db")
    assert code == 0, out
    code, out = cli("health")
    assert code == 0, out
    assert "(timeout 5 s)" in out and "schema " in out and out.rstrip().endswith("all healthy")
