"""The billing-pipeline CLI on embedded defaults (SQLite billing DB and Dagster instance)."""

import datetime as dt
import re

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
