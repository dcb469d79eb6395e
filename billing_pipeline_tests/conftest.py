"""Shared pytest fixtures: local servers for integration tests.

Servers are session-scoped and start lazily (only when a test asks for them):

* ``postgres_server`` -> support.postgres.PostgresServer; ``billing_db_url`` -> a fresh database per test
* ``s3_server``       -> support.s3.S3Server (SeaweedFS, SigV4 checked)
* ``stripe_server``   -> support.stripe_server.StripeServer (state reset before every test using it);
  ``stripe_client``   -> a stripe.StripeClient pointed at it (max_network_retries=0)
* ``smtp_server``     -> support.smtp.SMTPServer (AUTH + STARTTLS; cleared before every test using it)
"""

from __future__ import annotations

import os

import pytest

# The recommended production settings (README "Performance settings"): every process that
# creates runs plans a run's partitions in one event and writes per-partition events in batches.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")

from billing_pipeline_tests.support.postgres import PostgresServer
from billing_pipeline_tests.support.s3 import S3Server
from billing_pipeline_tests.support.smtp import SMTPServer
from billing_pipeline_tests.support.stripe_server import StripeServer


@pytest.fixture(scope="session", autouse=True)
def _forced_clock():
    """With BILLING_TEST_NOW set (an ISO time), the whole process clock starts there and ticks:
    CI runs the period, schedule and invoicing tests at several such dates."""
    forced = os.environ.get("BILLING_TEST_NOW")
    if not forced:
        yield
        return
    import time_machine

    with time_machine.travel(forced, tick=True):
        yield


@pytest.fixture(scope="session")
def postgres_server():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def billing_db_url(postgres_server):
    """SQLAlchemy URL of a brand-new, empty database (dropped after the test)."""
    import uuid

    name = f"billing_test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    yield url
    try:
        postgres_server.drop_database(name)
    except Exception:  # the cluster is thrown away at session end anyway
        pass


@pytest.fixture(scope="session")
def s3_server():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def stripe_server():
    with StripeServer() as server:
        yield server


@pytest.fixture
def stripe_client(stripe_server):
    return stripe_server.client()


@pytest.fixture(scope="session")
def smtp_server():
    with SMTPServer(require_auth=True, starttls=True) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_local_servers(request):
    """Give every test a clean Stripe/SMTP state without restarting the session servers."""
    names = request.fixturenames
    if "stripe_server" in names:
        request.getfixturevalue("stripe_server").reset()
    if "smtp_server" in names:
        request.getfixturevalue("smtp_server").clear()
    yield


@pytest.fixture(autouse=True)
def _forget_disposed_dagster_instances():
    """Dagster keeps the last instance's state storage in a context variable; a test that
    disposed its instance must not leave it to the next test (dagster 1.13 raises
    "Attempted to resolve undefined DagsterInstance weakref" on the next definitions load)."""
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
