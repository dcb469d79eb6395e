"""The CLI's argument parsing (no Dagster): hour ranges are UTC, given offsets are converted."""

import datetime as dt

import click
import pytest

from billing_pipeline.cli.runs import _hour_range

UTC = dt.UTC


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("2026-10-01T13:00+02:00", None, (utc(2026, 10, 1, 11), utc(2026, 10, 1, 11))),
        ("2026-10-31T22:00-05:00", None, (utc(2026, 11, 1, 3), utc(2026, 11, 1, 3))),
        ("2026-10-01T13:00", "2026-10-01T15:00Z", (utc(2026, 10, 1, 13), utc(2026, 10, 1, 15))),  # naive is UTC
        ("2026-10-01T13:00Z", "2026-10-01T17:00+02:00", (utc(2026, 10, 1, 13), utc(2026, 10, 1, 15))),
        ("2026-10", None, (utc(2026, 10, 1), utc(2026, 10, 31, 23))),
        ("2028-02", None, (utc(2028, 2, 1), utc(2028, 2, 29, 23))),
    ],
)
def test_hour_range_is_converted_to_utc(first, last, expected):
    assert _hour_range(first, last) == expected


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-10-01T13:30", None, "not the start of an hour"),
        ("2026-10-01T15:00", "2026-10-01T13:00", "before"),
        ("yesterday", None, "Invalid isoformat"),
    ],
)
def test_bad_hour_ranges_are_refused(first, last, message):
    with pytest.raises(click.BadParameter, match=message):
        _hour_range(first, last)
