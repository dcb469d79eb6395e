"""The file as batches of classified lines, and the compact form a writer takes.

``BatchReader`` reads the header, then yields ``ParsedBatch`` per ``batch_size`` non-blank
lines: accepted rows (the first occurrence of each key in the batch), later occurrences
of a key (``Repeat``, settled once the database says which payload won) and quarantined
lines. A repeat of a key first seen in the previous batch refers to it (``first`` is
``None``) instead of being written again, so retries close together in a file never
touch the database. ``pack`` turns a batch into a ``PackedBatch``: the rows only as COPY
text plus what settling needs, cheap to send between processes.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

from billing_pipeline.db.event_writers import EventBatch, QuarantineEntry
from billing_pipeline.domain.events import RejectReason
from billing_pipeline.ingest import files
from billing_pipeline.ingest.classify import AcceptedRow, Classifier
from billing_pipeline.ingest.files import EventFormat, MalformedLine

MALFORMED_LINE = RejectReason.MALFORMED_LINE.value
_READ_ERRORS = (OSError, EOFError, zlib.error)


class Repeat(NamedTuple):
    """A later occurrence of a key: ``first`` indexes the batch's rows (``None``: the
    first occurrence was in the previous batch)."""

    first: int | None
    key: tuple[str, str]
    first_sha: str
    first_line: int
    sha: str
    line_number: int
    raw: str


@dataclass
class ParsedBatch:
    """Accepted rows are kept as the columns the writers need (strings only: a batch of
    50,000 ``AcceptedRow`` tuples alive at once would cost the cyclic GC ~25% of parsing)."""

    copy_lines: list[str] = field(default_factory=list)  #: ``AcceptedRow.copy_line`` of each row
    shas: list[str] = field(default_factory=list)  #: ``AcceptedRow.payload_sha256`` of each row
    lines: list[int] = field(default_factory=list)  #: line number of each row
    raws: list[str] = field(default_factory=list)  #: raw line of each row
    hours: set[str] = field(default_factory=set)  #: ``occurred_at[:13]`` of the rows
    repeats: list[Repeat] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    read: int = 0


@dataclass
class PackedBatch:
    events: EventBatch
    lines: array  #: line number of each row (file order)
    raws: bytes  #: raw line of each row (file order), UTF-8 with surrogateescape
    repeats: list[Repeat]
    quarantine: list[QuarantineEntry]


def raw_sha256(raw: str) -> str:
    """The quarantine's identity of a line: sha256 of its bytes without the line ending."""
    return hashlib.sha256(raw.rstrip("\r\n").encode("utf-8", "surrogateescape")).hexdigest()


def quarantined(number: int, org: object, event: object, reason: str, detail: str, raw: str) -> QuarantineEntry:
    return QuarantineEntry.of(number, org, event, reason, detail, raw, raw_sha256(raw))


def pack(batch: ParsedBatch) -> PackedBatch:
    texts = batch.copy_lines
    # Key order (a line starts "org\tevent\t"): the primary-key inserts walk the index
    # instead of jumping around it (~25% faster COPY).
    order = sorted(range(len(texts)), key=texts.__getitem__)
    events = EventBatch(
        read=batch.read,
        count=len(texts),
        payload="".join([texts[i] for i in order]).encode("utf-8"),
        order=array("i", order),
        hours=[hour + ":00:00+00:00" for hour in sorted(batch.hours)],
    )
    # A raw line never holds a "\n" but its last: splitting on b"\n" gives it back.
    raws = "".join(batch.raws).encode("utf-8", "surrogateescape")
    return PackedBatch(events, array("q", batch.lines), raws, batch.repeats, batch.quarantine)


class BatchReader:
    """Batches of one open event file (``path`` names it in errors)."""

    def __init__(
        self, stream: TextIO, fmt: EventFormat | None, classifier: Classifier, batch_size: int, path: Path | str
    ) -> None:
        self._lines = enumerate(stream, start=1)
        self.fmt = fmt
        self.classifier = classifier
        self.batch_size = batch_size
        self.path = path
        self.layout: files.CsvLayout | None = None
        self._pending: tuple[int, str] | None = None

    def read_header(self) -> None:
        """Settle the format (sniffed on stdin) and read the CSV header, before any write."""
        try:
            for number, line in self._lines:
                if not line.strip():
                    continue
                if self.fmt is None:
                    self.fmt = files.sniff_format(line)
                if self.fmt is EventFormat.CSV:
                    self.layout = files.parse_csv_header(line)
                else:
                    self._pending = (number, line)
                return
        except files.EventFileError as exc:
            raise files.EventFileError(f"{self.path}: {exc}") from None
        except _READ_ERRORS as exc:
            raise files.read_error(self.path, exc) from None
        self.fmt = self.fmt or EventFormat.CSV

    def __iter__(self) -> Iterator[ParsedBatch]:
        lines = self._lines
        if self._pending is not None:
            lines = _chain_one(self._pending, lines)
            self._pending = None
        if self.fmt is EventFormat.JSONL:
            yield from self._batches(lines, files.jsonl_split)
        elif self.layout is not None:
            yield from self._batches(lines, files.csv_splitter(self.layout))

    def _batches(self, lines, split) -> Iterator[ParsedBatch]:
        fast, reference, batch_size = self.classifier.fast, self.classifier.reference, self.batch_size
        texts, shas, numbers, raws, hours, repeats, quarantine = [], [], [], [], set(), [], []
        seen, read, previous, previous_batch, number = {}, 0, {}, ParsedBatch(), 0
        try:
            for number, line in lines:
                text = line.rstrip("\r\n")
                if not text or text.isspace():
                    continue
                read += 1
                try:
                    fields, obj = split(text)
                except MalformedLine as exc:
                    quarantine.append(quarantined(number, None, None, MALFORMED_LINE, str(exc), line))
                    fields = None
                if fields is not None:
                    try:
                        row = fast(*fields)
                    except (TypeError, ValueError):
                        row = None
                    if row is None:
                        row = reference(obj if obj is not None else files.as_raw_event(fields))
                    if type(row) is AcceptedRow:
                        key = (row[0], row[1])
                        first = seen.get(key)
                        if first is None and key not in previous:
                            seen[key] = len(texts)
                            texts.append(row[7])
                            shas.append(row[6])
                            numbers.append(number)
                            raws.append(line)
                            hours.add(row[5][:13])
                        elif first is not None:
                            repeats.append(Repeat(first, key, shas[first], numbers[first], row[6], number, line))
                        else:
                            earlier = previous[key]
                            earlier_sha, earlier_line = previous_batch.shas[earlier], previous_batch.lines[earlier]
                            repeats.append(Repeat(None, key, earlier_sha, earlier_line, row[6], number, line))
                    else:
                        quarantine.append(quarantined(number, fields[0], fields[1], row.reason.value, row.detail, line))
                if read >= batch_size:
                    previous_batch = ParsedBatch(texts, shas, numbers, raws, hours, repeats, quarantine, read)
                    yield previous_batch
                    previous, seen, read = seen, {}, 0
                    texts, shas, numbers, raws, hours, repeats, quarantine = [], [], [], [], set(), [], []
        except _READ_ERRORS as exc:
            raise files.read_error(self.path, exc, number) from None
        if read:
            yield ParsedBatch(texts, shas, numbers, raws, hours, repeats, quarantine, read)


def _chain_one(first, rest):
    yield first
    yield from rest
