"""Migration 0012: delivery rows already failed before the upgrade get their dead letter, once.

On SQLite and PostgreSQL: two failed rows, one of which already has a letter; the upgrade opens
the other one's with the invoice's facts, leaves the existing one alone, and the letter it wrote
is retried like any other (the row back to ``pending``).
"""

from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from sqlalchemy import insert, select

from billing_pipeline.clock import utc_now
from billing_pipeline.db import dead_letters, reference
from billing_pipeline.db.delivery_dead_letters import KIND, business_key
from billing_pipeline.db.engine import alembic_config, get_engine, migrate
from billing_pipeline.db.schema import invoice_deliveries
from billing_pipeline.domain.periods import monthly_period
from billing_pipeline.services import invoicing
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'billing.db'}"
    return request.getfixturevalue("billing_db_url")


def test_failed_rows_from_before_the_upgrade_get_one_letter_each(url):
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("alpha"), org("beta")])
    for o in ("alpha", "beta"):
        subscribe(url, o, "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    october = monthly_period(2026, 10)
    invoicing.draft_batch(engine, october, ["alpha", "beta"], dry_run=False)
    batch = invoicing.finalize_batch(
        engine, october, ["alpha", "beta"], prefix="INV", now=dt.datetime(2026, 11, 4, tzinfo=UTC), dry_run=False
    )
    ids = {r.org_id: r.invoice_id for r in batch.results}
    command.downgrade(alembic_config(url), "0011")  # the database as the previous release left it
    with engine.begin() as conn:
        for org_id, error in (("alpha", "s3: AccessDenied"), ("beta", None)):
            conn.execute(
                insert(invoice_deliveries).values(
                    invoice_id=ids[org_id],
                    channel="s3",
                    status="failed",
                    attempts=4,
                    last_error=error,
                    updated_at=utc_now(),
                )  # fmt: skip
            )
        dead_letters.record_dead_letter(conn, KIND, business_key(ids["beta"], "s3"), {"kept": True}, "earlier", 2)
    migrate(url)
    letters = {letter.business_key: letter for letter in dead_letters.open_dead_letters(engine, KIND)}
    assert set(letters) == {business_key(ids["alpha"], "s3"), business_key(ids["beta"], "s3")}
    alpha = letters[business_key(ids["alpha"], "s3")]
    assert (alpha.error, alpha.attempts) == ("s3: AccessDenied", 4)
    assert alpha.payload["invoice"].startswith("INV-") and alpha.payload["organization"] == "alpha"
    assert (alpha.payload["period"], alpha.payload["channel"]) == ("2026-10-01", "s3")
    assert letters[business_key(ids["beta"], "s3")].payload == {"kept": True}  # left as it was
    dead_letters.retry_dead_letter(engine, alpha.id)
    with engine.connect() as conn:
        status = conn.execute(
            select(invoice_deliveries.c.status).where(invoice_deliveries.c.invoice_id == ids["alpha"])
        ).scalar_one()
    assert status == "pending"
