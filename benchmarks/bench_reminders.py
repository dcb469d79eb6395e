"""Payment reminders throughput: N invoices due a reminder the same day, against PostgreSQL + SMTP.

    python benchmarks/bench_reminders.py                  # 10,000 invoices (one per organization)
    python benchmarks/bench_reminders.py --invoices 2000

Starts the test servers (``billing_pipeline_tests.support``): PostgreSQL 15 and the SMTP server
(STARTTLS + AUTH, in this process's thread: its CPU is counted with ours, so the CPU figure is an
upper bound). Every invoice is 1 day overdue, so one run decides one ``overdue`` reminder each
(and records its ``upcoming`` skipped), sends it and records it; a second run the same day must
send nothing. Reports reminders/s, the process CPU per reminder for both runs, and writes
``benchmarks/results/reminders.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from billing_pipeline.clock import utc_now  # noqa: E402
from billing_pipeline.db.engine import get_engine  # noqa: E402
from billing_pipeline.db.schema import invoices, organizations  # noqa: E402
from billing_pipeline.services.collections.reminders import send_payment_reminders  # noqa: E402
from billing_pipeline_tests.builders import setup_database  # noqa: E402
from billing_pipeline_tests.dunning_builders import smtp_sender  # noqa: E402
from billing_pipeline_tests.support import PostgresServer  # noqa: E402
from billing_pipeline_tests.support.smtp import SMTPServer  # noqa: E402

UTC = dt.UTC
ISSUED = dt.datetime(2026, 3, 1, tzinfo=UTC)  # net 30: due 03-31, overdue reminder on 04-01


def populate(engine, n: int) -> None:
    now = utc_now()
    orgs = [
        {
            "id": f"org{i:05d}",
            "name": f"Org {i} Ltd",
            "billing_email": f"billing@org{i:05d}.test",
            "status": "active",
            "currency": "USD" if i % 2 else "EUR",
            "tax_rate": Decimal("0.20"),
            "billing_interval": "monthly",
            "auto_pay": False,
            "payment_terms_days": 30,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    rows = [
        {
            "org_id": o["id"],
            "interval": "monthly",
            "period_key": "2026-02-01",
            "period_start": dt.datetime(2026, 2, 1, tzinfo=UTC),
            "period_end": ISSUED,
            "status": "finalized",
            "number": f"INV-2026-{i + 1:06d}",
            "currency": o["currency"],
            "plan_code": "starter",
            "catalog_version": 1,
            "subtotal_minor": 10_000 + i,
            "tax_rate": Decimal("0.20"),
            "tax_minor": 2_000,
            "total_minor": 12_000 + i,
            "usage": {},
            "issued_at": ISSUED,
            "due_at": ISSUED + dt.timedelta(days=30),
            "finalized_at": ISSUED,
            "created_at": now,
            "updated_at": now,
        }
        for i, o in enumerate(orgs)
    ]
    with engine.begin() as conn:
        conn.execute(insert(organizations), orgs)
        conn.execute(insert(invoices), rows)


def timed(engine, sender, as_of):
    wall, cpu = time.perf_counter(), time.process_time()
    summary = send_payment_reminders(engine, sender, as_of)
    return summary, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    args = parser.parse_args()
    with PostgresServer() as pg, SMTPServer(require_auth=True, starttls=True) as smtp:
        url = pg.create_database("bench_reminders")
        setup_database(url)
        engine = get_engine(url)
        populate(engine, args.invoices)
        sender = smtp_sender(engine, smtp)
        as_of = dt.datetime(2026, 4, 1, 9, tzinfo=UTC)
        first, wall, cpu = timed(engine, sender, as_of)
        again, wall2, cpu2 = timed(engine, sender, as_of + dt.timedelta(hours=6))
        assert first.sent == args.invoices == len(smtp.messages), (first.sent, len(smtp.messages))
        assert again.sent == 0 and again.decided == 0
    result = {
        "invoices": args.invoices,
        "sent": first.sent,
        "first_run_seconds": round(wall, 2),
        "reminders_per_second": round(first.sent / wall, 1),
        "cpu_ms_per_reminder": round(1000 * cpu / first.sent, 2),
        "rerun_seconds": round(wall2, 2),
        "rerun_cpu_ms_per_invoice": round(1000 * cpu2 / args.invoices, 3),
        "amount_due_reminded": first.amounts(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "date": utc_now().date().isoformat(),
    }
    out = Path(__file__).parent / "results" / "reminders.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
