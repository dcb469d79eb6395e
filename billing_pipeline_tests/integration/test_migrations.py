"""Alembic migrations create exactly the tables of db/schema.py, on SQLite and PostgreSQL,
and can be applied twice and rolled back."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from billing_pipeline.db.engine import alembic_config, get_engine, migrate
from billing_pipeline.db.schema import metadata

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'billing.db'}"
    return request.getfixturevalue("billing_db_url")


def test_migrations_match_the_schema(url):
    migrate(url)
    migrate(url)  # idempotent
    with get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_downgrade_to_base_and_up_again(url):
    migrate(url)
    command.downgrade(alembic_config(url), "base")
    migrate(url)
    with get_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_the_ledger_accepts_ambiguous_and_downgrade_keeps_it_as_failed(url):
    import datetime as dt

    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from billing_pipeline.db import reference
    from billing_pipeline.db.schema import invoice_deliveries, invoices
    from billing_pipeline_tests.builders import org

    migrate(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("acme")])
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    row = dict(channel="email", attempts=1, external_id="<m@x>", last_error="may have been sent", updated_at=now)
    with engine.begin() as conn:
        conn.execute(
            insert(invoices).values(
                id=1, org_id="acme", interval="monthly", period_key="2026-10-01", status="finalized",
                currency="USD", plan_code="starter", catalog_version=1, subtotal_minor=0, tax_rate=0,
                tax_minor=0, total_minor=0, usage={}, period_start=now, period_end=now, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
        conn.execute(insert(invoice_deliveries).values(invoice_id=1, status="ambiguous", **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(invoice_deliveries).values(invoice_id=1, status="bogus", **{**row, "channel": "pdf"}))
    command.downgrade(alembic_config(url), "0002")
    with engine.connect() as conn:
        status, error, mid = conn.execute(
            select(invoice_deliveries.c.status, invoice_deliveries.c.last_error, invoice_deliveries.c.external_id)
        ).one()
    assert (status, error, mid) == ("failed", "ambiguous: may have been sent", "<m@x>")
