"""Ambiguous e-mails stay ambiguous until an operator resolves them (fakes for the clients,
SQLite ledger, no Dagster)."""

from __future__ import annotations

import pytest

from billing_pipeline.clients.errors import AmbiguousMailError, TransientMailError
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import delivery_views
from billing_pipeline.services.delivery import ChannelStatus, format_summary
from billing_pipeline.services.reporting import format_ambiguous
from billing_pipeline_tests.unit import test_delivery_service as base
from billing_pipeline_tests.unit.test_delivery_service import Crash, deliver, make, rows

db, fakes = base.db, base.fakes  # the same fixtures (SQLite ledger with three invoices; fake clients)


def test_a_failure_after_data_is_ambiguous_keeps_its_message_id_and_is_never_retried(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    sleeps: list[float] = []
    mailer.script = [AmbiguousMailError("timed out after DATA", message_id="<m@x>")]
    result = deliver(make(engine, fakes, sleeps), ids[:1]).results[0]
    email = result.channels["email"]
    assert email.status is ChannelStatus.AMBIGUOUS and email.attempts == 1 and sleeps == []
    row = rows(engine)[(ids[0], "email")]
    assert row.status == "ambiguous" and row.external_id == "<m@x>" and row.attempts == 1
    assert "timed out after DATA" in row.last_error and "deliveries resolve INV-" in row.last_error
    for _ in range(2):
        again = deliver(make(engine, fakes), ids[:1]).results[0]
        assert again.channels["email"].status is ChannelStatus.AMBIGUOUS
    assert mailer.sent == [] and rows(engine)[(ids[0], "email")].attempts == 1


def test_failures_before_data_stay_retriable(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [TransientMailError("connection refused"), TransientMailError("451 before DATA")]
    result = deliver(make(engine, fakes), ids[:1]).results[0]
    assert result.ok and len(mailer.sent) == 1 and rows(engine)[(ids[0], "email")].attempts == 3


def test_the_ledger_refuses_to_claim_an_ambiguous_row_unless_resending(db, fakes):
    engine, ids = db
    fakes[2].script = [AmbiguousMailError("lost after DATA", message_id="<m@x>")]
    deliver(make(engine, fakes), ids[:1])
    attempts = rows(engine)[(ids[0], "email")].attempts
    with pytest.raises(ledger.ClaimLost):
        ledger.claim(engine, ids[0], "email", attempts)
    assert ledger.claim(engine, ids[0], "email", attempts, resend_ambiguous=True) == attempts + 1


def test_resend_ambiguous_email_sends_once_with_the_same_message_id(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.crash_after = True
    with pytest.raises(Crash):
        deliver(make(engine, fakes), ids[:1])
    deliver(make(engine, fakes), ids[:1])  # marks it ambiguous
    assert deliver(make(engine, fakes, resend_ambiguous_email=True), ids[:1]).results[0].ok
    deliver(make(engine, fakes, resend_ambiguous_email=True), ids[:1])
    assert len(mailer.sent) == 2 and mailer.sent[0]["Message-ID"] == mailer.sent[1]["Message-ID"]
    assert rows(engine)[(ids[0], "email")].status == "succeeded"


def _ambiguous(engine, clients, ids):
    clients[2].script = [AmbiguousMailError("lost after DATA", message_id=f"<m{i}@x>") for i in range(len(ids))]
    deliver(make(engine, clients), ids)


def test_the_operator_resolves_sent_or_resend(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    _ambiguous(engine, fakes, ids[:2])
    listed = delivery_views.ambiguous_deliveries(engine)
    assert [(a.invoice_id, a.channel, a.external_id) for a in listed] == [
        (ids[0], "email", "<m0@x>"),
        (ids[1], "email", "<m1@x>"),
    ]
    assert "<m0@x>" in format_ambiguous(listed) and "deliveries resolve" in format_ambiguous(listed)
    assert delivery_views.resolve_ambiguous(engine, ids[0], "email", sent=True) == "<m0@x>"
    assert delivery_views.resolve_ambiguous(engine, ids[1], "email", sent=False) == "<m1@x>"
    with pytest.raises(delivery_views.NotAmbiguous):
        delivery_views.resolve_ambiguous(engine, ids[0], "email", sent=True)
    with pytest.raises(delivery_views.NotAmbiguous):
        delivery_views.resolve_ambiguous(engine, ids[2], "email", sent=True)
    batch = deliver(make(engine, fakes), ids[:2])
    assert all(r.ok for r in batch.results)
    assert [str(m["Message-ID"]) for m in mailer.sent] == [str(rows(engine)[(ids[1], "email")].external_id)]
    assert rows(engine)[(ids[0], "email")].external_id == "<m0@x>"
    assert delivery_views.ambiguous_deliveries(engine) == []


def test_the_sensor_query_and_the_summary_leave_ambiguous_rows_alone(db, fakes):
    engine, ids = db
    _ambiguous(engine, fakes, ids[:1])
    deliver(make(engine, fakes), ids[1:])
    assert delivery_views.undelivered_invoices(engine, ledger.CHANNELS) == {}
    batch = deliver(make(engine, fakes), ids)
    summary = batch.summary()
    assert summary.ambiguous == {"alpha": "<m0@x>"} and summary.failed == 1
    assert "ambiguous e-mails: 1" in format_summary(summary, batch.results)
