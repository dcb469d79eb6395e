"""Failed invoice deliveries in the dead letters (kind ``invoice_delivery``), on SQLite and PostgreSQL.

The delivery job and the sensor as Dagster runs them in process (local document folder, outbox
mailer, no payment gateway). The document store fails for everyone (its folder is a file), so the
s3 channel of every invoice fails and the later channels are not attempted.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from billing_pipeline import launch
from billing_pipeline.db import dead_letters, reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_deliveries, invoices
from billing_pipeline.definitions import build_definitions
from billing_pipeline.defs.delivery import delivery_run_requests, run_delivery
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import (
    UTC,
    add_events,
    org,
    setup_database,
    store_unchecked_organizations,
    subscribe,
)

OCT = dt.datetime(2026, 10, 1, tzinfo=UTC)
MONTHLY = BillingInterval.MONTHLY
PERIOD = "2026-10-01"
KIND = "invoice_delivery"


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'billing.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("billing_db_url")
    )
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url})
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("alpha"), org("beta")])
    bad_mail = org("delta")
    store_unchecked_organizations(url, [type(bad_mail)(**{**bad_mail.__dict__, "billing_email": "not an address"})])
    for o in ("alpha", "beta", "delta"):
        subscribe(url, o, "starter", OCT)
    add_events(url, [("alpha", "a1", "api_calls", "1", OCT + dt.timedelta(hours=1))])
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    launch.sync_organization_partitions(instance, engine)
    from billing_pipeline import definitions

    hours = launch.run_hours(
        defs, instance, definitions.hourly_usage_job.name, OCT, OCT + dt.timedelta(days=31, hours=-1)
    )
    assert hours.success
    launch.run_period(defs, instance, definitions.INVOICE_JOBS[MONTHLY], PERIOD)
    settings.documents_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.documents_dir.write_text("not a folder")  # the document store fails for every invoice
    return settings, engine, instance, defs


def ledger(engine) -> dict[tuple[str, str], tuple[str, int]]:
    query = select(invoices.c.org_id, invoice_deliveries.c.channel, invoice_deliveries.c.status).add_columns(
        invoice_deliveries.c.attempts
    )
    query = query.join(invoices, invoices.c.id == invoice_deliveries.c.invoice_id)
    with engine.connect() as conn:
        return {(r.org_id, r.channel): (r.status, r.attempts) for r in conn.execute(query)}


def letters(engine, status="open") -> dict[tuple[str, str], dead_letters.DeadLetter]:
    return {
        (d.payload["organization"], d.payload["channel"]): d
        for d in dead_letters.list_dead_letters(engine, status=status, kind=KIND)
    }


def outbox(settings) -> list[Path]:
    return sorted(Path(settings.outbox_dir).glob("*.eml")) if Path(settings.outbox_dir).exists() else []


def sensor_tick(defs, instance):
    sensor = defs.resolve_sensor_def("invoice_delivery_sensor")
    resources = {"billing_db": defs.resources["billing_db"]}
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        return sensor(context)


def launch_requests(defs, instance, result) -> None:
    """What the daemon does with the sensor's requests: one run each, with its tags and config."""
    for request in result.run_requests:
        job = defs.resolve_job_def(request.job_name)
        job.execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags, raise_on_error=False
        )


def fix_document_store(settings) -> None:
    settings.documents_dir.unlink()


def test_a_failed_channel_is_one_dead_letter_retried_once_by_the_sensor(world):
    settings, engine, instance, defs = world
    [outcome] = run_delivery(defs, instance, MONTHLY, PERIOD)
    assert not outcome.success
    rows = ledger(engine)
    for o in ("alpha", "beta", "delta"):
        assert rows[(o, "pdf")] == ("succeeded", 1) and rows[(o, "s3")] == ("failed", 1)
        assert (o, "stripe") not in rows and (o, "email") not in rows  # never attempted
    opened = letters(engine)
    assert set(opened) == {("alpha", "s3"), ("beta", "s3"), ("delta", "s3")}
    alpha = opened[("alpha", "s3")]
    assert alpha.attempts == 1 and ("NotADirectoryError" in alpha.error or "FileExistsError" in alpha.error)
    assert alpha.payload["invoice"].startswith("INV-") and alpha.payload["period"] == PERIOD
    assert alpha.payload["interval"] == "monthly" and alpha.business_key.endswith("|s3")
    assert isinstance(sensor_tick(defs, instance), dg.SkipReason)  # the sensor never retries a failure

    fix_document_store(settings)
    retried = dead_letters.retry_dead_letter(engine, alpha.id)
    assert retried.status == "retried" and ledger(engine)[("alpha", "s3")] == ("pending", 1)
    with pytest.raises(dead_letters.DeadLetterStateError, match="retried, not open"):
        dead_letters.retry_dead_letter(engine, alpha.id)

    tick = sensor_tick(defs, instance)
    [request] = tick.run_requests  # alpha only: beta's and delta's rows are still failed
    assert request.run_config["ops"]["monthly_invoice_deliveries"]["ops"]["upload_monthly_invoice_pdfs"]["config"][
        "organizations"
    ] == ["alpha"]
    all_orgs = instance.get_dynamic_partitions("monthly_billed_organizations")
    first_key = delivery_run_requests(all_orgs, MONTHLY, PERIOD, ["alpha"], 1000)[0].run_key
    assert request.run_key != first_key  # a run key the sensor has not used for alpha before (Dagster dedupes)
    launch_requests(defs, instance, tick)
    rows = ledger(engine)
    assert rows[("alpha", "pdf")] == ("succeeded", 1)  # not rendered again
    assert rows[("alpha", "s3")] == ("succeeded", 2) and rows[("alpha", "email")] == ("succeeded", 1)
    assert rows[("alpha", "stripe")][0] == "skipped"
    assert rows[("beta", "s3")] == ("failed", 1) and rows[("delta", "s3")] == ("failed", 1)  # the range's others
    assert len(outbox(settings)) == 1
    assert set(letters(engine)) == {("beta", "s3"), ("delta", "s3")}
    assert isinstance(sensor_tick(defs, instance), dg.SkipReason)
    assert dead_letters.count_open(engine) == {KIND: 2}


def test_dismissed_is_never_delivered_and_an_operator_run_retries_the_open_ones(world):
    settings, engine, instance, defs = world
    run_delivery(defs, instance, MONTHLY, PERIOD)
    opened = letters(engine)
    dismissed = dead_letters.dismiss_dead_letter(engine, opened[("beta", "s3")].id)
    assert dismissed.status == "dismissed"
    with pytest.raises(dead_letters.DeadLetterStateError, match="dismissed, not open"):
        dead_letters.retry_dead_letter(engine, dismissed.id)
    fix_document_store(settings)

    # An operator's run retries the failed rows whose letters are open (alpha, delta), never beta's.
    for _ in range(3):
        run_delivery(defs, instance, MONTHLY, PERIOD)
        assert isinstance(sensor_tick(defs, instance), dg.SkipReason)
    rows = ledger(engine)
    assert rows[("beta", "s3")] == ("failed", 1) and (("beta", "email") not in rows)
    assert rows[("alpha", "email")] == ("succeeded", 1)
    assert rows[("delta", "s3")] == ("succeeded", 2)
    assert rows[("delta", "email")] == ("failed", 3)  # a bad address: permanent, once per operator run
    assert len(outbox(settings)) == 1  # alpha's, once
    assert set(letters(engine)) == {("delta", "email")}  # the s3 letters: closed by the runs that retried them
    assert letters(engine, "retried").keys() == {("alpha", "s3"), ("delta", "s3")}
    assert letters(engine, "dismissed").keys() == {("beta", "s3")}
    assert letters(engine)[("delta", "email")].attempts == 3

    # Delta's address is fixed and its letter retried: one e-mail; beta stays undelivered.
    fixed = org("delta")
    reference.upsert_organizations(engine, [fixed])
    dead_letters.retry_dead_letter(engine, letters(engine)[("delta", "email")].id)
    launch_requests(defs, instance, sensor_tick(defs, instance))
    for _ in range(2):
        run_delivery(defs, instance, MONTHLY, PERIOD)
    assert len(outbox(settings)) == 2
    assert ledger(engine)[("delta", "email")] == ("succeeded", 4)
    assert ledger(engine)[("beta", "s3")] == ("failed", 1) and dead_letters.count_open(engine) == {}
