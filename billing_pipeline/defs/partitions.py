"""Partition definitions. All UTC; only closed periods are ever billed.

Multi-partition keys join dimensions in alphabetical order of their names, and
backfills split runs on contiguous key ranges, so the time dimension must sort before
``org``: keys read ``2026-10-01|acme`` and one period × all organizations is one range.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from billing_pipeline.domain.model import BillingInterval

MONTH_DIMENSION = "month"
WEEK_DIMENSION = "billing_week"  # must sort before "org" (see module docstring)
ORG_DIMENSION = "org"

monthly_organizations = dg.DynamicPartitionsDefinition(name="monthly_billed_organizations")
weekly_organizations = dg.DynamicPartitionsDefinition(name="weekly_billed_organizations")

ORGANIZATION_PARTITIONS = {
    BillingInterval.MONTHLY: monthly_organizations,
    BillingInterval.WEEKLY: weekly_organizations,
}
TIME_DIMENSION = {BillingInterval.MONTHLY: MONTH_DIMENSION, BillingInterval.WEEKLY: WEEK_DIMENSION}


def first_monday(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


def hourly_usage_partitions(start: dt.date) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(start_date=f"{start.isoformat()}-00:00", timezone="UTC")


def billing_partitions(interval: BillingInterval, start: dt.date) -> dg.MultiPartitionsDefinition:
    if interval is BillingInterval.MONTHLY:
        time_dim: dg.PartitionsDefinition = dg.MonthlyPartitionsDefinition(
            start_date=start.replace(day=1).isoformat(), timezone="UTC"
        )
    else:
        time_dim = dg.WeeklyPartitionsDefinition(
            start_date=first_monday(start).isoformat(), day_offset=1, timezone="UTC"
        )
    return dg.MultiPartitionsDefinition(
        {TIME_DIMENSION[interval]: time_dim, ORG_DIMENSION: ORGANIZATION_PARTITIONS[interval]}
    )


def split_key(key: str | dg.MultiPartitionKey, interval: BillingInterval) -> tuple[str, str]:
    """A billing partition key -> (period key, org id)."""
    if not isinstance(key, dg.MultiPartitionKey):
        period, org = str(key).split("|", 1)
        return period, org
    dims = key.keys_by_dimension
    return dims[TIME_DIMENSION[interval]], dims[ORG_DIMENSION]


def billing_key(interval: BillingInterval, period_key: str, org_id: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TIME_DIMENSION[interval]: period_key, ORG_DIMENSION: org_id})


#: AR aging: weeks from Monday 07:00 UTC; a partition's report is as of the Monday its window
#: ends on, and its schedule fires then (Monday 07:00 UTC).
AR_AGING_HOUR = 7
#: MRR: calendar months shifted to 08:00 UTC; the partition of month M is reported on the 1st of
#: M + 1 at 08:00 UTC, when its schedule fires.
MRR_HOUR = 8


def ar_aging_report_partitions(start: dt.date) -> dg.WeeklyPartitionsDefinition:
    return dg.WeeklyPartitionsDefinition(
        start_date=first_monday(start).isoformat(), day_offset=1, hour_offset=AR_AGING_HOUR, timezone="UTC"
    )


def mrr_report_partitions(start: dt.date) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(
        start_date=start.replace(day=1).isoformat(), hour_offset=MRR_HOUR, timezone="UTC"
    )


#: Daily analytics: UTC days shifted to 02:00; the partition of day D is reported at D + 1 02:00 UTC.
DAILY_ANALYTICS_HOUR = 2


def daily_analytics_report_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), hour_offset=DAILY_ANALYTICS_HOUR, timezone="UTC")


#: Weekly BI: weeks from Sunday 03:00 UTC (after the daily analytics of Saturday); the partition of
#: the week starting Sunday S covers the days S to S + 6 and is reported at S + 7 03:00 UTC.
WEEKLY_BI_HOUR = 3


def weekly_bi_report_partitions(start: dt.date) -> dg.WeeklyPartitionsDefinition:
    first_sunday = start + dt.timedelta(days=(6 - start.weekday()) % 7)
    return dg.WeeklyPartitionsDefinition(
        start_date=first_sunday.isoformat(), day_offset=0, hour_offset=WEEKLY_BI_HOUR, timezone="UTC"
    )
