"""When a delivery channel becomes a dead letter, and when not (fakes for the clients, SQLite ledger, no Dagster)."""

from __future__ import annotations

import pytest

from billing_pipeline.clients.errors import AmbiguousMailError, TransientMailError
from billing_pipeline.db import dead_letters, delivery_views
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.services.delivery import ChannelStatus
from billing_pipeline_tests.unit import test_delivery_service as base
from billing_pipeline_tests.unit.test_delivery_service import Crash, deliver, make, rows

db, fakes = base.db, base.fakes  # the same fixtures (SQLite ledger with three invoices; fake clients)
KIND = "invoice_delivery"
MONTH = ("monthly", "2026-10-01")


class Backoff:
    """The service's sleep: notes the e-mail row's status while the run waits to retry."""

    def __init__(self, engine, invoice_id, crash_at: int | None = None):
        self.engine, self.invoice_id, self.crash_at = engine, invoice_id, crash_at
        self.seen: list[tuple[str, int, str | None, str | None]] = []

    def append(self, delay: float) -> None:
        row = rows(self.engine)[(self.invoice_id, "email")]
        self.seen.append((row.status, row.attempts, row.external_id, row.last_error))
        if self.crash_at is not None and len(self.seen) == self.crash_at:
            raise Crash()


def test_the_last_transient_retry_opens_one_dead_letter_and_the_retries_in_between_none(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [TransientMailError("451 try later")] * 3
    backoff = Backoff(engine, ids[0])
    result = deliver(make(engine, fakes, backoff), ids[:1]).results[0]
    assert result.channels["email"].status is ChannelStatus.FAILED and result.channels["email"].attempts == 3
    assert [s[:3] for s in backoff.seen] == [("pending", 1, None), ("pending", 2, None)]  # no letter while retrying
    assert all("451 try later" in s[3] for s in backoff.seen)
    [letter] = dead_letters.list_dead_letters(engine, kind=KIND)
    assert letter.attempts == 3 and "451 try later" in letter.error
    assert letter.business_key == f"invoice:{ids[0]}|email"
    assert letter.payload == {
        "invoice_id": ids[0],
        "invoice": result.number,
        "organization": "alpha",
        "interval": "monthly",
        "period": "2026-10-01",
        "channel": "email",
    }
    assert delivery_views.undelivered_invoices(engine, ledger.CHANNELS) == {MONTH: ["beta", "gamma"]}  # the sensor


def test_a_run_killed_while_waiting_to_retry_leaves_the_row_to_the_next_run(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [TransientMailError("451 try later")]
    with pytest.raises(Crash):
        deliver(make(engine, fakes, Backoff(engine, ids[0], crash_at=1)), ids[:1])
    assert rows(engine)[(ids[0], "email")].status == "pending"
    assert dead_letters.list_dead_letters(engine, status=None) == []
    assert delivery_views.undelivered_invoices(engine, ["email"]) == {MONTH: ["alpha", "beta", "gamma"]}
    assert deliver(make(engine, fakes), ids[:1]).results[0].ok and len(mailer.sent) == 1


def test_an_ambiguous_email_is_not_a_dead_letter(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [AmbiguousMailError("timed out after DATA", message_id="<m@x>")]
    deliver(make(engine, fakes), ids[:1])
    assert rows(engine)[(ids[0], "email")].status == "ambiguous"
    assert dead_letters.list_dead_letters(engine, status=None) == []


def test_retry_refuses_a_row_that_is_no_longer_failed(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [ValueError("bad address")]
    deliver(make(engine, fakes), ids[:1])
    [letter] = dead_letters.open_dead_letters(engine, KIND)
    ledger.mark_succeeded(engine, ids[0], "email", external_id="<by-hand@x>", checksum=None)  # settled elsewhere
    with pytest.raises(dead_letters.DeadLetterStateError, match="is succeeded, not failed: nothing to retry"):
        dead_letters.retry_dead_letter(engine, letter.id)
    [still] = dead_letters.open_dead_letters(engine, KIND)  # nothing changed
    assert still.status == "open" and rows(engine)[(ids[0], "email")].status == "succeeded"
    assert dead_letters.dismiss_dead_letter(engine, letter.id).status == "dismissed"
    assert rows(engine)[(ids[0], "email")].status == "succeeded"  # dismissing never touches a delivered row


def test_a_failed_pdf_retried_delivers_the_invoice_s_later_channels_once(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes

    def broken_render(invoice, org, seller) -> bytes:
        raise RuntimeError("font missing")

    svc = make(engine, fakes)
    svc.render = broken_render
    deliver(svc, ids[:1])
    assert {c: (r.status, r.attempts) for (i, c), r in rows(engine).items() if i == ids[0]} == {"pdf": ("failed", 1)}
    [letter] = dead_letters.open_dead_letters(engine, KIND)
    assert letter.payload["channel"] == "pdf" and "font missing" in letter.error
    assert "alpha" not in delivery_views.undelivered_invoices(engine, ledger.CHANNELS)[MONTH]

    dead_letters.retry_dead_letter(engine, letter.id)
    assert "alpha" in delivery_views.undelivered_invoices(engine, ledger.CHANNELS)[MONTH]
    for _ in range(3):
        assert deliver(make(engine, fakes), ids[:1]).results[0].ok
    mine = {c: (r.status, r.attempts) for (i, c), r in rows(engine).items() if i == ids[0]}
    assert mine == {
        "pdf": ("succeeded", 2),
        "s3": ("succeeded", 1),
        "stripe": ("succeeded", 1),
        "email": ("succeeded", 1),
    }
    assert store.puts == 1 and len(mailer.sent) == 1 and gateway.calls == 1
    assert dead_letters.open_dead_letters(engine) == []
