"""Invoice delivery throughput: PDF + S3 + Stripe + e-mail, against a bare render loop.

    python benchmarks/bench_delivery.py                 # 10,000 invoices
    python benchmarks/bench_delivery.py --invoices 500

Starts the local test servers (``billing_pipeline_tests.support``): PostgreSQL 15 for the
billing database in this process's children, and S3 (SeaweedFS), the Stripe-compatible
server and SMTP (STARTTLS + AUTH) in a separate process, so their CPU time is not charged
to the GIL of the process being measured (they still share the machine's cores, as a
loaded production host would). Then, for the same N finalized invoices:

* floor: render every PDF with WeasyPrint in 2 processes, nothing else;
* full: ``InvoiceDeliveryService.deliver`` with ``render_workers`` processes rendering while
  the main process does the ledger and the network calls of already rendered invoices.

Reports invoices/s for both, their ratio (target <= 1.3), the CPU each process group spent
per invoice, peak RSS (target <= 1 GB for the delivering process plus the render processes,
each at its own peak) and writes ``benchmarks/results/delivery.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from benchmarks.cpu_accounting import CpuAccounting  # noqa: E402
from billing_pipeline.clients.documents import S3DocumentStore  # noqa: E402
from billing_pipeline.clients.mailer import SMTPMailer  # noqa: E402
from billing_pipeline.clients.payments import StripeGateway, stripe_client  # noqa: E402
from billing_pipeline.db import reference  # noqa: E402
from billing_pipeline.db.engine import get_engine  # noqa: E402
from billing_pipeline.db.invoices import load_invoices  # noqa: E402
from billing_pipeline.db.schema import subscriptions  # noqa: E402
from billing_pipeline.domain.model import BillingInterval  # noqa: E402
from billing_pipeline.domain.periods import period_from_key  # noqa: E402
from billing_pipeline.rendering.pdf import render_invoice_pdf  # noqa: E402
from billing_pipeline.services import invoicing  # noqa: E402
from billing_pipeline.services.delivery import (  # noqa: E402
    DeliveryOptions,
    InvoiceDeliveryService,
    RetryPolicy,
    _render_job,
    _warm_up,
)
from billing_pipeline.settings import Settings  # noqa: E402
from billing_pipeline_tests.builders import org, setup_database  # noqa: E402
from billing_pipeline_tests.support import PostgresServer  # noqa: E402

PERIOD = "2026-10-01"
UTC = dt.UTC


def start_network_servers() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_pipeline_tests.support", "s3", "stripe", "smtp"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in proc.stdout:  # the JSON ends with a lone "}"
        lines.append(line)
        if line.rstrip() == "}":
            break
    return proc, json.loads("".join(lines))


def seed(url: str, n: int) -> list[int]:
    setup_database(url)
    engine = get_engine(url)
    ids = [f"org{i:05d}" for i in range(n)]
    reference.upsert_organizations(engine, [org(o) for o in ids])
    since = dt.datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(subscriptions), [{"org_id": o, "plan_code": "starter", "starts_at": since} for o in ids])
    period = period_from_key(BillingInterval.MONTHLY, PERIOD)
    invoice_ids: list[int] = []
    for i in range(0, n, 1000):
        chunk = ids[i : i + 1000]
        invoicing.draft_batch(engine, period, chunk, dry_run=False)
        batch = invoicing.finalize_batch(
            engine, period, chunk, prefix="INV", now=dt.datetime(2026, 11, 1, tzinfo=UTC), dry_run=False
        )
        invoice_ids += [r.invoice_id for r in batch.results if r.invoice_id]
    return invoice_ids


def classifier(server_pid: int):
    me = os.getpid()

    def classify(pid: int, comm: str, cmdline: str, ppid: int) -> str | None:
        if pid == me:
            return "delivery process"
        if ppid == me and "multiprocessing" in cmdline:
            return "render workers"
        if comm.startswith("postgres"):
            return "postgresql"
        if comm == "weed":
            return "s3 server"
        if pid == server_pid:
            return "stripe + smtp servers"
        return None

    return classify


def floor(url: str, invoice_ids: list[int], seller, workers: int) -> float:
    engine = get_engine(url)
    stored = load_invoices(engine, invoice_ids)
    orgs = reference.get_organizations(engine)
    jobs = [(render_invoice_pdf, s.invoice, orgs[s.invoice.organization_id], seller) for s in stored.values()]
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up
    ) as pool:
        list(pool.map(_render_job, *zip(*jobs[: workers * 2], strict=True)))  # warm both workers
        t0 = time.perf_counter()
        for _ in pool.map(_render_job, *zip(*jobs, strict=True), chunksize=4):
            pass
        return time.perf_counter() - t0


def full(
    url: str, invoice_ids: list[int], seller, servers: dict, workers: int, bucket: str, io_workers: int = 4
) -> tuple[float, dict]:
    s3 = servers["s3"]
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3["region"],
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, max_pool_connections=max(4, io_workers)
        ),
    )
    client.create_bucket(Bucket=bucket)
    st = servers["stripe"]
    gateway = StripeGateway(stripe_client(st["api_key"], api_base=st["api_base"]))
    sm = servers["smtp"]
    mailer = SMTPMailer(sm["host"], sm["port"], sm["username"], sm["password"], "starttls", 30, verify=False)
    svc = InvoiceDeliveryService(
        get_engine(url),
        seller=seller,
        options=DeliveryOptions(
            render_workers=workers,
            io_workers=io_workers,
            presigned_url_expiry_seconds=3600,
            retry=RetryPolicy(max_attempts=4, base_delay=0.2),
        ),
        store=S3DocumentStore(client, bucket),
        gateway=gateway,
        mailer=mailer,
        secrets=[st["api_key"], sm["password"], s3["secret_key"]],
    )
    t0 = time.perf_counter()
    batch = svc.deliver(invoice_ids)
    elapsed = time.perf_counter() - t0
    summary = batch.summary()
    return elapsed, {
        "delivered": summary.delivered,
        "failed": summary.failed,
        "errors_by_channel": summary.errors_by_channel,
        "first_failures": dict(list(summary.failed_orgs.items())[:5]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    parser.add_argument(
        "--io-workers",
        type=int,
        default=4,
        help="threads running the network channels (DELIVERY_IO_WORKERS defaults to 4 too)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "delivery.json")
    args = parser.parse_args()
    seller = Settings.from_env({"BILLING_HOME": "/tmp"}).seller
    from billing_pipeline.services.delivery import seller_from_settings

    seller = seller_from_settings(seller)
    proc, servers = start_network_servers()
    try:
        with PostgresServer() as pg:
            url = pg.create_database(f"bench_{uuid.uuid4().hex[:8]}")
            t0 = time.perf_counter()
            ids = seed(url, args.invoices)
            seed_s = time.perf_counter() - t0
            print(f"seeded {len(ids)} finalized invoices in {seed_s:.1f}s", flush=True)
            classify = classifier(proc.pid)
            with CpuAccounting(classify) as floor_cpu:
                floor_s = floor(url, ids, seller, args.workers)
            print(
                f"floor: {len(ids) / floor_s:.2f} invoices/s; CPU ms/invoice {floor_cpu.per_item_ms(len(ids))}",
                flush=True,
            )
            with CpuAccounting(classify, rss_groups=("delivery process", "render workers")) as full_cpu:
                full_s, outcome = full(
                    url, ids, seller, servers, args.workers, f"bench-{uuid.uuid4().hex[:8]}", args.io_workers
                )
            print(
                f"full:  {len(ids) / full_s:.2f} invoices/s {outcome}; CPU ms/invoice "
                f"{full_cpu.per_item_ms(len(ids))}; machine busy "
                f"{full_cpu.machine_busy / full_cpu.machine_total:.0%}",
                flush=True,
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    rss = full_cpu.peak_rss_mb()  # sampled from /proc while the full path ran
    peak_rss = round(sum(rss.values()), 1)
    result = {
        "benchmark": "delivery",
        "when": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "invoices": len(ids),
        "render_workers": args.workers,
        "io_workers": args.io_workers,
        "floor_seconds": round(floor_s, 2),
        "floor_invoices_per_second": round(len(ids) / floor_s, 2),
        "full_seconds": round(full_s, 2),
        "full_invoices_per_second": round(len(ids) / full_s, 2),
        "ratio_full_to_floor": round(full_s / floor_s, 3),
        "peak_rss_mb": peak_rss,  # delivering process + render processes, each at its peak
        "peak_rss_by_process_group_mb": rss,
        "targets": {"invoices_per_second": 11, "ratio": 1.3, "peak_rss_mb": 1024},
        "cpu_ms_per_invoice": {
            "floor": floor_cpu.per_item_ms(len(ids)),
            "full": full_cpu.per_item_ms(len(ids)),
            "full_machine_busy": round(full_cpu.machine_busy / full_cpu.machine_total, 3),
        },
        "outcome": outcome,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
