"""Usage-event import against real databases: SQLite (a file) and PostgreSQL (COPY path)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import func, insert, select

from billing_pipeline.db import event_imports as imports_db
from billing_pipeline.db.engine import get_engine, migrate
from billing_pipeline.db.schema import (
    catalog_versions,
    dirty_hours,
    event_imports,
    organizations,
    quarantined_events,
    usage_events,
)
from billing_pipeline.ingest import ImportFailed, ParserProcessError, import_events, parse_process, pipeline

NOW = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)
HEADER = "org_id,event_id,metric,value,occurred_at,properties"
CATALOG = {
    "version": 3,
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count"},
        {"code": "storage_gb", "name": "Storage", "aggregation": "max"},
        {"code": "payment_volume", "name": "Payments", "aggregation": "sum", "allow_negative": True},
        {"code": "active_users", "name": "Users", "aggregation": "unique_count", "unique_property": "user_id"},
    ],
    "plans": [
        {
            "code": "basic",
            "name": "Basic",
            "currency": "USD",
            "interval": "monthly",
            "charges": [{"code": "fee", "description": "Fee", "model": "flat", "amount": "10.00"}],
        }
    ],
}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        # Every file, however small, through the child parser process.
        pytest.param("postgresql-process", marks=pytest.mark.integration),
    ]
)
def engine(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'billing.db'}"
    else:
        url = request.getfixturevalue("billing_db_url")
        if request.param == "postgresql-process":
            monkeypatch.setattr(parse_process, "PARSE_PROCESS_MIN_BYTES", 0)
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
                for org in ("org_a", "org_b")
            ],
        )
        conn.execute(
            insert(catalog_versions),
            [
                {
                    "version": 1,
                    "document": {**CATALOG, "version": 1, "metrics": CATALOG["metrics"][:1]},
                    "sha256": "1" * 64,
                    "source": "old.yaml",
                    "loaded_at": NOW,
                },
                {"version": 3, "document": CATALOG, "sha256": "3" * 64, "source": "catalog.yaml", "loaded_at": NOW},
            ],
        )
    yield engine
    engine.dispose()


def write_csv(path, *lines: str):
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def table_count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def quarantine(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(quarantined_events).order_by(quarantined_events.c.id))
        return [dict(row._mapping) for row in rows]


def stored(engine) -> dict[tuple[str, str], dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(usage_events))
        return {(row.org_id, row.event_id): dict(row._mapping) for row in rows}


def quarantine_by_reason(engine) -> dict[str, int]:
    """Quarantine rows per reason: what ``billing-pipeline status`` prints."""
    with engine.connect() as conn:
        rows = conn.execute(select(quarantined_events.c.reason, func.count()).group_by(quarantined_events.c.reason))
        return dict(sorted(rows.tuples()))


def check_invariant(summary) -> None:
    assert summary.read == summary.accepted + summary.duplicates + summary.quarantined
    assert sum(summary.by_reason.values()) == summary.quarantined


EVERY_REASON = [
    # (line, reason or None when accepted)
    ("org_a,ok1,api_calls,1,2026-03-01T10:15:00Z,", None),
    ('org_a,ok2,active_users,1,2026-03-01T11:00:00.5Z,"{""user_id"": ""u1""}"', None),
    ("org_b,ok3,payment_volume,-12.50,2026-03-02T00:00:00+02:00,", None),
    ("org_b,ok4,api_calls,,2026-03-02T05:59:59Z,", None),
    ("org_x,r1,api_calls,1,2026-03-01T00:00:00Z,", "unknown_org"),
    ("org_a,r2,bogus,1,2026-03-01T00:00:00Z,", "unknown_metric"),
    ("org_a,,api_calls,1,2026-03-01T00:00:00Z,", "missing_field"),
    ("org_a,r4,storage_gb,lots,2026-03-01T00:00:00Z,", "non_numeric_value"),
    ("org_a,r5,storage_gb,NaN,2026-03-01T00:00:00Z,", "non_finite_value"),
    ("org_a,r6,storage_gb,-inf,2026-03-01T00:00:00Z,", "non_finite_value"),
    ("org_a,r7,storage_gb,-3,2026-03-01T00:00:00Z,", "negative_value"),
    ("org_a,r8,api_calls,1,last tuesday,", "invalid_timestamp"),
    ("org_a,r9,api_calls,1,2026-03-01T00:00:00,", "naive_timestamp"),
    ("org_a,r10,api_calls,1,2030-01-01T00:00:00Z,", "future_timestamp"),
    ('org_a,r11,api_calls,1,2026-03-01T00:00:00Z,"[1, 2]"', "invalid_properties"),
    (f"org_a,{'x' * 256},api_calls,1,2026-03-01T00:00:00Z,", "field_too_long"),
    ("org_a,r13,storage_gb,1.1234567,2026-03-01T00:00:00Z,", "too_precise"),
    ("org_a,r14,storage_gb,1e13,2026-03-01T00:00:00Z,", "value_out_of_range"),
    ("org_a,r15,api_calls", "malformed_line"),
    ('org_a,"r16,api_calls,1,2026-03-01T00:00:00Z,', "malformed_line"),
    ("org_a,ok1,api_calls,1.0,2026-03-01T10:15:00.000Z,", "duplicate"),
    ("org_a,ok1,api_calls,2,2026-03-01T10:15:00Z,", "conflicting_duplicate"),
]


def test_every_reason_is_quarantined_with_line_and_raw_text(engine, tmp_path):
    path = write_csv(tmp_path / "events.csv", *[line for line, _ in EVERY_REASON])
    summary = import_events(engine, path, now=NOW, source_name="upload/events.csv")

    check_invariant(summary)
    expected_reasons = [r for _, r in EVERY_REASON if r not in (None, "duplicate")]
    assert summary.read == len(EVERY_REASON)
    assert summary.accepted == 4
    assert summary.duplicates == 1
    assert summary.by_reason == {r: expected_reasons.count(r) for r in set(expected_reasons)}
    rows = quarantine(engine)
    assert [(row["line_number"], row["reason"]) for row in rows] == [
        (number, reason)
        for number, (_, reason) in enumerate(EVERY_REASON, start=2)
        if reason not in (None, "duplicate")
    ]
    for row in rows:
        assert row["import_id"] == summary.import_id
        assert row["source"] == "upload/events.csv"
        assert row["raw"] == EVERY_REASON[row["line_number"] - 2][0][:10_000]
        assert row["detail"]
    conflict = rows[-1]
    assert conflict["reason"] == "conflicting_duplicate" and "'ok1'" in conflict["detail"]
    assert conflict["org_id"] == "org_a" and conflict["event_id"] == "ok1"

    events = stored(engine)
    assert set(events) == {("org_a", "ok1"), ("org_a", "ok2"), ("org_b", "ok3"), ("org_b", "ok4")}
    assert events[("org_a", "ok1")]["value_micros"] == 1_000_000  # the first occurrence won
    assert events[("org_a", "ok2")]["properties"] == {"user_id": "u1"}
    assert events[("org_b", "ok3")]["value_micros"] == -12_500_000
    assert events[("org_b", "ok3")]["occurred_at"] == dt.datetime(2026, 3, 1, 22, tzinfo=dt.UTC)
    assert events[("org_b", "ok4")]["value_micros"] == 1_000_000  # count default
    assert events[("org_a", "ok1")]["ingested_at"] == NOW
    assert len(events[("org_a", "ok1")]["payload_sha256"]) == 64

    with engine.connect() as conn:
        record = conn.execute(select(event_imports)).one()._mapping
    assert (record["read"], record["accepted"], record["duplicates"], record["quarantined"]) == (
        summary.read,
        summary.accepted,
        summary.duplicates,
        summary.quarantined,
    )
    assert record["finished_at"] is not None


def test_reimport_is_idempotent(engine, tmp_path):
    path = write_csv(tmp_path / "events.csv", *[line for line, _ in EVERY_REASON])
    first = import_events(engine, path, now=NOW)
    before = (stored(engine), table_count(engine, dirty_hours))

    again = import_events(engine, path, now=NOW + dt.timedelta(minutes=5))

    check_invariant(again)
    assert again.import_id != first.import_id
    assert again.read == first.read
    assert again.accepted == 0
    assert again.duplicates == first.accepted + first.duplicates
    assert again.by_reason == first.by_reason  # bad lines stay bad, counted per import
    assert (stored(engine), table_count(engine, dirty_hours)) == before
    assert table_count(engine, quarantined_events) == first.quarantined  # stored once
    assert table_count(engine, event_imports) == 2


def test_same_id_with_another_payload_later_is_a_conflict(engine, tmp_path):
    import_events(engine, write_csv(tmp_path / "a.csv", "org_a,e1,storage_gb,5,2026-03-01T00:00:00Z,"), now=NOW)
    summary = import_events(
        engine,
        write_csv(
            tmp_path / "b.csv",
            "org_a,e1,storage_gb,5.000,2026-03-01T01:00:00+01:00,",  # same payload, other spelling
            "org_a,e1,storage_gb,6,2026-03-01T00:00:00Z,",  # same id, new value
            "org_b,e1,storage_gb,6,2026-03-01T00:00:00Z,",  # other org: a new event
        ),
        now=NOW,
    )
    assert (summary.accepted, summary.duplicates, summary.quarantined) == (1, 1, 1)
    [conflict] = quarantine(engine)
    assert conflict["reason"] == "conflicting_duplicate" and "'e1'" in conflict["detail"]
    assert conflict["line_number"] == 3
    assert stored(engine)[("org_a", "e1")]["value_micros"] == 5_000_000


@pytest.mark.parametrize("batch_size", [1, 2, 3, 50_000])
def test_duplicates_across_batches_first_occurrence_wins(engine, tmp_path, batch_size):
    lines = [
        "org_a,e1,api_calls,1,2026-03-01T00:00:00Z,",
        "org_a,e2,api_calls,1,2026-03-01T00:00:00Z,",
        "org_a,e1,api_calls,1,2026-03-01T00:00:00Z,",  # replay
        "org_a,e3,api_calls,1,2026-03-01T00:00:00Z,",
        "org_a,e1,api_calls,7,2026-03-01T00:00:00Z,",  # conflict with line 2
        "org_a,e2,api_calls,7,2026-03-01T00:00:00Z,",  # conflict with line 3
        "org_a,e4,api_calls,1,2026-03-01T00:00:00Z,",
        "org_a,e2,api_calls,1,2026-03-01T00:00:00Z,",  # replay, far from the first
        "org_a,e4,api_calls,2,2026-03-01T00:00:00Z,",
    ]
    summary = import_events(engine, write_csv(tmp_path / "e.csv", *lines), now=NOW, batch_size=batch_size)
    check_invariant(summary)
    assert (summary.accepted, summary.duplicates, summary.quarantined) == (4, 2, 3)
    assert sorted(row["line_number"] for row in quarantine(engine)) == [6, 7, 10]
    assert {key: row["value_micros"] for key, row in stored(engine).items()} == {
        ("org_a", "e1"): 1_000_000,
        ("org_a", "e2"): 1_000_000,
        ("org_a", "e3"): 1_000_000,
        ("org_a", "e4"): 1_000_000,
    }


def test_repeat_of_a_conflicting_line_follows_the_stored_payload(engine, tmp_path):
    import_events(engine, write_csv(tmp_path / "a.csv", "org_a,e1,api_calls,5,2026-03-01T00:00:00Z,"), now=NOW)
    summary = import_events(
        engine,
        write_csv(
            tmp_path / "b.csv",
            "org_a,e1,api_calls,6,2026-03-01T00:00:00Z,",  # conflicts with the stored 5
            "org_a,e1,api_calls,5,2026-03-01T00:00:00Z,",  # equals the stored row: a replay
        ),
        now=NOW,
    )
    assert (summary.accepted, summary.duplicates, summary.quarantined) == (0, 1, 1)


def test_dirty_hours_are_marked_for_accepted_events(engine, tmp_path):
    import_events(
        engine,
        write_csv(
            tmp_path / "a.csv",
            "org_a,e1,api_calls,1,2026-03-01T10:15:00Z,",
            "org_a,e2,api_calls,1,2026-03-01T10:59:59.999Z,",
            "org_b,e3,api_calls,1,2026-03-01T13:30:00+02:00,",
            "org_b,e4,api_calls,1,2026-03-05T00:00:00Z,",
            "org_x,e5,api_calls,1,2026-03-09T00:00:00Z,",  # quarantined: no hour
        ),
        now=NOW,
    )
    with engine.connect() as conn:
        hours = dict(conn.execute(select(dirty_hours.c.hour, dirty_hours.c.marked_at)).all())
    utc = dt.UTC
    assert sorted(hours) == [
        dt.datetime(2026, 3, 1, 10, tzinfo=utc),
        dt.datetime(2026, 3, 1, 11, tzinfo=utc),
        dt.datetime(2026, 3, 5, 0, tzinfo=utc),
    ]
    first_mark = hours[dt.datetime(2026, 3, 1, 10, tzinfo=utc)]
    assert first_mark >= NOW

    later = NOW + dt.timedelta(days=400)
    import_events(engine, write_csv(tmp_path / "b.csv", "org_a,late,api_calls,1,2026-03-01T10:20:00Z,"), now=later)
    with engine.connect() as conn:
        hours = dict(conn.execute(select(dirty_hours.c.hour, dirty_hours.c.marked_at)).all())
    assert hours[dt.datetime(2026, 3, 1, 10, tzinfo=utc)] >= later
    assert hours[dt.datetime(2026, 3, 5, 0, tzinfo=utc)] == first_mark


def test_jsonl_import_with_typed_values_and_malformed_lines(engine, tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [
        {
            "org_id": "org_a",
            "event_id": "j1",
            "metric": "storage_gb",
            "value": 2.5,
            "occurred_at": "2026-03-01T00:00:00Z",
            "properties": {"b": 1, "a": "x"},
        },
        {"org_id": "org_a", "event_id": "j2", "metric": "api_calls", "occurred_at": "2026-03-01T00:00:00Z"},
        {
            "org_id": "org_a",
            "event_id": 3,
            "metric": "storage_gb",
            "value": "1e2",
            "occurred_at": "2026-03-01T00:00:00Z",
        },
        {
            "org_id": "org_a",
            "event_id": "j4",
            "metric": "storage_gb",
            "value": True,
            "occurred_at": "2026-03-01T00:00:00Z",
        },
        {
            "org_id": "org_a",
            "event_id": "j5",
            "metric": "api_calls",
            "occurred_at": "2026-03-01T00:00:00Z",
            "properties": "not an object",
        },
    ]
    text = "\n".join(json.dumps(line) for line in lines)
    text += (
        '\n\n{"org_id": "org_a", "event_id": "j6", "metric": "storage_gb", "value": NaN, '
        '"occurred_at": "2026-03-01T00:00:00Z"}\n[1, 2]\n{broken\n'
    )
    path.write_text(text)
    summary = import_events(engine, path, now=NOW)
    check_invariant(summary)
    assert summary.accepted == 3
    assert summary.by_reason == {
        "non_numeric_value": 1,
        "invalid_properties": 1,
        "non_finite_value": 1,
        "malformed_line": 2,
    }
    assert [row["line_number"] for row in quarantine(engine)] == [4, 5, 7, 8, 9]
    events = stored(engine)
    assert events[("org_a", "j1")]["properties"] == {"a": "x", "b": 1}
    assert events[("org_a", "3")]["value_micros"] == 100_000_000


def test_gzip_input_and_explicit_metrics(engine, tmp_path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt") as out:
        out.write(
            f"{HEADER}\norg_a,g1,api_calls,1,2026-03-01T00:00:00Z,\norg_a,g2,storage_gb,1,2026-03-01T00:00:00Z,\n"
        )
    metrics = imports_db.load_latest_metrics(engine)
    assert set(metrics) == {"api_calls", "storage_gb", "payment_volume", "active_users"}
    only_calls = {"api_calls": metrics["api_calls"]}
    summary = import_events(engine, path, metrics=only_calls, known_orgs={"org_a"}, now=NOW)
    assert (summary.accepted, summary.by_reason) == (1, {"unknown_metric": 1})


def test_unusable_header_fails_before_anything_is_written(engine, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("org,id,what\norg_a,e1,api_calls\n")
    with pytest.raises(ImportFailed, match="lacks column"):
        import_events(engine, path, now=NOW)
    assert table_count(engine, usage_events) == 0
    with engine.connect() as conn:
        record = conn.execute(select(event_imports)).one()._mapping
    assert (record["status"], record["read"]) == ("failed", 0)


def test_crash_mid_import_keeps_committed_batches_and_rerun_completes(engine, tmp_path, monkeypatch):
    lines = [f"org_a,c{i},api_calls,1,2026-03-01T00:00:00Z," for i in range(10)]
    path = write_csv(tmp_path / "events.csv", *lines)
    original = pipeline._settle
    calls = {"n": 0}

    def failing_settle(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_settle", failing_settle)
    with pytest.raises(RuntimeError, match="simulated crash"):
        import_events(engine, path, now=NOW, batch_size=4)
    assert table_count(engine, usage_events) == 8  # two committed batches of four
    monkeypatch.setattr(pipeline, "_settle", original)

    summary = import_events(engine, path, now=NOW, batch_size=4)
    assert (summary.accepted, summary.duplicates) == (2, 8)
    assert table_count(engine, usage_events) == 10


def test_large_file_streams_in_constant_memory(engine, tmp_path):
    """200k rows through a child process: its peak RSS stays far below the file's weight
    in Python objects (~200 MB if held at once)."""
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write(HEADER + "\n")
        for i in range(200_000):
            out.write(f"org_{'ab'[i % 2]},big-{i:07d},api_calls,1,2026-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,\n")
    small = write_csv(tmp_path / "small.csv", "org_a,s1,api_calls,1,2026-03-01T00:00:00Z,")
    url = engine.url.render_as_string(hide_password=False)
    script = textwrap.dedent("""
        import datetime as dt, resource, sys
        from billing_pipeline.db.engine import get_engine
        from billing_pipeline.ingest import import_events
        summary = import_events(get_engine(sys.argv[1]), sys.argv[2], batch_size=10_000,
                                now=dt.datetime(2026, 4, 1, 12, tzinfo=dt.timezone.utc))
        print(summary.accepted, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)

    def run(file):
        out = subprocess.run(
            [sys.executable, "-c", script, url, str(file)], check=True, capture_output=True, text=True, timeout=300
        ).stdout.split()
        return int(out[0]), int(out[1])

    baseline_accepted, baseline_mb = run(small)
    accepted, peak_mb = run(path)
    assert (baseline_accepted, accepted) == (1, 200_000)
    assert peak_mb - baseline_mb < 60, (baseline_mb, peak_mb)


# --- the child parser process (PostgreSQL) ---------------------------------------------


def _die_after_two_batches(conn, *args):
    """A ``parse_worker`` stand-in (run in the spawned child) that dies abruptly."""
    import os

    from billing_pipeline.ingest import parse_process as child

    class Dying:
        sent = 0

        def send(self, message):
            if self.sent == 2:
                os._exit(3)
            conn.send(message)
            self.sent += 1

        def close(self):
            conn.close()

    child.parse_worker(Dying(), *args)


def _fail_in_child(conn, *args):
    from billing_pipeline.ingest import parse_process as child

    class Broken:
        def __init__(self, **options):
            raise ValueError("classifier exploded")

    child.Classifier = Broken
    child.parse_worker(conn, *args)


@pytest.fixture
def pg_engine(request, tmp_path, monkeypatch):
    request.applymarker(pytest.mark.integration)
    monkeypatch.setattr(parse_process, "PARSE_PROCESS_MIN_BYTES", 0)
    url = request.getfixturevalue("billing_db_url")
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
                for org in ("org_a", "org_b")
            ],
        )
        conn.execute(
            insert(catalog_versions),
            [{"version": 3, "document": CATALOG, "sha256": "3" * 64, "source": "catalog.yaml", "loaded_at": NOW}],
        )
    yield engine
    engine.dispose()


@pytest.mark.integration
def test_child_that_dies_raises_and_keeps_only_completed_batches(pg_engine, tmp_path, monkeypatch):
    lines = [f"org_a,d{i},api_calls,1,2026-03-01T00:00:00Z," for i in range(10)]
    path = write_csv(tmp_path / "events.csv", *lines)
    monkeypatch.setattr(parse_process, "parse_worker", _die_after_two_batches)
    with pytest.raises(ParserProcessError, match="exit code 3"):
        import_events(pg_engine, path, now=NOW, batch_size=4)
    assert table_count(pg_engine, usage_events) == 8  # two committed batches of four
    with pg_engine.connect() as conn:
        record = conn.execute(select(event_imports)).one()._mapping
    assert (record["read"], record["accepted"], record["status"]) == (8, 8, "failed")
    assert "exit code 3" in record["error"]
    monkeypatch.undo()

    summary = import_events(pg_engine, path, now=NOW, batch_size=4, parse_process=True)
    assert (summary.accepted, summary.duplicates) == (2, 8)
    assert table_count(pg_engine, usage_events) == 10


@pytest.mark.integration
def test_child_error_is_reported_with_its_traceback(pg_engine, tmp_path, monkeypatch):
    path = write_csv(tmp_path / "events.csv", "org_a,x1,api_calls,1,2026-03-01T00:00:00Z,")
    monkeypatch.setattr(parse_process, "parse_worker", _fail_in_child)
    with pytest.raises(ParserProcessError, match="classifier exploded"):
        import_events(pg_engine, path, now=NOW)
    assert table_count(pg_engine, usage_events) == 0


@pytest.mark.integration
@pytest.mark.parametrize("parse_process", [False, True])
def test_staged_conflicts_on_ids_that_need_copy_escaping(pg_engine, tmp_path, parse_process):
    """Keys with tabs, newlines and backslashes round-trip through the COPY text when the
    staged path reports a conflict with the stored row."""
    ids = ["tab\\there", "new\\nline", "back\\\\slash", "cr\\rhere"]  # JSON escapes
    first = tmp_path / "a.jsonl"
    first.write_text(
        "".join(
            f'{{"org_id": "org_a", "event_id": "{i}", "metric": "api_calls", "value": 1,'
            f' "occurred_at": "2026-03-01T00:00:00Z"}}\n'
            for i in ids
        )
    )
    import_events(pg_engine, first, now=NOW, parse_process=parse_process)
    second = tmp_path / "b.jsonl"
    second.write_text(
        "".join(
            f'{{"org_id": "org_a", "event_id": "{i}", "metric": "api_calls", "value": {v},'
            f' "occurred_at": "2026-03-01T00:00:00Z"}}\n'
            for i in ids
            for v in (2, 1, 2)
        )
    )
    summary = import_events(pg_engine, second, now=NOW, parse_process=parse_process)
    assert (summary.accepted, summary.duplicates, summary.quarantined) == (0, 4, 8)
    expected = {json.loads(f'"{i}"') for i in ids}
    rows = quarantine(pg_engine)
    assert {row["event_id"] for row in rows} == expected
    # Lines 3, 6, 9, 12 repeat lines 1, 4, 7, 10 byte for byte: counted, stored once.
    assert sorted(row["line_number"] for row in rows) == [1, 4, 7, 10]
    stored_conflicts = [row for row in rows if "already imported" in row["detail"]]
    assert len(stored_conflicts) == 4
    for row in stored_conflicts:
        assert json.loads(row["raw"])["event_id"] == row["event_id"]
        assert json.loads(row["raw"])["value"] == 2


# --- issue 9: every bad input answered, nothing lost, quarantine counted once -----------------

UNHOLDABLE = [
    # (line, reason or None when accepted): values and times the parser used to crash on or round
    ("org_a,u1,api_calls,1,2026-03-01T00:00:00Z,", None),
    ("org_a,u2,api_calls,1,9999-12-31T23:59:59-14:00,", "invalid_timestamp"),  # OverflowError in UTC
    ("org_a,u3,api_calls,1,0001-01-01T00:00:00+14:00,", "invalid_timestamp"),
    ("org_a,u4,storage_gb,1e99999999999999999999,2026-03-01T00:00:00Z,", "value_out_of_range"),  # InvalidOperation
    ("org_a,u5,storage_gb,1.0000000000000000000000000000001,2026-03-01T00:00:00Z,", "too_precise"),  # was 1
    ("org_a,u6,storage_gb,1e-9999999,2026-03-01T00:00:00Z,", "too_precise"),  # was 0
    ("org_a,u7,storage_gb,0.000001,2026-03-01T00:00:00Z,", None),
    ("org_a,u8,storage_gb,999999999999.999999,2026-03-01T00:00:00Z,", None),
    ("org_a,u9,api_calls,1,2026-03-01T01:00:00Z,", None),
]


@pytest.mark.parametrize("batch_size", [2, 50_000])
def test_values_and_times_beyond_what_can_be_held_are_quarantined_not_fatal(engine, tmp_path, batch_size):
    path = write_csv(tmp_path / "events.csv", *[line for line, _ in UNHOLDABLE])
    summary = import_events(engine, path, now=NOW, batch_size=batch_size)
    check_invariant(summary)
    assert [(row["line_number"], row["reason"]) for row in quarantine(engine)] == [
        (number, reason) for number, (_, reason) in enumerate(UNHOLDABLE, start=2) if reason
    ]
    events = stored(engine)
    assert {key[1] for key in events} == {"u1", "u7", "u8", "u9"}
    assert events[("org_a", "u7")]["value_micros"] == 1
    assert events[("org_a", "u8")]["value_micros"] == 999_999_999_999_999_999


def test_json_numbers_are_read_from_their_text(engine, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"org_id": "org_a", "event_id": "j1", "metric": "storage_gb", "value": 1.00000000000000000001,'
        ' "occurred_at": "2026-03-01T00:00:00Z"}\n'
        '{"org_id": "org_a", "event_id": "j2", "metric": "storage_gb", "value": 2.50,'
        ' "occurred_at": "2026-03-01T00:00:00Z", "properties": {"n": 1.10}}\n'
        '{"org_id": "org_a", "event_id": "j3", "metric": "storage_gb", "value": 1e99999999999999999999,'
        ' "occurred_at": "2026-03-01T00:00:00Z"}\n'
    )
    summary = import_events(engine, path, now=NOW)
    assert summary.by_reason == {"too_precise": 1, "value_out_of_range": 1}
    event = stored(engine)[("org_a", "j2")]
    assert (event["value_micros"], event["properties"]) == (2_500_000, {"n": 1.1})


def test_properties_over_the_limit_are_quarantined(engine, tmp_path):
    big = json.dumps({"k": "x" * 20_000}).replace('"', '""')
    small = json.dumps({"k": "x" * 100}).replace('"', '""')
    path = write_csv(
        tmp_path / "events.csv",
        f'org_a,p1,api_calls,1,2026-03-01T00:00:00Z,"{big}"',
        f'org_a,p2,api_calls,1,2026-03-01T00:00:00Z,"{small}"',
    )
    assert import_events(engine, path, now=NOW).by_reason == {"properties_too_large": 1}  # default 16 KiB
    summary = import_events(engine, path, now=NOW, max_properties_bytes=64)
    assert summary.by_reason == {"properties_too_large": 2}
    [row] = [r for r in quarantine(engine) if r["line_number"] == 3]
    assert "108 bytes of JSON (max 64)" in row["detail"]


def _bad_lines_file(path, good: int, bad_every: int):
    """``good`` distinct events; every ``bad_every``-th line is also a distinct bad line."""
    lines, bad = [], 0
    for i in range(good):
        lines.append(f"org_{'ab'[i % 2]},k{i},api_calls,1,2026-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,")
        if i % bad_every == 0:
            unknown_org = (i // bad_every) % 2
            lines.append(
                f"org_x,bad{i},api_calls,1,2026-03-01T00:00:00Z," if unknown_org else f"org_a,bad{i},api_calls"
            )
            bad += 1
    write_csv(path, *lines)
    return bad


def test_quarantine_holds_each_bad_line_once_however_often_it_is_imported(engine, tmp_path):
    path = tmp_path / "events.csv"
    bad = _bad_lines_file(path, good=300, bad_every=10)
    with path.open("a") as out:
        out.write("org_x,bad10,api_calls,1,2026-03-01T00:00:00Z,\n" * 3)  # a bad line, three more times
    for _ in range(3):
        summary = import_events(engine, path, now=NOW, batch_size=64)
        assert summary.quarantined == bad + 3  # every line counted by each import
    assert table_count(engine, quarantined_events) == bad
    assert quarantine_by_reason(engine) == {"malformed_line": (bad + 1) // 2, "unknown_org": bad // 2}


_KILLABLE_IMPORT = textwrap.dedent("""
    import datetime as dt, sys, time
    from billing_pipeline.db.engine import get_engine
    from billing_pipeline.ingest import import_events, parse_process, pipeline
    if sys.argv[3] == "process":
        parse_process.PARSE_PROCESS_MIN_BYTES = 0
    settle = pipeline._settle
    def slow_settle(*args):
        time.sleep(0.02)  # a slow database: the kill lands mid-import
        return settle(*args)
    pipeline._settle = slow_settle
    import_events(get_engine(sys.argv[1]), sys.argv[2], batch_size=200,
                  now=dt.datetime(2026, 4, 1, 12, tzinfo=dt.timezone.utc))
""")


def test_sigkill_mid_import_then_rerun_counts_everything_once(engine, tmp_path, request):
    path = tmp_path / "events.csv"
    bad = _bad_lines_file(path, good=20_000, bad_every=50)
    url = engine.url.render_as_string(hide_password=False)
    mode = "process" if request.node.callspec.params["engine"] == "postgresql-process" else "thread"
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE_IMPORT, url, str(path), mode])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            with engine.connect() as conn:
                read = conn.execute(select(func.coalesce(func.sum(event_imports.c.read), 0))).scalar_one()
            if read >= 2_000:
                break
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    with engine.connect() as conn:
        killed = conn.execute(select(event_imports)).one()._mapping
    assert killed["status"] == "running" and 0 < killed["read"] < 20_000 + bad
    assert table_count(engine, usage_events) == killed["accepted"]  # the row's counts are what is stored

    summary = import_events(engine, path, now=NOW, batch_size=200)
    assert (summary.accepted, summary.duplicates) == (20_000 - killed["accepted"], killed["accepted"])
    assert summary.quarantined == bad
    assert table_count(engine, usage_events) == 20_000
    assert table_count(engine, quarantined_events) == bad
    assert sum(quarantine_by_reason(engine).values()) == bad


def test_sqlite_key_lookup_is_index_backed(tmp_path):
    """Every query the SQLite import makes against usage_events searches its primary key:
    no SCAN, so a batch costs the same however large the table is (issue 9: 996 s for 1M)."""
    import sqlite3

    from sqlalchemy import create_engine, event

    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    traced: list[str] = []
    engine = create_engine(url)
    event.listen(engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(traced.append))
    path = tmp_path / "events.csv"
    _bad_lines_file(path, good=2_000, bad_every=100)
    for _ in range(2):  # the second import meets every key
        import_events(engine, path, now=NOW, metrics=_metrics(), known_orgs={"org_a", "org_b"}, batch_size=500)
    engine.dispose()
    reads = {s for s in traced if s.lstrip().upper().startswith("SELECT") and "usage_events" in s}
    assert reads
    conn = sqlite3.connect(tmp_path / "billing.db")
    conn.execute("ANALYZE")
    conn.execute("CREATE TEMP TABLE ingest_keys (pos INTEGER PRIMARY KEY, org_id TEXT, event_id TEXT)")
    for statement in reads:
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement))
        assert "SCAN usage_events" not in plan and "SCAN u" not in plan.split(" | ")[1:], plan
        assert "SEARCH u USING INDEX sqlite_autoindex_usage_events_1 (org_id=? AND event_id=?)" in plan, plan


def _metrics():
    from billing_pipeline.domain.catalog import parse_catalog

    return dict(parse_catalog(CATALOG).metrics)


def _gzip_events(path, count: int) -> bytes:
    lines = [f"org_a,g{i},api_calls,1,2026-03-01T{i % 24:02d}:00:00Z," for i in range(count)]
    data = gzip.compress(("\n".join([HEADER, *lines]) + "\n").encode(), compresslevel=1)
    path.write_bytes(data)
    return data


def _import_record(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(event_imports).order_by(event_imports.c.id.desc()).limit(1)).one()._mapping)


def _corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x55 for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("truncated.csv.gz", lambda data: data[: len(data) * 2 // 3], "truncated gzip file"),
        ("corrupt.csv.gz", _corrupt_middle, "corrupt gzip data"),
        ("plain.csv.gz", lambda data: gzip.decompress(data), "not a gzip file"),
        ("empty.csv.gz", lambda data: b"", "truncated gzip file"),  # what a killed `gzip > file` leaves
    ],
)
def test_a_broken_gzip_fails_the_import_with_one_line_and_a_rerun_completes(engine, tmp_path, name, make, problem):
    good = _gzip_events(tmp_path / "good.csv.gz", 20_000)
    path = tmp_path / name
    path.write_bytes(make(good))
    with pytest.raises(ImportFailed) as failure:
        import_events(engine, path, now=NOW, batch_size=1_000)
    message = str(failure.value)
    assert message.startswith(f"{path}: {problem}") and "\n" not in message and "re-run the import" in message
    record = _import_record(engine)
    assert record["status"] == "failed" and record["error"].startswith(f"{path}: {problem}")
    # A .gz file is read through before anything is stored: damaged deflate data can decode
    # to plausible lines (gzip checks its CRC only at the end).
    assert (record["read"], table_count(engine, usage_events), table_count(engine, quarantined_events)) == (0, 0, 0)
    assert "committed read 0 = accepted 0 + duplicates 0 + quarantined 0" in message

    path.write_bytes(good)
    summary = import_events(engine, path, now=NOW, batch_size=1_000)
    assert (summary.accepted, summary.duplicates, summary.quarantined) == (20_000, 0, 0)
    assert _import_record(engine)["status"] == "succeeded"
    assert table_count(engine, usage_events) == 20_000


@pytest.mark.parametrize(
    ("target", "problem"),
    [("missing.csv", "no such file"), ("a_directory.csv", "is a directory"), ("events.parquet", "unknown event file")],
)
def test_missing_file_directory_and_unknown_type_fail_with_one_line(engine, tmp_path, target, problem):
    (tmp_path / "a_directory.csv").mkdir()
    (tmp_path / "events.parquet").write_text("x")
    path = tmp_path / target
    with pytest.raises(ImportFailed, match=f"^{path}: {problem}"):
        import_events(engine, path, now=NOW)
    record = _import_record(engine)
    assert (record["status"], record["read"]) == ("failed", 0)


def test_invalid_header_is_echoed_short(engine, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("x" * 5_000_000 + "\norg_a,e1,api_calls,1,2026-03-01T00:00:00Z,\n")
    with pytest.raises(ImportFailed) as failure:
        import_events(engine, path, now=NOW)
    message = str(failure.value)
    assert "lacks column(s)" in message and "(5,000,000 characters)" in message and len(message) < 600


def _cli(engine, args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "BILLING_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "billing_pipeline.cli", "import-events", *args],
        env=env,
        capture_output=True,
        timeout=120,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("stdin", "problem"),
    [
        ("closed", "-: stdin is closed"),
        (bytes(range(256)) * 400, "CSV header b'"),  # binary: shown as escaped bytes, cut short
    ],
)
def test_cli_answers_unreadable_stdin_with_one_line(engine, stdin, problem):
    if stdin == "closed":
        result = _cli(engine, ["-"], preexec_fn=lambda: os.close(0))
    else:
        result = _cli(engine, ["-"], input=stdin)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert problem in stderr and len(stderr) < 700, stderr
    assert _import_record(engine)["status"] == "failed"


def test_cli_reads_gzip_on_stdin_and_the_properties_limit_setting(engine, tmp_path):
    lines = ["org_a,s1,api_calls,1,2026-03-01T00:00:00Z,", 'org_a,s2,api_calls,1,2026-03-01T00:00:00Z,"{""k"": 12345}"']
    data = gzip.compress(("\n".join([HEADER, *lines]) + "\n").encode())
    result = _cli(engine, ["-"], input=data, env={"INGEST_MAX_PROPERTIES_BYTES": "8"})
    assert result.returncode == 0, result.stderr
    assert "read 2 = accepted 1 + duplicates 0 + quarantined 1" in result.stdout.decode()
    assert "properties_too_large: 1" in result.stdout.decode()


def test_cli_truncated_gzip_exits_non_zero_with_one_line(engine, tmp_path):
    path = tmp_path / "events.csv.gz"
    data = _gzip_events(path, 5_000)
    path.write_bytes(data[: len(data) // 2])
    result = _cli(engine, [str(path), "--batch-size", "500"])
    stderr = result.stderr.decode()
    assert result.returncode == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(f"Error: {path}: truncated gzip file") and "re-run the import" in stderr


def test_truncated_gzip_on_stdin_keeps_what_was_committed_and_a_rerun_completes(engine, tmp_path):
    """Streamed gzip cannot be checked first: the batches before the cut are committed and
    counted in the failed import row; importing the whole file afterwards completes it."""
    data = _gzip_events(tmp_path / "events.csv.gz", 20_000)
    result = _cli(engine, ["-", "--batch-size", "1000"], input=data[: len(data) * 2 // 3])
    stderr = result.stderr.decode()
    assert result.returncode == 1 and stderr.startswith("Error: -: truncated gzip file"), stderr
    assert "after line" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    record = _import_record(engine)
    assert record["status"] == "failed" and record["accepted"] > 0
    assert record["accepted"] == record["read"] == table_count(engine, usage_events)
    assert f"committed read {record['read']:,} = accepted {record['accepted']:,}" in stderr

    summary = import_events(engine, tmp_path / "events.csv.gz", now=NOW, batch_size=1_000)
    assert (summary.accepted, summary.duplicates) == (20_000 - record["accepted"], record["accepted"])
    assert table_count(engine, usage_events) == 20_000


def test_migration_counts_old_doubled_quarantine_rows_once(tmp_path):
    from alembic import command

    from billing_pipeline.db.engine import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0002")
    old = get_engine(url)
    with old.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO event_imports (id, source, started_at, finished_at, read, accepted, duplicates, quarantined)"
            " VALUES (1, 'a.csv', '2026-11-01 00:00:00', '2026-11-01 00:01:00', 2, 0, 0, 2),"
            " (2, 'a.csv', '2026-11-02 00:00:00', NULL, 2, 0, 0, 2)"
        )
        for import_id in (1, 2):
            for raw in ("org_x,e1,api_calls,1,2026-03-01T00:00:00Z,", "garbage"):
                conn.exec_driver_sql(
                    "INSERT INTO quarantined_events (import_id, source, line_number, reason, detail, raw,"
                    f" quarantined_at) VALUES ({import_id}, 'a.csv', 1, 'unknown_org', 'd', '{raw}', '2026-11-01')"
                )
    old.dispose()
    migrate(url)
    engine = get_engine(url)
    rows = quarantine(engine)
    assert [(row["import_id"], row["raw"]) for row in rows] == [
        (1, "org_x,e1,api_calls,1,2026-03-01T00:00:00Z,"),
        (1, "garbage"),
    ]
    assert rows[1]["raw_sha256"] == hashlib.sha256(b"garbage").hexdigest()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id, status FROM event_imports ORDER BY id").all() == [
            (1, "succeeded"),
            (2, "running"),
        ]
