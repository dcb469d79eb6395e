"""Reading usage-event files line by line: CSV and JSON Lines, plain, gzip or stdin.

One physical line is one record in both formats, so every record has a line number and
its raw text for the quarantine, and a stray quote can never swallow the rest of a file
(CSV fields therefore cannot contain newlines; JSON already escapes them).

CSV: a header row naming the columns (``org_id, event_id, metric, value, occurred_at,
properties``; ``value`` and ``properties`` optional, unknown columns ignored), RFC 4180
quoting (``"{""a"": 1}"``). JSON Lines (``.jsonl``/``.ndjson``): one object per line with
the same keys, ``properties`` an object. Blank lines are skipped in both.

Invalid UTF-8 is decoded with ``surrogateescape`` so the bad bytes survive to the
quarantine instead of aborting the read.
"""

from __future__ import annotations

import csv
import enum
import gzip
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

#: Field names of a raw event, in the order ``RawFields`` tuples use.
FIELDS = ("org_id", "event_id", "metric", "value", "occurred_at", "properties")
REQUIRED_CSV_COLUMNS = ("org_id", "event_id", "metric", "occurred_at")
#: Quarantined raw text is cut to this many characters.
MAX_RAW_CHARS = 10_000

#: ``(org_id, event_id, metric, value, occurred_at, properties)`` as read; CSV gives
#: strings ('' when empty), JSON whatever the line held (``None`` when absent).
RawFields = tuple


class EventFormat(str, enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"


class MalformedLine(ValueError):
    """The line cannot be read as a record at all (bad quoting, bad JSON, wrong shape)."""


class EventFileError(ValueError):
    """The file as a whole cannot be read (unknown format, bad CSV header)."""


def detect_format(path: Path | str) -> EventFormat:
    """The format named by the file extension (``.gz`` looked through)."""
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return EventFormat.CSV
    if name.endswith((".jsonl", ".ndjson")):
        return EventFormat.JSONL
    raise EventFileError(f"{path}: unknown event file type (expected .csv, .jsonl or .ndjson)")


@contextmanager
def open_event_file(path: Path | str) -> Iterator[TextIO]:
    """Text lines of ``path`` (``-`` is stdin; ``.gz`` is decompressed on the fly)."""
    kwargs = {"encoding": "utf-8-sig", "errors": "surrogateescape", "newline": "\n"}
    if str(path) == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, **kwargs)
        try:
            yield stream
        finally:
            stream.detach()
        return
    if str(path).lower().endswith(".gz"):
        with gzip.open(path, "rt", **kwargs) as stream:
            yield stream
    else:
        with open(path, buffering=1 << 20, **kwargs) as stream:
            yield stream


def sniff_format(first_line: str) -> EventFormat:
    """For stdin: a line starting with ``{`` is JSON Lines, anything else a CSV header."""
    return EventFormat.JSONL if first_line.lstrip().startswith("{") else EventFormat.CSV


def printable_raw(line: str) -> str:
    """The raw line as storable text: no line ending, bad bytes and NULs shown as escapes,
    at most ``MAX_RAW_CHARS`` characters."""
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


@dataclass(frozen=True)
class CsvLayout:
    """Where each of ``FIELDS`` sits in a CSV row (``None``: column absent)."""

    columns: int
    positions: tuple[int | None, ...]


def parse_csv_header(line: str) -> CsvLayout:
    """The column layout named by a CSV header line; ``EventFileError`` if unusable."""
    try:
        names = [name.strip().lower() for name in split_csv_line(line, None)]
    except MalformedLine as exc:
        raise EventFileError(f"CSV header is not valid CSV: {exc}") from None
    missing = [name for name in REQUIRED_CSV_COLUMNS if name not in names]
    if missing:
        raise EventFileError(
            f"CSV header {line.strip()!r} lacks column(s) {', '.join(missing)} (expected {','.join(FIELDS)})"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1 and name in FIELDS})
    if duplicated:
        raise EventFileError(f"CSV header repeats column(s) {', '.join(duplicated)}")
    positions = tuple(names.index(name) if name in names else None for name in FIELDS)
    return CsvLayout(columns=len(names), positions=positions)


def split_csv_line(line: str, columns: int | None) -> list[str]:
    """The fields of one CSV line; ``MalformedLine`` on bad quoting or a wrong field count."""
    text = line.rstrip("\r\n")
    if '"' in text:
        try:
            fields = next(csv.reader((text,), strict=True))
        except csv.Error as exc:
            raise MalformedLine(f"invalid CSV quoting: {exc}") from None
    else:
        fields = text.split(",")
    if columns is not None and len(fields) != columns:
        raise MalformedLine(f"expected {columns} fields, got {len(fields)}")
    return fields


def csv_fields(line: str, layout: CsvLayout) -> RawFields:
    """One CSV line as a ``RawFields`` tuple (absent columns read as '')."""
    fields = split_csv_line(line, layout.columns)
    return tuple("" if pos is None else fields[pos] for pos in layout.positions)


def jsonl_object(line: str) -> dict:
    """One JSON Lines line as its object; ``MalformedLine`` unless it is a JSON object."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise MalformedLine(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedLine(f"expected a JSON object, got {type(value).__name__}")
    return value


def jsonl_fields(line: str) -> RawFields:
    obj = jsonl_object(line)
    return tuple(obj.get(name) for name in FIELDS)


def as_raw_event(fields: RawFields) -> dict[str, object]:
    """A ``RawFields`` tuple as the mapping ``domain.events.validate_event`` takes."""
    return dict(zip(FIELDS, fields, strict=False))


def iter_records(
    stream: TextIO,
    fmt: EventFormat | None = None,
) -> Iterator[tuple[int, str, RawFields | None, str | None]]:
    """``(line_number, raw_line, fields, error)`` for every non-blank record line.

    Exactly one of ``fields`` / ``error`` is set; ``error`` says why the line is
    malformed. A CSV header line is consumed, not yielded. This is the simple reader;
    ``db.ingest`` inlines the same steps in its hot loop.
    """
    layout: CsvLayout | None = None
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if fmt is None:
            fmt = sniff_format(line)
        if fmt is EventFormat.CSV and layout is None:
            layout = parse_csv_header(line)
            continue
        try:
            fields = csv_fields(line, layout) if layout is not None else jsonl_fields(line)
        except MalformedLine as exc:
            yield number, line, None, str(exc)
            continue
        yield number, line, fields, None
