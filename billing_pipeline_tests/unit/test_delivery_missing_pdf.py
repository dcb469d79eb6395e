"""A stored PDF deleted from the document store is rendered again (same bytes: same sha256)
and stored again before its e-mail goes out; the ledger shows the current error, not an older
one (fakes for the clients, SQLite ledger, no Dagster)."""

from __future__ import annotations

import hashlib

import pytest

from billing_pipeline.clients.errors import PermanentMailError
from billing_pipeline_tests.unit import test_delivery_service as base
from billing_pipeline_tests.unit.test_delivery_service import SPOOL, deliver, fake_render, make, rows

db, fakes = base.db, base.fakes  # the same fixtures (SQLite ledger with three invoices; fake clients)


def _delete_stored_pdf_and_spool(store, key, spool=True):
    del store.objects[key]
    if spool:
        (SPOOL[0] / key).unlink(missing_ok=True)


@pytest.mark.parametrize("spool", [True, False], ids=["spool-gone-too", "spool-kept"])
def test_a_deleted_stored_pdf_is_rendered_again_and_stored_before_the_email(db, fakes, spool):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [PermanentMailError("550 mailbox unavailable")]
    deliver(make(engine, fakes), ids[:1])
    assert "550" in rows(engine)[(ids[0], "email")].last_error
    [key] = store.objects
    checksum = rows(engine)[(ids[0], "s3")].checksum
    _delete_stored_pdf_and_spool(store, key, spool)

    result = deliver(make(engine, fakes), ids[:1]).results[0]
    assert result.ok, result.failure
    assert hashlib.sha256(store.objects[key]).hexdigest() == checksum
    attachment = next(mailer.sent[0].iter_attachments()).get_content()
    assert hashlib.sha256(attachment).hexdigest() == checksum
    assert len(mailer.sent) == 1 and rows(engine)[(ids[0], "email")].last_error is None


def test_a_deleted_pdf_that_renders_differently_shows_the_current_error(db, fakes):
    engine, ids = db
    store, gateway, mailer = fakes
    mailer.script = [PermanentMailError("550 mailbox unavailable")]
    deliver(make(engine, fakes), ids[:1])
    [key] = store.objects
    _delete_stored_pdf_and_spool(store, key)
    svc = make(engine, fakes)
    svc.render = lambda inv, org, seller: fake_render(inv, org, seller) + b" (organization renamed)"
    result = deliver(svc, ids[:1]).results[0]
    email = rows(engine)[(ids[0], "email")]
    assert email.status == "failed" and "550" not in email.last_error
    assert "checksum" in email.last_error and "checksum" in result.failure
    assert key not in store.objects and mailer.sent == []
