"""Auto-charge throughput: N due invoices of auto-pay organizations charged against the local servers.

    python benchmarks/bench_collections.py                  # 10,000 invoices (one per organization)
    python benchmarks/bench_collections.py --invoices 2000

Starts PostgreSQL 15, the Stripe-compatible server and the SMTP server (STARTTLS + AUTH). The
Stripe and SMTP servers run in this process's threads, so their CPU is counted with ours: the CPU
figure is an upper bound of the project's own. Setup (not timed): N organizations with a card,
their invoices mirrored with ``sync_invoice`` (the delivery ledger holds the Stripe ids, as after
delivery). Timed: one ``charge_due_invoices`` run on the due date (ledger row, two gateway
requests, payment + audit + ``paid`` under the row lock, one receipt e-mail per invoice), then the
same run again (must charge nothing), then the floor in the same process: the bare
``charge_invoice`` calls for another N mirrored invoices (no ledger, no database, no e-mail).
Writes ``benchmarks/results/collections.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from billing_pipeline.clock import utc_now  # noqa: E402
from billing_pipeline.db import reference  # noqa: E402
from billing_pipeline.db.engine import get_engine  # noqa: E402
from billing_pipeline.db.invoices import load_invoices  # noqa: E402
from billing_pipeline.db.schema import invoice_deliveries  # noqa: E402
from billing_pipeline.services.collections.charges import charge_due_invoices  # noqa: E402
from billing_pipeline_tests.builders import setup_database  # noqa: E402
from billing_pipeline_tests.charge_builders import (  # noqa: E402
    OPTIONS,
    PREFIX,
    add_charged_invoice,
    gateway_for,
    notice_sender,
)
from billing_pipeline_tests.dunning_builders import customer  # noqa: E402
from billing_pipeline_tests.support import PostgresServer  # noqa: E402
from billing_pipeline_tests.support.smtp import SMTPServer  # noqa: E402
from billing_pipeline_tests.support.stripe_server import StripeServer  # noqa: E402

UTC = dt.UTC
ISSUED = dt.datetime(2026, 3, 1, tzinfo=UTC)  # net 14: due 03-15


def populate(engine, gateway, stripe, n: int, first: int) -> dict[int, str]:
    """n auto-pay organizations with a default card, each with one invoice mirrored to Stripe."""
    orgs = [customer(f"org{first + i:05d}", auto_pay=True) for i in range(n)]
    reference.upsert_organizations(engine, orgs)
    ids = [
        add_charged_invoice(engine, o.id, f"INV-2026-{first + i + 1:06d}", issued=ISSUED, terms_days=14)
        for i, o in enumerate(orgs)
    ]
    client = stripe.client()
    loaded = load_invoices(engine, ids)
    rows = []
    for invoice_id, org in zip(ids, orgs, strict=True):
        synced = gateway.sync_invoice(loaded[invoice_id].invoice, org, idempotency_prefix=PREFIX)
        cus = stripe.get(synced.external_id)["customer"]
        pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus})
        client.v1.customers.update(cus, params={"invoice_settings": {"default_payment_method": pm.id}})
        rows.append({"invoice_id": invoice_id, "channel": "stripe", "status": "succeeded", "attempts": 1,
                     "external_id": synced.external_id, "updated_at": utc_now()})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(invoice_deliveries), rows)
    return {r["invoice_id"]: r["external_id"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    n = parser.parse_args().invoices
    with PostgresServer() as pg, SMTPServer(require_auth=True, starttls=True) as smtp, StripeServer() as stripe:
        url = pg.create_database("bench_collections")
        setup_database(url)
        engine = get_engine(url)
        gateway = gateway_for(stripe)
        setup = time.perf_counter()
        populate(engine, gateway, stripe, n, 0)
        floor_ids = populate(engine, gateway, stripe, n, n)
        setup = time.perf_counter() - setup
        # the floor's invoices are not auto-pay for the job: only the bare calls charge them
        reference.upsert_organizations(engine, [customer(f"org{n + i:05d}", auto_pay=False) for i in range(n)])
        notices = notice_sender(engine, smtp)
        as_of = dt.datetime(2026, 3, 15, 6, tzinfo=UTC)
        wall, cpu = time.perf_counter(), time.process_time()
        summary = charge_due_invoices(engine, gateway, notices, OPTIONS, as_of)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert summary.charged == n == len(smtp.messages), (summary.describe(), len(smtp.messages))
        wall2, cpu2 = time.perf_counter(), time.process_time()
        again = charge_due_invoices(engine, gateway, notices, OPTIONS, as_of + dt.timedelta(hours=6))
        wall2, cpu2 = time.perf_counter() - wall2, time.process_time() - cpu2
        assert again.charged == 0 and len(smtp.messages) == n
        floor_invoices = load_invoices(engine, list(floor_ids))
        wall3, cpu3 = time.perf_counter(), time.process_time()
        for invoice_id, stripe_id in floor_ids.items():
            result = gateway.charge_invoice(floor_invoices[invoice_id].invoice, 1, idempotency_prefix=PREFIX,
                                            amount_minor=12_000, external_id=stripe_id)  # fmt: skip
            assert result.status.value == "succeeded"
        wall3, cpu3 = time.perf_counter() - wall3, time.process_time() - cpu3
    result = {
        "invoices": n,
        "setup_seconds": round(setup, 1),
        "charge_run_seconds": round(wall, 2),
        "invoices_per_second": round(n / wall, 1),
        "cpu_ms_per_invoice": round(1000 * cpu / n, 2),
        "rerun_seconds": round(wall2, 2),
        "rerun_cpu_ms_per_invoice": round(1000 * cpu2 / n, 3),
        "floor_bare_charge_calls_per_second": round(n / wall3, 1),
        "floor_cpu_ms_per_charge": round(1000 * cpu3 / n, 2),
        "ratio_to_floor": round(wall / wall3, 2),
        "charged": summary.amounts(summary.charged_by_currency),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "date": utc_now().date().isoformat(),
    }
    out = Path(__file__).parent / "results" / "collections.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
