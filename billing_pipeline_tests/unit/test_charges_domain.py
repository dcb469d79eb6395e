"""domain.charges (the retry plan) and domain.aging (receivables by age)."""

from __future__ import annotations

import datetime as dt

import pytest

from billing_pipeline.domain.aging import aging, bucket_of
from billing_pipeline.domain.charges import (
    AttemptRecord,
    NextCharge,
    parse_retry_days,
    plan_charge,
    retry_days_from_policy,
)
from billing_pipeline.domain.dunning import DunnedInvoice
from billing_pipeline.domain.model import InvoiceStatus
from billing_pipeline.services.collections.policy import load_policy

DUE = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
DAYS = (6, 13, 29)


def at(days: float) -> dt.datetime:
    return DUE + dt.timedelta(days=days)


def test_default_retry_days_sit_one_day_before_each_dunning_step_after_the_overdue_notice():
    assert retry_days_from_policy(load_policy()) == (6, 13, 29)  # policy: -7, +1, +7, +14, +30


@pytest.mark.parametrize(
    ("attempts", "when", "expected"),
    [
        ([], -0.01, (NextCharge.WAIT, 1)),
        ([], 0, (NextCharge.CHARGE, 1)),
        ([AttemptRecord(1, "pending")], 0, (NextCharge.RESOLVE, 1)),
        ([AttemptRecord(1, "declined")], 5.99, (NextCharge.WAIT, 2)),
        ([AttemptRecord(1, "declined")], 6, (NextCharge.CHARGE, 2)),
        ([AttemptRecord(1, "declined"), AttemptRecord(2, "declined")], 13, (NextCharge.CHARGE, 3)),
        ([AttemptRecord(1, "declined", hard_decline=True)], 40, (NextCharge.STOP, 1)),
        ([AttemptRecord(1, "requires_action")], 40, (NextCharge.STOP, 1)),
        ([AttemptRecord(1, "processing")], 40, (NextCharge.STOP, 1)),
        ([AttemptRecord(1, "failed")], 6, (NextCharge.CHARGE, 2)),  # a bank debit that failed: retried
        ([AttemptRecord(n, "declined") for n in (1, 2, 3, 4)], 40, (NextCharge.GIVE_UP, 4)),
        ([AttemptRecord(n, "declined") for n in (1, 2, 3, 4)] + [AttemptRecord(5, "dead")], 90, (NextCharge.STOP, 5)),
    ],
)
def test_plan_charge(attempts, when, expected):
    plan = plan_charge(attempts, DUE, at(when), DAYS, max_attempts=4)
    assert (plan.action, plan.attempt) == expected


def test_a_schedule_shorter_than_the_cap_gives_up_after_its_last_retry():
    plan = plan_charge([AttemptRecord(1, "declined"), AttemptRecord(2, "declined")], DUE, at(90), (3,), 5)
    assert plan.action is NextCharge.GIVE_UP and "no retry scheduled" in plan.reason


@pytest.mark.parametrize(("text", "error"), [("3,x", "'x'"), ("7,3", "must increase"), ("0", "1-365")])
def test_retry_days_are_refused_with_the_bad_part(text, error):
    assert parse_retry_days("2, 5,9") == (2, 5, 9)
    with pytest.raises(ValueError, match=error):
        parse_retry_days(text)


def test_aging_buckets_by_whole_days_overdue_per_currency():
    assert [bucket_of(DUE, at(d)) for d in (-1, 0.9, 1, 30.5, 31, 60, 90, 91)] == [
        "current",
        "current",
        "1-30",
        "1-30",
        "31-60",
        "31-60",
        "61-90",
        "90+",
    ]  # fmt: skip  as the AR aging report: whole UTC days past the due date
    invoices = [
        DunnedInvoice(1, "a", "INV-1", InvoiceStatus.FINALIZED, "USD", 1000, DUE),
        DunnedInvoice(2, "b", "INV-2", InvoiceStatus.FINALIZED, "USD", 500, DUE),
        DunnedInvoice(3, "c", "INV-3", InvoiceStatus.FINALIZED, "EUR", 700, at(10)),
        DunnedInvoice(4, "d", "INV-4", InvoiceStatus.FINALIZED, "USD", 900, DUE),
    ]
    due = {1: 1000, 2: 200, 3: 700, 4: 0}
    assert aging(invoices, due, at(3)) == {"1-30": {"USD": (2, 1200)}, "current": {"EUR": (1, 700)}}


def test_the_charge_settings_refuse_bad_values_by_name():
    from billing_pipeline.settings import Settings, SettingsError

    assert Settings.from_env({"CHARGE_RETRY_DAYS": "2, 4"}).charge_retry_days == "2, 4"
    with pytest.raises(SettingsError, match=r"CHARGE_RETRY_DAYS: retry days must increase"):
        Settings.from_env({"CHARGE_RETRY_DAYS": "7,3"})
    with pytest.raises(SettingsError, match="CHARGE_MAX_ATTEMPTS"):
        Settings.from_env({"CHARGE_MAX_ATTEMPTS": "0"})
    with pytest.raises(SettingsError, match="PAYMENT_SYNC_CRON"):
        Settings.from_env({"PAYMENT_SYNC_CRON": "every minute"})
