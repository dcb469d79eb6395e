"""Writing classified usage events: one transaction per batch, on SQLite or PostgreSQL.

A batch arrives as ``EventBatch``: its accepted rows as ``usage_events`` COPY text in key
order (the form PostgreSQL loads fastest, built once by the parser) plus a ``settle``
callback. In one transaction a writer stores the rows whose key is new, finds the keys
already stored (``stored``: row index -> stored payload sha256, for those whose payload
differs; equal payloads are replays), calls ``settle(stored)`` for the lines to
quarantine, inserts those (one row per distinct raw line: ``ON CONFLICT (raw_sha256) DO
NOTHING``, so re-imports count each bad line once), marks the dirty hours and adds the
batch's counts to its ``event_imports`` row. A crash loses at most the batch in flight.

SQLite (``SqliteWriter``): the keys go into a temporary table probed against the primary
key (``SEARCH usage_events USING INDEX``: time per row independent of the table's size).
PostgreSQL: ``db.event_copy.PostgresWriter``.
"""

from __future__ import annotations

import datetime as dt
import re
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Engine

from billing_pipeline.clock import utc_now

UTC = dt.UTC

#: Column limits of ``usage_events`` / ``quarantined_events`` (see ``db.schema``).
MAX_METRIC_CODE = 64
MAX_QUARANTINE_ID = 255
MAX_SOURCE = 1024
#: Quarantined raw text is cut to this many characters (its sha256 covers the whole line).
MAX_RAW_CHARS = 10_000


def storable_text(line: str) -> str:
    """Text as the database can hold it: no line ending, bad bytes and NULs shown as
    escapes, at most ``MAX_RAW_CHARS`` characters."""
    text = line.rstrip("\r\n")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = text.replace("\x00", "\\x00")
    if len(text) > MAX_RAW_CHARS:
        text = text[:MAX_RAW_CHARS] + "...[truncated]"
    return text


def _id_text(value: Any) -> str | None:
    if value is None:
        return None
    return storable_text(value if isinstance(value, str) else repr(value))[:MAX_QUARANTINE_ID]


class QuarantineEntry(NamedTuple):
    """One quarantined line, ready to store."""

    line_number: int
    org_id: str | None
    event_id: str | None
    reason: str
    detail: str
    raw: str
    raw_sha256: str

    @classmethod
    def of(cls, line_number: int, org_id: Any, event_id: Any, reason: str, detail: str, raw: str, sha: str):
        return cls(
            line_number, _id_text(org_id), _id_text(event_id), reason, storable_text(detail), storable_text(raw), sha
        )


@dataclass
class EventBatch:
    """The accepted rows of one batch, as the writers take them."""

    read: int  #: non-blank lines the batch covers
    count: int  #: rows (the first occurrence of each key in the batch)
    payload: bytes  #: their ``usage_events`` COPY lines, in key order
    order: array  #: ``order[p]``: the row index (file order) of the p-th payload line
    hours: list[str]  #: the distinct hours of the rows, ISO text


@dataclass
class Settlement:
    duplicates: int  #: further replays (repeats inside the file of a row that won)
    quarantine: list[QuarantineEntry]


#: ``settle(stored)``: ``stored`` maps a row index to the payload sha256 already stored
#: under its key, for the rows whose own payload differs.
Settle = Callable[[dict[int, str]], Settlement]


@dataclass
class BatchCounts:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    by_reason: Counter = field(default_factory=Counter)

    def add(self, other: BatchCounts) -> None:
        self.read += other.read
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.by_reason.update(other.by_reason)

    def settled(self, settlement: Settlement) -> None:
        self.duplicates += settlement.duplicates
        self.quarantined = len(settlement.quarantine)
        self.by_reason.update(entry.reason for entry in settlement.quarantine)


class EventWriter(Protocol):
    def write(self, batch: EventBatch, settle: Settle) -> BatchCounts: ...

    def close(self) -> None: ...


def open_writer(engine: Engine, import_id: int, source: str, now: dt.datetime) -> EventWriter:
    if engine.dialect.name == "postgresql":
        from billing_pipeline.db.event_copy import PostgresWriter

        return PostgresWriter(engine, import_id, source, now)
    return SqliteWriter(engine, import_id, source, now)


# --- COPY text: the format batches travel in ---------------------------------------------

_COPY_SPECIALS = re.compile(r"[\\\t\n\r]")
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPED = re.compile(r"\\(.)")


def copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_unescape(text: str) -> str:
    """The inverse of ``copy_escape``."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(1)], text)


def ingested_suffix(now: dt.datetime) -> str:
    """The ``ingested_at`` column of a COPY line, with its leading tab."""
    return "\t" + now.astimezone(UTC).isoformat(timespec="microseconds")


def copy_line(
    org: str, event: str, metric: str, micros: str, props: str | None, occurred: str, sha: str, ingested: str
) -> str:
    """One ``usage_events`` row as COPY text (``ingested`` from ``ingested_suffix``)."""
    props = "\\N" if props is None else copy_escape(props)
    if _COPY_SPECIALS.search(org + event + metric):
        org, event, metric = copy_escape(org), copy_escape(event), copy_escape(metric)
    return f"{org}\t{event}\t{metric}\t{micros}\t{props}\t{occurred}{ingested}\t{sha}\n"


def copy_fields(line: bytes) -> list[str]:
    """The eight columns of one COPY line (``None`` for ``\\N``)."""
    text = line.decode("utf-8")
    fields = text.split("\t")
    if "\\" in text:
        fields = [None if f == "\\N" else copy_unescape(f) for f in fields]
    return fields


# --- SQLite ----------------------------------------------------------------------------------

_SQLITE_KEYS_DDL = "CREATE TEMP TABLE IF NOT EXISTS ingest_keys (pos INTEGER PRIMARY KEY, org_id TEXT, event_id TEXT)"
# CROSS JOIN keeps ingest_keys outside: one primary-key probe of usage_events per key.
_SQLITE_STORED = (
    "SELECT k.pos, u.payload_sha256 FROM ingest_keys k CROSS JOIN usage_events u"
    " ON u.org_id = k.org_id AND u.event_id = k.event_id"
)
_SQLITE_INSERT = (
    "INSERT INTO usage_events (org_id, event_id, metric_code, value_micros, properties, occurred_at,"
    " ingested_at, payload_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_HOURS = (
    "INSERT INTO dirty_hours (hour, marked_at) VALUES (?, ?)"
    " ON CONFLICT (hour) DO UPDATE SET marked_at = excluded.marked_at"
)
_SQLITE_QUARANTINE = (
    "INSERT INTO quarantined_events (import_id, source, line_number, org_id, event_id, reason, detail, raw,"
    " raw_sha256, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (raw_sha256) DO NOTHING"
)
_SQLITE_COUNTS = (
    "UPDATE event_imports SET read = read + ?, accepted = accepted + ?, duplicates = duplicates + ?,"
    " quarantined = quarantined + ? WHERE id = ?"
)


def sqlite_time(iso: str) -> str:
    """ISO UTC text (``2026-03-01T10:00:00.000000+00:00``) as SQLAlchemy stores it on SQLite."""
    return f"{iso[:10]} {iso[11:26]}"


def _sqlite_now(now: dt.datetime) -> str:
    return sqlite_time(now.astimezone(UTC).isoformat(timespec="microseconds"))


class SqliteWriter:
    """The batches through the sqlite3 driver, set-based where it counts (the key lookup)."""

    def __init__(self, engine: Engine, import_id: int, source: str, now: dt.datetime) -> None:
        self.engine = engine
        self.import_id = import_id
        self.source = source
        self.ingested_at = now

    def close(self) -> None:
        pass

    def write(self, batch: EventBatch, settle: Settle) -> BatchCounts:
        counts = BatchCounts(read=batch.read)
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            # Write first: the transaction then holds SQLite's write lock, so the lookups
            # below cannot go stale before the inserts.
            cur.execute("UPDATE event_imports SET read = read WHERE id = ?", (self.import_id,))
            lines = batch.payload.split(b"\n")[:-1] if batch.count else []
            rows = [copy_fields(line) for line in lines]
            stored, new = self._stored(cur, rows, batch.order)
            counts.duplicates = len(rows) - len(new) - len(stored)
            if new:
                ingested = _sqlite_now(self.ingested_at)
                cur.executemany(
                    _SQLITE_INSERT,
                    [
                        (org, event, metric, int(micros), props, sqlite_time(occurred), ingested, sha)
                        for org, event, metric, micros, props, occurred, _, sha in new
                    ],
                )
                marked_at = _sqlite_now(max(self.ingested_at, utc_now()))
                hours = sorted({sqlite_time(row[5][:13] + ":00:00.000000") for row in new})
                cur.executemany(_SQLITE_HOURS, [(hour, marked_at) for hour in hours])
            counts.accepted = len(new)
            counts.settled(settlement := settle(stored))
            if settlement.quarantine:
                now = _sqlite_now(utc_now())
                cur.executemany(
                    _SQLITE_QUARANTINE,
                    [(self.import_id, self.source, *entry, now) for entry in settlement.quarantine],
                )
            cur.execute(
                _SQLITE_COUNTS,
                (counts.read, counts.accepted, counts.duplicates, counts.quarantined, self.import_id),
            )
        return counts

    @staticmethod
    def _stored(cur, rows: list[list[str]], order: array) -> tuple[dict[int, str], list[list[str]]]:
        """``(stored, new)``: conflicts by row index, and the rows whose key is new."""
        cur.execute(_SQLITE_KEYS_DDL)
        cur.execute("DELETE FROM ingest_keys")
        cur.executemany("INSERT INTO ingest_keys VALUES (?, ?, ?)", [(p, r[0], r[1]) for p, r in enumerate(rows)])
        found = dict(cur.execute(_SQLITE_STORED).fetchall())
        stored = {order[p]: sha for p, sha in found.items() if sha != rows[p][7]}
        return stored, [row for p, row in enumerate(rows) if p not in found]
