"""ZERO_TOTAL_INVOICES end to end: the monthly invoices job, then the delivery job (fake gateway).

``free`` is on a JPY plan with no usage (total 0 JPY), ``alpha`` on starter (its minimum
spend makes 30.00 USD); both are on auto-pay and PAYMENT_GATEWAY=stripe, so the seller charges
automatically. Every run happens twice: nothing is numbered, charged or e-mailed twice.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import dagster as dg
import pytest
import time_machine
from sqlalchemy import select

from billing_pipeline.clients.payments import GatewayInvoice, PaymentGateway
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import delivery_views, lifecycle, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_number_sequences, invoices, payments
from billing_pipeline.definitions import INVOICE_JOBS, build_definitions
from billing_pipeline.defs.delivery_resources import (
    LocalDocumentStoreResource,
    OutboxMailerResource,
    PaymentGatewayResource,
)
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.defs.sms import NoSmsResource
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.money import to_minor
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.launch import run_period, sync_organization_partitions
from billing_pipeline.services import invoicing
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import UTC, add_events, org, setup_database, subscribe

MONTHLY = BillingInterval.MONTHLY
OCT = dt.datetime(2026, 10, 1, tzinfo=UTC)
PERIOD = "2026-10-01"
ORGS = ["alpha", "free"]
SYNCED: list[str] = []  # invoice numbers the fake gateway was asked to sync, in order


class RecordingGateway:
    def sync_invoice(self, invoice, org, *, idempotency_prefix):
        SYNCED.append(invoice.number)
        total = to_minor(invoice.total, invoice.currency)
        return GatewayInvoice(f"in_{invoice.number}", invoice.number, "open", total, invoice.currency, None)


class RecordingGatewayResource(PaymentGatewayResource):
    """A payment gateway that records what it is asked to sync."""

    def gateway(self) -> PaymentGateway:
        return RecordingGateway()


@pytest.fixture
def issued_november_2026():
    """After October's 72 h grace window; invoice numbers carry the issue year."""
    with time_machine.travel(dt.datetime(2026, 11, 5, 10, tzinfo=UTC), tick=True):
        yield


def setup(tmp_path: Path, policy: str | None):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    env = {"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url, "PAYMENT_GATEWAY": "stripe"}
    if policy is not None:
        env["ZERO_TOTAL_INVOICES"] = policy
    settings = Settings.from_env(env)
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("alpha", auto_pay=True), org("free", currency="JPY", auto_pay=True)])
    subscribe(url, "alpha", "starter", OCT)
    subscribe(url, "free", "hosting_jpy", OCT)
    instance = dg.DagsterInstance.ephemeral()
    sync_organization_partitions(instance, engine)
    SYNCED.clear()
    return settings, engine, instance, build_definitions(settings)


def deliver(defs, instance, settings) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs.assets),
        selection=[dg.AssetKey("monthly_invoice_deliveries")],
        instance=instance,
        resources={
            "billing_db": BillingDatabaseResource(url=settings.database_url),
            "document_store": LocalDocumentStoreResource(documents_dir=str(settings.documents_dir)),
            "payment_gateway": RecordingGatewayResource(),
            "mailer": OutboxMailerResource(outbox_dir=str(settings.outbox_dir)),
            "sms": NoSmsResource(),  # the reminders asset, among the definitions' assets, needs it
        },
        tags={
            "dagster/asset_partition_range_start": f"{PERIOD}|{ORGS[0]}",
            "dagster/asset_partition_range_end": f"{PERIOD}|{ORGS[-1]}",
        },
    )


def stored(engine) -> dict[str, tuple[str, str | None, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(invoices.c.org_id, invoices.c.status, invoices.c.number, invoices.c.total_minor))
        return {r.org_id: (r.status, r.number, r.total_minor) for r in rows}


def latest_outcomes(instance) -> dict[str, dict]:
    records = instance.fetch_materializations(dg.AssetKey("monthly_invoices"), limit=20).records
    latest: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: r.storage_id):
        m = r.asset_materialization
        latest[m.partition.split("|")[1]] = {k: v.value for k, v in m.metadata.items()}
    return latest


def mails(settings) -> dict[str, str]:
    """Outbox messages by recipient: subject + plain body."""
    out = {}
    for path in sorted(settings.outbox_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        out[msg["To"].addresses[0].addr_spec] = (
            f"{msg['Subject']}\n{msg.get_body(preferencelist=('plain',)).get_content()}"
        )
    return out


def test_default_finalizes_zero_invoices_paid_without_a_gateway_call(tmp_path, issued_november_2026):
    settings, engine, instance, defs = setup(tmp_path, None)
    assert settings.zero_total_invoices == "finalize_paid"
    expected = {"alpha": ("finalized", "INV-2026-000001", 3000), "free": ("paid", "INV-2026-000002", 0)}
    assert all(o.success for o in run_period(defs, instance, INVOICE_JOBS[MONTHLY], PERIOD))
    assert stored(engine) == expected
    assert latest_outcomes(instance)["free"]["message"] == "zero total: finalized and marked paid, nothing to collect"
    assert all(o.success for o in run_period(defs, instance, INVOICE_JOBS[MONTHLY], PERIOD))  # a re-run
    assert stored(engine) == expected
    assert latest_outcomes(instance)["free"]["message"] == "invoice INV-2026-000002 was already final; no change"
    with engine.connect() as conn:
        assert conn.execute(select(payments)).all() == []  # no money moved: no payment row
        free_id = conn.execute(select(invoices.c.id).where(invoices.c.org_id == "free")).scalar_one()
    events = [(e.kind, e.from_status, e.to_status, e.actor) for e in lifecycle.history(engine, free_id)]
    assert events == [("transition", "finalized", "paid", "billing-pipeline")]  # once, across both runs

    # the delivery sensor's view picks the paid zero invoice too (it is e-mailed as a statement)
    assert delivery_views.undelivered_invoices(engine, ["email"]) == {("monthly", PERIOD): ["alpha", "free"]}
    for _ in range(2):
        assert deliver(defs, instance, settings).success
    assert delivery_views.undelivered_invoices(engine, ["email"]) == {}
    assert SYNCED == ["INV-2026-000001"]  # alpha once; free's paid zero invoice never reached the gateway
    ids = delivery_views.finalized_invoice_ids(engine, "monthly", PERIOD)
    rows = ledger.get_rows(engine, list(ids.values()))
    free = {c: (r.status, r.attempts) for (i, c), r in rows.items() if i == ids["free"]}
    assert free == {
        "pdf": ("succeeded", 1),
        "s3": ("succeeded", 1),
        "stripe": ("skipped", 1),
        "email": ("succeeded", 1),
    }
    sent = mails(settings)
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 2
    free_mail = sent["billing@free.test"]
    assert "0 JPY, nothing to pay" in free_mail and "Nothing to pay: the total of this invoice is 0 JPY" in free_mail
    assert "automatically" not in free_mail and "bank transfer" not in free_mail.lower()
    alpha_mail = sent["billing@alpha.test"]
    assert "will be charged automatically to the payment method on file on 2026-12-05" in alpha_mail
    assert "Payment instructions" not in alpha_mail


def test_skip_leaves_zero_invoices_unnumbered_and_undelivered(tmp_path, issued_november_2026):
    settings, engine, instance, defs = setup(tmp_path, "skip")
    for _ in range(2):
        assert all(o.success for o in run_period(defs, instance, INVOICE_JOBS[MONTHLY], PERIOD))
        assert stored(engine) == {"alpha": ("finalized", "INV-2026-000001", 3000), "free": ("draft", None, 0)}
    with engine.connect() as conn:  # no number was taken for free
        assert conn.execute(select(invoice_number_sequences.c.last_value)).scalar_one() == 1
    outcome = latest_outcomes(instance)["free"]
    assert (
        outcome["outcome"] == "skipped"
        and outcome["message"] == "total is zero: not invoiced (ZERO_TOTAL_INVOICES=skip)"
    )
    status = instance.get_status_by_partition(
        dg.AssetKey("monthly_invoices"), [f"{PERIOD}|free"], defs.resolve_assets_def("monthly_invoices").partitions_def
    )
    assert status[f"{PERIOD}|free"].value == "MATERIALIZED"  # skipped, like other not-billable orgs: not FAILED

    assert deliver(defs, instance, settings).success
    assert SYNCED == ["INV-2026-000001"]
    assert list(mails(settings)) == ["billing@alpha.test"]


def test_finalize_keeps_todays_behaviour(tmp_path, issued_november_2026):
    settings, engine, instance, defs = setup(tmp_path, "finalize")
    assert all(o.success for o in run_period(defs, instance, INVOICE_JOBS[MONTHLY], PERIOD))
    assert stored(engine)["free"] == ("finalized", "INV-2026-000002", 0)
    assert deliver(defs, instance, settings).success
    assert sorted(SYNCED) == ["INV-2026-000001", "INV-2026-000002"]  # the zero invoice is synced too
    assert "Nothing to pay: the total of this invoice is 0 JPY." in mails(settings)["billing@free.test"]


@pytest.mark.parametrize(
    ("policy", "outcome", "message"),
    [
        (None, "finalized", "dry run: would be finalized and marked paid (zero total)"),
        ("skip", "skipped", "dry run: total is zero: not invoiced (ZERO_TOTAL_INVOICES=skip)"),
    ],
)
def test_a_dry_run_says_what_the_policy_would_do(tmp_path, policy, outcome, message):
    """The invoices step alone in a dry run (the job's dry run stops after the drafts' observations)."""
    settings, engine, instance, defs = setup(tmp_path, policy)
    batch = invoicing.finalize_batch(
        engine,
        period_from_key(MONTHLY, PERIOD),
        ORGS,
        prefix="INV",
        now=dt.datetime(2026, 11, 5, tzinfo=UTC),
        dry_run=True,
        zero_total=settings.zero_total_invoices,
    )
    assert {r.org_id: (r.outcome.value, r.message) for r in batch.results} == {
        "alpha": ("finalized", "dry run: would be finalized"),
        "free": (outcome, message),
    }
    assert stored(engine) == {}  # nothing written


def test_a_skipped_draft_that_stops_being_zero_is_numbered_next_time(tmp_path, issued_november_2026):
    settings, engine, instance, defs = setup(tmp_path, "skip")

    def run() -> dict[str, str]:
        assert all(o.success for o in run_period(defs, instance, INVOICE_JOBS[MONTHLY], PERIOD))
        return {org: m["outcome"] for org, m in latest_outcomes(instance).items()}

    assert run() == {"alpha": "finalized", "free": "skipped"}
    assert run() == {"alpha": "already_finalized", "free": "skipped"}
    assert stored(engine)["free"] == ("draft", None, 0)
    add_events(settings.database_url, [("free", "f1", "seats", "2", OCT + dt.timedelta(days=2))])  # late usage
    assert run() == {"alpha": "already_finalized", "free": "finalized"}
    assert stored(engine)["free"] == ("finalized", "INV-2026-000002", 1200)  # 2 seats x 500 JPY + 20 % tax
