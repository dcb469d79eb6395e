"""Usage-event import: one CSV / JSON Lines file in; events, quarantine and dirty hours out.

``import_events(engine, path, metrics=...)`` streams the file in batches (constant memory),
classifies every line (``ingest.classify``, the rules of ``domain.events``) and writes each
batch in one transaction (``db.event_writers``): new events, quarantined lines, the hours
they touched (``dirty_hours``) and the running counts of the ``event_imports`` row. A crash
loses at most the batch in flight; re-running the same file then completes it, because
events are idempotent on ``(org_id, event_id)`` and quarantined lines on their raw bytes:

* same id, same ``payload_fingerprint`` -> a duplicate, ignored (a replay);
* same id, different payload -> quarantined as ``conflicting_duplicate``; the payload
  already stored (or else the first occurrence in the file) wins.

Every non-blank line is counted once per import: ``read == accepted + duplicates +
quarantined``; ``quarantined_events`` keeps one row per distinct bad line.

A file that cannot be read (missing, a directory, not gzip, truncated, closed stdin, an
unusable header) ends the import ``failed`` with the counts committed so far and raises
``ImportFailed``: one line naming the file and the problem.

PostgreSQL: files of ``PARSE_PROCESS_MIN_BYTES`` or more are parsed by a child process
(``ingest.parse_process``); smaller files and stdin are parsed here while a writer thread
does the database work on the previous batch. SQLite takes the batches in turn.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from billing_pipeline.clock import utc_now
from billing_pipeline.db import event_imports
from billing_pipeline.db.event_writers import (
    MAX_METRIC_CODE,
    MAX_SOURCE,
    BatchCounts,
    EventWriter,
    Settlement,
    copy_fields,
    open_writer,
    storable_text,
)
from billing_pipeline.domain.catalog import Metric
from billing_pipeline.domain.events import DEFAULT_MAX_PROPERTIES_BYTES, replay_or_conflict
from billing_pipeline.ingest import files
from billing_pipeline.ingest.batches import BatchReader, PackedBatch, pack, quarantined
from billing_pipeline.ingest.classify import Classifier
from billing_pipeline.ingest.files import EventFileError, EventFormat
from billing_pipeline.ingest.parse_process import ParserProcess, ParserProcessError, worth_a_process

log = logging.getLogger(__name__)
UTC = dt.UTC


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


class ImportFailed(EventFileError):
    """The file could not be read to its end; the import row is marked failed with the
    counts committed, and re-running the import completes it."""


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
    max_properties_bytes: int = DEFAULT_MAX_PROPERTIES_BYTES,
    fmt: EventFormat | None = None,
    parse_process: bool | None = None,
) -> ImportSummary:
    """Import the events of ``path`` (``.csv``, ``.jsonl``/``.ndjson``, optionally ``.gz``;
    ``-`` reads stdin, format and gzip sniffed) and return what happened to its lines.

    ``metrics`` defaults to the latest catalog, ``known_orgs`` to every organization id,
    ``now`` (the clock for future-timestamp checks and ``ingested_at``) to the current
    time. Bad lines never raise, they are quarantined; a file that cannot be read raises
    ``ImportFailed`` (the import row is then ``failed``). ``parse_process`` (PostgreSQL,
    files only): parse in a child process, by default for files of
    ``PARSE_PROCESS_MIN_BYTES`` or more; ``ParserProcessError`` if that child dies.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    options = _classifier_options(engine, metrics, known_orgs, now, max_future, max_properties_bytes)
    source = storable_text(source_name or str(path))[:MAX_SOURCE]
    import_id = event_imports.start_import(engine, source, options["now"])
    try:
        if fmt is None and str(path) != "-":
            fmt = files.detect_format(path)
        totals = _import(engine, import_id, source, path, fmt, options, batch_size, parse_process)
    except BaseException as exc:
        _fail(engine, import_id, path, exc)
        raise
    event_imports.finish_import(engine, import_id)
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


def _classifier_options(engine, metrics, known_orgs, now, max_future, max_properties_bytes) -> dict:
    """``Classifier`` keyword arguments, with the defaults read from the database."""
    now = now or utc_now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if metrics is None:
        metrics = event_imports.load_latest_metrics(engine)
    too_long = [code for code in metrics if len(code) > MAX_METRIC_CODE]
    if too_long:
        raise ValueError(f"metric codes longer than {MAX_METRIC_CODE} characters: {too_long}")
    if known_orgs is None:
        known_orgs = event_imports.load_org_ids(engine)
    return {
        "known_orgs": frozenset(known_orgs),
        "metrics": dict(metrics),
        "now": now,
        "max_future": max_future,
        "max_properties_bytes": max_properties_bytes,
    }


def _fail(engine: Engine, import_id: int, path: Path | str, exc: BaseException) -> None:
    """Mark the import failed; a file error becomes ``ImportFailed`` saying what is committed."""
    if isinstance(exc, EventFileError | ParserProcessError):
        message = str(exc).splitlines()[0] if isinstance(exc, EventFileError) else str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    try:
        counts = event_imports.fail_import(engine, import_id, message)
    except Exception:  # the database may be what failed; the original error matters more
        log.exception("could not mark import %s failed", import_id)
        return
    if isinstance(exc, EventFileError):
        raise ImportFailed(
            f"{message}; import #{import_id} failed having committed read {counts.read:,} = accepted "
            f"{counts.accepted:,} + duplicates {counts.duplicates:,} + quarantined {counts.quarantined:,}; "
            "re-run the import to complete it"
        ) from None


def _import(engine, import_id, source, path, fmt, options, batch_size, parse_process) -> BatchCounts:
    postgres = engine.dialect.name == "postgresql"
    if not postgres or str(path) == "-":
        parse_process = False
    elif parse_process is None:
        parse_process = worth_a_process(path)
    totals = BatchCounts()
    writer = open_writer(engine, import_id, source, options["now"])
    settler = _Settler()
    try:
        if parse_process:
            # The child reads the file; this process is in the database meanwhile.
            parser = ParserProcess(path, fmt, options, batch_size)
            try:
                for packed in parser:
                    totals.add(writer.write(packed.events, settler.for_batch(packed)))
            finally:
                parser.close()
        else:
            with files.open_event_file(path) as stream:
                reader = BatchReader(stream, fmt, Classifier(**options), batch_size, path)
                reader.read_header()
                _write_all((pack(batch) for batch in reader), writer, settler, totals, threaded=postgres)
    finally:
        writer.close()
    return totals


def _write_all(packed: Iterator[PackedBatch], writer: EventWriter, settler, totals: BatchCounts, threaded: bool):
    if not threaded:
        for batch in packed:
            totals.add(writer.write(batch.events, settler.for_batch(batch)))
        return
    # One batch in the database while the next is parsed.
    with ThreadPoolExecutor(1, thread_name_prefix="ingest-writer") as pool:
        pending = None
        for batch in packed:
            settle = settler.for_batch(batch)
            if pending is not None:
                totals.add(pending.result())
            pending = pool.submit(writer.write, batch.events, settle)
        if pending is not None:
            totals.add(pending.result())


class _Settler:
    """Settles each batch's repeats against what the database stored, in file order.

    ``for_batch`` is called in file order; the settle it returns runs inside the batch's
    transaction, after the previous batch's (the writer runs batches one at a time)."""

    def __init__(self) -> None:
        self._previous_stored: dict[tuple[str, str], str] = {}

    def for_batch(self, batch: PackedBatch):
        previous: list[dict] = []  # fixed at the first call: a retried transaction settles the same way

        def settle(stored: dict[int, str]) -> Settlement:
            if not previous:
                previous.append(self._previous_stored)
            settlement, self._previous_stored = _settle(batch, stored, previous[0])
            return settlement

        return settle


def _settle(batch: PackedBatch, stored: dict[int, str], previous_stored: Mapping[tuple[str, str], str]):
    """The batch's ``Settlement`` and the stored sha256 by key of its conflicts."""
    quarantine = list(batch.quarantine)
    by_key: dict[tuple[str, str], str] = {}
    if stored:
        positions = {index: position for position, index in enumerate(batch.events.order)}
        payload_lines = batch.events.payload.split(b"\n")
        raws = batch.raws.split(b"\n")
        for index, stored_sha in stored.items():
            fields = copy_fields(payload_lines[positions[index]])
            key, sha = (fields[0], fields[1]), fields[7]
            by_key[key] = stored_sha
            raw = raws[index].decode("utf-8", "surrogateescape")
            rejection = replay_or_conflict(stored_sha, sha, key[0], key[1], "was already imported")
            detail = f"{rejection.detail} (stored sha256 {stored_sha[:12]}..., this one {sha[:12]}...)"
            quarantine.append(quarantined(batch.lines[index], key[0], key[1], rejection.reason.value, detail, raw))
    duplicates = 0
    for repeat in batch.repeats:
        if repeat.first is None:
            winner = previous_stored.get(repeat.key, repeat.first_sha)
        else:
            winner = stored.get(repeat.first, repeat.first_sha)
        rejection = replay_or_conflict(winner, repeat.sha, *repeat.key, f"appears earlier (line {repeat.first_line})")
        if rejection is None:
            duplicates += 1
        else:
            quarantine.append(
                quarantined(repeat.line_number, *repeat.key, rejection.reason.value, rejection.detail, repeat.raw)
            )
    quarantine.sort(key=lambda entry: entry.line_number)
    return Settlement(duplicates, quarantine), by_key
