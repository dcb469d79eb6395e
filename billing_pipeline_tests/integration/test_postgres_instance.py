"""The whole billing flow with PostgreSQL as both the billing database and the Dagster
instance storage (dagster-postgres), configured by the project's own deploy/dagster.yaml."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import func, select

from billing_pipeline.clock import utc_now
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoices
from billing_pipeline.definitions import INVOICE_JOBS, build_definitions, hourly_usage_job
from billing_pipeline.defs.partitions import billing_partitions
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.launch import run_hours, run_period, sync_organization_partitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.builders import (
    UTC,
    add_events,
    org,
    setup_database,
    store_unchecked_subscription,
    subscribe,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OCT = dt.datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def pg_instance(postgres_server, billing_db_url, tmp_path, monkeypatch):
    name = f"dagster_{tmp_path.name[-12:].replace('-', '_').lower()}"
    postgres_server.create_database(name)
    for key, value in {
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": name,
    }.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance, billing_db_url


def test_batched_month_on_postgres_storage(pg_instance, tmp_path):
    instance, url = pg_instance
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org(f"org{i}") for i in range(6)])
    for i in range(5):
        subscribe(url, f"org{i}", "starter", OCT)
    store_unchecked_subscription(url, "org5", "retired_plan", OCT)  # not in the catalog: it fails, alone
    add_events(url, [(f"org{i}", f"e{i}", "api_calls", "1", OCT + dt.timedelta(hours=i)) for i in range(6)])
    settings = Settings.from_env(
        {"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url, "INVOICE_BATCH_SIZE": "4"}
    )
    defs = build_definitions(settings)
    sync_organization_partitions(instance, engine)
    assert run_hours(defs, instance, hourly_usage_job.name, OCT, OCT + dt.timedelta(hours=23)).success

    outcomes = run_period(defs, instance, INVOICE_JOBS[BillingInterval.MONTHLY], "2026-10-01", batch_size=4)
    assert [o.partition_range for o in outcomes] == [
        ("2026-10-01|org0", "2026-10-01|org3"),
        ("2026-10-01|org4", "2026-10-01|org5"),
    ]
    assert [o.success for o in outcomes] == [True, False]
    keys = [f"2026-10-01|org{i}" for i in range(6)]
    status = instance.get_status_by_partition(
        dg.AssetKey("monthly_invoices"), keys, billing_partitions(BillingInterval.MONTHLY, dt.date(2026, 1, 1))
    )
    assert {k.split("|")[1]: v.value for k, v in status.items()} == {
        **{f"org{i}": "MATERIALIZED" for i in range(5)},
        "org5": "FAILED",
    }

    store_unchecked_subscription(url, "org5", "starter", OCT)  # the fix
    assert all(
        o.success
        for o in run_period(defs, instance, INVOICE_JOBS[BillingInterval.MONTHLY], "2026-10-01", organizations=["org5"])
    )
    with engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(invoices).where(invoices.c.status == "finalized")).scalar()
            == 6
        )
        numbers = sorted(conn.execute(select(invoices.c.number)).scalars())
    year = utc_now().year  # invoices are numbered in the year they are issued: now
    assert numbers == [f"INV-{year}-{i:06d}" for i in range(1, 7)]
