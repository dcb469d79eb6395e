"""A month of hourly_usage and of invoices through Dagster, on PostgreSQL.

    python benchmarks/bench_billing.py --orgs 10000 --events 2000000
    python benchmarks/bench_billing.py --orgs 1000 --events 200000 --workers 1

Starts a throwaway PostgreSQL 15 (billing DB and Dagster instance, dagster-postgres) with
durability on, imports a generated month of events (generate_events.py), then measures:

1. hourly_usage: the month's 744 hours as one ranged Dagster run, against
   the bare SQL floor: one INSERT ... SELECT ... GROUP BY hour, org, metric over the same
   rows into a scratch table.
2. invoices: monthly_invoices_job for every organization in batched ranged runs
   (INVOICE_BATCH_SIZE organizations per run, ``--workers`` processes launching runs side
   by side as the daemon's run queue would), against the same draft/reconcile/finalize
   work called directly without Dagster: the difference per organization is Dagster's
   overhead (run creation, planned and per-partition events).
Results go to benchmarks/results/billing.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import generate_events  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

UTC = dt.UTC
MONTH = generate_events.MONTH_START  # 2026-03-01
DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "2GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
}


def dagster_yaml(home: Path, host: str, port: int, db: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "telemetry: {enabled: false}\n"
        "storage:\n  postgres:\n    postgres_db:\n"
        f"      hostname: {host}\n      port: {port}\n      username: postgres\n"
        f"      password: ''\n      db_name: {db}\n      scheme: postgresql+psycopg2\n"
    )


def seed(url: str, orgs: int, events_file: Path) -> dict:
    from billing_pipeline.db.engine import get_engine, migrate
    from billing_pipeline.db.schema import catalog_versions, organizations, subscriptions
    from billing_pipeline.ingest import import_events

    migrate(url)
    engine = get_engine(url)
    now = dt.datetime(2026, 4, 1, 12, tzinfo=UTC)
    ids = generate_events.org_ids(orgs)
    with engine.begin() as conn:
        conn.execute(
            insert(organizations),
            [
                {
                    "id": o,
                    "name": o,
                    "billing_email": f"{o}@example.com",
                    "status": "active",
                    "currency": "USD",
                    "tax_rate": 0,
                    "billing_interval": "monthly",
                    "auto_pay": False,
                    "payment_terms_days": 30,
                    "created_at": now,
                    "updated_at": now,
                }
                for o in ids
            ],
        )
        conn.execute(
            insert(subscriptions),
            [{"org_id": o, "plan_code": "standard", "starts_at": dt.datetime(2026, 1, 1, tzinfo=UTC)} for o in ids],
        )
        conn.execute(
            insert(catalog_versions).values(
                version=1, document=generate_events.CATALOG, sha256="0" * 64, source="benchmark", loaded_at=now
            )
        )
    summary = import_events(engine, events_file, now=now)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return {"imported": summary.accepted, "import_seconds": round(summary.seconds, 1)}


def bare_sql_month(url: str) -> float:
    from billing_pipeline.db.engine import get_engine

    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS scratch_hourly (LIKE hourly_usage INCLUDING ALL)"))
        conn.execute(text("TRUNCATE scratch_hourly"))
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scratch_hourly"
                " (hour, org_id, metric_code, event_count, value_sum_micros, value_max_micros) "
                "SELECT date_trunc('hour', occurred_at), org_id, metric_code,"
                " count(*), sum(value_micros), max(value_micros) "
                "FROM usage_events WHERE occurred_at >= :s AND occurred_at < :e GROUP BY 1, 2, 3"
            ),
            {"s": MONTH, "e": MONTH + dt.timedelta(days=31)},
        )
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE scratch_hourly"))
    return seconds


def hourly_usage_runs(settings) -> tuple[float, bool]:
    import dagster as dg

    from billing_pipeline.definitions import build_definitions, hourly_usage_job
    from billing_pipeline.launch import run_hours

    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    # one ranged run for the month, as a UI backfill with the asset's multi_run(744) policy
    last_hour = MONTH + dt.timedelta(days=31) - dt.timedelta(hours=1)
    ok = run_hours(defs, instance, hourly_usage_job.name, MONTH, last_hour).success
    return time.perf_counter() - started, ok


def _invoice_worker(args) -> tuple[int, bool, float]:
    env, chunk = args
    os.environ.update(env)
    import dagster as dg

    from billing_pipeline.definitions import INVOICE_JOBS, build_definitions
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.launch import run_period
    from billing_pipeline.settings import Settings

    settings = Settings.from_env()
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    outcomes = run_period(
        defs,
        instance,
        INVOICE_JOBS[BillingInterval.MONTHLY],
        MONTH.date().isoformat(),
        organizations=chunk,
        batch_size=settings.invoice_batch_size,
    )
    return len(chunk), all(o.success for o in outcomes), time.perf_counter() - started


def invoice_runs(env: dict, orgs: list[str], workers: int, batch: int) -> tuple[float, bool]:
    from billing_pipeline.launch import organization_batches

    # each worker gets whole batches; a batch is a contiguous range of organization keys
    batches = organization_batches(orgs, batch)
    shares = [sum(batches[w::workers], []) for w in range(workers)]
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_invoice_worker, [(env, share) for share in shares if share])
    return time.perf_counter() - started, all(ok for _, ok, _ in results)


def direct_service(url: str, orgs: list[str]) -> float:
    """The same work without Dagster, on a copy of the period's state (drafts rolled back after)."""
    from billing_pipeline.db.engine import get_engine
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_from_key
    from billing_pipeline.services import invoicing

    engine = get_engine(url)
    period = period_from_key(BillingInterval.MONTHLY, MONTH.date().isoformat())
    with engine.begin() as conn:  # start from no invoices, as the Dagster run did
        conn.execute(text("TRUNCATE invoice_lines, invoices, invoice_errors, invoice_number_sequences CASCADE"))
    started = time.perf_counter()
    invoicing.draft_batch(engine, period, orgs, dry_run=False)
    invoicing.reconcile_batch(engine, period, orgs)
    invoicing.finalize_batch(engine, period, orgs, prefix="INV", now=dt.datetime.now(UTC), dry_run=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="INVOICE_BATCH_SIZE")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--event-batch-size", default="1000", help="DAGSTER_EVENT_BATCH_SIZE ('0' = off)")
    parser.add_argument(
        "--subset-planned-events", default="1", help="DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ('' = off)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/billing-bench-events"))
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/billing.json")
    args = parser.parse_args()

    from billing_pipeline_tests.support.postgres import PostgresServer

    args.data_dir.mkdir(parents=True, exist_ok=True)
    events_file = args.data_dir / f"events_{args.events}_{args.orgs}_42.csv"
    if not events_file.exists():
        with events_file.open("w") as out:
            generate_events.write_events(out, events=args.events, orgs=args.orgs, seed=42)
    report: dict = {
        "date": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "orgs": args.orgs,
        "events": args.events,
        "invoice_batch_size": args.batch,
        "workers": args.workers,
        "dagster_event_batch_size": args.event_batch_size,
        "subset_planned_events": args.subset_planned_events,
        "cpus": os.cpu_count(),
    }
    with PostgresServer(extra_settings=DURABLE) as pg, tempfile.TemporaryDirectory() as tmp:
        url = pg.create_database("billing")
        pg.create_database("dagster")
        home = Path(tmp) / "dagster_home"
        dagster_yaml(home, pg.host, pg.port, "dagster")
        env = {
            "DAGSTER_HOME": str(home),
            "BILLING_DATABASE_URL": url,
            "BILLING_HOME": tmp,
            "BILLING_PARTITIONS_START": "2026-01-01",
            "INVOICE_BATCH_SIZE": str(args.batch),
            "DAGSTER_EVENT_BATCH_SIZE": args.event_batch_size,
            "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": args.subset_planned_events,
        }
        os.environ.update(env)
        report["seed"] = seed(url, args.orgs, events_file)
        print("seeded", report["seed"], flush=True)

        import dagster as dg

        from billing_pipeline.db.engine import get_engine
        from billing_pipeline.launch import sync_organization_partitions
        from billing_pipeline.settings import Settings

        settings = Settings.from_env()
        floor = bare_sql_month(url)
        hourly, ok = hourly_usage_runs(settings)
        report["hourly_usage"] = {
            "dagster_seconds": round(hourly, 1),
            "bare_sql_seconds": round(floor, 1),
            "throughput_vs_bare_sql": round(floor / hourly, 3),
            "success": ok,
        }
        print("hourly_usage", report["hourly_usage"], flush=True)

        instance = dg.DagsterInstance.get()
        sync_organization_partitions(instance, get_engine(url))
        orgs = instance.get_dynamic_partitions("monthly_billed_organizations")
        wall, ok = invoice_runs(env, orgs, args.workers, args.batch)
        direct = direct_service(url, orgs)
        report["invoices"] = {
            "dagster_wall_seconds": round(wall, 1),
            "success": ok,
            "direct_service_seconds": round(direct, 1),
            "dagster_overhead_ms_per_org": round((wall * args.workers - direct) / len(orgs) * 1000, 1),
            "orgs_per_second": round(len(orgs) / wall, 1),
        }
        print("invoices", report["invoices"], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
