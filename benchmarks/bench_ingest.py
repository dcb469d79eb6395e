"""Usage-event import throughput on PostgreSQL: a first import, then a full re-import.

    python benchmarks/bench_ingest.py --events 2000000 --events 10000000
    python benchmarks/bench_ingest.py --database-url postgresql://... --events 1000000
    python benchmarks/bench_ingest.py --sqlite --events 1000000

``--sqlite``: growth on the embedded database instead: N events into an empty SQLite file,
then N other events into the table that already holds them; the second must take at most
3x the first (the dedup lookup is index-backed, so time is linear in the file).

Without ``--database-url`` it starts a throwaway PostgreSQL 15 (billing_pipeline_tests'
``PostgresServer``) with durability ON (fsync, synchronous_commit, full_page_writes), unlike
the test default, and ``shared_buffers`` 2 GB like the floors in NOTES.md. Each size gets
a fresh database: migrate, 1,000 organizations, the benchmark catalog, then
``import_events`` twice. Event files come from ``generate_events.py`` (seeded, cached in
``--data-dir``). Results are printed and written to ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import generate_events  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from billing_pipeline.db.engine import get_engine, migrate  # noqa: E402
from billing_pipeline.db.schema import catalog_versions, organizations  # noqa: E402
from billing_pipeline.domain.catalog import parse_catalog  # noqa: E402
from billing_pipeline.ingest import import_events  # noqa: E402

DURABLE_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "2GB",
    "max_wal_size": "8GB",  # fewer checkpoints, fewer full-page images mid-import
    "checkpoint_timeout": "15min",
}
NOW = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)


def seed(url: str, orgs: int) -> None:
    migrate(url)
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(organizations),
            [
                {
                    "id": org,
                    "name": org,
                    "billing_email": f"{org}@example.com",
                    "status": "active",
                    "currency": "USD",
                    "tax_rate": 0,
                    "billing_interval": "monthly",
                    "auto_pay": False,
                    "payment_terms_days": 30,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for org in generate_events.org_ids(orgs)
            ],
        )
        conn.execute(
            insert(catalog_versions).values(
                version=1, document=generate_events.CATALOG, sha256="0" * 64, source="benchmark", loaded_at=NOW
            )
        )


def event_file(data_dir: Path, events: int, orgs: int, seed_: int) -> Path:
    path = data_dir / f"events_{events}_{orgs}_{seed_}.csv"
    if not path.exists():
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as out:
            generate_events.write_events(out, events=events, orgs=orgs, seed=seed_, malformed=0.0005, duplicates=0.002)
        tmp.rename(path)
        print(f"generated {path} in {time.perf_counter() - started:.1f}s", flush=True)
    return path


def server_cpu_seconds(postmaster_pid: int | None) -> float | None:
    """User+system CPU of the postmaster's live children (backends, WAL writer, ...)."""
    if not postmaster_pid:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster_pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_size(url: str, path: Path, orgs: int, batch_size: int, postmaster_pid: int | None = None) -> dict:
    seed(url, orgs)
    engine = get_engine(url)
    metrics = parse_catalog(generate_events.CATALOG).metrics
    result: dict = {"file": path.name, "bytes": path.stat().st_size}
    for label in ("first_import", "reimport"):
        cpu_before = time.process_time()
        # The parser child process (large files) is reaped by the import: RUSAGE_CHILDREN.
        children_before = _children_cpu()
        server_before = server_cpu_seconds(postmaster_pid)
        summary = import_events(engine, path, metrics=metrics, now=NOW, batch_size=batch_size)
        python_cpu = time.process_time() - cpu_before
        child_cpu = _children_cpu() - children_before
        server_after = server_cpu_seconds(postmaster_pid)
        server_cpu = None if server_before is None else server_after - server_before
        rate = summary.read / summary.seconds
        print(
            f"  {label:12s} read={summary.read:,} accepted={summary.accepted:,} "
            f"duplicates={summary.duplicates:,} quarantined={summary.quarantined:,} "
            f"{summary.seconds:.1f}s -> {rate:,.0f} events/s "
            f"(CPU: python {python_cpu:.1f}s + parser child {child_cpu:.1f}s, "
            f"postgres {server_cpu or 0:.1f}s; "
            f"load avg {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        result[label] = {
            "read": summary.read,
            "accepted": summary.accepted,
            "duplicates": summary.duplicates,
            "quarantined": summary.quarantined,
            "by_reason": summary.by_reason,
            "seconds": round(summary.seconds, 2),
            "events_per_second": round(rate),
            "python_cpu_seconds": round(python_cpu, 1),
            "parser_child_cpu_seconds": round(child_cpu, 1),
            "postgres_cpu_seconds": None if server_cpu is None else round(server_cpu, 1),
            "load_average_after": round(os.getloadavg()[0], 2),
        }
        if label == "first_import":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE usage_events"))
    with engine.connect() as conn:
        result["table_rows"] = conn.execute(text("SELECT count(*) FROM usage_events")).scalar()
        result["table_size"] = conn.execute(
            text("SELECT pg_size_pretty(pg_total_relation_size('usage_events'))")
        ).scalar()
    engine.dispose()
    return result


def run_sqlite_growth(path_a: Path, path_b: Path, orgs: int, batch_size: int, workdir: Path) -> dict:
    db = workdir / "bench.db"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    seed(url, orgs)
    engine = get_engine(url)
    metrics = parse_catalog(generate_events.CATALOG).metrics
    result: dict = {}
    for label, path in (("into_empty", path_a), ("into_full", path_b)):
        cpu_before = time.process_time()
        summary = import_events(engine, path, metrics=metrics, now=NOW, batch_size=batch_size)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM usage_events")).scalar()
        print(
            f"  {label:10s} read={summary.read:,} accepted={summary.accepted:,} "
            f"{summary.seconds:.1f}s -> {summary.read / summary.seconds:,.0f} events/s "
            f"(CPU {time.process_time() - cpu_before:.1f}s; table now {rows:,} rows; "
            f"load avg {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        result[label] = {
            "read": summary.read,
            "accepted": summary.accepted,
            "seconds": round(summary.seconds, 2),
            "events_per_second": round(summary.read / summary.seconds),
            "table_rows_after": rows,
            "load_average_after": round(os.getloadavg()[0], 2),
        }
    result["ratio"] = round(result["into_full"]["seconds"] / result["into_empty"]["seconds"], 2)
    print(f"  second / first: {result['ratio']}x (target <= 3x)", flush=True)
    engine.dispose()
    db.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="use this server (each size needs an empty database)")
    parser.add_argument("--events", type=int, action="append", help="repeatable; default 2,000,000")
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/billing-bench-events"))
    parser.add_argument(
        "--fast-unsafe", action="store_true", help="fsync/synchronous_commit/full_page_writes off (test defaults)"
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite growth: N events into empty, then N more")
    parser.add_argument("--output", type=Path, default=None, help="default benchmarks/results/ingest[-sqlite].json")
    args = parser.parse_args(argv)
    sizes = args.events or [2_000_000]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.output is None:
        args.output = ROOT / "benchmarks/results" / ("ingest-sqlite.json" if args.sqlite else "ingest.json")
    if args.sqlite:
        report = {
            "benchmark": "usage-event import on SQLite, into an empty table then into a full one",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "orgs": args.orgs,
            "batch_size": args.batch_size,
            "runs": {},
        }
        for events in sizes:
            first = event_file(args.data_dir, events, args.orgs, args.seed)
            second = event_file(args.data_dir, events, args.orgs, args.seed + 1)
            print(f"SQLite: {events:,} events, then {events:,} more", flush=True)
            report["runs"][str(events)] = run_sqlite_growth(first, second, args.orgs, args.batch_size, args.data_dir)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
        return
    report = {
        "benchmark": "usage-event import (billing_pipeline.ingest.import_events)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "orgs": args.orgs,
        "batch_size": args.batch_size,
        "runs": {},
    }
    if args.database_url:
        report["server"] = {"url": "given", "settings": "as configured"}
        for events in sizes:
            path = event_file(args.data_dir, events, args.orgs, args.seed)
            print(f"{events:,} events on the given server", flush=True)
            report["runs"][str(events)] = run_size(args.database_url, path, args.orgs, args.batch_size)
    else:
        from billing_pipeline_tests.support.postgres import PostgresServer

        settings = {} if args.fast_unsafe else DURABLE_SETTINGS
        with PostgresServer(extra_settings=settings) as server:
            with server_connection(server) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
                effective = {
                    name: conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_wal_size")
                }
            report["server"] = {"version": version, "settings": effective}
            print(f"PostgreSQL {version} {effective}", flush=True)
            for events in sizes:
                path = event_file(args.data_dir, events, args.orgs, args.seed)
                print(f"{events:,} events", flush=True)
                url = server.create_database(f"bench_{events}")
                report["runs"][str(events)] = run_size(url, path, args.orgs, args.batch_size, server.pid)
                server.drop_database(f"bench_{events}")
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


def server_connection(server):
    import psycopg

    return psycopg.connect(server.dsn("postgres"), autocommit=True)


if __name__ == "__main__":
    main()
