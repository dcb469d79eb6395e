"""The delivery fault matrix against real servers: SeaweedFS S3, the Stripe-compatible server,
SMTP with STARTTLS + AUTH in its own process (so it can be stopped and killed) and PostgreSQL.

Each scenario injects a fault nothing can catch (SIGKILL, SIGSTOP), re-runs ``billing-pipeline
deliver`` as an operator would, settles ambiguous e-mails with ``deliveries resolve`` after
reading the server's mail log, and ends with exactly one S3 object, one Stripe invoice, one
e-mail received at the server and one ``succeeded`` ledger row per invoice and channel.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from billing_pipeline.cli import main
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_deliveries, invoices
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.services import invoicing
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe
from billing_pipeline_tests.support._util import wait_until
from billing_pipeline_tests.support.s3 import S3Server
from billing_pipeline_tests.support.settings import real_servers_env
from billing_pipeline_tests.support.smtp import SMTPServerProcess

pytestmark = pytest.mark.integration
ORGS = [f"org{i}" for i in range(4)]
CLI = [sys.executable, "-m", "billing_pipeline.cli"]


@pytest.fixture(scope="module")
def s3():
    """This module's own S3 server: the scenarios kill it."""
    with S3Server() as server:
        yield server


@pytest.fixture
def smtp():
    # The server takes each message, then waits 0.4 s before its reply: the window in which
    # the scenarios stop or kill the deliverer or the server.
    with SMTPServerProcess(data_delay=0.4) as server:
        yield server


class World:
    def __init__(self, env: dict[str, str], engine, bucket: str, s3: S3Server, smtp, stripe, monkeypatch) -> None:
        self.env, self.engine, self.bucket = env, engine, bucket
        self.s3, self.smtp, self.stripe = s3, smtp, stripe
        self.monkeypatch = monkeypatch
        self.set(**env)

    def set(self, **values: str) -> None:
        self.env.update(values)
        for k, v in values.items():
            self.monkeypatch.setenv(k, v)

    def cli(self, *args: str) -> tuple[int, str]:
        """``billing-pipeline ARGS`` in this process (quicker than a new one; same code path)."""
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    def deliver(self) -> tuple[int, str]:
        return self.cli("deliver", "2026-10")

    def start_deliverer(self) -> subprocess.Popen:
        log = open(Path(self.env["BILLING_HOME"]).parent / f"deliverer-{time.monotonic_ns()}.log", "w")
        return subprocess.Popen(
            [*CLI, "deliver", "2026-10"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def rows(self, channel: str | None = None):
        query = select(invoices.c.number, invoice_deliveries).join(
            invoices, invoices.c.id == invoice_deliveries.c.invoice_id
        )
        if channel:
            query = query.where(invoice_deliveries.c.channel == channel)
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def ambiguous(self):
        return [r for r in self.rows("email") if r.status == "ambiguous"]

    def resolve_from_mail_log(self) -> None:
        """What the operator does: look each ambiguous Message-ID up in the server's log."""
        received = self.smtp.message_ids()
        for r in self.ambiguous():
            outcome = "--sent" if r.external_id in received else "--resend"
            code, out = self.cli("deliveries", "resolve", r.number, "--channel", "email", outcome)
            assert code == 0, out

    def assert_no_email_twice(self) -> None:
        assert set(self.smtp.message_ids().values()) <= {1}, self.smtp.message_ids()

    def assert_exactly_once(self) -> None:
        keys = [o["Key"] for o in self.s3.client().list_objects_v2(Bucket=self.bucket).get("Contents", [])]
        assert len(keys) == len(set(keys)) == len(ORGS)
        stripe_ids = collections.Counter(i["metadata"]["invoice_id"] for i in self.stripe.objects("invoices"))
        assert len(stripe_ids) == len(ORGS) and set(stripe_ids.values()) == {1}
        mids = self.smtp.message_ids()
        assert len(mids) == len(ORGS) and set(mids.values()) == {1}, mids
        rows = self.rows()
        assert len(rows) == 4 * len(ORGS) and {r.status for r in rows} == {"succeeded"}


@pytest.fixture
def world(billing_db_url, s3, stripe_server, smtp, tmp_path, monkeypatch):
    if s3.proc is None:  # an earlier scenario left it killed
        s3.restart()
    bucket = s3.create_bucket(f"faults-{uuid.uuid4().hex[:8]}")
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "SMTP_", "STRIPE_", "S3_"))}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            **real_servers_env(
                billing_url=billing_db_url,
                billing_home=tmp_path / "billing",
                bucket=bucket,
                s3=s3,
                stripe=stripe_server,
                smtp=smtp,
            ),
            "SMTP_TIMEOUT_SECONDS": "1",
            "DELIVERY_IO_WORKERS": "1",  # one invoice at a time: the faults land where the test says
        }
    )
    setup_database(billing_db_url)
    engine = get_engine(billing_db_url)
    reference.upsert_organizations(engine, [org(o) for o in ORGS])
    for o in ORGS:
        subscribe(billing_db_url, o, "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    period = period_from_key(BillingInterval.MONTHLY, "2026-10-01")
    invoicing.draft_batch(engine, period, ORGS, dry_run=False)
    invoicing.finalize_batch(
        engine, period, ORGS, prefix="INV", now=dt.datetime(2026, 11, 1, tzinfo=UTC), dry_run=False
    )
    return World(env, engine, bucket, s3, smtp, stripe_server, monkeypatch)


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    wait_until(predicate, timeout=timeout, interval=0.01, what=what, proc=proc)


def test_deliverer_killed_mid_email_then_three_reruns_never_resend_it(world):
    proc = world.start_deliverer()
    wait_for(lambda: len(world.smtp.messages()) >= 2, "two e-mails at the server", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the second one is in, its reply not yet out
    proc.wait(timeout=30)
    for _ in range(3):
        code, out = world.deliver()
        assert code == 1 and "email=ambiguous" in out, out
        world.assert_no_email_twice()
    assert len(world.ambiguous()) >= 1
    assert all(r.external_id in world.smtp.message_ids() for r in world.ambiguous())
    world.resolve_from_mail_log()
    code, out = world.deliver()
    assert code == 0, out
    world.assert_exactly_once()


def test_smtp_stopped_past_the_timeout_after_data_is_ambiguous_not_resent(world):
    proc = world.start_deliverer()
    wait_for(lambda: len(world.smtp.messages()) >= 1, "an e-mail at the server", proc)
    world.smtp.pause()  # the message is in, the reply is not: the client times out (1 s)
    time.sleep(1.6)
    world.smtp.resume()
    assert proc.wait(timeout=120) == 1
    [row] = world.ambiguous()
    assert "SMTPServerDisconnected" in row.last_error and row.external_id in world.smtp.message_ids()
    code, out = world.deliver()
    assert code == 1 and "email=ambiguous" in out, out
    world.assert_no_email_twice()
    world.resolve_from_mail_log()
    assert world.deliver()[0] == 0
    world.assert_exactly_once()


def test_s3_killed_mid_channel_then_restarted(world):
    world.set(S3_REQUESTS_PER_SECOND="2")  # uploads slow enough to kill the server among them
    proc = world.start_deliverer()
    wait_for(lambda: any(r.status == "succeeded" for r in world.rows("s3")), "a first upload", proc)
    world.s3.kill()
    assert proc.wait(timeout=120) == 1
    assert any(r.status == "failed" for r in world.rows("s3"))
    world.s3.restart()
    world.set(S3_ENDPOINT_URL=world.s3.endpoint_url)
    code, out = world.deliver()
    assert code == 0, out
    world.assert_exactly_once()


def test_smtp_killed_mid_channel_then_restarted(world):
    proc = world.start_deliverer()
    wait_for(lambda: len(world.smtp.messages()) >= 1, "an e-mail at the server", proc)
    world.smtp.kill()  # mid-reply: that e-mail is ambiguous; the next ones find no server
    assert proc.wait(timeout=120) == 1
    world.smtp.start()
    code, out = world.deliver()
    world.assert_no_email_twice()
    assert code == (1 if world.ambiguous() else 0), out
    world.resolve_from_mail_log()
    assert world.deliver()[0] == 0
    world.assert_exactly_once()


def test_a_deleted_stored_pdf_is_rendered_again_with_the_same_sha256(world):
    world.set(INVOICE_ENABLE_EMAIL="false")
    assert world.deliver()[0] == 0
    s3 = world.s3.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=world.bucket)["Contents"]]
    for key in keys:
        s3.delete_object(Bucket=world.bucket, Key=key)
    shutil.rmtree(Path(world.env["BILLING_HOME"]) / "rendered", ignore_errors=True)
    world.set(INVOICE_ENABLE_EMAIL="true")
    code, out = world.deliver()
    assert code == 0, out
    world.assert_exactly_once()
    checksums = {r.external_id.split("/", 3)[-1]: r.checksum for r in world.rows("s3")}
    for key in keys:
        data = s3.get_object(Bucket=world.bucket, Key=key)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == checksums[key]
    for msg in world.smtp.messages():
        [pdf] = [p.get_content() for p in msg.iter_attachments()]
        assert hashlib.sha256(pdf).hexdigest() in checksums.values()
