"""Test data builders shared by the orchestration, integration and e2e tests."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from pathlib import Path

import yaml
from sqlalchemy import insert

from billing_pipeline.clock import utc_now
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine, migrate
from billing_pipeline.db.schema import dirty_hours, organizations, subscriptions, usage_events
from billing_pipeline.domain.model import (
    BillingInterval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Organization,
    OrganizationStatus,
)
from billing_pipeline.domain.quantity import to_micros

UTC = dt.UTC
CATALOG_FILE = Path(__file__).parents[1] / "billing_pipeline" / "catalog" / "plans.yaml"


def org(
    org_id: str,
    *,
    currency: str = "USD",
    status: str = "active",
    interval: str = "monthly",
    tax_rate: str = "0.20",
    auto_pay: bool = False,
) -> Organization:
    return Organization(
        org_id,
        f"{org_id.title()} Inc",
        f"billing@{org_id.replace('_', '-')}.test",
        OrganizationStatus(status),
        currency,
        Decimal(tax_rate),
        BillingInterval(interval),
        auto_pay,
        30,
    )


def finalized_invoice(
    number: str | None, org_id: str = "org_pay", *, fee: str = "99.00", usage: str = "14.55", tax_rate: str = "0.20"
) -> Invoice:
    """A finalized October-2026 invoice of two lines (a fee and usage) with tax on top: the gateway tests'."""
    subtotal = Decimal(fee) + Decimal(usage)
    tax = (subtotal * Decimal(tax_rate)).quantize(Decimal("0.01"))
    lines = (
        InvoiceLine("base", "Platform fee", None, Decimal("1"), Decimal(fee), Decimal(fee)),
        InvoiceLine("api", "API requests", "api_calls", Decimal("14550"), None, Decimal(usage)),
    )
    return Invoice(
        organization_id=org_id,
        period_start=dt.datetime(2026, 10, 1, tzinfo=UTC),
        period_end=dt.datetime(2026, 11, 1, tzinfo=UTC),
        interval=BillingInterval.MONTHLY,
        currency="USD",
        lines=lines,
        subtotal=subtotal,
        tax_rate=Decimal(tax_rate),
        tax=tax,
        total=subtotal + tax,
        status=InvoiceStatus.FINALIZED,
        number=number,
    )


def setup_database(url: str) -> None:
    migrate(url)
    engine = get_engine(url)
    reference.save_catalog(engine, yaml.safe_load(CATALOG_FILE.read_text()), str(CATALOG_FILE))


def subscribe(url: str, org_id: str, plan: str, since: dt.datetime) -> None:
    reference.add_subscription(get_engine(url), org_id, plan, since)


def add_events(url: str, rows: list[tuple[str, str, str, str, dt.datetime]], props: dict | None = None) -> None:
    """rows: (org_id, event_id, metric, value, occurred_at). Marks their hours dirty like an import."""
    engine = get_engine(url)
    now = utc_now()
    with engine.begin() as conn:
        conn.execute(
            insert(usage_events),
            [
                {
                    "org_id": o,
                    "event_id": e,
                    "metric_code": m,
                    "value_micros": to_micros(Decimal(v)),
                    "properties": props,
                    "occurred_at": ts,
                    "ingested_at": now,
                    "payload_sha256": hashlib.sha256(f"{o}{e}{m}{v}{ts}".encode()).hexdigest(),
                }
                for o, e, m, v, ts in rows
            ],
        )
        hours = {ts.replace(minute=0, second=0, microsecond=0) for *_, ts in rows}
        for h in hours:
            conn.execute(dirty_hours.delete().where(dirty_hours.c.hour == h))
            conn.execute(insert(dirty_hours).values(hour=h, marked_at=now))


def store_unchecked_organizations(url: str, orgs: list[Organization]) -> None:
    """Write organizations as a row from before validation would be (``upsert_organizations``
    refuses them): for the tests of what delivery still does with such data."""
    now = utc_now()
    with get_engine(url).begin() as conn:
        for o in orgs:
            conn.execute(organizations.delete().where(organizations.c.id == o.id))
            conn.execute(
                insert(organizations).values(
                    id=o.id,
                    name=o.name,
                    billing_email=o.billing_email,
                    status=o.status.value,
                    currency=o.currency,
                    tax_rate=o.tax_rate,
                    billing_interval=o.billing_interval.value,
                    auto_pay=o.auto_pay,
                    payment_terms_days=o.payment_terms_days,
                    created_at=now,
                    updated_at=now,
                )
            )


def store_unchecked_subscription(url: str, org_id: str, plan: str, since: dt.datetime) -> None:
    """A subscription row as older data may hold it (``add_subscription`` refuses a plan that
    is not in the catalog): for the tests of an organization that fails alone."""
    with get_engine(url).begin() as conn:
        conn.execute(subscriptions.delete().where(subscriptions.c.org_id == org_id))
        conn.execute(insert(subscriptions).values(org_id=org_id, plan_code=plan, starts_at=since))


def cli_invoker():
    """``invoke(*args, code=0) -> output``: the ``billing-pipeline`` CLI in-process, asserting its exit code."""
    from click.testing import CliRunner

    from billing_pipeline.cli import main

    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke
