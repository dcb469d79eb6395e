"""A delivery process killed with SIGKILL in the middle of a month, then re-run: exactly one
PDF object, Stripe invoice, email and ledger row per invoice and channel, against the real
local servers, driven through the CLI as an operator would."""

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoice_deliveries, invoices
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import period_from_key
from billing_pipeline.services import invoicing
from billing_pipeline_tests.builders import UTC, org, setup_database, subscribe
from billing_pipeline_tests.support.settings import real_servers_env

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "billing_pipeline.cli"]
ORGS = [f"org{i:02d}" for i in range(16)]


@pytest.fixture
def world(billing_db_url, s3_server, stripe_server, smtp_server, tmp_path):
    bucket = s3_server.create_bucket(f"killed-{uuid.uuid4().hex[:8]}")
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
                s3=s3_server,
                stripe=stripe_server,
                smtp=smtp_server,
            ),
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
    return env, engine, bucket


def deliver(env, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "deliver", "2026-10", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_sigkill_mid_month_then_rerun_delivers_each_channel_once(world, s3_server, stripe_server, smtp_server):
    env, engine, bucket = world
    stripe_server.latency = 0.05  # slow enough that the kill lands mid-batch
    log = open(Path(env["BILLING_HOME"]).parent / "killed.log", "w")
    proc = subprocess.Popen(
        [*CLI, "deliver", "2026-10"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while len(smtp_server.messages) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, (
        f"delivery finished before it could be killed ({len(smtp_server.messages)} emails): "
        + (Path(env["BILLING_HOME"]).parent / "killed.log").read_text()[-3000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stripe_server.latency = 0.0
    sent_before = len(smtp_server.messages)
    assert 4 <= sent_before < len(ORGS)

    # An email the killed process may have handed to SMTP without recording it is ambiguous:
    # reported, never resent by a plain re-run; the operator checks the mail log (here: the
    # server) and resolves each one.
    for _ in range(2):
        rerun = deliver(env)
        with engine.connect() as conn:
            ambiguous = conn.execute(
                select(invoices.c.number, invoice_deliveries.c.external_id)
                .join(invoices, invoices.c.id == invoice_deliveries.c.invoice_id)
                .where(invoice_deliveries.c.channel == "email", invoice_deliveries.c.status == "ambiguous")
            ).all()
        assert rerun.returncode == (1 if ambiguous else 0), rerun.stdout + rerun.stderr
        mids = collections.Counter(str(m.message["Message-ID"]) for m in smtp_server.messages)
        assert set(mids.values()) == {1}  # nothing sent twice
    received = {str(m.message["Message-ID"]) for m in smtp_server.messages}
    for r in ambiguous:
        assert "ambiguous" in rerun.stdout
        outcome = "--sent" if r.external_id in received else "--resend"
        resolved = subprocess.run(
            [*CLI, "deliveries", "resolve", r.number, "--channel", "email", outcome],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    final = deliver(env)
    assert final.returncode == 0, final.stdout + final.stderr

    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == len(ORGS)
    stripe_ids = collections.Counter(i["metadata"]["invoice_id"] for i in stripe_server.objects("invoices"))
    assert len(stripe_ids) == len(ORGS) and set(stripe_ids.values()) == {1}
    mids = collections.Counter(str(m.message["Message-ID"]) for m in smtp_server.messages)
    assert len(mids) == len(ORGS) and set(mids.values()) == {1}
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(invoice_deliveries.c.status).join(invoices, invoices.c.id == invoice_deliveries.c.invoice_id)
            )
            .scalars()
            .all()
        )
    assert len(rows) == 4 * len(ORGS) and set(rows) == {"succeeded"}
