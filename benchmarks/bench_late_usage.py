"""What the late-usage lookup costs a draft, on PostgreSQL, on a realistic timeline.

    python benchmarks/bench_late_usage.py --orgs 1000

Starts the tests' throwaway PostgreSQL 15, bills October to December for ``--orgs``
organizations (20 events each a month; each month aggregated at its end and finalized three
days later, the clock moved there with time-machine), then measures on 3 February:

1. ``compute_drafts`` of January and the late-usage lookup inside it, nothing late;
2. the same with one late October event for every tenth organization (re-aggregated on 10 January),
   ``pending_late_usage`` (what ``status`` lists) and the January draft that stores the lines;
3. the lookup once January is final (October settled: no candidates);
4. February's ``draft_batch`` with the late-usage ledger against plain ``save_draft``, alternately.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

import time_machine
from sqlalchemy import insert

from billing_pipeline.clock import utc_now
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import late_usage, late_usage_ledger, reference, usage
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import usage_events
from billing_pipeline.domain.periods import BillingPeriod, monthly_period
from billing_pipeline.domain.quantity import to_micros
from billing_pipeline.services import invoicing
from billing_pipeline_tests.builders import org, setup_database
from billing_pipeline_tests.support.postgres import PostgresServer

UTC = dt.UTC


def at(moment: dt.datetime):
    return time_machine.travel(moment, tick=True)


def add_events(engine, period: BillingPeriod, tag: str, orgs: list[str], per_org: int = 20) -> None:
    now, rows = utc_now(), []
    for o in orgs:
        for k in range(per_org):
            occurred = period.start + dt.timedelta(hours=(k * 7) % (period.hours - 1), minutes=3)
            digest = hashlib.sha256(f"{tag}{o}{k}".encode()).hexdigest()
            rows.append(
                {
                    "org_id": o,
                    "event_id": f"{tag}-{o}-{k}",
                    "metric_code": "api_calls",
                    "value_micros": to_micros(Decimal(1)),
                    "properties": None,
                    "occurred_at": occurred,
                    "ingested_at": now,
                    "payload_sha256": digest,
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(usage_events), rows)


def median_seconds(fn: Callable[[], object], reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bill_history(engine, orgs: list[str], months: list[BillingPeriod]) -> None:
    catalog = reference.latest_catalog(engine)
    for i, m in enumerate(months):
        with at(m.end - dt.timedelta(hours=2)):
            add_events(engine, m, m.key, orgs)
        with at(m.end + dt.timedelta(minutes=10)):
            usage.aggregate_hours(engine, m.start, m.end - usage.HOUR, catalog.metrics)
        if i < len(months) - 1:
            with at(m.end + dt.timedelta(days=3)):
                invoicing.draft_batch(engine, m, orgs, dry_run=False)
                invoicing.finalize_batch(engine, m, orgs, prefix="INV", now=m.end + dt.timedelta(days=3), dry_run=False)


def run(url: str, n: int) -> None:
    orgs = [f"o{i:05d}" for i in range(n)]
    with at(dt.datetime(2026, 9, 20, tzinfo=UTC)):
        setup_database(url)
        engine = get_engine(url)
        reference.upsert_organizations(engine, [org(o) for o in orgs])
        for o in orgs:
            reference.add_subscription(engine, o, "starter", dt.datetime(2026, 10, 1, tzinfo=UTC))
    october, jan, feb = monthly_period(2026, 10), monthly_period(2027, 1), monthly_period(2027, 2)
    bill_history(engine, orgs, [october, monthly_period(2026, 11), monthly_period(2026, 12), jan])

    def lookup(period):
        return lambda: late_usage.late_sources(engine, orgs, before=period.start, target=(period.interval, period.key))

    def drafts(period):
        return lambda: invoicing.compute_drafts(engine, period, orgs)

    def pending():
        return late_usage_ledger.pending_late_usage(engine)

    with at(jan.end + dt.timedelta(days=3)):
        print(
            f"nothing late: compute_drafts {median_seconds(drafts(jan)):.3f} s, "
            f"lookup {median_seconds(lookup(jan)):.3f} s"
        )
    with at(dt.datetime(2027, 1, 10, tzinfo=UTC)):
        add_events(engine, october, "late", orgs[::10], per_org=1)
        usage.aggregate_hours(engine, october.start, october.end - usage.HOUR, reference.latest_catalog(engine).metrics)
    with at(jan.end + dt.timedelta(days=3)):
        print(
            f"{len(orgs[::10])} late: compute_drafts {median_seconds(drafts(jan)):.3f} s, "
            f"lookup {median_seconds(lookup(jan)):.3f} s, pending_late_usage {median_seconds(pending, 3):.3f} s"
        )
        started = time.perf_counter()
        invoicing.draft_batch(engine, jan, orgs, dry_run=False)
        print(f"draft_batch January with the adjustment lines: {time.perf_counter() - started:.3f} s")
        invoicing.finalize_batch(engine, jan, orgs, prefix="INV", now=jan.end + dt.timedelta(days=3), dry_run=False)
    with at(feb.end + dt.timedelta(days=3)):
        settled = late_usage.candidate_invoices(engine, orgs, before=feb.start)
        print(f"January final: lookup {median_seconds(lookup(feb)):.3f} s, candidates {len(settled)}")
        add_events(engine, feb, "feb", orgs)
        usage.aggregate_hours(engine, feb.start, feb.end - usage.HOUR, reference.latest_catalog(engine).metrics)
        compare_saves(engine, feb, orgs)


def compare_saves(engine, period: BillingPeriod, orgs: list[str]) -> None:
    real = late_usage_ledger.save_draft_with_adjustments

    def plain(conn, base, sources, *, plan_code, catalog_version):
        return invoice_rows.save_draft(conn, base, plan_code=plan_code, catalog_version=catalog_version), base

    try:
        for name, save in (("plain save_draft", plain), ("ledger", real)) * 2:
            late_usage_ledger.save_draft_with_adjustments = save
            started = time.perf_counter()
            invoicing.draft_batch(engine, period, orgs, dry_run=False)
            print(f"draft_batch {period.label}, {len(orgs)} orgs, {name}: {time.perf_counter() - started:.3f} s")
    finally:
        late_usage_ledger.save_draft_with_adjustments = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    args = parser.parse_args()
    with PostgresServer() as server:
        run(server.create_database("bench_late_usage"), args.orgs)


if __name__ == "__main__":
    main()
