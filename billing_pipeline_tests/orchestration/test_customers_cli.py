"""customers, subscriptions, organizations and preview on the embedded defaults (SQLite in BILLING_HOME)."""

import datetime as dt
from pathlib import Path

import pytest
import time_machine

from billing_pipeline_tests.builders import cli_invoker

EXAMPLES = Path(__file__).parents[2] / "billing_pipeline" / "examples"
CATALOG = Path(__file__).parents[2] / "billing_pipeline" / "catalog" / "plans.yaml"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "billing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    invoke = cli_invoker()
    invoke("init-db")
    invoke("load-catalog", str(CATALOG))
    invoke("import-customers", str(EXAMPLES / "customers.csv"))
    return invoke


def test_an_upgrade_shows_in_customers_show_and_in_the_preview(run):
    listing = run("customers", "list")
    assert "acme" in listing and "globex" in listing and "organization(s)" in listing
    assert "starts on 2026-01-01" in run(
        "subscriptions", "change", "acme", "--plan", "payments_usd", "--at", "2026-01-01", code=1
    )
    out = run("subscriptions", "change", "acme", "--plan", "payments_usd", "--at", "2026-11-10")
    assert "acme: starter from 2026-01-01 (open-ended) now ends 2026-11-10; payments_usd from 2026-11-10" in out
    show = run("customers", "show", "acme")
    assert "billing_email:         billing@acme.test" in show and "Invoices (0):" in show
    assert "sms_phone:             none" in show and "dunning_excluded:      False" in show
    assert "starter from 2026-01-01 (2026-11-10)" in show and "payments_usd from 2026-11-10 (open-ended)" in show
    with time_machine.travel(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC), tick=False):
        out = run("preview", "acme")
    lines = [line.split() for line in out.splitlines()]
    # Starter's 10.00 fee for 1-9 November: 10 x 9/30 = 3.00; payments_usd has no flat fee
    assert [
        "Platform",
        "fee",
        "(Starter,",
        "9",
        "of",
        "30",
        "days,",
        "2026-11-01",
        "to",
        "2026-11-09)",
        "9",
        "3.00",
        "USD",
    ] in lines
    assert ["Total", "3.60", "USD"] in lines and "nothing was written" in out


def test_refusals_name_the_option(run):
    assert "not an ISO date" in run(
        "subscriptions", "change", "acme", "--plan", "starter", "--at", "11/10/2026", code=2
    )
    assert "organization 'nobody' is not stored" in run("subscriptions", "cancel", "nobody", code=1)
    assert "priced in EUR" in run(
        "subscriptions", "change", "acme", "--plan", "growth_eur", "--at", "2026-11-10", code=1
    )
    assert "organization 'nobody' is not stored" in run("preview", "nobody", code=1)
    assert "organization 'nobody' is not stored" in run("customers", "show", "nobody", code=1)
