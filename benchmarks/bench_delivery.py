"""Invoice delivery throughput: the Dagster delivery job as the sensor launches it, against a bare render loop.

    python benchmarks/bench_delivery.py                 # 10,000 invoices in runs of INVOICE_BATCH_SIZE (1,000)
    python benchmarks/bench_delivery.py --invoices 1000 --batch-size 250

Starts the local test servers (``billing_pipeline_tests.support``): PostgreSQL 15 (the billing
database and the Dagster instance, dagster-postgres through the project's ``deploy/dagster.yaml``),
and S3 (SeaweedFS), the Stripe-compatible server and SMTP (STARTTLS + AUTH) in a separate
process. Then, for the same N finalized invoices:

* floor: render every PDF with WeasyPrint in 2 processes, nothing else;
* job: ``invoice_delivery_sensor`` started on the instance and ``dagster-daemon run``: the sensor
  asks for one ``deliver_monthly_invoices_job`` run per batch, the daemon's run queue launches
  them (``deploy/dagster.yaml``: at most 3 delivery runs at once), each run a ``dagster api
  execute_run`` process with its ops pdf (2 render processes) -> s3 -> stripe -> email (I/O
  threads, ``DELIVERY_IO_WORKERS``) -> report; the pools pdf, s3, stripe and email are set to 1
  as README recommends, so one run renders while others sync Stripe and e-mail. Both Dagster
  performance variables are set (``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1``,
  ``DAGSTER_EVENT_BATCH_SIZE=1000``).

Reports invoices/s for both and their ratio (target <= 1.3), the CPU each process group spent
per invoice (the run workers are the project's own CPU outside rendering: target <= 25 ms),
peak RSS resident at once (run workers + render processes, target <= 1 GB), DAGSTER_HOME's
size before and after (it must not grow with the PDFs), the machine's load, and writes
``benchmarks/results/delivery.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from benchmarks.cpu_accounting import CpuAccounting  # noqa: E402
from billing_pipeline.db import reference  # noqa: E402
from billing_pipeline.db.engine import get_engine  # noqa: E402
from billing_pipeline.db.invoices import load_invoices  # noqa: E402
from billing_pipeline.db.schema import invoice_deliveries, subscriptions  # noqa: E402
from billing_pipeline.domain.model import BillingInterval  # noqa: E402
from billing_pipeline.domain.periods import period_from_key  # noqa: E402
from billing_pipeline.rendering.pdf import render_invoice_pdf  # noqa: E402
from billing_pipeline.services import invoicing  # noqa: E402
from billing_pipeline.services.delivery import render_job, seller_from_settings, warm_up  # noqa: E402
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


def _session(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[3])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def classifier(server_pid: int, pg_datadir: str, daemon_session: list[int]):
    """Groups of this benchmark's processes only (other engineers share the machine): the floor's
    render workers are this process's children; PostgreSQL is the postmaster of ``pg_datadir`` and
    its children; SeaweedFS is a child of the servers process; the daemon and everything it
    launches share the session it was started in (``daemon_session[0]``, set once it runs)."""
    me = os.getpid()

    def classify(pid: int, comm: str, cmdline: str, ppid: int) -> str | None:
        if pid == me:
            return "benchmark process"
        if ppid == me and "spawn_main" in cmdline:
            return "render workers"
        if comm.startswith("postgres") and (pg_datadir in cmdline or pg_datadir in _cmdline(ppid)):
            return "postgresql"
        if comm == "weed" and ppid == server_pid:
            return "s3 server"
        if pid == server_pid:
            return "stripe + smtp servers"
        if daemon_session and _session(pid) == daemon_session[0]:
            # The code server starts each run worker as a spawned child; a run worker's pdf op
            # starts the render workers as its own spawned children.
            if "spawn_main" in cmdline and "spawn_main" in _cmdline(ppid):
                return "render workers"
            if "spawn_main" in cmdline or "execute_run" in cmdline:
                return "run workers"
            return "dagster daemon + code server"
        return None

    return classify


def floor(url: str, invoice_ids: list[int], seller, workers: int) -> float:
    engine = get_engine(url)
    stored = load_invoices(engine, invoice_ids)
    orgs = reference.get_organizations(engine)
    jobs = [(render_invoice_pdf, s.invoice, orgs[s.invoice.organization_id], seller) for s in stored.values()]
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=warm_up
    ) as pool:
        list(pool.map(render_job, *zip(*jobs[: workers * 2], strict=True)))  # warm both workers
        t0 = time.perf_counter()
        for _ in pool.map(render_job, *zip(*jobs, strict=True), chunksize=4):
            pass
        return time.perf_counter() - t0


def _dir_bytes(path: Path, *, skip: str | None = None) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and (skip is None or skip not in p.parts))


def job_environment(pg, url: str, servers: dict, home: Path, billing_home: Path, args) -> dict:
    s3, st, sm = servers["s3"], servers["stripe"], servers["smtp"]
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": "dagster_bench",
        # the two Dagster performance settings of the README, for every process that creates runs
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "BILLING_HOME": str(billing_home),
        "BILLING_DATABASE_URL": url,
        "INVOICE_BATCH_SIZE": str(args.batch_size),
        "DELIVERY_IO_WORKERS": str(args.io_workers),
        "SCHEDULES_RUNNING": "false",
        "DOCUMENT_STORE": "s3",
        "S3_BUCKET": args.bucket,
        "S3_ENDPOINT_URL": s3["endpoint_url"],
        "S3_REGION": s3["region"],
        "AWS_ACCESS_KEY_ID": s3["access_key"],
        "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
        "PRESIGNED_URL_EXPIRY_SECONDS": "3600",
        "PAYMENT_GATEWAY": "stripe",
        "STRIPE_API_KEY": st["api_key"],
        "STRIPE_API_BASE": st["api_base"],
        "MAILER": "smtp",
        "SMTP_HOST": sm["host"],
        "SMTP_PORT": str(sm["port"]),
        "SMTP_USERNAME": sm["username"],
        "SMTP_PASSWORD": sm["password"],
        "SMTP_SECURITY": "starttls",
        "SMTP_CA_FILE": sm.get("cert_path") or "",
    }


#: What a run worker imports, loaded once before the measurement so that their bytecode is cached.
_WARM_UP = """
import boto3, stripe, psycopg, psycopg2, smtplib, email.mime.multipart, email.generator
import dagster._grpc.impl, dagster._core.execution.api, dagster._core.executor.in_process, dagster_postgres
import billing_pipeline.definitions, billing_pipeline.services.delivery, billing_pipeline.defs.delivery_ops
boto3.session.Session().client("s3", region_name="us-east-1")
"""


def bytecode_cache(env: dict, folder: Path) -> None:
    """The job's processes read and write compiled bytecode, as in any deployment. A shell with
    ``PYTHONDONTWRITEBYTECODE=1`` (and a virtualenv installed without .pyc files) makes every run
    worker compile Dagster, SQLAlchemy, boto3 ... from source: 1-2 s of CPU per process, counted as
    the run workers' own. The cache lives in the benchmark's folder (``PYTHONPYCACHEPREFIX``), so
    nothing is written into the virtualenv or the sources."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder)


def dagster_job(
    pg, url: str, servers: dict, n: int, args, classify, daemon_session: list[int]
) -> tuple[float, dict, CpuAccounting]:
    """The sensor and the daemon on a dagster-postgres instance; returns (wall seconds, outcome, cpu)."""
    import boto3
    from botocore.config import Config

    from billing_pipeline.launch import sync_organization_partitions

    s3 = servers["s3"]
    boto3.session.Session().client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3["region"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    ).create_bucket(Bucket=args.bucket)
    pg.create_database("dagster_bench")
    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **job_environment(pg, url, servers, home, work / "billing", args)}
    bytecode_cache(env, work / "pycache")
    os.environ.update(env)
    bin_dir = Path(sys.executable).parent
    subprocess.run([sys.executable, "-c", _WARM_UP], env=env, check=True, cwd=ROOT)
    module = ["-m", "billing_pipeline.definitions"]
    # Every pool's limit set explicitly to 1, as README says: one run renders on both cores while
    # another syncs Stripe and a third e-mails. (Left to the default, two runs creating a pool's
    # row at once on dagster-postgres fail: IntegrityError, then InFailedSqlTransaction in Dagster.)
    for pool, limit in (("pdf", 1), ("s3", 1), ("stripe", 1), ("email", 1)):
        concurrency = [bin_dir / "dagster", "instance", "concurrency", "set", pool, str(limit)]
        subprocess.run(concurrency, env=env, check=True, cwd=ROOT, capture_output=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        sync_organization_partitions(instance, get_engine(url))
    subprocess.run(
        [bin_dir / "dagster", "sensor", "start", "invoice_delivery_sensor", *module], env=env, check=True, cwd=ROOT
    )
    storage_before = _dir_bytes(home)
    expected = -(-n // args.batch_size)
    log = open(work / "daemon.log", "w")
    with CpuAccounting(classify, rss_groups=("run workers", "render workers")) as cpu:
        daemon = subprocess.Popen(
            [bin_dir / "dagster-daemon", "run", *module],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        daemon_session.append(daemon.pid)  # start_new_session: its pid is the session id
        try:
            records = wait_for_runs(home, expected, timeout=args.timeout)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
    first = min(r.create_timestamp.timestamp() for r in records)
    last = max(r.end_time for r in records)
    engine = get_engine(url)
    with engine.connect() as conn:
        statuses = conn.execute(select(invoice_deliveries.c.status)).scalars().all()
    done = sum(1 for s in statuses if s == "succeeded")
    outcome = {
        "runs": len(records),
        "runs_succeeded": sum(1 for r in records if r.dagster_run.status.value == "SUCCESS"),
        "ledger_rows_succeeded": done,
        "ledger_rows_expected": 4 * n,
        "storage_bytes_before": storage_before,
        "storage_bytes_after": _dir_bytes(home),
        "storage_bytes_after_without_compute_logs": _dir_bytes(home, skip="compute_logs"),
        "io_manager_bytes": sum(
            _dir_bytes(home / "storage" / r.dagster_run.run_id, skip="compute_logs")
            for r in records
            if (home / "storage" / r.dagster_run.run_id).exists()
        ),
        "daemon_log": str(work / "daemon.log"),
    }
    return last - first, outcome, cpu


def wait_for_runs(home: Path, expected: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            records = instance.get_run_records(dg.RunsFilter(job_name="deliver_monthly_invoices_job"))
            finished = [r for r in records if r.dagster_run.is_finished]
            if len(records) >= expected and len(finished) == len(records):
                return records
            time.sleep(2)
    raise TimeoutError(f"{expected} delivery runs did not finish in {timeout:.0f} s")


def load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000, help="INVOICE_BATCH_SIZE (its default: 1000)")
    parser.add_argument("--workers", type=int, default=2, help="render processes of the floor (the pdf op uses 2)")
    parser.add_argument("--io-workers", type=int, default=4, help="DELIVERY_IO_WORKERS (its default: 4)")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "delivery.json")
    args = parser.parse_args()
    args.bucket = f"bench-{uuid.uuid4().hex[:8]}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its servers
    seller = seller_from_settings(Settings.from_env({"BILLING_HOME": "/tmp"}).seller)
    proc, servers = start_network_servers()
    load_before = load()
    try:
        with PostgresServer() as pg:
            url = pg.create_database(f"bench_{uuid.uuid4().hex[:8]}")
            t0 = time.perf_counter()
            ids = seed(url, args.invoices)
            print(f"seeded {len(ids)} finalized invoices in {time.perf_counter() - t0:.1f}s", flush=True)
            daemon_session: list[int] = []
            classify = classifier(proc.pid, str(pg.datadir), daemon_session)
            with CpuAccounting(classify) as floor_cpu:
                floor_s = floor(url, ids, seller, args.workers)
            load_floor = load()
            print(f"floor: {len(ids) / floor_s:.2f}/s; CPU ms/invoice {floor_cpu.per_item_ms(len(ids))}", flush=True)
            job_s, outcome, job_cpu = dagster_job(pg, url, servers, len(ids), args, classify, daemon_session)
            load_job = load()
            print(
                f"job:   {len(ids) / job_s:.2f}/s {outcome}; CPU ms/invoice {job_cpu.per_item_ms(len(ids))}", flush=True
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    n = len(ids)
    result = {
        "benchmark": "delivery",
        "path": "deliver_monthly_invoices_job launched by invoice_delivery_sensor under dagster-daemon "
        "(dagster-postgres instance, deploy/dagster.yaml, pools pdf/s3/stripe/email at 1)",
        "when": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": {"before": load_before, "after_floor": load_floor, "after_job": load_job},
        "invoices": n,
        "batch_size": args.batch_size,
        "render_workers": args.workers,
        "io_workers": args.io_workers,
        "dagster_env": {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", "DAGSTER_EVENT_BATCH_SIZE": "1000"},
        "vendor_rate_limits": {  # per run process (clients/rate_limit.py); 0 = none; defaults 80, 100, 20
            name: os.environ.get(name, "default")
            for name in ("STRIPE_REQUESTS_PER_SECOND", "S3_REQUESTS_PER_SECOND", "SMTP_MESSAGES_PER_SECOND")
        },
        "python_bytecode": "cached (PYTHONPYCACHEPREFIX in the benchmark's folder, warmed before the job)",
        "floor_seconds": round(floor_s, 2),
        "floor_invoices_per_second": round(n / floor_s, 2),
        "job_seconds": round(job_s, 2),  # first run created -> last run ended
        "job_invoices_per_second": round(n / job_s, 2),
        "ratio_job_to_floor": round(job_s / floor_s, 3),
        "peak_rss_mb": round(job_cpu.peak_concurrent_rss_kb / 1024, 1),  # run workers + render workers at once
        "peak_rss_by_process_group_mb": job_cpu.peak_rss_mb(),
        "targets": {"ratio": 1.3, "own_cpu_ms_per_invoice_outside_rendering": 25, "peak_rss_mb": 1024},
        "cpu_ms_per_invoice": {
            "floor": floor_cpu.per_item_ms(n),
            "job": job_cpu.per_item_ms(n),
            "job_machine_busy": round(job_cpu.machine_busy / max(job_cpu.machine_total, 1e-9), 3),
        },
        "outcome": outcome,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
