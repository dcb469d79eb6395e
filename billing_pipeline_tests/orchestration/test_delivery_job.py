"""The delivery job with fake clients: one organization's gateway fails, storage stays empty."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from billing_pipeline.clients.errors import PermanentGatewayError
from billing_pipeline.clients.payments import GatewayInvoice, PaymentGateway
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import delivery_views, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.definitions import build_definitions
from billing_pipeline.defs.delivery_resources import (
    LocalDocumentStoreResource,
    OutboxMailerResource,
    PaymentGatewayResource,
)
from billing_pipeline.defs.partitions import billing_partitions
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.sms import NoSmsResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.money import to_minor
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.launch import sync_organization_partitions
from billing_pipeline.services import invoicing
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe

MONTHLY = BillingInterval.MONTHLY
PERIOD = "2026-10-01"


class FakeGateway:
    def __init__(self, failing: str):
        self.failing = failing

    def sync_invoice(self, invoice, org, *, idempotency_prefix):
        if org.id == self.failing:
            raise PermanentGatewayError(f"card declined for {org.id}", code="card_declined")
        total = to_minor(invoice.total, invoice.currency)
        return GatewayInvoice(f"in_{invoice.number}", invoice.number, "open", total, invoice.currency, None)


class FailingForOneOrgGatewayResource(PaymentGatewayResource):
    """A payment gateway that declines one organization's invoice."""

    failing_org: str

    def gateway(self) -> PaymentGateway:
        return FakeGateway(self.failing_org)


def seed(tmp_path: Path, orgs: list[str]) -> tuple[Settings, object]:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url})
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org(o) for o in orgs])
    for o in orgs:
        subscribe(url, o, "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    period = period_from_key(MONTHLY, PERIOD)
    invoicing.draft_batch(engine, period, orgs, dry_run=False)
    invoicing.finalize_batch(
        engine, period, orgs, prefix="INV", now=dt.datetime(2026, 11, 1, tzinfo=UTC), dry_run=False
    )
    return settings, engine


def resources(settings: Settings, failing_org: str = "nobody") -> dict:
    return {
        "billing_db": BillingDatabaseResource(url=settings.database_url),
        "document_store": LocalDocumentStoreResource(documents_dir=str(settings.documents_dir)),
        "payment_gateway": FailingForOneOrgGatewayResource(failing_org=failing_org),
        "mailer": OutboxMailerResource(outbox_dir=str(settings.outbox_dir)),
        "sms": NoSmsResource(),  # the reminders asset, among the definitions' assets, needs it
    }


def materialize(defs, instance, settings, orgs, failing_org="nobody") -> dg.ExecuteInProcessResult:
    assets = list(defs.assets)
    return dg.materialize(
        assets,
        selection=[dg.AssetKey("monthly_invoice_deliveries")],
        instance=instance,
        resources=resources(settings, failing_org),
        tags={
            "dagster/asset_partition_range_start": f"{PERIOD}|{orgs[0]}",
            "dagster/asset_partition_range_end": f"{PERIOD}|{orgs[-1]}",
        },
        raise_on_error=False,
    )


def statuses(instance, orgs) -> dict[str, str | None]:
    got = instance.get_status_by_partition(
        dg.AssetKey("monthly_invoice_deliveries"),
        [f"{PERIOD}|{o}" for o in orgs],
        billing_partitions(MONTHLY, dt.date(2026, 1, 1)),
    )
    return {k.split("|")[1]: (v.value if v else None) for k, v in got.items()}


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def test_a_failing_gateway_fails_only_its_organization(tmp_path, instance):
    orgs = ["alpha", "beta", "gamma"]
    settings, engine = seed(tmp_path, orgs)
    defs = build_definitions(settings)
    sync_organization_partitions(instance, engine)
    result = materialize(defs, instance, settings, orgs, failing_org="beta")
    assert not result.success
    assert statuses(instance, orgs) == {"alpha": "MATERIALIZED", "beta": "FAILED", "gamma": "MATERIALIZED"}
    ids = delivery_views.finalized_invoice_ids(engine, "monthly", PERIOD)
    rows = ledger.get_rows(engine, list(ids.values()))
    beta = {c: r.status for (i, c), r in rows.items() if i == ids["beta"]}
    # beta's PDF is rendered and stored; Stripe declined it, so its e-mail was never attempted
    assert beta == {"pdf": "succeeded", "s3": "succeeded", "stripe": "failed"}
    assert "card declined" in rows[(ids["beta"], "stripe")].last_error
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 2
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "beta" in str(failure.event_specific_data.error) and "alpha" not in str(failure.event_specific_data.error)

    # The gateway works again: re-materializing delivers beta's remaining channels only.
    result = materialize(defs, instance, settings, orgs)
    assert result.success
    assert set(statuses(instance, orgs).values()) == {"MATERIALIZED"}
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 3


def _storage_bytes(instance) -> int:
    """Bytes the IO manager keeps under DAGSTER_HOME/storage/<run id>/ (the instance's own
    SQLite files and each run's captured console log, compute_logs/, are not counted)."""
    runs = {r.run_id for r in instance.get_runs()}
    root = Path(instance.storage_directory())
    if not root.exists():
        return 0
    outputs = [p for d in root.iterdir() if d.name in runs for p in d.rglob("*") if "compute_logs" not in p.parts]
    return sum(p.stat().st_size for p in outputs if p.is_file())


def test_dagster_storage_does_not_grow_with_the_number_of_pdfs(tmp_path, instance):
    orgs = [f"org{i:02d}" for i in range(12)]
    settings, engine = seed(tmp_path, orgs)
    defs = build_definitions(settings)
    sync_organization_partitions(instance, engine)
    before = _storage_bytes(instance)
    assert materialize(defs, instance, settings, orgs[:2]).success
    after_two = _storage_bytes(instance)
    assert materialize(defs, instance, settings, orgs[2:]).success
    after_twelve = _storage_bytes(instance)
    assert len(list(settings.documents_dir.rglob("*.pdf"))) == 12
    assert before == after_two == after_twelve == 0  # ops pass nothing through the IO manager
    assert not list(Path(settings.home / "rendered").rglob("*.pdf"))  # the spool is emptied once delivered


def test_delivery_names_are_pinned_and_literal_in_the_source(tmp_path):
    defs = build_definitions(Settings.from_env({"BILLING_HOME": str(tmp_path)}))
    source = "\n".join(p.read_text() for p in Path(__file__).parents[2].joinpath("billing_pipeline").rglob("*.py"))
    for interval in ("monthly", "weekly"):
        job = defs.resolve_job_def(f"deliver_{interval}_invoices_job")
        ops = {node.name for node in job.graph.nodes[0].definition.node_defs}
        assert ops == {
            f"render_{interval}_invoice_pdfs",
            f"upload_{interval}_invoice_pdfs",
            f"sync_{interval}_stripe_invoices",
            f"send_{interval}_invoice_emails",
            f"report_{interval}_invoice_deliveries",
        }
        names = {job.name, f"{interval}_invoice_deliveries", *ops}
        assert all(f'"{name}"' in source for name in names), names  # a grep for the UI name finds it
    assert "invoice_delivery_sensor" in {s.name for s in defs.sensors}
