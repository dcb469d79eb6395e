"""Usage-event import: one CSV / JSON Lines file in; events, quarantine and dirty hours out.

``import_events(engine, path, metrics=...)`` streams the file in batches (constant memory),
validates every line with ``domain.events.validate_event`` and writes each batch in one
transaction: new events, quarantined lines, the hours they touched (``dirty_hours``) and
the running counts of the ``event_imports`` row. A crash loses at most the batch in
flight; re-running the same file then completes it, because events are idempotent on
``(org_id, event_id)``:

* same id, same ``payload_fingerprint`` -> a duplicate, ignored (a replay);
* same id, different payload -> quarantined as ``conflicting_duplicate``; the payload
  already stored (or else the first occurrence in the file) wins.

Quarantine reasons are ``domain.events.RejectReason`` values plus ``malformed_line``
(unreadable line, or text PostgreSQL cannot store), ``too_precise`` /
``value_out_of_range`` (numbers ``domain.quantity.to_micros`` refuses; the domain
reports them as ``non_numeric_value``) and ``conflicting_duplicate``. Every non-blank
line is counted once: ``read == accepted + duplicates + quarantined``.

Speed (PostgreSQL): rows in the common clean shape (known org and metric, plain decimal
value, ``...Z`` timestamp, printable-ASCII id) take a string-only fast path that returns
exactly what the domain functions would (unit tests compare the two on fixed and random
rows); anything else goes through the domain functions. Batches are COPYed as
preformatted text in key order straight into ``usage_events`` while no key collides (a
savepoint catches the unique violation); batches that meet stored keys go through a
temporary staging table (the same COPY text, compared columns left as text) and
set-based SQL (one primary-key probe per row). Files of ``PARSE_PROCESS_MIN_BYTES`` or
more are read, classified and turned into COPY text by a child process
(``_ParserProcess``), a couple of batches ahead, so parsing and the database use both
cores instead of sharing one GIL; this process then only talks to PostgreSQL. Smaller
files and stdin are parsed in this process while a writer thread does the database
work on the previous batch. SQLite takes the same batches through executemany.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import multiprocessing.connection
import os
import pickle
import queue
import re
import subprocess
import sys
import threading
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, insert, select, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from billing_pipeline.db import event_files
from billing_pipeline.db.event_files import EventFormat, MalformedLine
from billing_pipeline.db.schema import (
    catalog_versions,
    dirty_hours,
    event_imports,
    organizations,
    quarantined_events,
    usage_events,
)
from billing_pipeline.domain.catalog import Metric, parse_catalog
from billing_pipeline.domain.events import (
    Rejection,
    RejectReason,
    UsageEvent,
    payload_fingerprint,
    validate_event,
)
from billing_pipeline.domain.quantity import MAX_ABS_VALUE, QuantityError, to_micros

log = logging.getLogger(__name__)

UTC = dt.UTC

# Quarantine reasons added by the import (the rest are ``domain.events.RejectReason``).
MALFORMED_LINE = "malformed_line"
TOO_PRECISE = "too_precise"
VALUE_OUT_OF_RANGE = "value_out_of_range"
CONFLICTING_DUPLICATE = "conflicting_duplicate"

#: Column limits of ``usage_events`` / ``quarantined_events`` (see ``db.schema``).
MAX_METRIC_CODE = 64
MAX_QUARANTINE_ID = 255
MAX_SOURCE = 1024


@dataclass(frozen=True)
class ImportSummary:
    import_id: int
    source: str
    read: int
    accepted: int
    duplicates: int
    quarantined: int
    by_reason: dict[str, int]
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0


def load_latest_metrics(engine: Engine) -> dict[str, Metric]:
    """The metrics of the newest catalog version (max ``catalog_versions.version``)."""
    with engine.connect() as conn:
        document = conn.execute(
            select(catalog_versions.c.document).order_by(catalog_versions.c.version.desc()).limit(1)
        ).scalar_one_or_none()
    if document is None:
        raise LookupError("no catalog loaded: catalog_versions is empty")
    if isinstance(document, str):
        document = json.loads(document)
    return dict(parse_catalog(document).metrics)


def load_org_ids(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(conn.execute(select(organizations.c.id)).scalars())


def import_events(
    engine: Engine,
    path: Path | str,
    *,
    metrics: Mapping[str, Metric] | None = None,
    known_orgs: Collection[str] | None = None,
    now: dt.datetime | None = None,
    batch_size: int = 50_000,
    source_name: str | None = None,
    max_future: dt.timedelta = dt.timedelta(hours=1),
    fmt: EventFormat | None = None,
    parse_process: bool | None = None,
) -> ImportSummary:
    """Import the events of ``path`` (``.csv``, ``.jsonl``/``.ndjson``, optionally ``.gz``;
    ``-`` reads stdin, format sniffed) and return what happened to its lines.

    ``metrics`` defaults to the latest catalog, ``known_orgs`` to every organization id,
    ``now`` (the clock for future-timestamp checks and ``ingested_at``) to the current
    time. Raises ``event_files.EventFileError`` before writing anything if the file type
    or CSV header is unusable; bad lines never raise, they are quarantined.

    ``parse_process`` (PostgreSQL, files only): read and classify the file in a child
    process, so the parsing runs on another core than the database work; by default
    for files of ``PARSE_PROCESS_MIN_BYTES`` or more. ``ParserProcessError`` if that
    child fails; the batches committed before stay (re-running completes the import).
    """
    started = time.perf_counter()
    now = now or dt.datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    if metrics is None:
        metrics = load_latest_metrics(engine)
    too_long = [code for code in metrics if len(code) > MAX_METRIC_CODE]
    if too_long:
        raise ValueError(f"metric codes longer than {MAX_METRIC_CODE} characters: {too_long}")
    if known_orgs is None:
        known_orgs = load_org_ids(engine)
    if fmt is None and str(path) != "-":
        fmt = event_files.detect_format(path)
    source = event_files.printable_raw(source_name or str(path))[:MAX_SOURCE]
    options = {"known_orgs": known_orgs, "metrics": metrics, "now": now, "max_future": max_future}
    classifier = _Classifier(**options)
    postgres = engine.dialect.name == "postgresql"
    if not postgres or str(path) == "-":
        parse_process = False
    elif parse_process is None:
        parse_process = _worth_a_process(path)
    totals = _Counts()
    with event_files.open_event_file(path) as stream:
        reader = _BatchReader(stream, fmt, classifier, batch_size)
        reader.read_header()
        parser = None
        if parse_process:
            # The child reads the file again from the start (the header is settled).
            options["known_orgs"] = frozenset(known_orgs)
            options["metrics"] = dict(metrics)
            parser = _ParserProcess(path, reader.fmt, options, batch_size)
        try:
            import_id = _start_import(engine, source, now)
            writer: _Writer = (
                _PostgresWriter(engine, import_id, source, now)
                if postgres
                else _SqliteWriter(engine, import_id, source, now)
            )
            try:
                if parser is not None:
                    # The child parses ahead while this process is in the database.
                    for packed in parser:
                        totals.add(writer.write(packed))
                elif postgres:
                    # One batch in the database while the next is parsed.
                    with ThreadPoolExecutor(1, thread_name_prefix="ingest-writer") as pool:
                        pending = None
                        for batch in reader:
                            packed = _pack(batch)
                            if pending is not None:
                                totals.add(pending.result())
                            pending = pool.submit(writer.write, packed)
                        if pending is not None:
                            totals.add(pending.result())
                else:
                    for batch in reader:
                        totals.add(writer.write(batch))
            finally:
                writer.close()
        finally:
            if parser is not None:
                parser.close()
    _finish_import(engine, import_id)
    assert totals.read == totals.accepted + totals.duplicates + totals.quarantined, totals
    summary = ImportSummary(
        import_id=import_id,
        source=source,
        read=totals.read,
        accepted=totals.accepted,
        duplicates=totals.duplicates,
        quarantined=totals.quarantined,
        by_reason=dict(sorted(totals.by_reason.items())),
        seconds=time.perf_counter() - started,
    )
    log.info("imported %s: %s", source, summary)
    return summary


# --- bookkeeping ----------------------------------------------------------------------


@dataclass
class _Counts:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    by_reason: Counter = field(default_factory=Counter)

    def add(self, other: _Counts) -> None:
        self.read += other.read
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.by_reason.update(other.by_reason)


def _start_import(engine: Engine, source: str, now: dt.datetime) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(event_imports)
            .values(source=source, started_at=now, read=0, accepted=0, duplicates=0, quarantined=0)
            .returning(event_imports.c.id)
        ).scalar_one()


def _finish_import(engine: Engine, import_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(event_imports).where(event_imports.c.id == import_id).values(finished_at=dt.datetime.now(UTC))
        )


# --- validation -----------------------------------------------------------------------

#: An accepted event: (org_id, event_id, metric_code, value_micros text, canonical
#: properties JSON or None, occurred_at as ISO UTC with microseconds, sha256, and the
#: whole row as a line of COPY text for ``usage_events`` (built once, where it is cheap)).
Row = tuple

_VALUE_RE = re.compile(r"-?(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,6})?")
_TS_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.([0-9]{1,6}))?(?:Z|\+00:00)"
)
#: Ids the fast path takes: printable ASCII without space or backslash (COPY-safe).
_PLAIN_ID_RE = re.compile(r"[!-\[\]-~]{1,255}")
_COPY_SPECIALS = re.compile(r"[\\\t\n\r]")
_ZEROS = "000000"
_PROPS_CACHE_LIMIT = 100_000


def _storable(text: str) -> bool:
    """PostgreSQL text holds no NUL, and the wire needs valid UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _canonical_properties(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _Classifier:
    """Turns one line's fields into a ``Row`` or a quarantine reason.

    ``fast`` handles the common clean shape with string operations only and returns
    ``None`` whenever it is not sure; ``slow`` is the reference (the domain functions).
    Both must give identical rows for every input ``fast`` accepts.
    """

    def __init__(
        self, *, known_orgs: Collection[str], metrics: Mapping[str, Metric], now: dt.datetime, max_future: dt.timedelta
    ) -> None:
        self.known_orgs = known_orgs
        self.metrics = metrics
        self.now = now
        self.max_future = max_future
        self.org_json = {
            org: json.dumps(org, ensure_ascii=False)
            for org in known_orgs
            if isinstance(org, str) and _PLAIN_ID_RE.fullmatch(org)
        }
        self.metric_info = {
            code: (json.dumps(code, ensure_ascii=False), metric.allow_negative, code)
            for code, metric in metrics.items()
            if _PLAIN_ID_RE.fullmatch(code)
        }
        self.ingested_copy = "\t" + now.astimezone(UTC).isoformat(timespec="microseconds")
        self.future_limit = (now + max_future).astimezone(UTC).isoformat(timespec="microseconds")
        self._props: dict[str, str | None] = {}
        self._dates: dict[str, bool] = {}

    def fast(
        self, org_id: Any, event_id: Any, metric: Any, value: Any, occurred_at: Any, properties: Any
    ) -> Row | None:
        org_json = self.org_json.get(org_id)
        info = self.metric_info.get(metric)
        if org_json is None or info is None:
            return None
        if type(value) is not str:
            if type(value) is int:
                value = str(value)
            elif type(value) is float:
                value = repr(value)
            else:
                return None
        if _VALUE_RE.fullmatch(value) is None:
            return None
        if "." in value:
            whole, _, fraction = value.partition(".")
            micros = whole + fraction + _ZEROS[len(fraction) :]
            if whole == "0" or whole == "-0":
                micros = str(int(micros))  # no leading zeros: "0.5" -> "500000"
            value = value.rstrip("0").rstrip(".")
        elif value == "0" or value == "-0":
            micros = "0"
        else:
            micros = value + _ZEROS
        if value[0] == "-":
            if value == "-0":
                value = "0"
            elif not info[1]:
                return None
        stamp = _TS_RE.fullmatch(occurred_at)
        if stamp is None:
            return None
        date = stamp.group(1)
        ok = self._dates.get(date)
        if ok is None:
            ok = self._dates[date] = _valid_date(date)
        if not ok:
            return None
        fraction = stamp.group(2) or ""
        occurred = f"{occurred_at[:19]}.{fraction}{_ZEROS[len(fraction) :]}+00:00"
        if occurred > self.future_limit:
            return None
        if not properties:
            props = None
            props_json = "null"
        elif type(properties) is str:
            cache = self._props
            if properties in cache:
                props = cache[properties]
            else:
                props = _properties_from_text(properties)
                if len(cache) >= _PROPS_CACHE_LIMIT:
                    cache.clear()
                cache[properties] = props
            if props is None:
                return None
            props_json = props
        elif type(properties) is dict:
            try:
                props = props_json = _canonical_properties(properties)
            except (TypeError, ValueError):
                return None
        else:
            return None
        if type(event_id) is not str or _PLAIN_ID_RE.fullmatch(event_id) is None:
            return None
        fingerprint = (
            f'{{"metric":{info[0]},"occurred_at":"{occurred}","org_id":{org_json},'
            f'"properties":{props_json},"value":"{value}"}}'
        )
        try:
            sha = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()
        except UnicodeEncodeError:
            return None
        if props is not None and "\\" in props:
            props_copy = props.replace("\\", "\\\\")
        else:
            props_copy = "\\N" if props is None else props
        line = f"{org_id}\t{event_id}\t{info[2]}\t{micros}\t{props_copy}\t{occurred}{self.ingested_copy}\t{sha}\n"
        return (org_id, event_id, metric, micros, props, occurred, sha, line)

    def slow(self, raw: Mapping[str, object]) -> Row | tuple[str, str]:
        """The reference path: a ``Row``, or ``(reason, detail)`` to quarantine."""
        result = validate_event(
            raw, known_orgs=self.known_orgs, metrics=self.metrics, now=self.now, max_future=self.max_future
        )
        if isinstance(result, Rejection):
            reason = result.reason.value
            if result.reason is RejectReason.NON_NUMERIC_VALUE:
                reason = _quantity_reason(raw.get("value")) or reason
            return (reason, result.detail)
        event: UsageEvent = result
        try:
            micros = to_micros(event.value)
        except QuantityError as exc:
            reason = VALUE_OUT_OF_RANGE if abs(event.value) >= MAX_ABS_VALUE else TOO_PRECISE
            return (reason, str(exc))
        for name in ("org_id", "event_id", "metric_code"):
            if not _storable(getattr(event, name)):
                return (MALFORMED_LINE, f"{name} contains a NUL character or invalid UTF-8")
        try:
            sha = payload_fingerprint(event)
            props = None
            if event.properties is not None:
                props = _canonical_properties(event.properties)
                props.encode("utf-8")
        except UnicodeEncodeError:
            return (MALFORMED_LINE, "properties contain invalid UTF-8 (lone surrogates)")
        occurred = event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
        row = (event.org_id, event.event_id, event.metric_code, str(micros), props, occurred, sha)
        return row + (_copy_line(row, self.ingested_copy),)


_DECIMAL_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _quantity_reason(value: object) -> str | None:
    """``too_precise`` / ``value_out_of_range`` when ``value`` is a finite number that
    ``to_micros`` refuses (the domain reports those as non-numeric); else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str) and _DECIMAL_RE.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        return None
    if not number.is_finite():
        return None
    try:
        to_micros(number)
    except QuantityError:
        return VALUE_OUT_OF_RANGE if abs(number) >= MAX_ABS_VALUE else TOO_PRECISE
    return None


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _properties_from_text(text: str) -> str | None:
    if text[0] != "{":
        return None
    try:
        value = json.loads(text)
        if type(value) is not dict:
            return None
        return _canonical_properties(value)
    except (ValueError, RecursionError):
        return None


# --- reading --------------------------------------------------------------------------


@dataclass
class _Batch:
    """Up to ``batch_size`` lines, classified. ``rows[i]`` came from ``lines[i]``/``raws[i]``
    and is the first occurrence of its key in the batch; later occurrences are
    ``repeats`` ``(first index, key, first sha, first line number, sha, line number,
    raw)``, settled once the database has said which payload won. Keys first seen in the
    previous batch are ``carried`` rather than written again, so retries close together
    in a file never touch the database."""

    rows: list[Row] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    repeats: list[tuple[int, tuple[str, str], str, int, str, int, str]] = field(default_factory=list)
    #: Repeats of a key first seen in the previous batch:
    #: ``(key, earlier sha, earlier line number, sha, line number, raw)``.
    carried: list[tuple[tuple[str, str], str, int, str, int, str]] = field(default_factory=list)
    quarantine: list[tuple[int, Any, Any, str, str, str]] = field(default_factory=list)
    read: int = 0


class _BatchReader:
    def __init__(self, stream: TextIO, fmt: EventFormat | None, classifier: _Classifier, batch_size: int) -> None:
        self._stream = stream
        self._lines = enumerate(stream, start=1)
        self.fmt = fmt
        self.classifier = classifier
        self.batch_size = batch_size
        self.layout: event_files.CsvLayout | None = None
        self._pending: tuple[int, str] | None = None

    def read_header(self) -> None:
        """Settle the format (sniffed on stdin) and read the CSV header, before any write."""
        for number, line in self._lines:
            if not line.strip():
                continue
            if self.fmt is None:
                self.fmt = event_files.sniff_format(line)
            if self.fmt is EventFormat.CSV:
                self.layout = event_files.parse_csv_header(line)
            else:
                self._pending = (number, line)
            return
        self.fmt = self.fmt or EventFormat.CSV

    def __iter__(self) -> Iterator[_Batch]:
        lines = self._lines
        if self._pending is not None:
            first = self._pending
            self._pending = None
            lines = _chain_one(first, lines)
        if self.fmt is EventFormat.JSONL:
            yield from self._batches(lines, self._jsonl_fields)
        elif self.layout is not None:
            yield from self._batches(lines, self._csv_splitter(self.layout))

    @staticmethod
    def _jsonl_fields(text: str):
        obj = event_files.jsonl_object(text)
        return (
            obj.get("org_id"),
            obj.get("event_id"),
            obj.get("metric"),
            obj.get("value"),
            obj.get("occurred_at"),
            obj.get("properties"),
        ), obj

    @staticmethod
    def _csv_splitter(layout: event_files.CsvLayout):
        columns = layout.columns
        positions = layout.positions
        canonical = columns == 6 and positions == (0, 1, 2, 3, 4, 5)
        props_last = positions[5] == columns - 1
        pick = None
        if not canonical:
            missing = columns  # index of the '' appended to each row
            indices = [missing if p is None else p for p in positions]

            def pick(parts: list[str]) -> tuple:
                parts.append("")
                return tuple([parts[i] for i in indices])

        def split(text: str):
            if '"' in text:
                parts = None
                if props_last:
                    parts = text.split(",", columns - 1)
                    last = parts[-1]
                    if (
                        len(parts) == columns
                        and len(last) >= 2
                        and last[0] == '"'
                        and last[-1] == '"'
                        and text.find('"') == len(text) - len(last)
                        and '"' not in last[1:-1].replace('""', "")
                    ):
                        parts[-1] = last[1:-1].replace('""', '"')
                    else:
                        parts = None
                if parts is None:
                    parts = event_files.split_csv_line(text, columns)
            else:
                parts = text.split(",")
                if len(parts) != columns:
                    raise MalformedLine(f"expected {columns} fields, got {len(parts)}")
            fields = parts if pick is None else pick(parts)
            return fields, None

        return split

    def _batches(self, lines, split) -> Iterator[_Batch]:
        classifier = self.classifier
        fast = classifier.fast
        slow = classifier.slow
        batch_size = self.batch_size
        batch = _Batch()
        rows, numbers, raws, repeats, quarantine = (
            batch.rows,
            batch.lines,
            batch.raws,
            batch.repeats,
            batch.quarantine,
        )
        seen: dict[tuple[str, str], int] = {}
        previous: dict[tuple[str, str], int] = {}
        previous_rows: list[Row] = []
        previous_lines: list[int] = []
        read = 0
        for number, line in lines:
            text = line.rstrip("\r\n")
            if not text or text.isspace():
                continue
            read += 1
            try:
                fields, obj = split(text)
            except MalformedLine as exc:
                quarantine.append((number, None, None, MALFORMED_LINE, str(exc), line))
            else:
                try:
                    row = fast(*fields)
                except (TypeError, ValueError):
                    row = None
                if row is None:
                    row = slow(obj if obj is not None else event_files.as_raw_event(fields))
                    if len(row) == 2:
                        quarantine.append((number, fields[0], fields[1], row[0], row[1], line))
                        row = None
                if row is not None:
                    key = (row[0], row[1])
                    first = seen.get(key)
                    if first is not None:
                        repeats.append((first, key, rows[first][6], numbers[first], row[6], number, line))
                    elif (earlier := previous.get(key)) is not None:
                        batch.carried.append(
                            (key, previous_rows[earlier][6], previous_lines[earlier], row[6], number, line)
                        )
                    else:
                        seen[key] = len(rows)
                        rows.append(row)
                        numbers.append(number)
                        raws.append(line)
            if read >= batch_size:
                batch.read = read
                yield batch
                previous, previous_rows, previous_lines = seen, rows, numbers
                batch = _Batch()
                rows, numbers, raws, repeats, quarantine = (
                    batch.rows,
                    batch.lines,
                    batch.raws,
                    batch.repeats,
                    batch.quarantine,
                )
                seen = {}
                read = 0
        if read:
            batch.read = read
            yield batch


def _chain_one(first, rest):
    yield first
    yield from rest


#: A row whose key the database already holds with another payload:
#: ``(stored sha, key, sha, line number, raw line)``.
_Conflict = tuple


@dataclass
class _Packed:
    """A ``_Batch`` as the PostgreSQL writer needs it, cheap to pickle: the rows only as
    ready COPY text, plus what settling conflicts needs (looked at only when there are)."""

    read: int
    count: int  #: rows (first occurrences of their key) to write
    payload: bytes  #: their ``usage_events`` COPY lines, sorted (key order)
    order: array  #: ``order[p]``: the row index (file order) of the p-th payload line
    hours: list[str]  #: the distinct hours of the rows (ISO text)
    lines: array  #: line number of each row (file order)
    raws: bytes  #: raw line of each row (file order), UTF-8 with surrogateescape
    repeats: list
    carried: list
    quarantine: list
    _payload_lines: list[bytes] | None = field(default=None, repr=False)
    _raw_lines: list[bytes] | None = field(default=None, repr=False)

    def conflict(self, position: int, stored_sha: str) -> tuple[int, _Conflict]:
        """The row index and ``_Conflict`` of the payload line at ``position``."""
        if self._payload_lines is None:
            self._payload_lines = self.payload.split(b"\n")
            self._raw_lines = self.raws.split(b"\n")
        index = self.order[position]
        fields = self._payload_lines[position].decode("utf-8").split("\t")
        key = (_copy_unescape(fields[0]), _copy_unescape(fields[1]))
        raw = self._raw_lines[index].decode("utf-8", "surrogateescape")
        return index, (stored_sha, key, fields[7], self.lines[index], raw)


def _pack(batch: _Batch) -> _Packed:
    rows = batch.rows
    texts = [row[7] for row in rows]
    # Key order (a line starts "org\tevent\t"): the primary-key inserts walk the index
    # instead of jumping around it (~25% faster COPY).
    order = sorted(range(len(texts)), key=texts.__getitem__)
    return _Packed(
        read=batch.read,
        count=len(rows),
        payload="".join([texts[i] for i in order]).encode("utf-8"),
        order=array("i", order),
        hours=[hour + ":00:00+00:00" for hour in sorted({row[5][:13] for row in rows})],
        lines=array("q", batch.lines),
        # A raw line never holds a "\n" but its last: splitting on b"\n" gives it back.
        raws="".join(batch.raws).encode("utf-8", "surrogateescape"),
        repeats=batch.repeats,
        carried=batch.carried,
        quarantine=batch.quarantine,
    )


def _parse_worker(conn, path: str, fmt: EventFormat | None, options: dict, batch_size: int) -> None:
    """The child process: read and classify ``path``, send ``("batch", _Packed)`` per
    batch, then ``("done", None)``, or ``("error", traceback)``."""
    try:
        reader = None
        with event_files.open_event_file(path) as stream:
            reader = _BatchReader(stream, fmt, _Classifier(**options), batch_size)
            reader.read_header()
            for batch in reader:
                conn.send(("batch", _pack(batch)))
        conn.send(("done", None))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone or gave up
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()


class ParserProcessError(RuntimeError):
    """The child process reading the event file failed or died; batches the import
    committed before stay committed (re-running the import completes it)."""


# The child is a plain interpreter, not a multiprocessing "spawn" child: that would re-run
# the parent's ``__main__`` (a script without a main guard, or a whole CLI) first.
_CHILD_CODE = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from billing_pipeline.db.ingest import _child_main; _child_main()"
)


def _child_main() -> None:
    target, fd, args = pickle.load(sys.stdin.buffer)
    target(multiprocessing.connection.Connection(fd, readable=False), *args)


class _ParserProcess:
    """Runs ``_parse_worker`` in a child interpreter and yields its ``_Packed`` batches.

    A receiver thread keeps up to ``depth`` batches ready, so the child parses ahead while
    this process is in the database; the pipe and the queue bound what is in flight."""

    def __init__(
        self, path: Path | str, fmt: EventFormat | None, options: dict, batch_size: int, depth: int = 2
    ) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE], stdin=subprocess.PIPE, pass_fds=(write_fd,)
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._conn = multiprocessing.connection.Connection(read_fd, writable=False)
        try:
            with self._process.stdin as stdin:
                pickle.dump(sys.path, stdin)
                pickle.dump((_parse_worker, write_fd, (str(path), fmt, options, batch_size)), stdin)
        except BaseException:
            self._process.kill()
            self._process.wait()
            self._conn.close()
            raise
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="ingest-receiver", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                message = ("died", None)
            except BaseException as exc:  # e.g. a message that does not unpickle
                message = ("error", f"{type(exc).__name__}: {exc}")
            while True:
                try:
                    self._queue.put(message, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        return
            if message[0] != "batch":
                return

    def __iter__(self) -> Iterator[_Packed]:
        while True:
            kind, value = self._queue.get()
            if kind == "batch":
                yield value
            elif kind == "done":
                return
            elif kind == "error":
                raise ParserProcessError(f"the ingest parser process failed:\n{value}")
            else:
                try:
                    code = self._process.wait(5)
                except subprocess.TimeoutExpired:
                    code = None
                raise ParserProcessError(
                    f"the ingest parser process died (exit code {code}) "
                    "before the end of the file; completed batches are committed, "
                    "re-run the import to finish it"
                )

    def close(self) -> None:
        self._stop.set()
        try:
            self._process.wait(0.5)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._thread.join(5)
        self._conn.close()


#: Files smaller than this (bytes on disk; gzip counted x5) are parsed in-process: the
#: child's start-up (~0.7 s of imports) would eat what it saves.
PARSE_PROCESS_MIN_BYTES = 32 << 20


def _worth_a_process(path: Path | str) -> bool:
    if str(path) == "-" or not sys.executable:
        return False
    try:
        size = Path(path).stat().st_size
    except OSError:
        return False
    if str(path).lower().endswith(".gz"):
        size *= 5
    return size >= PARSE_PROCESS_MIN_BYTES


# --- writing --------------------------------------------------------------------------


def _settle(
    batch: _Batch | _Packed,
    counts: _Counts,
    stored: Mapping[int, _Conflict],
    previous_stored: Mapping[tuple[str, str], str],
) -> list[tuple]:
    """Counts for repeats and the quarantine rows of the whole batch.

    ``stored`` maps a row index to a ``_Conflict`` when the database already held the
    row's key with a different payload hash; ``previous_stored`` is the stored hash by key
    for the previous batch's conflicts."""
    quarantine = [
        (number, org, event, reason, detail, raw) for number, org, event, reason, detail, raw in batch.quarantine
    ]
    for stored_sha, key, sha, number, raw in stored.values():
        quarantine.append(
            (
                number,
                key[0],
                key[1],
                CONFLICTING_DUPLICATE,
                f"event {key[1]!r} of {key[0]!r} was already imported with a different payload "
                f"(stored sha256 {stored_sha[:12]}..., this one {sha[:12]}...)",
                raw,
            )
        )
    for first, key, first_sha, first_line, sha, number, raw in batch.repeats:
        conflict = stored.get(first)
        winner = first_sha if conflict is None else conflict[0]
        if sha == winner:
            counts.duplicates += 1
        else:
            quarantine.append(
                (
                    number,
                    key[0],
                    key[1],
                    CONFLICTING_DUPLICATE,
                    f"event {key[1]!r} of {key[0]!r} appears earlier (line {first_line}) with a different payload",
                    raw,
                )
            )
    for key, earlier_sha, earlier_line, sha, number, raw in batch.carried:
        if sha == previous_stored.get(key, earlier_sha):
            counts.duplicates += 1
        else:
            quarantine.append(
                (
                    number,
                    key[0],
                    key[1],
                    CONFLICTING_DUPLICATE,
                    f"event {key[1]!r} of {key[0]!r} appears earlier (line {earlier_line}) with a different payload",
                    raw,
                )
            )
    counts.quarantined = len(quarantine)
    counts.by_reason.update(entry[3] for entry in quarantine)
    counts.read = batch.read
    return quarantine


def _quarantine_text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = event_files.printable_raw(text)
    return text[:limit]


class _Writer:
    def write(self, batch: _Batch) -> _Counts:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPED = re.compile(r"\\(.)")


def _copy_unescape(text: str) -> str:
    """The inverse of ``_copy_escape``."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(1)], text)


def _copy_line(row: Row, ingested_copy: str) -> str:
    """One row as COPY text for ``usage_events`` (``ingested_copy`` is ``"\\t<timestamp>"``)."""
    org, event, metric, micros, props, occurred, sha = row[:7]
    props = "\\N" if props is None else _copy_escape(props)
    if _COPY_SPECIALS.search(org + event + metric):
        org, event, metric = _copy_escape(org), _copy_escape(event), _copy_escape(metric)
    return f"{org}\t{event}\t{metric}\t{micros}\t{props}\t{occurred}{ingested_copy}\t{sha}\n"


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
_COPY_QUARANTINE = (
    "COPY quarantined_events (import_id, source, line_number, org_id, event_id, reason, detail,"
    " raw, quarantined_at) FROM STDIN"
)

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


class _PostgresWriter(_Writer):
    """COPY-based batches. While no key of a batch exists yet, it is COPYed straight into
    ``usage_events`` (a savepoint turns a unique violation into the staged path); otherwise
    it goes through ``ingest_staging`` and set-based SQL."""

    def __init__(self, engine: Engine, import_id: int, source: str, now: dt.datetime) -> None:
        import psycopg  # the PostgreSQL driver; only needed here

        self._errors = psycopg.errors
        self.import_id = import_id
        self.source = source
        self.ingested_at = now
        self._dbapi = engine.raw_connection()
        self.conn = self._dbapi.driver_connection
        self.direct = True
        self._previous_stored: dict[tuple[str, str], str] = {}
        with self.conn.transaction():
            for statement in _STAGING_DDL:
                self.conn.execute(statement)

    def close(self) -> None:
        try:
            if not self.conn.closed:
                self.conn.rollback()
                with self.conn.transaction():
                    self.conn.execute("DROP TABLE IF EXISTS ingest_staging")
                    self.conn.execute("DROP SEQUENCE IF EXISTS ingest_staging_idx")
        finally:
            self._dbapi.close()

    def _marked_at(self) -> dt.datetime:
        return max(self.ingested_at, dt.datetime.now(UTC))

    def write(self, batch: _Packed) -> _Counts:
        for attempt in range(3):
            try:
                return self._write(batch)
            except self._errors.DeadlockDetected:
                # Two imports inserting overlapping keys in opposite orders; the batch's
                # transaction rolled back whole, so it can simply run again.
                if attempt == 2:
                    raise
                self.direct = False
                log.warning("deadlock writing a batch of %s; retrying", self.source)
        raise AssertionError("unreachable")

    def _write(self, batch: _Packed) -> _Counts:
        conn = self.conn
        counts = _Counts()
        stored: dict[int, _Conflict] = {}
        with conn.transaction():
            cur = conn.cursor()
            done = not batch.count
            if not done and self.direct:
                try:
                    with conn.transaction():
                        with cur.copy(_COPY_EVENTS) as copy:
                            copy.write(batch.payload)
                    done = True
                    counts.accepted = batch.count
                    cur.execute(_MARK_HOURS, {"hours": batch.hours, "marked_at": self._marked_at()})
                except self._errors.UniqueViolation:
                    self.direct = False
            if not done:
                # Probing the primary key per staged row beats hashing the whole table,
                # which is what the planner picks once usage_events has grown.
                cur.execute("SET LOCAL enable_hashjoin = off")
                cur.execute("SET LOCAL enable_mergejoin = off")
                cur.execute(_RESET_STAGING_IDX)
                with cur.copy(_COPY_STAGING) as copy:
                    copy.write(batch.payload)
                replays = 0
                for idx, value in cur.execute(_TAKE_EXISTING).fetchall():
                    if idx == -1:
                        replays = int(value)
                    else:
                        index, conflict = batch.conflict(idx, value)
                        stored[index] = conflict
                remaining = batch.count - replays - len(stored)
                inserted = 0
                if remaining:
                    params = {"marked_at": self._marked_at()}
                    try:
                        # The keys left are new unless a concurrent import races us: a plain
                        # INSERT skips ON CONFLICT's extra index probe per row.
                        with conn.transaction():
                            inserted = cur.execute(_INSERT_NEW.format(on_conflict=""), params).fetchone()[0]
                    except self._errors.UniqueViolation:
                        inserted = cur.execute(_INSERT_NEW.format(on_conflict=_ON_CONFLICT), params).fetchone()[0]
                    if inserted < remaining:  # a concurrent import stored some keys first
                        raced = cur.execute(_RACE_CONFLICTS).fetchall()
                        for idx, value in raced:
                            index, conflict = batch.conflict(idx, value)
                            stored[index] = conflict
                        replays += remaining - inserted - len(raced)
                counts.accepted = inserted
                counts.duplicates = replays
                # Back to direct COPY once batches stop meeting stored keys.
                self.direct = replays == 0 and not stored
            quarantine = _settle(batch, counts, stored, self._previous_stored)
            if quarantine:
                now = dt.datetime.now(UTC)
                with cur.copy(_COPY_QUARANTINE) as copy:
                    for number, org, event, reason, detail, raw in quarantine:
                        copy.write_row(
                            (
                                self.import_id,
                                self.source,
                                number,
                                _quarantine_text(org, MAX_QUARANTINE_ID),
                                _quarantine_text(event, MAX_QUARANTINE_ID),
                                reason,
                                event_files.printable_raw(detail),
                                event_files.printable_raw(raw),
                                now,
                            )
                        )
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
        self._previous_stored = {conflict[1]: conflict[0] for conflict in stored.values()}
        return counts


class _SqliteWriter(_Writer):
    """The same batches through SQLAlchemy Core; correct, not fast."""

    _CHUNK = 400  # keys per lookup (two bound parameters each)

    def __init__(self, engine: Engine, import_id: int, source: str, now: dt.datetime) -> None:
        self.engine = engine
        self.import_id = import_id
        self.source = source
        self.ingested_at = now
        self._previous_stored: dict[tuple[str, str], str] = {}

    def write(self, batch: _Batch) -> _Counts:
        counts = _Counts()
        stored: dict[int, _Conflict] = {}
        rows = batch.rows
        with self.engine.begin() as conn:
            # Write first: the transaction then holds SQLite's write lock, so the lookups
            # below cannot go stale before the inserts.
            conn.execute(
                update(event_imports).where(event_imports.c.id == self.import_id).values(read=event_imports.c.read + 0)
            )
            existing: dict[tuple[str, str], str] = {}
            for start in range(0, len(rows), self._CHUNK):
                keys = [(row[0], row[1]) for row in rows[start : start + self._CHUNK]]
                result = conn.execute(
                    select(usage_events.c.org_id, usage_events.c.event_id, usage_events.c.payload_sha256).where(
                        tuple_(usage_events.c.org_id, usage_events.c.event_id).in_(keys)
                    )
                )
                existing.update(((org, event), sha) for org, event, sha in result)
            new = []
            for index, row in enumerate(rows):
                sha = existing.get((row[0], row[1]))
                if sha is None:
                    new.append(row)
                elif sha == row[6]:
                    counts.duplicates += 1
                else:
                    stored[index] = (sha, (row[0], row[1]), row[6], batch.lines[index], batch.raws[index])
            if new:
                conn.execute(
                    sqlite_insert(usage_events).on_conflict_do_nothing(index_elements=["org_id", "event_id"]),
                    [
                        {
                            "org_id": org,
                            "event_id": event,
                            "metric_code": metric,
                            "value_micros": int(micros),
                            "properties": None if props is None else json.loads(props),
                            "occurred_at": dt.datetime.fromisoformat(occurred),
                            "ingested_at": self.ingested_at,
                            "payload_sha256": sha,
                        }
                        for org, event, metric, micros, props, occurred, sha, _ in new
                    ],
                )
                counts.accepted = len(new)
                marked_at = max(self.ingested_at, dt.datetime.now(UTC))
                hours = sorted({row[5][:13] + ":00:00+00:00" for row in new})
                statement = sqlite_insert(dirty_hours)
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=["hour"], set_={"marked_at": statement.excluded.marked_at}
                    ),
                    [{"hour": dt.datetime.fromisoformat(h), "marked_at": marked_at} for h in hours],
                )
            quarantine = _settle(batch, counts, stored, self._previous_stored)
            self._previous_stored = {conflict[1]: conflict[0] for conflict in stored.values()}
            if quarantine:
                now = dt.datetime.now(UTC)
                conn.execute(
                    insert(quarantined_events),
                    [
                        {
                            "import_id": self.import_id,
                            "source": self.source,
                            "line_number": number,
                            "org_id": _quarantine_text(org, MAX_QUARANTINE_ID),
                            "event_id": _quarantine_text(event, MAX_QUARANTINE_ID),
                            "reason": reason,
                            "detail": event_files.printable_raw(detail),
                            "raw": event_files.printable_raw(raw),
                            "quarantined_at": now,
                        }
                        for number, org, event, reason, detail, raw in quarantine
                    ],
                )
            conn.execute(
                update(event_imports)
                .where(event_imports.c.id == self.import_id)
                .values(
                    read=event_imports.c.read + counts.read,
                    accepted=event_imports.c.accepted + counts.accepted,
                    duplicates=event_imports.c.duplicates + counts.duplicates,
                    quarantined=event_imports.c.quarantined + counts.quarantined,
                )
            )
        return counts
