"""The billing-pipeline CLI on embedded defaults (SQLite billing DB and Dagster instance)."""

import datetime as dt
import os
import re
import subprocess
import sys

import pytest
import time_machine
from click.testing import CliRunner

from billing_pipeline.cli import main


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "billing"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return run, tmp_path


@time_machine.travel(dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC), tick=True)  # invoices issued in 2026
def test_demo_flow_and_idempotent_reruns(cli):
    run, tmp_path = cli
    out = run("seed-demo", "--period", "2026-10", "--events-per-org", "50")
    assert re.search(r"read 306 = accepted 300 \+ duplicates 0 \+ quarantined 6", out)
    again = run("import-events", str(tmp_path / "billing" / "demo" / "events-2026-10.csv"))
    assert "read 306 = accepted 0 + duplicates 300 + quarantined 6" in again
    assert "success" in run("aggregate-usage", "2026-10")
    out = run("run-month", "2026-10", "--dry-run")
    assert "dry run: nothing was written" in out
    out = run("run-month", "2026-10")
    assert "acme             finalized  INV-2026-000001" in out
    assert "umbrella         skipped" in out and "failures: 0" in out
    assert "acme             pdf=succeeded s3=succeeded stripe=skipped email=succeeded" in out
    assert len(list((tmp_path / "billing" / "outbox").glob("*.eml"))) == 4
    out = run("run-month", "2026-10")  # finalized invoices and delivered channels stay as they are
    assert "acme             finalized  INV-2026-000001" in out and "INV-2026-000005" not in out
    assert len(list((tmp_path / "billing" / "outbox").glob("*.eml"))) == 4
    status = run("status")  # the last closed month and the next ticks, from the (pinned) clock
    assert "monthly_invoices_job" in status and "Quarantined events:" in status
    assert "Monthly invoices for October 2026" in status
    assert re.search(r"monthly_invoices_job_schedule +RUNNING \(default\) +0 0 1 \* \* +next 2026-12-01 00:00", status)
    assert re.search(r"weekly_invoices_job_schedule +RUNNING \(default\) +0 0 \* \* 1 +next 2026-11-09 00:00", status)
    assert "daemon: not running" in status and "Deliveries not done: none" in status
    assert "Ambiguous deliveries: none" in status
    assert re.search(
        r"charge_due_invoices_job_schedule +RUNNING \(default\) +0 6 \* \* \* +next 2026-11-06 06:00", status
    )
    receivables = status[status.index("Receivables:") :].splitlines()[:3]  # issued 11-01, net 30: none overdue
    assert re.fullmatch(r"  not yet overdue +\d+ invoice\(s\) .*", receivables[1]), receivables
    assert "Open dead letters: none" in status
    out = run("deliver", "2026-10", "--org", "acme")  # the ledger of that organization only
    assert "    acme             pdf=succeeded" in out and "globex" not in out


@time_machine.travel(dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC), tick=True)  # invoices issued in 2026
def test_an_ambiguous_email_is_listed_and_resolved_by_the_operator(cli):
    from billing_pipeline.db import deliveries as ledger
    from billing_pipeline.db.delivery_views import find_invoice
    from billing_pipeline.db.engine import get_engine
    from billing_pipeline.settings import Settings

    run, tmp_path = cli
    run("seed-demo", "--period", "2026-10", "--events-per-org", "5")
    run("aggregate-usage", "2026-10")
    run("run-month", "2026-10", "--org", "acme", "--org", "globex")
    engine = get_engine(Settings.from_env().database_url)
    for number in ("INV-2026-000001", "INV-2026-000002"):
        invoice_id = find_invoice(engine, number)[0]
        mid = f"<invoice-{number}.invoice@example.com>"
        assert ledger.mark_ambiguous(engine, invoice_id, "email", "ambiguous: lost after DATA", external_id=mid)
    status = run("status", "--period", "2026-10")
    assert "Ambiguous deliveries: 2" in status and "<invoice-INV-2026-000001.invoice@example.com>" in status
    out = run("deliveries", "resolve", "INV-2026-000001", "--channel", "email", "--sent")
    assert "recorded as delivered" in out
    out = run("deliveries", "resolve", "INV-2026-000002", "--resend")
    assert "billing-pipeline deliver 2026-10 --interval monthly --org globex" in out
    assert "not ambiguous" in run("deliveries", "resolve", "INV-2026-000001", "--sent", code=1)
    assert "--sent or --resend" in run("deliveries", "resolve", "INV-2026-000001", code=2)
    assert "Ambiguous deliveries: none" in run("status", "--period", "2026-10")


def test_bad_inputs_fail_with_the_field_name(cli, tmp_path, monkeypatch):
    run, _ = cli
    run("init-db")
    bad = tmp_path / "catalog.yaml"
    bad.write_text(
        "version: 1\nmetrics: []\nplans:\n  - {code: p, name: P, currency: USD, interval: monthly,"
        " charges: [{code: c, description: C, model: flat, amount: 0.1}]}\n"
    )
    out = run("load-catalog", str(bad), code=1)
    assert "plans[0].charges[0].amount" in out and "quote" in out
    monkeypatch.setenv("INVOICE_BATCH_SIZE", "many")
    out = run("status", code=1)
    assert "INVOICE_BATCH_SIZE: must be an integer" in out
    monkeypatch.delenv("INVOICE_BATCH_SIZE")
    assert "unknown monthly-billed organization(s): nobody" in run("run-month", "2026-10", "--org", "nobody", code=1)


def test_run_month_of_the_current_month_is_refused(cli):
    """Whatever the date: the month (and week) holding the clock's now is open, so nothing is run."""
    from billing_pipeline.clock import utc_now
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_containing

    run, _ = cli
    run("seed-demo", "--period", "2026-10", "--events-per-org", "5")
    month = period_containing(BillingInterval.MONTHLY, utc_now())
    out = run("run-month", month.key[:7], code=1)
    assert f"refused: {month.label} is still open" in out and "nothing was run" in out
    week = period_containing(BillingInterval.WEEKLY, utc_now())
    out = run("run-month", week.key, "--interval", "weekly", code=1)
    assert f"refused: {week.label} is still open" in out


def test_run_month_inside_the_grace_window_drafts_and_waits(cli, monkeypatch):
    """An ended month inside INVOICE_GRACE_HOURS is drafted, not finalized (nor delivered)."""
    run, tmp_path = cli
    run("seed-demo", "--period", "2026-10", "--events-per-org", "5")
    run("aggregate-usage", "2026-10")
    with time_machine.travel(dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC), tick=True):
        out = run("run-month", "2026-10", "--org", "acme")
        assert "acme             draft" in out
        assert "not finalized yet: October 2026 is in its 72 h grace window until 2026-11-04 00:00 UTC" in out
        assert not list((tmp_path / "billing" / "outbox").glob("*.eml"))
        out = run("run-month", "2026-10", "--org", "acme", "--finalize-now", "--no-delivery")
        assert "acme             finalized  INV-2026-000001" in out


@pytest.mark.parametrize("command", ["status", "health"])
def test_a_bad_setting_is_one_line_in_a_fresh_process(tmp_path, command):
    """Not in-process: there ``billing_pipeline.definitions`` is imported already, and its
    module-level ``Settings.from_env()`` is what raised past the CLI's handler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "S3_", "STRIPE_", "SMTP_"))}
    env.update(BILLING_HOME=str(tmp_path / "billing"), DAGSTER_HOME=str(tmp_path), S3_ENDPOINT_URL="not a url")
    done = subprocess.run(
        [sys.executable, "-m", "billing_pipeline.cli", command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: configuration error: S3_ENDPOINT_URL: must be an http:// or https:// URL with a host, got 'not a url'"
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "sqlite:///{tmp}/never-initialized.db",
            "has no schema (no such table: organizations); run billing-pipeline init-db",
        ),
        ("postgresql://billing:s3cret@127.0.0.1:1/billing", "cannot connect: connection failed"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_naming_the_variable(cli, tmp_path, monkeypatch, url, problem):
    run, _ = cli
    monkeypatch.setenv("BILLING_DATABASE_URL", url.format(tmp=tmp_path))
    out = run("customers", "list", code=1)
    assert out.startswith("Error: BILLING_DATABASE_URL ") and problem in out and "Traceback" not in out, out
    assert "s3cret" not in out and len(out.strip().splitlines()) == 1
