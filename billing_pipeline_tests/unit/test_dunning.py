"""due_reminders: every step boundary, catch-up both ways, partial payments, Kill Bill #2297, time zones."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from billing_pipeline.domain.dunning import Decision, PaymentRecord, Receivable, due_reminders, stop_reason
from billing_pipeline.domain.dunning_policy import CatchUp
from billing_pipeline.domain.model import BillingInterval, InvoiceStatus, Organization, OrganizationStatus
from billing_pipeline.services.collections.policy import load_policy

UTC = dt.UTC
POLICY = load_policy()
DUE = dt.datetime(2026, 3, 31, tzinfo=UTC)  # issued 2026-03-01, net 30


def org(org_id="acme", **changes) -> Organization:
    base = Organization(
        org_id,
        "Acme Inc",
        "billing@acme.test",
        OrganizationStatus.ACTIVE,
        "USD",
        Decimal("0.20"),
        BillingInterval.MONTHLY,
        False,
        30,
        account_manager_email="am@seller.test",
    )
    return dataclasses.replace(base, **changes)


def invoice(invoice_id=1, *, due_at=DUE, total=10_000, status=InvoiceStatus.FINALIZED, org_id="acme") -> Receivable:
    return Receivable(invoice_id, org_id, f"INV-2026-{invoice_id:06d}", status, "USD", total, due_at)


def at(day: str, time: str = "09:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time}:00+00:00")


def sends(reminders) -> list[tuple[int, str, str]]:
    return [(r.invoice_id, r.step, r.audience.value) for r in reminders if r.decision is Decision.SEND]


def skips(reminders) -> list[tuple[int, str, str]]:
    return [(r.invoice_id, r.step, r.audience.value) for r in reminders if r.decision is Decision.SKIP]


def run_days(first: str, last: str, invoices, payments_on=(), organizations=None, policy=POLICY):
    """A daily 09:00 UTC run from ``first`` to ``last``; payments_on: (ISO day, PaymentRecord) visible from then."""
    organizations = organizations or {"acme": org()}
    recorded: set = set()
    calendar: dict[str, list[tuple[int, str, str]]] = {}
    skipped: dict[str, list[tuple[int, str, str]]] = {}
    day = dt.date.fromisoformat(first)
    while day <= dt.date.fromisoformat(last):
        paid = [p for since, p in payments_on if dt.date.fromisoformat(since) <= day]
        out = due_reminders(invoices, paid, policy, at(day.isoformat()), organizations, recorded)
        recorded |= {r.key for r in out}
        if sends(out):
            calendar[day.isoformat()] = sends(out)
        if skips(out):
            skipped[day.isoformat()] = skips(out)
        day += dt.timedelta(days=1)
    return calendar, skipped


def test_a_daily_run_sends_every_step_on_its_day_exactly_once():
    calendar, skipped = run_days("2026-03-01", "2026-06-30", [invoice()])
    assert calendar == {
        "2026-03-24": [(1, "upcoming", "customer")],
        "2026-04-01": [(1, "overdue", "customer")],
        "2026-04-07": [(1, "escalation_7", "customer")],
        "2026-04-14": [(1, "escalation_14", "customer"), (1, "escalation_14", "account_manager")],
        "2026-04-30": [(1, "final_30", "customer"), (1, "final_30", "account_manager")],
    }
    assert skipped == {}


@pytest.mark.parametrize(
    ("day", "step"),
    [
        ("2026-03-24", "upcoming"),
        ("2026-04-01", "overdue"),
        ("2026-04-07", "escalation_7"),
        ("2026-04-14", "escalation_14"),
        ("2026-04-30", "final_30"),
    ],
)
def test_each_step_boundary_the_day_before_is_not_due_the_day_itself_is(day, step):
    earlier = {(1, s.code, a) for s in POLICY.steps for a in ("customer", "account_manager") if s.code != step}
    # every other step already recorded: only ``step`` can come out
    earlier = {
        k for k in earlier if dt.date(2026, 3, 31) + dt.timedelta(days=_offset(k[1])) < dt.date.fromisoformat(day)
    }
    before = dt.date.fromisoformat(day) - dt.timedelta(days=1)
    assert (
        sends(due_reminders([invoice()], [], POLICY, at(before.isoformat(), "23:59"), {"acme": org()}, earlier)) == []
    )
    assert (1, step, "customer") in sends(
        due_reminders([invoice()], [], POLICY, at(day, "00:00"), {"acme": org()}, earlier)
    )


def _offset(code: str) -> int:
    return next(s.offset_days for s in POLICY.steps if s.code == code)


def test_catch_up_most_severe_sends_the_latest_due_step_and_records_the_missed_ones_skipped():
    out = due_reminders([invoice()], [], POLICY, at("2026-04-07"), {"acme": org()})
    assert sends(out) == [(1, "escalation_7", "customer")]
    assert skips(out) == [(1, "upcoming", "customer"), (1, "overdue", "customer")]
    assert all("superseded by escalation_7" in r.reason for r in out if r.decision is Decision.SKIP)


def test_catch_up_most_severe_boundary_one_day_before_the_next_step_sends_the_previous_one():
    out = due_reminders([invoice()], [], POLICY, at("2026-04-06"), {"acme": org()})
    assert sends(out) == [(1, "overdue", "customer")]
    assert skips(out) == [(1, "upcoming", "customer")]


def test_catch_up_all_missed_sends_every_missed_step_oldest_first():
    policy = dataclasses.replace(POLICY, catch_up=CatchUp.ALL_MISSED)
    out = due_reminders([invoice()], [], policy, at("2026-04-07"), {"acme": org()})
    assert sends(out) == [(1, "upcoming", "customer"), (1, "overdue", "customer"), (1, "escalation_7", "customer")]
    assert skips(out) == []
    out = due_reminders([invoice()], [], policy, at("2026-04-06"), {"acme": org()})
    assert sends(out) == [(1, "upcoming", "customer"), (1, "overdue", "customer")]


def test_a_run_weeks_late_sends_the_final_step_to_both_audiences_only():
    out = due_reminders([invoice()], [], POLICY, at("2026-05-20"), {"acme": org()})
    assert sends(out) == [(1, "final_30", "customer"), (1, "final_30", "account_manager")]
    assert (1, "escalation_14", "account_manager") in skips(out)


def test_recorded_reminders_are_never_returned_again():
    first = due_reminders([invoice()], [], POLICY, at("2026-04-01"), {"acme": org()})
    again = due_reminders([invoice()], [], POLICY, at("2026-04-01"), {"acme": org()}, {r.key for r in first})
    assert first and again == []


def paid(amount: int, status: str = "succeeded", invoice_id: int = 1, currency: str = "USD") -> PaymentRecord:
    return PaymentRecord(invoice_id, amount, currency, status)


def test_partial_payments_reduce_the_amount_and_a_zero_balance_stops_reminders():
    out = due_reminders([invoice()], [paid(4_000), paid(1_000, "failed")], POLICY, at("2026-04-01"), {"acme": org()})
    assert sends(out) == [(1, "overdue", "customer")] and out[-1].amount_due_minor == 6_000
    assert due_reminders([invoice()], [paid(4_000), paid(6_000)], POLICY, at("2026-04-01"), {"acme": org()}) == []
    assert due_reminders([invoice()], [paid(12_000)], POLICY, at("2026-04-01"), {"acme": org()}) == []


def test_a_payment_in_another_currency_is_refused():
    with pytest.raises(ValueError, match="in EUR, the invoice in USD"):
        due_reminders([invoice()], [paid(100, currency="EUR")], POLICY, at("2026-04-01"), {"acme": org()})


@pytest.mark.parametrize(
    "status", [InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.DRAFT]
)
def test_invoices_not_open_get_no_reminder(status):
    assert due_reminders([invoice(status=status)], [], POLICY, at("2026-04-14"), {"acme": org()}) == []
    assert stop_reason(invoice(status=status), 10_000, org()) == f"invoice is {status.value}"


def test_an_excluded_organization_gets_nothing_and_no_account_manager_means_skipped():
    assert due_reminders([invoice()], [], POLICY, at("2026-04-14"), {"acme": org(dunning_excluded=True)}) == []
    recorded = {(1, "upcoming", "customer"), (1, "overdue", "customer"), (1, "escalation_7", "customer")}
    out = due_reminders([invoice()], [], POLICY, at("2026-04-14"), {"acme": org(account_manager_email=None)}, recorded)
    assert sends(out) == [(1, "escalation_14", "customer")]
    assert [(r.step, r.reason) for r in out if r.decision is Decision.SKIP] == [
        ("escalation_14", "organization has no account manager")
    ]


def test_kill_bill_2297_paying_the_oldest_invoice_skips_no_step_of_the_next_one():
    """Kill Bill #2297: paying the earliest unpaid invoice moved the account's anchor and WARNING was
    never entered. Here each invoice is its own anchor, decided afresh every day."""
    older, newer = invoice(1, due_at=DUE), invoice(2, due_at=dt.datetime(2026, 4, 30, tzinfo=UTC))
    calendar, skipped = run_days("2026-03-20", "2026-06-15", [older, newer], payments_on=[("2026-04-10", paid(10_000))])
    assert skipped == {}
    assert calendar == {
        "2026-03-24": [(1, "upcoming", "customer")],
        "2026-04-01": [(1, "overdue", "customer")],
        "2026-04-07": [(1, "escalation_7", "customer")],
        # 2026-04-10: invoice 1 paid: its escalation_14 never goes out
        "2026-04-23": [(2, "upcoming", "customer")],
        "2026-05-01": [(2, "overdue", "customer")],
        "2026-05-07": [(2, "escalation_7", "customer")],
        "2026-05-14": [(2, "escalation_14", "customer"), (2, "escalation_14", "account_manager")],
        "2026-05-30": [(2, "final_30", "customer"), (2, "final_30", "account_manager")],
    }


def test_kill_bill_2297_control_a_partial_payment_on_the_oldest_keeps_both_schedules():
    older, newer = invoice(1, due_at=DUE), invoice(2, due_at=dt.datetime(2026, 4, 30, tzinfo=UTC))
    calendar, skipped = run_days("2026-03-20", "2026-06-15", [older, newer], payments_on=[("2026-04-10", paid(9_999))])
    assert skipped == {}
    assert calendar["2026-04-14"] == [(1, "escalation_14", "customer"), (1, "escalation_14", "account_manager")]
    assert calendar["2026-04-30"] == [(1, "final_30", "customer"), (1, "final_30", "account_manager")]
    assert calendar["2026-05-30"] == [(2, "final_30", "customer"), (2, "final_30", "account_manager")]


@pytest.mark.parametrize(
    ("time_zone", "last_before", "first_on"),
    [
        # due 2026-03-31T00:00Z is 2026-03-30 17:00 in Los Angeles (PDT): local due date 03-30, upcoming 03-23
        ("America/Los_Angeles", "2026-03-23T06:59", "2026-03-23T07:00"),
        # and 2026-03-31 13:00 in Auckland (NZDT, UTC+13): upcoming on local 03-24, which starts 03-23 11:00Z
        ("Pacific/Auckland", "2026-03-23T10:59", "2026-03-23T11:00"),
        ("UTC", "2026-03-23T23:59", "2026-03-24T00:00"),
    ],
)
def test_the_day_boundary_is_the_organizations_midnight(time_zone, last_before, first_on):
    orgs = {"acme": org(time_zone=time_zone)}
    before = dt.datetime.fromisoformat(last_before + ":00+00:00")
    on = dt.datetime.fromisoformat(first_on + ":00+00:00")
    assert due_reminders([invoice()], [], POLICY, before, orgs) == []
    assert sends(due_reminders([invoice()], [], POLICY, on, orgs)) == [(1, "upcoming", "customer")]


def test_as_of_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        due_reminders([invoice()], [], POLICY, dt.datetime(2026, 4, 1), {"acme": org()})
