"""The e2e scenario's months, derived from the clock the daemon runs on.

The daemon ticks on the real clock, so the scenario cannot pin a calendar month: the schedule
bills the month before its tick (``SCHEDULED``), the GraphQL backfill the month before that
(``BACKFILLED``). When the session starts in the last days of a month, a tick may land in the
next month; the current month's first days (already past then) are seeded too, and the schedule
test takes its expected month from the tick it observed.
"""

from __future__ import annotations

import datetime as dt

from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import BillingPeriod, period_containing, previous_period

UTC = dt.UTC
SEEDED_DAYS = 4  # usage lies in each seeded month's first 4 days; the CLI aggregates just those hours

STARTED_AT = dt.datetime.now(UTC)
SCHEDULED: BillingPeriod = previous_period(BillingInterval.MONTHLY, STARTED_AT)
BACKFILLED: BillingPeriod = SCHEDULED.previous()
CURRENT: BillingPeriod = period_containing(BillingInterval.MONTHLY, STARTED_AT)


def seeded_periods(now: dt.datetime = STARTED_AT) -> list[BillingPeriod]:
    """The months that get usage: both billed ones, and the current one once its usage days are past."""
    months = [BACKFILLED, SCHEDULED]
    current = period_containing(BillingInterval.MONTHLY, now)
    if now >= current.start + dt.timedelta(days=SEEDED_DAYS + 1):
        months.append(current)
    return months


def usage_hours(period: BillingPeriod) -> tuple[str, str]:
    """First and last hour holding seeded usage, as ``aggregate-usage`` takes them."""
    last = period.start + dt.timedelta(days=SEEDED_DAYS) - dt.timedelta(hours=1)
    return period.start.strftime("%Y-%m-%dT%H:%M"), last.strftime("%Y-%m-%dT%H:%M")
