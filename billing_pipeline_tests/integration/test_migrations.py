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
