"""Subscription changes on a real PostgreSQL (and SQLite): an upgrade on 10 November 2026 (30 days)
drafts two prorated platform lines to the cent; cancel, suspend, close; finalized periods refused.

Catalog version 2 adds ``basic_usd`` (49.00 flat) and ``pro_usd`` (199.00 flat, 0.50 per API call).
Upgrade on the 10th: 49 x 9/30 = 14.70 and 199 x 21/30 = 139.30; 3 calls at 0.50 = 1.50 on the new plan.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
import yaml

from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import reference, usage
from billing_pipeline.db.engine import get_engine
from billing_pipeline.domain.periods import monthly_period
from billing_pipeline.services import invoicing, reporting
from billing_pipeline_tests.builders import CATALOG_FILE, add_events, cli_invoker, org, setup_database, subscribe

pytestmark = pytest.mark.integration
UTC = dt.UTC
OCT, NOV = monthly_period(2026, 10), monthly_period(2026, 11)
PLANS = [
    {
        "code": code,
        "name": name,
        "currency": "USD",
        "interval": "monthly",
        "charges": [
            {"code": "platform", "description": "Platform fee", "model": "flat", "amount": fee},
            {"code": "api", "description": "API calls", "model": "per_unit", "metric": "api_calls", "unit_price": unit},
        ],
    }
    for code, name, fee, unit in (("basic_usd", "Basic", "49.00", "1.00"), ("pro_usd", "Pro", "199.00", "0.50"))
]


@pytest.fixture(params=["sqlite", "postgresql"])
def billing(request, tmp_path, monkeypatch):
    url = (
        f"sqlite:///{tmp_path / 'billing.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("billing_db_url")
    )
    setup_database(url)
    engine = get_engine(url)
    document = yaml.safe_load(CATALOG_FILE.read_text())
    document["version"] = document["version"] + 1
    document["plans"] = [*document["plans"], *PLANS]
    reference.save_catalog(engine, document, "test")
    reference.upsert_organizations(engine, [org("acme"), org("eur", currency="EUR")])
    subscribe(url, "acme", "basic_usd", OCT.start)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    return engine, url, cli_invoker()


def draft(engine, period):
    catalog = reference.latest_catalog(engine)
    usage.aggregate_hours(engine, period.start, period.end - usage.HOUR, catalog.metrics)
    batch = invoicing.draft_batch(engine, period, ["acme"], dry_run=False)
    assert not batch.failed, batch.failed
    [result] = batch.results
    if result.invoice_id is None:
        return result, None
    return result, invoice_rows.load_invoices(engine, [result.invoice_id])[result.invoice_id].invoice


def test_an_upgrade_on_the_10th_drafts_two_prorated_lines_to_the_cent(billing):
    engine, url, run = billing
    out = run("subscriptions", "change", "acme", "--plan", "pro_usd", "--at", "2026-11-10")
    assert "basic_usd from 2026-10-01 (open-ended) now ends 2026-11-10; pro_usd from 2026-11-10" in out
    add_events(url, [("acme", f"e{i}", "api_calls", "1", dt.datetime(2026, 11, 12 + i, tzinfo=UTC)) for i in range(3)])
    _, invoice = draft(engine, NOV)
    assert [(line.charge_code, line.quantity, line.amount) for line in invoice.lines] == [
        ("platform", Decimal(9), Decimal("14.70")),
        ("platform", Decimal(21), Decimal("139.30")),
        ("api", Decimal(3), Decimal("1.50")),
    ]
    assert invoice.lines[1].description == "Platform fee (Pro, 21 of 30 days, 2026-11-10 to 2026-11-30)"
    assert (invoice.subtotal, invoice.tax, invoice.total) == (Decimal("155.50"), Decimal("31.10"), Decimal("186.60"))
    _, october = draft(engine, OCT)  # the month before is untouched: the old plan, whole
    assert [line.amount for line in october.lines] == [Decimal("49.00"), Decimal("0.00")]


def test_a_downgrade_at_period_end_leaves_the_period_whole(billing):
    engine, url, run = billing
    subscribe_change = run("subscriptions", "change", "acme", "--plan", "pro_usd", "--at", "2026-10-01", code=1)
    assert "starts on 2026-10-01" in subscribe_change
    out = run("subscriptions", "change", "acme", "--plan", "pro_usd", "--at", "2026-10-20", "--when", "period_end")
    assert "now ends 2026-11-01; pro_usd from 2026-11-01" in out
    _, october = draft(engine, OCT)
    assert [line.amount for line in october.lines] == [Decimal("49.00"), Decimal("0.00")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plan", "platinum", "--at", "2026-11-10"), "unknown plan 'platinum'"),
        (("--plan", "growth_eur", "--at", "2026-11-10"), "priced in EUR"),
        (("--plan", "weekly_usd", "--at", "2026-11-10"), "billed weekly"),
        (("--plan", "basic_usd", "--at", "2026-11-10"), "already 'basic_usd'"),
        (("--plan", "pro_usd", "--at", "2026-09-10"), "no subscription in force on 2026-09-10"),
        (("--plan", "pro_usd", "--at", "10/11/2026"), "not an ISO date"),
    ],
)
def test_bad_changes_are_refused_and_nothing_is_written(billing, args, message):
    engine, _, run = billing
    out = run("subscriptions", "change", "acme", *args, code=2 if "ISO" in message else 1)
    assert message in out
    with engine.connect() as conn:
        assert len(reference.stored_subscriptions(conn, ["acme"])["acme"]) == 1


def test_a_change_inside_a_finalized_period_is_refused(billing):
    engine, _, run = billing
    draft(engine, OCT)
    done = invoicing.finalize_batch(
        engine, OCT, ["acme"], prefix="INV", now=dt.datetime(2026, 11, 3, tzinfo=UTC), dry_run=False
    )
    [finalized] = done.results
    out = run("subscriptions", "change", "acme", "--plan", "pro_usd", "--at", "2026-10-20", code=1)
    assert f"invoice {finalized.number} for the period 2026-10-01 is finalized" in out
    assert "pro_usd from 2026-11-01" in run(
        "subscriptions", "change", "acme", "--plan", "pro_usd", "--at", "2026-11-01"
    )
    show = run("customers", "show", "acme")
    assert "basic_usd from 2026-10-01 (2026-11-01)" in show and "pro_usd from 2026-11-01 (open-ended)" in show
    assert f"{finalized.number}" in show and "due 58.80 USD" in show and "Balance due: 58.80 USD" in show


def test_suspension_bills_the_days_before_it_then_nothing(billing):
    engine, _, run = billing
    out = run("organizations", "suspend", "acme", "--at", "2026-11-16")
    assert "acme: active -> suspended from 2026-11-16" in out
    [before] = [row for row in reporting.period_states(engine, NOV) if row.org_id == "acme"]
    assert (before.state, before.detail) == ("missing", "not invoiced yet")  # its last invoice is due
    result, invoice = draft(engine, NOV)
    assert [(line.quantity, line.amount) for line in invoice.lines] == [(Decimal(15), Decimal("24.50")), (0, 0)]
    december = invoicing.draft_batch(engine, monthly_period(2026, 12), ["acme"], dry_run=False)
    assert december.results[0].outcome is invoicing.Outcome.SKIPPED
    assert "organization is suspended" in december.results[0].message
    assert "closed from 2026-12-01; no subscription in force" in run(
        "organizations", "close", "acme", "--at", "2026-12-01"
    )
    assert "is closed" in run("organizations", "suspend", "acme", code=1)
    listing = run("customers", "list")
    assert "acme" in listing and "closed" in listing and "2 organization(s)" in listing


def test_cancel_at_period_end_and_the_preview_of_the_open_month(billing):
    engine, url, run = billing
    out = run("subscriptions", "cancel", "acme", "--at", "2026-11-10", "--at-period-end")
    assert "now ends 2026-12-01" in out
    add_events(url, [("acme", "n1", "api_calls", "1", dt.datetime(2026, 11, 3, 5, tzinfo=UTC))])
    catalog = reference.latest_catalog(engine)
    usage.aggregate_hours(engine, NOV.start, NOV.end - usage.HOUR, catalog.metrics)
    with time_machine.travel(dt.datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False):
        out = run("preview", "acme")
    assert "Upcoming invoice of acme for November 2026 (open until 2026-12-01 00:00 UTC)" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["Platform", "fee", "1", "49.00", "USD"] in lines and ["API", "calls", "1", "1.00", "USD"] in lines
    assert ["Subtotal", "50.00", "USD"] in lines and ["Tax", "20%", "10.00", "USD"] in lines
    assert ["Total", "60.00", "USD"] in lines
    assert "nothing was written" in out
    assert invoice_rows.get_invoice_states(engine, NOV.interval, NOV.key, ["acme"]) == {}


def test_late_usage_of_an_upgraded_month_adjusts_only_the_usage(billing):
    """Re-pricing a prorated month for late usage keeps its billed flat lines: no flat-fee delta."""
    engine, url, run = billing
    run("subscriptions", "change", "acme", "--plan", "pro_usd", "--at", "2026-11-10")
    draft(engine, NOV)
    invoicing.finalize_batch(
        engine, NOV, ["acme"], prefix="INV", now=dt.datetime(2026, 12, 3, tzinfo=UTC), dry_run=False
    )
    add_events(url, [("acme", "late", "api_calls", "1", dt.datetime(2026, 11, 25, tzinfo=UTC))])
    catalog = reference.latest_catalog(engine)
    usage.aggregate_hours(engine, NOV.start, NOV.end - usage.HOUR, catalog.metrics)
    _, december = draft(engine, monthly_period(2026, 12))
    adjustments = [line for line in december.lines if line.description.startswith("Adjustment for")]
    assert [(line.charge_code, line.amount) for line in adjustments] == [("api", Decimal("0.50"))]
