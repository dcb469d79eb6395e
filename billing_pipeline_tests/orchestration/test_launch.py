"""billing_pipeline.launch: batches, range tags, run keys and run requests (no runs executed)."""

import datetime as dt
import hashlib

import dagster as dg
import pytest

from billing_pipeline import launch
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline_tests.builders import UTC

M, W = BillingInterval.MONTHLY, BillingInterval.WEEKLY
ORGS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("size", "wanted", "expected"),
    [
        (2, None, [["a", "b"], ["c", "d"], ["e"]]),
        (10, None, [ORGS]),
        (2, ["e", "a", "c"], [["a", "c"], ["e"]]),  # partition order, not the order asked
        (2, ["zz"], []),
        (1, [], []),
    ],
)
def test_organization_batches(size, wanted, expected):
    assert launch.organization_batches(ORGS, size, wanted) == expected


@pytest.mark.parametrize(
    ("interval", "period", "start", "end"),
    [(M, "2026-10-01", "2026-10-01|a", "2026-10-01|c"), (W, "2026-12-28", "2026-12-28|a", "2026-12-28|c")],
)
def test_batch_tags_are_the_range_of_one_period(interval, period, start, end):
    assert launch.batch_tags(interval, period, ["a", "b", "c"]) == {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
        "billing/period": period,
    }


def test_period_run_requests_for_every_organization_key_on_the_range():
    requests = launch.period_run_requests(ORGS, M, "2026-10-01", 2, run_key_prefix="monthly-schedule")
    assert [r.run_key for r in requests] == [
        "monthly-schedule-2026-10-01-a-b",
        "monthly-schedule-2026-10-01-c-d",
        "monthly-schedule-2026-10-01-e-e",
    ]
    assert all(r.job_name is None and "billing/trigger" not in r.tags for r in requests)


def test_period_run_requests_for_chosen_organizations_key_on_the_members():
    """What invoice_delivery_sensor launches: the same undelivered set gives the same keys."""
    requests = launch.period_run_requests(
        ORGS,
        M,
        "2026-10-01",
        2,
        run_key_prefix="deliver-monthly",
        wanted=["b", "d", "e"],
        trigger="invoice_delivery_sensor",
        job_name="deliver_monthly_invoices_job",
    )
    digest = hashlib.sha256(b"b\nd").hexdigest()[:16]
    assert requests[0].run_key == f"deliver-monthly-2026-10-01-{digest}"
    assert requests[0].job_name == "deliver_monthly_invoices_job"
    assert requests[0].tags == {
        "dagster/asset_partition_range_start": "2026-10-01|b",
        "dagster/asset_partition_range_end": "2026-10-01|d",
        "billing/period": "2026-10-01",
        "billing/trigger": "invoice_delivery_sensor",
    }
    assert requests[1].tags["dagster/asset_partition_range_start"] == "2026-10-01|e"
    again = launch.period_run_requests(
        ORGS, M, "2026-10-01", 2, run_key_prefix="deliver-monthly", wanted=["d", "b", "e"]
    )
    assert [r.run_key for r in again] == [r.run_key for r in requests]


def test_hour_run_request_is_keyed_by_its_hour():
    request = launch.hour_run_request(dt.datetime(2026, 10, 1, 13, tzinfo=UTC))
    assert (request.run_key, request.partition_key) == ("2026-10-01-13:00", "2026-10-01-13:00")


def test_hour_range_run_requests_split_gaps_and_months():
    start = dt.datetime(2026, 10, 1, tzinfo=UTC)
    hours = [start + dt.timedelta(hours=i) for i in range(800)] + [dt.datetime(2026, 12, 1, 5, tzinfo=UTC)]
    requests = launch.hour_range_run_requests(hours, trigger="late_usage_sensor", run_key_prefix="late", version="v1")
    spans = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]
    assert spans == [
        ("2026-10-01-00:00", "2026-10-31-23:00"),  # at most 744 hours a run
        ("2026-11-01-00:00", "2026-11-03-07:00"),
        ("2026-12-01-05:00", "2026-12-01-05:00"),
    ]
    assert requests[0].run_key == "late-2026-10-01-00:00-2026-10-31-23:00-v1"
    assert {r.tags["billing/trigger"] for r in requests} == {"late_usage_sensor"}


def test_wanted_batches_refuse_unknown_organizations():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("monthly_billed_organizations", ORGS)
        assert launch.wanted_batches(instance, M, [], 3) == [["a", "b", "c"], ["d", "e"]]
        assert launch.wanted_batches(instance, M, ["d"], 3) == [["d"]]
        with pytest.raises(ValueError, match="unknown monthly-billed organization.*: nobody"):
            launch.wanted_batches(instance, M, ["d", "nobody"], 3)
        with pytest.raises(ValueError, match="unknown weekly-billed"):
            launch.wanted_batches(instance, W, ["a"], 3)
