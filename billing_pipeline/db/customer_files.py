"""Reading customers files (CSV, JSON Lines, YAML) into records that remember their lines.

The format is chosen by the extension: ``.csv``, ``.jsonl``/``.ndjson``, ``.yaml``/``.yml``
(README, "Customers"). A line that cannot be read as a record (bad JSON, a CSV row with
the wrong number of fields, an unknown CSV column, a YAML key given twice) is a problem at
that line; reading goes on, so the file's every problem is reported at once. The whole file
is read in memory: it is refused above ``MAX_FILE_BYTES``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml

from billing_pipeline import yaml_input
from billing_pipeline.domain.customers import FIELDS, Problem, SourceRecord
from billing_pipeline.domain.organizations import show

MAX_FILE_BYTES = 64 * 1024 * 1024
_CSV_FIELDS = tuple(name for name in FIELDS if name != "subscriptions")


class CustomerFileError(ValueError):
    """The file as a whole cannot be read; the message starts with its name."""


def read_customer_file(path: Path) -> tuple[list[SourceRecord], list[Problem]]:
    """The records of ``path`` and the problems of lines that are not records."""
    name = path.name.lower()
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CustomerFileError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise CustomerFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CustomerFileError(f"{path}:{line}: not UTF-8 (byte {exc.start})") from None
    if name.endswith(".csv"):
        return _csv_records(text)
    if name.endswith((".jsonl", ".ndjson")):
        return _jsonl_records(text)
    if name.endswith((".yaml", ".yml")):
        return _yaml_records(text, path)
    raise CustomerFileError(f"{path}: unknown customers file type (expected .csv, .jsonl, .ndjson, .yaml or .yml)")


def _csv_records(text: str) -> tuple[list[SourceRecord], list[Problem]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[SourceRecord] = []
    problems: list[Problem] = []
    try:
        header = [name.strip() for name in next(reader, [])]
    except csv.Error as exc:
        return [], [Problem(1, "", f"CSV header is not valid CSV: {exc}")]
    for name in header:
        if name not in _CSV_FIELDS or header.count(name) > 1:
            why = "repeated column" if name in _CSV_FIELDS else f"unknown column (allowed: {', '.join(_CSV_FIELDS)})"
            problems.append(Problem(1, show(name)[1:-1] or "(empty)", why))
    if not header:
        problems.append(Problem(1, "", "empty file: expected a header line naming the columns"))
    header_ok = not problems
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(start, "", f"invalid CSV: {exc}"))
            start = reader.line_num + 1
            continue
        if row and any(cell.strip() for cell in row):
            if len(row) != len(header):
                problems.append(Problem(start, "", f"expected {len(header)} fields, got {len(row)}"))
            elif header_ok:
                records.append(SourceRecord(start, dict(zip(header, row, strict=True))))
        start = reader.line_num + 1
    return records, problems


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key {repeated[0]!r} given twice")
    return dict(pairs)


def _jsonl_records(text: str) -> tuple[list[SourceRecord], list[Problem]]:
    records, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_unique_keys, parse_float=str)
        except (ValueError, RecursionError) as exc:
            problems.append(Problem(number, "", f"invalid JSON: {str(exc)[:200]}"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(number, "", f"expected a JSON object, got {type(value).__name__}"))
            continue
        records.append(SourceRecord(number, value))
    return records, problems


def _yaml_records(text: str, path: Path) -> tuple[list[SourceRecord], list[Problem]]:
    """Records of ``customers: [...]``, each with its item's line and its fields' lines."""
    loader = yaml_input.SafeLoader(text)
    try:
        root = loader.get_single_node()
        document = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CustomerFileError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    if not isinstance(document, dict) or set(document) != {"customers"} or not isinstance(document["customers"], list):
        raise CustomerFileError(f"{path}: expected a mapping with one key, customers: a list of customers")
    items_node = next(value for key, value in root.value if key.value == "customers")
    records, problems = [], []
    for index, (node, item) in enumerate(zip(items_node.value, document["customers"], strict=True)):
        line, label = node.start_mark.line + 1, f"customers[{index}]"
        if not isinstance(item, dict):
            problems.append(Problem(line, label, f"must be a mapping of fields, got {show(item)}"))
            continue
        field_lines = {str(key.value): key.start_mark.line + 1 for key, _ in node.value}
        keys = [str(key.value) for key, _ in node.value]
        for key in sorted({k for k in keys if keys.count(k) > 1}):
            problems.append(Problem(field_lines[key], f"{label}.{key}", "given twice"))
        records.append(SourceRecord(line, item, label=label, field_lines=field_lines))
    return records, problems
