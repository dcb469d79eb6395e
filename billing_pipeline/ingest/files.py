"""Reading usage-event files line by line: CSV and JSON Lines, plain, gzip or stdin.

One physical line is one record in both formats, so every record has a line number and
its raw text for the quarantine, and a stray quote can never swallow the rest of a file
(CSV fields therefore cannot contain newlines; JSON already escapes them).

CSV: a header row naming the columns (``org_id, event_id, metric, value, occurred_at,
properties``; ``value`` and ``properties`` optional, unknown columns ignored), RFC 4180
quoting (``"{""a"": 1}"``). JSON Lines (``.jsonl``/``.ndjson``): one object per line with
the same keys, ``properties`` an object; numbers keep their written text
(``domain.events.JsonNumber``). Blank lines are skipped in both. ``.gz`` files are
decompressed on the fly, and so is gzip data on stdin (``-``, format sniffed).

Invalid UTF-8 is decoded with ``surrogateescape`` so the bad bytes survive to the
quarantine instead of aborting the read. A ``.gz`` file is read through once first, so a
truncated or damaged one is refused before any of it is stored (gzip on stdin cannot be:
what precedes the damage is imported). A file that cannot be read as a whole (missing,
a directory, not gzip, truncated, closed stdin, an unusable header) raises
``EventFileError`` with one line naming the file and the problem; echoed input is cut
to ``ECHO_CHARS``.
"""

from __future__ import annotations

import csv
import enum
import gzip
import io
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from billing_pipeline.domain.events import JsonNumber

#: Field names of a raw event, in the order ``RawFields`` use.
FIELDS = ("org_id", "event_id", "metric", "value", "occurred_at", "properties")
REQUIRED_CSV_COLUMNS = ("org_id", "event_id", "metric", "occurred_at")
#: Input echoed in an error message is cut to this many characters.
ECHO_CHARS = 200

#: ``(org_id, event_id, metric, value, occurred_at, properties)`` as read; CSV gives
#: strings ('' when empty), JSON whatever the line held (``None`` when absent).
RawFields = tuple
_TEXT = {"encoding": "utf-8-sig", "errors": "surrogateescape", "newline": "\n"}
_GZIP_MAGIC = b"\x1f\x8b"


class EventFormat(str, enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"


class MalformedLine(ValueError):
    """The line cannot be read as a record at all (bad quoting, bad JSON, wrong shape)."""


class EventFileError(ValueError):
    """The file as a whole cannot be read; the message is one line naming it."""


def echo(text: str) -> str:
    """Input quoted in a message: at most ``ECHO_CHARS`` characters, escaped (bytes shown
    as ``b'\\x1f\\x8b...'`` when the text is not printable)."""
    text = text.rstrip("\r\n")
    cut = text[:ECHO_CHARS]
    if cut.isprintable():
        shown = repr(cut)
    else:
        shown = repr(cut.encode("utf-8", "surrogateescape"))
    return shown if len(cut) == len(text) else f"{shown}... ({len(text):,} characters)"


def detect_format(path: Path | str) -> EventFormat:
    """The format named by the file extension (``.gz`` looked through)."""
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".csv"):
        return EventFormat.CSV
    if name.endswith((".jsonl", ".ndjson")):
        return EventFormat.JSONL
    raise EventFileError(f"{path}: unknown event file type (expected .csv, .jsonl or .ndjson, optionally .gz)")


def read_error(path: Path | str, exc: BaseException, after_line: int | None = None) -> EventFileError:
    """The ``EventFileError`` for an exception raised while opening or reading ``path``."""
    if isinstance(exc, EventFileError):
        return exc
    if isinstance(exc, EOFError):
        problem = "truncated gzip file (it ends before the gzip end-of-stream marker)"
    elif isinstance(exc, gzip.BadGzipFile):
        message = str(exc)
        problem = "not a gzip file" if message.startswith("Not a gzipped file") else f"corrupt gzip data ({message})"
    elif isinstance(exc, zlib.error):
        problem = f"corrupt gzip data ({exc})"
    elif isinstance(exc, FileNotFoundError):
        problem = "no such file"
    elif isinstance(exc, IsADirectoryError):
        problem = "is a directory, not an event file"
    elif isinstance(exc, PermissionError):
        problem = "permission denied"
    elif isinstance(exc, OSError):
        problem = f"cannot be read ({exc.strerror or exc})"
    else:
        problem = f"cannot be read ({type(exc).__name__}: {exc})"
    where = f" after line {after_line:,}" if after_line else ""
    return EventFileError(f"{path}: {problem}{where}")


@contextmanager
def open_event_file(path: Path | str) -> Iterator[TextIO]:
    """Text lines of ``path`` (``-`` is stdin, gzip sniffed; ``.gz`` is decompressed)."""
    try:
        stream = _stdin() if str(path) == "-" else _open_file(path)
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise read_error(path, exc) from None
    try:
        yield stream
    finally:
        if str(path) == "-":
            stream.detach()
        else:
            stream.close()


def _open_file(path: Path | str) -> TextIO:
    if Path(path).is_dir():
        raise IsADirectoryError(path)
    if str(path).lower().endswith(".gz"):
        _verify_gzip(path)
        return gzip.open(path, "rt", **_TEXT)
    return open(path, buffering=1 << 20, **_TEXT)


def _verify_gzip(path: Path | str) -> None:
    """Read a gzip file through once before importing it: its CRC is only checked at the
    end, and damaged deflate data can decode to plausible lines that must not be stored.
    An empty file is no gzip file at all (Python reads it as no data; ``gzip -t`` refuses it)."""
    if Path(path).stat().st_size == 0:
        raise EventFileError(f"{path}: truncated gzip file (0 bytes: not even a gzip header)")
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 22):
            pass


def _stdin() -> TextIO:
    if sys.stdin is None or sys.stdin.closed:
        raise EventFileError("-: stdin is closed")
    buffer = sys.stdin.buffer
    if buffer.peek(2)[:2] == _GZIP_MAGIC:
        buffer = gzip.GzipFile(fileobj=buffer, mode="rb")
    return io.TextIOWrapper(buffer, **_TEXT)


def sniff_format(first_line: str) -> EventFormat:
    """For stdin: a line starting with ``{`` is JSON Lines, anything else a CSV header."""
    return EventFormat.JSONL if first_line.lstrip().startswith("{") else EventFormat.CSV


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
        raise EventFileError(f"CSV header {echo(line)} is not valid CSV: {exc}") from None
    missing = [name for name in REQUIRED_CSV_COLUMNS if name not in names]
    if missing:
        raise EventFileError(
            f"CSV header {echo(line)} lacks column(s) {', '.join(missing)} (expected {','.join(FIELDS)})"
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


def csv_splitter(layout: CsvLayout) -> Callable[[str], tuple[RawFields, None]]:
    """A fast ``csv_fields`` for the hot loop: ``split(text) -> (fields, None)``.

    Plain lines are split on commas; a line whose only quoted field is a trailing
    ``properties`` is unquoted by hand; anything else goes to the ``csv`` module."""
    columns = layout.columns
    canonical = columns == 6 and layout.positions == (0, 1, 2, 3, 4, 5)
    props_last = layout.positions[5] == columns - 1
    indices = [columns if p is None else p for p in layout.positions]  # columns: the '' appended

    def split(text: str) -> tuple[RawFields, None]:
        if '"' in text:
            parts = text.split(",", columns - 1) if props_last else None
            if parts is not None:
                last = parts[-1]
                if not (
                    len(parts) == columns
                    and len(last) >= 2
                    and last[0] == '"'
                    and last[-1] == '"'
                    and text.find('"') == len(text) - len(last)
                    and '"' not in last[1:-1].replace('""', "")
                ):
                    parts = None
                else:
                    parts[-1] = last[1:-1].replace('""', '"')
            if parts is None:
                parts = split_csv_line(text, columns)
        else:
            parts = text.split(",")
            if len(parts) != columns:
                raise MalformedLine(f"expected {columns} fields, got {len(parts)}")
        if canonical:
            return parts, None
        parts.append("")
        return tuple([parts[i] for i in indices]), None

    return split


def jsonl_object(line: str) -> dict:
    """One JSON Lines line as its object; ``MalformedLine`` unless it is a JSON object."""
    try:
        value = json.loads(line, parse_float=JsonNumber)
    except (ValueError, RecursionError) as exc:
        raise MalformedLine(f"invalid JSON: {str(exc)[:ECHO_CHARS]}") from None
    if not isinstance(value, dict):
        raise MalformedLine(f"expected a JSON object, got {type(value).__name__}")
    return value


def jsonl_split(text: str) -> tuple[RawFields, dict]:
    """``(fields, object)`` of one JSON Lines line, for the hot loop."""
    obj = jsonl_object(text)
    get = obj.get
    return (get("org_id"), get("event_id"), get("metric"), get("value"), get("occurred_at"), get("properties")), obj


def jsonl_fields(line: str) -> RawFields:
    return jsonl_split(line)[0]


def as_raw_event(fields: RawFields) -> dict[str, object]:
    """A ``RawFields`` tuple as the mapping ``domain.events.validate_event`` takes."""
    return dict(zip(FIELDS, fields, strict=False))


def iter_records(
    stream: TextIO,
    fmt: EventFormat | None = None,
) -> Iterator[tuple[int, str, RawFields | None, str | None]]:
    """``(line_number, raw_line, fields, error)`` for every non-blank record line.

    Exactly one of ``fields`` / ``error`` is set; ``error`` says why the line is
    malformed. A CSV header line is consumed, not yielded. This is the reference reader
    (the ``csv`` module); ``ingest.pipeline`` reads with ``csv_splitter`` instead.
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
