"""Reading event files (no database): CSV/JSONL lines to raw fields, malformed lines,
and the import's fast classifier agreeing with the domain's reference rules."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import random
import re
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from billing_pipeline.db import event_writers
from billing_pipeline.domain.catalog import Aggregation, Metric
from billing_pipeline.domain.events import JsonNumber, Rejection, RejectReason, canonical_properties, validate_event
from billing_pipeline.ingest import batches, classify, pipeline
from billing_pipeline.ingest import files as event_files
from billing_pipeline.ingest.files import (
    EventFileError,
    EventFormat,
    MalformedLine,
    as_raw_event,
    csv_fields,
    detect_format,
    iter_records,
    jsonl_fields,
    parse_csv_header,
    split_csv_line,
)

HEADER = "org_id,event_id,metric,value,occurred_at,properties"
NOW = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)
METRICS = {
    "api_calls": Metric("api_calls", "API calls", Aggregation.COUNT),
    "storage_gb": Metric("storage_gb", "Storage", Aggregation.MAX),
    "payment_volume": Metric("payment_volume", "Payments", Aggregation.SUM, allow_negative=True),
    "active_users": Metric("active_users", "Users", Aggregation.UNIQUE_COUNT, unique_property="user_id"),
}
ORGS = frozenset({"org_a", "org_b", "org with space", "org\\slash"})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("events.csv", EventFormat.CSV),
        ("EVENTS.CSV.gz", EventFormat.CSV),
        ("events.jsonl", EventFormat.JSONL),
        ("events.ndjson.gz", EventFormat.JSONL),
    ],
)
def test_detect_format_by_extension(name, expected):
    assert detect_format(name) is expected


def test_detect_format_refuses_unknown_extensions():
    with pytest.raises(EventFileError, match="unknown event file type"):
        detect_format("events.parquet")


def test_csv_header_maps_columns_in_any_order_and_properties_is_optional():
    layout = parse_csv_header("occurred_at,metric,event_id,org_id,value\n")
    assert layout.columns == 5
    assert layout.positions == (3, 2, 1, 4, 0, None)
    assert csv_fields("2026-03-01T00:00:00Z,api_calls,e1,org_a,1", layout) == (
        "org_a",
        "e1",
        "api_calls",
        "1",
        "2026-03-01T00:00:00Z",
        "",
    )


def test_csv_header_without_required_columns_is_a_file_error():
    with pytest.raises(EventFileError, match="lacks column.*occurred_at"):
        parse_csv_header("org_id,event_id,metric,value")
    with pytest.raises(EventFileError, match="repeats"):
        parse_csv_header("org_id,event_id,metric,metric,occurred_at")


def test_split_csv_line_plain_and_quoted_json():
    assert split_csv_line("a,b,c\r\n", 3) == ["a", "b", "c"]
    line = 'org_a,e1,api_calls,1,2026-03-01T00:00:00Z,"{""k"": ""v, w""}"\n'
    assert split_csv_line(line, 6)[5] == '{"k": "v, w"}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('org_a,"unterminated\n', "invalid CSV quoting"),
        ('org_a,"bad"quote,x\n', "invalid CSV quoting"),
        ("org_a,e1,api_calls\n", "expected 6 fields, got 3"),
        ("a,b,c,d,e,f,g\n", "expected 6 fields, got 7"),
    ],
)
def test_malformed_csv_lines(line, message):
    with pytest.raises(MalformedLine, match=message):
        split_csv_line(line, 6)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        ('{"a": 1} trailing', "invalid JSON"),
    ],
)
def test_malformed_jsonl_lines(line, message):
    with pytest.raises(MalformedLine, match=message):
        jsonl_fields(line)


def test_jsonl_fields_keep_json_types():
    fields = jsonl_fields(
        '{"org_id": "org_a", "event_id": 7, "metric": "api_calls", '
        '"value": 2.5, "occurred_at": "2026-03-01T00:00:00Z", '
        '"properties": {"user_id": "u1"}, "extra": true}'
    )
    assert fields == ("org_a", 7, "api_calls", 2.5, "2026-03-01T00:00:00Z", {"user_id": "u1"})
    assert as_raw_event(fields)["metric"] == "api_calls"


def test_iter_records_numbers_lines_skips_blanks_and_reports_malformed():
    text = (
        f"{HEADER}\n"
        "org_a,e1,api_calls,1,2026-03-01T00:00:00Z,\n"
        "\n"
        "   \n"
        "garbage\n"
        'org_a,e2,api_calls,,2026-03-01T00:00:00Z,"{""a"":1}"\n'
    )
    records = list(iter_records(io.StringIO(text), EventFormat.CSV))
    assert [(number, error is None) for number, _, _, error in records] == [(2, True), (5, False), (6, True)]
    assert records[1][3] == "expected 6 fields, got 1"
    assert records[2][2] == ("org_a", "e2", "api_calls", "", "2026-03-01T00:00:00Z", '{"a":1}')


def test_iter_records_sniffs_jsonl_when_format_unknown():
    text = '\n{"org_id": "org_a"}\n[1]\n'
    records = list(iter_records(io.StringIO(text)))
    assert [(number, error) for number, _, _, error in records] == [(2, None), (3, "expected a JSON object, got list")]


def test_open_event_file_reads_gzip_and_strips_bom(tmp_path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("\ufeff" + HEADER + "\norg_a,e1,api_calls,1,2026-03-01T00:00:00Z,\n")
    with event_files.open_event_file(path) as stream:
        assert [line for line in stream][0].startswith("org_id,")


def test_open_event_file_keeps_invalid_utf8_for_the_quarantine(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(HEADER.encode() + b"\norg_a,e\xff1,api_calls,1,2026-03-01T00:00:00Z,\n")
    with event_files.open_event_file(path) as stream:
        line = list(stream)[1]
    assert event_writers.storable_text(line) == "org_a,e\\xff1,api_calls,1,2026-03-01T00:00:00Z,"


def test_printable_raw_truncates_and_escapes_nul():
    assert event_writers.storable_text("a\x00b\r\n") == "a\\x00b"
    long = event_writers.storable_text("x" * 20_000)
    assert len(long) < 10_100 and long.endswith("...[truncated]")


# --- the import's fast path must equal the reference path ---------------------------


def _classifier(**overrides):
    options = {"known_orgs": ORGS, "metrics": METRICS, "now": NOW, "max_future": dt.timedelta(hours=1)}
    options.update(overrides)
    return classify.Classifier(**options)


CLEAN = [
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", ""),
    ("org_a", "e2", "storage_gb", "12.500", "2026-03-01T10:11:12.5Z", ""),
    ("org_b", "e3", "payment_volume", "-0.25", "2026-03-31T23:59:59.999999+00:00", ""),
    ("org_b", "e4", "payment_volume", "-0.000", "2026-02-28T00:00:00Z", ""),
    ("org_a", "e5", "active_users", "1", "2026-03-01T00:00:00.123Z", '{"user_id": "u1"}'),
    ("org_a", "e6", "api_calls", "0", "2026-03-01T00:00:00Z", '{"b": [1, 2.50], "a": {"z": 1}}'),
    ("org_a", "e7", "storage_gb", "999999999999.999999", "2026-04-01T13:00:00Z", ""),
    ("org_a", "e8", "api_calls", 3, "2026-03-01T00:00:00Z", {"k": 'v\\ with "quotes"'}),
    ("org_a", "e9", "storage_gb", 2.5, "2026-03-01T00:00:00Z", {"ünïcode": "✓"}),
    ("org_a", "e10", "storage_gb", "100", "2024-02-29T00:00:00Z", None),
]

NOT_FAST = [  # the fast path must step aside (the reference path decides)
    ("org_x", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", ""),  # unknown org
    ("org_a", "e1", "nope", "1", "2026-03-01T00:00:00Z", ""),  # unknown metric
    ("org_a", "e1", "api_calls", "", "2026-03-01T00:00:00Z", ""),  # default value
    ("org_a", "e1", "api_calls", "01", "2026-03-01T00:00:00Z", ""),  # leading zero
    ("org_a", "e1", "api_calls", "1.1234567", "2026-03-01T00:00:00Z", ""),  # too precise
    ("org_a", "e1", "api_calls", "1e3", "2026-03-01T00:00:00Z", ""),
    ("org_a", "e1", "api_calls", "-1", "2026-03-01T00:00:00Z", ""),  # negative
    ("org_a", "e1", "api_calls", "NaN", "2026-03-01T00:00:00Z", ""),
    ("org_a", "e1", "api_calls", float("inf"), "2026-03-01T00:00:00Z", ""),
    ("org_a", "e1", "api_calls", True, "2026-03-01T00:00:00Z", ""),
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00", ""),  # naive
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00+02:00", ""),  # offset
    ("org_a", "e1", "api_calls", "1", "2026-02-30T00:00:00Z", ""),  # no such day
    ("org_a", "e1", "api_calls", "1", "2026-04-01T13:00:00.000001Z", ""),  # future
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", "[1]"),
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", '{"a": NaN}'),
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", " "),
    ("org_a", "e 1", "api_calls", "1", "2026-03-01T00:00:00Z", ""),  # space in id
    ("org_a", "e\t1", "api_calls", "1", "2026-03-01T00:00:00Z", ""),
    ("org_a", "e" * 256, "api_calls", "1", "2026-03-01T00:00:00Z", ""),
    ("org with space", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", ""),
    ("org_a", 42, "api_calls", "1", "2026-03-01T00:00:00Z", ""),
    ("org_a", "e1", "api_calls", "1", "2026-03-01T00:00:00Z", {"x": "\ud800"}),
]


@pytest.mark.parametrize("fields", CLEAN, ids=lambda f: str(f[1]))
def test_fast_path_takes_clean_rows_and_matches_the_reference(fields):
    classifier = _classifier()
    fast = classifier.fast(*fields)
    assert fast is not None
    assert fast == classifier.reference(as_raw_event(fields))


@pytest.mark.parametrize("fields", NOT_FAST, ids=range(len(NOT_FAST)))
def test_fast_path_steps_aside_for_anything_unusual(fields):
    assert _classifier().fast(*fields) is None


def test_fast_path_agrees_with_reference_on_random_rows():
    """Fuzz: wherever the fast path answers, it answers like the domain functions."""
    rng = random.Random(7)
    classifier = _classifier()
    pieces = {
        "org": ["org_a", "org_b", "org_c", "org with space", "org\\slash", ""],
        "metric": list(METRICS) + ["other", ""],
        "value": [
            "0",
            "1",
            "-1",
            "1.0",
            "1.50",
            "-0",
            "-0.0",
            "10",
            "0.000001",
            "0.0000001",
            "123456789012",
            "1234567890123",
            ".5",
            "5.",
            "+1",
            " 1",
            "1e2",
            "abc",
            "",
            "-12.340",
            "007",
            "999999999999.999999",
        ],
        "ts": [
            "2026-03-01T00:00:00Z",
            "2026-03-01T23:59:59.1Z",
            "2026-03-01T00:00:00+00:00",
            "2026-03-01T00:00:00.1234567Z",
            "2026-13-01T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01 00:00:00Z",
            "2026-03-01T00:00:00z",
            "2026-04-01T13:00:00Z",
            "2026-04-01T13:00:00.000001Z",
            "0001-01-01T00:00:00Z",
            "",
        ],
        "props": [
            "",
            '{"user_id": "u1"}',
            '{"a":1,"a":2}',
            '{"n": 1.0}',
            '{"n": 1e400}',
            "{}",
            '{"x": [true, null]}',
            "[]",
            "{bad",
            '{"s": "\\u00e9\\n"}',
        ],
    }
    for _ in range(3000):
        fields = (
            rng.choice(pieces["org"]),
            f"e{rng.randrange(5)}",
            rng.choice(pieces["metric"]),
            rng.choice(pieces["value"]),
            rng.choice(pieces["ts"]),
            rng.choice(pieces["props"]),
        )
        fast = classifier.fast(*fields)
        if fast is not None:
            assert fast == classifier.reference(as_raw_event(fields)), fields


def test_reference_path_reasons_for_quantities_and_storage():
    reference = _classifier().reference
    base = {"org_id": "org_a", "event_id": "e1", "metric": "storage_gb", "occurred_at": "2026-03-01T00:00:00Z"}
    assert reference({**base, "value": "1.1234567"}).reason.value == "too_precise"
    assert reference({**base, "value": "1e12"}).reason.value == "value_out_of_range"
    assert reference({**base, "value": "NaN"}).reason.value == "non_finite_value"
    assert reference({**base, "event_id": "e\x001", "value": "1"}).reason.value == "malformed_line"


def test_reader_csv_splitter_matches_the_csv_module():
    layout = parse_csv_header(HEADER)
    split = event_files.csv_splitter(layout)
    lines = [
        'a,b,c,d,e,"{""k"": ""v""}"',
        'a,b,c,d,e,"{""k"": ""v,w""}"',
        'a,"b",c,d,e,f',
        'a,b,c,d,e,""',
        'a,b,c,d,e,"x""',
        'a,b,c,d,e,"x"y"',
        'a,b,c,d,e,"x",z',
        'a,b,c,d,"e,f',
    ]
    for line in lines:
        try:
            expected = split_csv_line(line, 6)
        except MalformedLine:
            with pytest.raises(MalformedLine):
                split(line)
        else:
            assert list(split(line)[0]) == expected, line


def test_canonical_properties_are_what_the_fingerprint_hashes():
    props = {"b": 1, "a": {"d": [1, 2], "c": "é"}}
    assert canonical_properties(props) == json.dumps(props, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "text", ["plain", "a\tb", "new\nline", "cr\rx", "back\\slash", "\\t literally", "\\\\\t\n\r", "", "ünïcode\\n"]
)
def test_copy_unescape_inverts_copy_escape(text):
    assert event_writers.copy_unescape(event_writers.copy_escape(text)) == text


def test_packed_batch_recovers_each_row_for_a_conflict():
    classifier = classify.Classifier(
        known_orgs={"org_a", "org\tb"},
        metrics={"api_calls": Metric("api_calls", "Calls", Aggregation.COUNT)},
        now=NOW,
        max_future=dt.timedelta(hours=1),
    )
    rows = [
        ("org_a", "zz", "api_calls", "1", "2026-03-01T00:00:00Z", ""),
        ("org\tb", "a\\b", "api_calls", "2", "2026-03-01T01:30:00Z", ""),
        ("org_a", "mm", "api_calls", "3", "2026-03-01T00:10:00Z", ""),
    ]
    text = (
        "org_id,event_id,metric,value,occurred_at,properties\n"
        + "".join(",".join(f'"{f}"' if "\t" in f or "\\" in f else f for f in row) + "\n" for row in rows)
        + "\xff-not-used\n"
    )
    stream = io.StringIO(text.encode("utf-8").decode("utf-8", "surrogateescape"))
    reader = batches.BatchReader(stream, event_files.EventFormat.CSV, classifier, 10, "test.csv")
    reader.read_header()
    [batch] = list(reader)
    packed = batches.pack(batch)
    assert packed.events.count == 3 and packed.events.read == 4
    assert packed.events.payload == "".join(sorted(batch.copy_lines)).encode()
    assert packed.events.hours == ["2026-03-01T00:00:00+00:00", "2026-03-01T01:00:00+00:00"]
    lines = packed.events.payload.split(b"\n")
    raws = packed.raws.split(b"\n")
    for position in range(3):
        index = packed.events.order[position]
        fields = event_writers.copy_fields(lines[position])
        assert fields[7] == batch.shas[index]
        assert (fields[0], fields[1]) == (rows[index][0], rows[index][1])
        assert raws[index].decode("utf-8", "surrogateescape") == batch.raws[index].rstrip("\n")
        assert packed.lines[index] == batch.lines[index]


# --- the fast classifier agrees with domain/events.py on 100,000+ generated lines ------------

AGREE_METRICS = {
    **METRICS,
    "tiny": Metric("tiny", "Tiny", Aggregation.SUM),
}
AGREE_ORGS = frozenset({"org_a", "org_b", "org with space", "org\\slash", "ürg"})
PIECES = {
    "org": ["org_a", "org_a", "org_b", "org_x", "", " ", "org with space", "org\\slash", "ürg", "o" * 256, "o\x00"],
    "event": ["e{n}", "e{n}", "e{n}", "evt-{n}", "", "e {n}", "e\\{n}", "x" * 256, "e\x00{n}", "e\udcff{n}", "ë{n}"],
    "metric": ["api_calls", "storage_gb", "payment_volume", "active_users", "tiny", "other", "", "m" * 300],
    "value": [
        "0",
        "1",
        "-1",
        "1.0",
        "1.50",
        "-0",
        "-0.0",
        "10",
        "0.000001",
        "0.0000001",
        "123456789012",
        "1234567890123",
        "999999999999.999999",
        "1000000000000",
        "-999999999999.999999",
        ".5",
        "5.",
        "+1",
        " 1",
        "1e2",
        "1E-6",
        "1e-7",
        "abc",
        "",
        "-12.340",
        "007",
        "NaN",
        "-inf",
        "Infinity",
        "1,5",
        "0x10",
        "1_000",
        "١٢",
        "1e99999999999999999999",
        "1e-99999999999999999999",
        "0e99999999999999999999",
        "1.0000000000000000000000000000001",
        "1e-9999999",
        "1" * 40,
        "0." + "0" * 30 + "1",
        "1." + "0" * 40,
    ],
    "ts": [
        "2026-03-01T00:00:00Z",
        "2026-03-01T23:59:59.1Z",
        "2026-03-01T00:00:00+00:00",
        "2026-03-01T00:00:00.123456Z",
        "2026-03-01T00:00:00.1234567Z",
        "2026-03-01T02:00:00+02:00",
        "2026-13-01T00:00:00Z",
        "2026-03-01T24:00:00Z",
        "2026-03-01 00:00:00Z",
        "2026-03-01T00:00:00z",
        "2026-04-01T13:00:00Z",
        "2026-04-01T13:00:00.000001Z",
        "2026-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2026-03-01T00:00:00",
        "2026-03-01",
        "yesterday",
        "",
        "2026-W09-1T00:00:00Z",
    ],
    "props": [
        "",
        "",
        '{"user_id": "u1"}',
        '{"a":1,"a":2}',
        '{"n": 1.0}',
        '{"n": 1e400}',
        "{}",
        '{"x": [true, null]}',
        "[]",
        "{bad",
        '{"s": "\\u00e9\\n"}',
        '{"s": "\\ud800"}',
        '{"k": "' + "x" * 16_400 + '"}',
        "  ",
        "5",
        '{"n": 1.10}',
        '{"deep": ' + "[" * 3000 + "]" * 3000 + "}",
        '{"big": ' + "9" * 5000 + "}",
        '{"nul": "\\u0000"}',
    ],
}


GOOD = {  # what the fast path should take
    "org": ["org_a", "org_b"],
    "event": ["e{n}", "evt-{n}", "{n}"],
    "metric": ["api_calls", "storage_gb", "payment_volume", "active_users"],
    "value": ["0", "1", "1.5", "1.50", "-0", "10", "0.000001", "999999999999.999999", "42.125", "-3.25"],
    "ts": ["2026-03-01T00:00:00Z", "2026-03-01T23:59:59.1Z", "2026-03-01T00:00:00+00:00", "2026-03-31T12:00:00.5Z"],
    "props": ["", '{"user_id": "u1"}', '{"b": [1, 2.5], "a": {"z": null}}', '{"s": "\\u00e9 \\\\ q"}'],
}


def _random_fields(rng: random.Random) -> tuple:
    """Mostly clean lines, half of them with one or two fields from the adversarial pools."""
    n = rng.randrange(2000)  # a small id space, so keys repeat (duplicates and conflicts)
    names = ("org", "event", "metric", "value", "ts", "props")
    fields = {name: rng.choice(GOOD[name]) for name in names}
    if rng.random() < 0.5:
        for name in rng.sample(names, rng.choice([1, 1, 1, 2])):
            fields[name] = rng.choice(PIECES[name])
    fields["event"] = fields["event"].format(n=n)
    return tuple(fields[name] for name in names)


def _csv_line(fields: tuple, rng: random.Random) -> str:
    def quote(field: str) -> str:
        if '"' in field or "," in field or rng.random() < 0.05:
            return '"' + field.replace('"', '""') + '"'
        return field

    line = ",".join(quote(f) for f in fields)
    roll = rng.random()
    if roll < 0.01:
        return line + ",extra"  # wrong field count
    if roll < 0.02:
        return line.replace(",", ',"', 1)  # a stray quote
    return line


def _jsonl_line(fields: tuple, rng: random.Random) -> str:
    obj = dict(zip(event_files.FIELDS, fields, strict=True))
    value, props = obj["value"], obj["properties"]
    if rng.random() < 0.5 and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", value.strip()) and len(value) < 60:
        obj["value"] = "__NUM__"  # a JSON number, written as is
    if props.startswith("{") and rng.random() < 0.7:
        obj["properties"] = "__PROPS__"
    for name in ("value", "properties", "event_id"):
        if rng.random() < 0.05:
            del obj[name]
    if rng.random() < 0.02:
        obj["event_id"] = rng.randrange(10**6)  # an integer id
    text = json.dumps(obj, ensure_ascii=False)
    text = text.replace('"__NUM__"', value.strip()).replace('"__PROPS__"', props)
    roll = rng.random()
    if roll < 0.01:
        return text[:-1]  # broken JSON
    if roll < 0.015:
        return "[" + text + "]"
    return text


def _reference_line(text: str, fmt: EventFormat, layout, classifier) -> tuple:
    """A line through the csv / json modules and domain.events.validate_event only."""
    try:
        if fmt is EventFormat.CSV:
            raw = as_raw_event(csv_fields(text, layout))
        else:
            raw = json.loads(text, parse_float=JsonNumber)
            if not isinstance(raw, dict):
                raise MalformedLine("not an object")
    except (MalformedLine, ValueError, RecursionError):
        return ("rejected", "malformed_line")
    result = validate_event(
        raw, known_orgs=classifier.known_orgs, metrics=classifier.metrics, now=NOW, max_future=dt.timedelta(hours=1)
    )
    if isinstance(result, Rejection):
        return ("rejected", result.reason.value, result.detail)
    return ("accepted", classify.row_from_event(result, classifier.ingested))


def _pipeline_line(text: str, split, classifier) -> tuple:
    try:
        fields, obj = split(text)
    except MalformedLine:
        return ("rejected", "malformed_line")
    result = classifier.classify(fields, obj)
    if isinstance(result, Rejection):
        return ("rejected", result.reason.value, result.detail)
    return ("accepted", result)


@pytest.mark.parametrize("fmt", [EventFormat.CSV, EventFormat.JSONL])
def test_fast_classifier_agrees_with_the_domain_on_generated_lines(fmt):
    """60,000 lines per format (120,000 in all): same accept/reject, reason, detail and
    stored values (micros, properties JSON, UTC time, fingerprint, COPY text)."""
    rng = random.Random(20261201 + (fmt is EventFormat.JSONL))
    classifier = classify.Classifier(
        known_orgs=AGREE_ORGS, metrics=AGREE_METRICS, now=NOW, max_future=dt.timedelta(hours=1)
    )
    layout = parse_csv_header(HEADER)
    split = event_files.csv_splitter(layout) if fmt is EventFormat.CSV else event_files.jsonl_split
    outcomes: Counter = Counter()
    fast_hits = 0
    for _ in range(60_000):
        fields = _random_fields(rng)
        text = _csv_line(fields, rng) if fmt is EventFormat.CSV else _jsonl_line(fields, rng)
        expected = _reference_line(text, fmt, layout, classifier)
        got = _pipeline_line(text, split, classifier)
        assert got == expected, text
        outcomes[expected[1] if expected[0] == "rejected" else "accepted"] += 1
        if got[0] == "accepted":
            try:
                fast_hits += classifier.fast(*split(text)[0]) is not None
            except (TypeError, ValueError):
                pass
    reasons = {r.value for r in RejectReason} - {"conflicting_duplicate"}  # a rule across lines: below
    assert reasons <= set(outcomes), reasons - set(outcomes)
    assert outcomes["accepted"] > 20_000 and fast_hits > outcomes["accepted"] / 2, (outcomes, fast_hits)


def test_batches_settle_repeats_like_first_occurrence_wins():
    """The duplicate/conflict rule across batches, against a dict-based model of it."""
    rng = random.Random(5)
    classifier = classify.Classifier(
        known_orgs=AGREE_ORGS, metrics=AGREE_METRICS, now=NOW, max_future=dt.timedelta(hours=1)
    )
    clean = [
        ("org_a", f"e{rng.randrange(300)}", "storage_gb", rng.choice(["1", "2", "2.0"]), "2026-03-01T00:00:00Z", "")
        for _ in range(5_000)
    ]
    text = HEADER + "\n" + "\n".join(",".join(f) for f in clean) + "\n"
    reader = batches.BatchReader(io.StringIO(text), EventFormat.CSV, classifier, 97, "t.csv")
    reader.read_header()
    settler = pipeline._Settler()
    database: dict = {}  # what a writer does with a batch's rows (db.event_writers' contract)
    accepted, duplicates, conflicts = set(), 0, set()
    for batch in reader:
        packed = batches.pack(batch)
        stored = {}
        for position, line in enumerate(packed.events.payload.split(b"\n")[:-1]):
            index, fields = packed.events.order[position], event_writers.copy_fields(line)
            key, sha = (fields[0], fields[1]), fields[7]
            if key not in database:
                database[key] = sha
                accepted.add(packed.lines[index])
            elif database[key] == sha:
                duplicates += 1
            else:
                stored[index] = database[key]
        settlement = settler.for_batch(packed)(stored)
        duplicates += settlement.duplicates
        conflicts.update(e.line_number for e in settlement.quarantine if e.reason == "conflicting_duplicate")
    winners: dict = {}
    model_accepted, model_duplicates, model_conflicts = set(), 0, set()
    for number, fields in enumerate(clean, start=2):
        sha = classifier.reference(as_raw_event(fields)).payload_sha256
        key = fields[:2]
        if key not in winners:
            winners[key] = sha
            model_accepted.add(number)
        elif winners[key] == sha:
            model_duplicates += 1
        else:
            model_conflicts.add(number)
    assert (accepted, duplicates, conflicts) == (model_accepted, model_duplicates, model_conflicts)


# --- property-based: random and adversarial input never raises ---------------------------------

_NUMBER_TEXT = st.from_regex(r"[+-]?([0-9]{1,40}(\.[0-9]{0,40})?|\.[0-9]{1,40})([eE][+-]?[0-9]{1,25})?", fullmatch=True)
_RAW_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.text(),
    _NUMBER_TEXT,
    _NUMBER_TEXT.map(JsonNumber),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
)
_OFFSET = st.builds(
    lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
)
_TIMESTAMP = st.builds(
    lambda d, off: d.isoformat() + off,
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.one_of(_OFFSET, st.just("Z"), st.just("")),
)


@settings(max_examples=600, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "org_id": st.one_of(st.sampled_from(sorted(ORGS)), _RAW_VALUE),
            "event_id": _RAW_VALUE,
            "metric": st.one_of(st.sampled_from(sorted(METRICS)), _RAW_VALUE),
            "value": _RAW_VALUE,
            "occurred_at": st.one_of(_TIMESTAMP, _RAW_VALUE),
            "properties": st.one_of(_RAW_VALUE, st.text().map(lambda t: json.dumps({"k": t}))),
        },
    )
)
def test_reference_never_raises_on_any_raw_event(raw):
    result = _classifier().reference(raw)
    assert isinstance(result, Rejection | classify.AcceptedRow)


@settings(max_examples=800, deadline=None)
@given(_NUMBER_TEXT, st.sampled_from(["storage_gb", "payment_volume"]), st.booleans())
@example("0E1000000000000000000", "storage_gb", False)  # zero, with an exponent Decimal() cannot hold
def test_any_written_number_is_stored_exactly_or_refused(value, metric, as_json):
    raw = {"org_id": "org_a", "event_id": "e1", "metric": metric, "occurred_at": "2026-03-01T00:00:00Z"}
    raw["value"] = JsonNumber(value) if as_json else value
    result = _classifier().reference(raw)
    if isinstance(result, Rejection):
        assert result.reason.value in {"too_precise", "value_out_of_range", "negative_value"}, result
    elif int(result.value_micros) == 0:  # "0E1000000000000000000" is zero, though Decimal() cannot hold its exponent
        mantissa = value.lower().split("e")[0].lstrip("+-")
        assert set(mantissa) <= {"0", "."}, value
    else:
        assert Decimal(result.value_micros).scaleb(-6) == Decimal(value)  # exact, never rounded


@settings(max_examples=800, deadline=None)
@given(_TIMESTAMP)
def test_any_timestamp_is_accepted_in_utc_or_refused(stamp):
    raw = {"org_id": "org_a", "event_id": "e1", "metric": "api_calls", "occurred_at": stamp}
    result = _classifier().reference(raw)
    if isinstance(result, Rejection):
        assert result.reason.value in {"invalid_timestamp", "naive_timestamp", "future_timestamp"}, result
    else:
        assert dt.datetime.fromisoformat(result.occurred_at) == dt.datetime.fromisoformat(stamp)


_CSV_FIELD = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["org_a", "org_b", "api_calls", "storage_gb", "1", "-1.5", "2026-03-01T00:00:00Z", '{"a": 1}']),
    _NUMBER_TEXT,
    _TIMESTAMP,
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_CSV_FIELD, min_size=5, max_size=7), st.booleans())
def test_pipeline_never_raises_and_agrees_on_random_csv_lines(fields, quote_all):
    text = ",".join(('"' + f.replace('"', '""') + '"') if quote_all or '"' in f else f for f in fields)
    text = text.replace("\r", "").replace("\n", "")
    layout = parse_csv_header(HEADER)
    classifier = _classifier()
    assert _pipeline_line(text, event_files.csv_splitter(layout), classifier) == _reference_line(
        text, EventFormat.CSV, layout, classifier
    )


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape"))))
def test_pipeline_never_raises_on_random_text(text):
    text = text.replace("\r", "").replace("\n", "")
    classifier = _classifier()
    layout = parse_csv_header(HEADER)
    assert _pipeline_line(text, event_files.csv_splitter(layout), classifier) == _reference_line(
        text, EventFormat.CSV, layout, classifier
    )
    assert _pipeline_line(text, event_files.jsonl_split, classifier) == _reference_line(
        text, EventFormat.JSONL, layout, classifier
    )


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(event_files.FIELDS + ("extra",)),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(),
            _TIMESTAMP,
            st.sampled_from(["org_a", "api_calls", "storage_gb"]),
            st.recursive(
                st.one_of(st.integers(), st.text(max_size=4)), lambda c: st.lists(c, max_size=3), max_leaves=5
            ),
            st.dictionaries(st.text(max_size=3), st.one_of(st.floats(), st.text(max_size=3)), max_size=3),
        ),
    )
)
def test_pipeline_never_raises_and_agrees_on_random_json_objects(obj):
    try:
        text = json.dumps(obj)
    except ValueError:
        return
    classifier = _classifier()
    layout = parse_csv_header(HEADER)
    assert _pipeline_line(text, event_files.jsonl_split, classifier) == _reference_line(
        text, EventFormat.JSONL, layout, classifier
    )
