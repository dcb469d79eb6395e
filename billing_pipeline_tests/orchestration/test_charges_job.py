"""The auto-charge and payment-sync schedules and assets: tick -> as_of, summary -> metadata, Stripe test server."""

import datetime as dt

import dagster as dg
import pytest

from billing_pipeline import definitions
from billing_pipeline.definitions import resources
from billing_pipeline.defs import charges
from billing_pipeline.services.collections.payment_sync import SyncOptions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.charge_builders import OPTIONS, add_charged_invoice, gateway_for, mirror
from billing_pipeline_tests.dunning_builders import SELLER, UTC, customer, reminders_database

ISSUED = dt.datetime(2026, 3, 1, tzinfo=UTC)  # net 14: due 2026-03-15


def request_at(schedule, tick: dt.datetime) -> dg.RunRequest:
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        return schedule.evaluate_tick(context).run_requests[0]


@pytest.mark.parametrize(
    ("schedule", "cron", "asset"),
    [
        (definitions.charge_due_invoices_job_schedule, "0 6 * * *", "auto_charges"),
        (definitions.sync_payment_status_job_schedule, "*/30 * * * *", "payment_status_sync"),
    ],
)
def test_the_schedules_pass_their_tick_as_as_of(schedule, cron, asset):
    assert (schedule.cron_schedule, schedule.execution_timezone) == (cron, "UTC")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    request = request_at(schedule, dt.datetime(2026, 3, 15, 6, 0, tzinfo=UTC))
    assert request.run_key == f"{asset}-2026-03-15T06:00"
    assert request.run_config == {"ops": {asset: {"config": {"as_of": "2026-03-15T06:00:00+00:00"}}}}


@pytest.mark.integration
def test_the_assets_charge_and_sync_against_the_stripe_test_server(tmp_path, stripe_server, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", stripe_server.api_key)
    settings = Settings.from_env(
        {"BILLING_HOME": str(tmp_path), "PAYMENT_GATEWAY": "stripe", "STRIPE_API_BASE": stripe_server.api_base}
    )
    engine = reminders_database(settings.database_url, [customer("acme", auto_pay=True)])
    invoice_id = add_charged_invoice(engine, "acme", "INV-2026-000001", issued=ISSUED)
    mirror(engine, gateway_for(stripe_server), stripe_server, invoice_id, "acme")
    common = {"seller": SELLER, "email_from": "billing@seller.test", "max_attempts": 3, "enabled": True}
    charge = charges.auto_charges_asset(options=OPTIONS, **common)
    sync = charges.payment_status_sync_asset(options=SyncOptions(), **common)
    config = {"ops": {"auto_charges": {"config": {"as_of": "2026-03-15T06:00:00+00:00"}}}}
    with dg.instance_for_test() as instance:
        for _ in range(2):  # the second run charges nothing
            result = dg.materialize([charge], resources=resources(settings), run_config=config, instance=instance)
            [m] = result.asset_materializations_for_node("auto_charges")
            meta = {k: v.value for k, v in m.metadata.items()}
            if _ == 0:
                assert (meta["charged"], meta["declined"], meta["notices"]) == (1, 0, 1)
                assert meta["charged_amounts"] == {"USD": "120.00 USD"}
                assert meta["by_organization"] == {"acme": "INV-2026-000001 attempt 1: succeeded"}
            else:
                assert (meta["charged"], meta["notices"]) == (0, 0)
        sync_config = {"ops": {"payment_status_sync": {"config": {"as_of": "2026-03-15T07:00:00+00:00"}}}}
        result = dg.materialize([sync], resources=resources(settings), run_config=sync_config, instance=instance)
        [m] = result.asset_materializations_for_node("payment_status_sync")
        assert (m.metadata["checked"].value, m.metadata["paid_elsewhere"].value) == (0, 0)  # our own payment
    assert [p.name for p in sorted(settings.outbox_dir.glob("*.eml"))][0].startswith("receipt.pi_")
