"""``billing-pipeline dead-letters`` with a failed invoice delivery (SQLite ledger, fake clients)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline_tests.unit import test_delivery_service as base
from billing_pipeline_tests.unit.test_delivery_service import deliver, make, rows

db, fakes = base.db, base.fakes  # SQLite ledger with three finalized invoices; fake clients


@pytest.fixture
def cli(db, tmp_path, monkeypatch):
    engine, ids = db
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "billing"))
    monkeypatch.setenv("BILLING_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_dead_letters_list_shows_a_failed_delivery_then_retry_and_dismiss(db, fakes, cli):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [ValueError("mailbox unavailable"), ValueError("mailbox unavailable")]
    deliver(make(engine, fakes), ids[:2])
    out = cli("dead-letters", "list", "--kind", "invoice_delivery")
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("open" in line and "invoice_delivery" in line for line in lines)
    assert f"invoice:{ids[0]}|email  attempts 1" in lines[0] and "mailbox unavailable" in lines[0]
    [first, second] = [json.loads(line) for line in cli("dead-letters", "list", "--json").strip().splitlines()]
    assert first["payload"]["invoice"] == "INV-2026-000001" and first["payload"]["organization"] == "alpha"
    assert first["payload"]["period"] == "2026-10-01" and first["payload"]["channel"] == "email"

    assert "retried by the next run" in cli("dead-letters", "retry", str(first["id"]))
    assert rows(engine)[(ids[0], "email")].status == "pending"
    refused = cli("dead-letters", "retry", str(first["id"]), code=1)
    assert f"dead letter {first['id']} is retried, not open" in refused
    assert "dismissed" in cli("dead-letters", "dismiss", str(second["id"]))
    assert cli("dead-letters", "list") == "no open dead letters\n"
    every = cli("dead-letters", "list", "--status", "all").strip().splitlines()
    assert [line.split()[1] for line in every] == ["retried", "dismissed"]
