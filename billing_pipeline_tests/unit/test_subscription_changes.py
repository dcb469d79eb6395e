"""domain.subscription_changes: what a plan change or a cancellation ends and starts."""

import datetime as dt

import pytest

from billing_pipeline.domain.customers import Subscription
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.subscription_changes import ChangeError, When, cancellation, effective_at, plan_change

UTC = dt.UTC
OCT_1, NOV_10, DEC_1 = (dt.datetime(2026, m, d, tzinfo=UTC) for m, d in ((10, 1), (11, 10), (12, 1)))
STORED = [Subscription(OCT_1, None, "basic")]


@pytest.mark.parametrize(
    ("when", "interval", "expected"),
    [
        (When.NOW, BillingInterval.MONTHLY, NOV_10),
        (When.PERIOD_END, BillingInterval.MONTHLY, DEC_1),
        (When.PERIOD_END, BillingInterval.WEEKLY, dt.datetime(2026, 11, 16, tzinfo=UTC)),  # 10 Nov is a Tuesday
    ],
)
def test_effective_dates(when, interval, expected):
    assert effective_at(NOV_10, when, interval) == expected


def test_a_plan_change_ends_the_one_in_force_and_starts_the_new_one_until_its_old_end():
    stored = [Subscription(OCT_1, dt.datetime(2027, 1, 1, tzinfo=UTC), "basic")]
    change = plan_change(stored, "pro", NOV_10)
    assert change.ended == Subscription(OCT_1, NOV_10, "basic")
    assert change.started == Subscription(NOV_10, dt.datetime(2027, 1, 1, tzinfo=UTC), "pro")


def test_cancellation_ends_it_and_starts_nothing():
    change = cancellation(STORED, DEC_1)
    assert change.ended == Subscription(OCT_1, DEC_1, "basic") and change.started is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plan_change(STORED, "basic", NOV_10), "already 'basic'"),
        (lambda: plan_change(STORED, "pro", OCT_1), "starts on 2026-10-01"),
        (lambda: plan_change(STORED, "pro", dt.datetime(2026, 9, 1, tzinfo=UTC)), "no subscription in force"),
        (lambda: cancellation([Subscription(OCT_1, NOV_10, "basic")], DEC_1), "no subscription in force"),
        (lambda: effective_at(NOV_10 + dt.timedelta(hours=5), When.NOW, BillingInterval.MONTHLY), "midnight UTC"),
    ],
)
def test_refusals(call, message):
    with pytest.raises(ChangeError, match=message):
        call()
