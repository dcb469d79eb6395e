"""PostgreSQL: batches of usage events by COPY (see ``db.event_writers`` for the contract).

While no key of a batch exists yet, its COPY text goes straight into ``usage_events`` (a
savepoint turns a unique violation into the staged path); otherwise it goes through the
temporary ``ingest_staging`` table and set-based SQL, one primary-key probe per row.
Quarantined lines go through ``ingest_quarantine`` into ``quarantined_events`` with
``ON CONFLICT (raw_sha256) DO NOTHING``.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine

from billing_pipeline.clock import utc_now
from billing_pipeline.db.event_writers import BatchCounts, EventBatch, Settle, Settlement

log = logging.getLogger(__name__)
UTC = dt.UTC

# The staging table takes the very COPY text of ``usage_events``: ``idx`` (a row's position
# in it) comes from a session-local sequence reset before each COPY, and the columns only
# compared stay text, so rows that turn out to be replays are never parsed as JSON or
# timestamps (the INSERT of the new ones casts).
_STAGING_DDL = (
    "CREATE TEMPORARY SEQUENCE IF NOT EXISTS ingest_staging_idx MINVALUE 0 START 0 CACHE 1000",
    """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_staging (
    idx integer NOT NULL DEFAULT nextval('ingest_staging_idx'),
    org_id text NOT NULL,
    event_id text NOT NULL,
    metric_code text NOT NULL,
    value_micros text NOT NULL,
    properties text,
    occurred_at text NOT NULL,
    ingested_at text NOT NULL,
    payload_sha256 text NOT NULL
) ON COMMIT DELETE ROWS
""",
    """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_quarantine (
    line_number bigint, org_id text, event_id text, reason text, detail text, raw text, raw_sha256 text
) ON COMMIT DELETE ROWS
""",
)
_DROP_STAGING = (
    "DROP TABLE IF EXISTS ingest_staging",
    "DROP TABLE IF EXISTS ingest_quarantine",
    "DROP SEQUENCE IF EXISTS ingest_staging_idx",
)
_RESET_STAGING_IDX = "SELECT setval('ingest_staging_idx', 0, false)"

_COPY_EVENTS = (
    "COPY usage_events (org_id, event_id, metric_code, value_micros, properties, occurred_at,"
    " ingested_at, payload_sha256) FROM STDIN"
)
_COPY_STAGING = (
    "COPY ingest_staging (org_id, event_id, metric_code, value_micros, properties,"
    " occurred_at, ingested_at, payload_sha256) FROM STDIN"
)
_COPY_QUARANTINE = "COPY ingest_quarantine (line_number, org_id, event_id, reason, detail, raw, raw_sha256) FROM STDIN"
_INSERT_QUARANTINE = """
INSERT INTO quarantined_events (import_id, source, line_number, org_id, event_id, reason, detail, raw,
                                raw_sha256, quarantined_at)
SELECT %(import_id)s, %(source)s, line_number, org_id, event_id, reason, detail, raw, raw_sha256, %(now)s
FROM ingest_quarantine ORDER BY line_number
ON CONFLICT (raw_sha256) DO NOTHING
"""

# Rows whose key is already stored leave the staging table; the conflicting ones come
# back with the stored hash, the replays only as a count (idx -1).
_TAKE_EXISTING = """
WITH existing AS (
    DELETE FROM ingest_staging s USING usage_events u
    WHERE u.org_id = s.org_id AND u.event_id = s.event_id
    RETURNING s.idx, s.payload_sha256 = u.payload_sha256 AS same, u.payload_sha256 AS stored
)
SELECT idx, stored FROM existing WHERE NOT same
UNION ALL
SELECT -1, count(*)::text FROM existing WHERE same
"""

_ON_CONFLICT = "ON CONFLICT (org_id, event_id) DO NOTHING"
_INSERT_NEW = """
WITH inserted AS (
    INSERT INTO usage_events (org_id, event_id, metric_code, value_micros, properties,
                              occurred_at, ingested_at, payload_sha256)
    SELECT org_id, event_id, metric_code, value_micros::bigint, properties::json,
           occurred_at::timestamptz, ingested_at::timestamptz, payload_sha256
    FROM ingest_staging
    ORDER BY org_id, event_id
    {on_conflict}
    RETURNING occurred_at
), hours AS (
    INSERT INTO dirty_hours (hour, marked_at)
    SELECT DISTINCT date_trunc('hour', occurred_at, 'UTC'), %(marked_at)s FROM inserted
    ON CONFLICT (hour) DO UPDATE SET marked_at = EXCLUDED.marked_at
)
SELECT count(*) FROM inserted
"""

# After a lost race with a concurrent import: which of the rows we could not insert differ.
_RACE_CONFLICTS = """
SELECT s.idx, u.payload_sha256 FROM ingest_staging s
JOIN usage_events u ON u.org_id = s.org_id AND u.event_id = s.event_id
WHERE u.payload_sha256 <> s.payload_sha256
"""

_MARK_HOURS = """
INSERT INTO dirty_hours (hour, marked_at)
SELECT unnest(%(hours)s::timestamptz[]), %(marked_at)s
ON CONFLICT (hour) DO UPDATE SET marked_at = EXCLUDED.marked_at
"""

_COUNT_IMPORT = """
UPDATE event_imports SET read = read + %(read)s, accepted = accepted + %(accepted)s,
    duplicates = duplicates + %(duplicates)s, quarantined = quarantined + %(quarantined)s
WHERE id = %(id)s
"""


class PostgresWriter:
    """COPY-based batches on one kept connection (psycopg 3)."""

    def __init__(self, engine: Engine, import_id: int, source: str, now: dt.datetime) -> None:
        import psycopg  # the PostgreSQL driver; only needed here

        self._errors = psycopg.errors
        self.import_id = import_id
        self.source = source
        self.ingested_at = now
        self._dbapi = engine.raw_connection()
        self.conn = self._dbapi.driver_connection
        self.direct = True
        with self.conn.transaction():
            for statement in _STAGING_DDL:
                self.conn.execute(statement)

    def close(self) -> None:
        try:
            if not self.conn.closed:
                self.conn.rollback()
                with self.conn.transaction():
                    for statement in _DROP_STAGING:
                        self.conn.execute(statement)
        finally:
            self._dbapi.close()

    def _marked_at(self) -> dt.datetime:
        return max(self.ingested_at, utc_now())

    def write(self, batch: EventBatch, settle: Settle) -> BatchCounts:
        for attempt in range(3):
            try:
                return self._write(batch, settle)
            except self._errors.DeadlockDetected:
                # Two imports inserting overlapping keys in opposite orders; the batch's
                # transaction rolled back whole, so it can simply run again.
                if attempt == 2:
                    raise
                self.direct = False
                log.warning("deadlock writing a batch of %s; retrying", self.source)
        raise AssertionError("unreachable")

    def _write(self, batch: EventBatch, settle: Settle) -> BatchCounts:
        counts = BatchCounts(read=batch.read)
        with self.conn.transaction():
            cur = self.conn.cursor()
            stored: dict[int, str] = {}
            if batch.count and not (self.direct and self._copy_direct(cur, batch, counts)):
                stored = self._staged(cur, batch, counts)
                # Back to direct COPY once batches stop meeting stored keys.
                self.direct = counts.duplicates == 0 and not stored
            settlement = settle(stored)
            counts.settled(settlement)
            if settlement.quarantine:
                self._quarantine(cur, settlement)
            cur.execute(
                _COUNT_IMPORT,
                {
                    "read": counts.read,
                    "accepted": counts.accepted,
                    "duplicates": counts.duplicates,
                    "quarantined": counts.quarantined,
                    "id": self.import_id,
                },
            )
        return counts

    def _copy_direct(self, cur, batch: EventBatch, counts: BatchCounts) -> bool:
        """COPY straight into ``usage_events``; ``False`` (nothing written) if a key exists."""
        try:
            with self.conn.transaction():
                with cur.copy(_COPY_EVENTS) as copy:
                    copy.write(batch.payload)
        except self._errors.UniqueViolation:
            self.direct = False
            return False
        counts.accepted = batch.count
        cur.execute(_MARK_HOURS, {"hours": batch.hours, "marked_at": self._marked_at()})
        return True

    def _staged(self, cur, batch: EventBatch, counts: BatchCounts) -> dict[int, str]:
        """Stage, take out the stored keys, insert the rest; conflicts by row index."""
        # Probing the primary key per staged row beats hashing the whole table, which is
        # what the planner picks once usage_events has grown.
        cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute("SET LOCAL enable_mergejoin = off")
        cur.execute(_RESET_STAGING_IDX)
        with cur.copy(_COPY_STAGING) as copy:
            copy.write(batch.payload)
        stored: dict[int, str] = {}
        replays = 0
        for idx, value in cur.execute(_TAKE_EXISTING).fetchall():
            if idx == -1:
                replays = int(value)
            else:
                stored[batch.order[idx]] = value
        remaining = batch.count - replays - len(stored)
        inserted = 0
        if remaining:
            params = {"marked_at": self._marked_at()}
            try:
                # The keys left are new unless a concurrent import races us: a plain
                # INSERT skips ON CONFLICT's extra index probe per row.
                with self.conn.transaction():
                    inserted = cur.execute(_INSERT_NEW.format(on_conflict=""), params).fetchone()[0]
            except self._errors.UniqueViolation:
                inserted = cur.execute(_INSERT_NEW.format(on_conflict=_ON_CONFLICT), params).fetchone()[0]
            if inserted < remaining:  # a concurrent import stored some keys first
                raced = cur.execute(_RACE_CONFLICTS).fetchall()
                stored.update((batch.order[idx], value) for idx, value in raced)
                replays += remaining - inserted - len(raced)
        counts.accepted = inserted
        counts.duplicates = replays
        return stored

    def _quarantine(self, cur, settlement: Settlement) -> None:
        with cur.copy(_COPY_QUARANTINE) as copy:
            for entry in settlement.quarantine:
                copy.write_row(entry)
        cur.execute(_INSERT_QUARANTINE, {"import_id": self.import_id, "source": self.source, "now": utc_now()})
