"""Subscription changes as data: which stored subscription ends, and which one starts.

A change never rewrites history: the subscription in force is ended at the effective
date and, for a plan change, a new one starts there (until the old end), so every
period before keeps its plan and a period cut by the change is prorated by day
(``domain.proration``). Effective dates are midnight UTC:

* ``when="now"`` (an upgrade): the given date;
* ``when="period_end"`` (a downgrade, a cancellation at period end): the end of the
  billing period containing the date, so that period is billed whole on the old plan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .customers import Subscription
from .model import BillingInterval
from .periods import period_containing, to_utc

__all__ = ["ChangeError", "SubscriptionChange", "When", "cancellation", "effective_at", "plan_change"]


class ChangeError(ValueError):
    """A change that cannot be made (no subscription in force, same plan, not midnight UTC...)."""


class When(str, enum.Enum):
    NOW = "now"
    PERIOD_END = "period_end"


@dataclass(frozen=True)
class SubscriptionChange:
    """``ended``: the stored subscription ``before`` with its new end; ``started``: the new one, if any."""

    before: Subscription
    ended: Subscription
    started: Subscription | None = None


def effective_at(at: dt.datetime, when: When, interval: BillingInterval) -> dt.datetime:
    """When a change asked for at ``at`` takes effect (midnight UTC)."""
    at = to_utc(at, "--at")
    if at.time() != dt.time(0):
        raise ChangeError(f"--at: a change takes effect at midnight UTC, got {at.isoformat()}")
    if When(when) is When.PERIOD_END:
        return period_containing(interval, at).end
    return at


def _in_force(stored: Sequence[Subscription], at: dt.datetime) -> Subscription:
    for sub in stored:
        if sub.starts_at <= at and (sub.ends_at is None or at < sub.ends_at):
            return sub
    raise ChangeError(f"no subscription in force on {at.date().isoformat()}")


def _cut(stored: Sequence[Subscription], at: dt.datetime) -> Subscription:
    sub = _in_force(stored, at)
    if sub.starts_at == at:
        raise ChangeError(
            f"{sub.describe()} starts on {at.date().isoformat()}: nothing of it to keep; "
            "change it with import-customers instead"
        )
    return sub


def plan_change(stored: Sequence[Subscription], plan_code: str, at: dt.datetime) -> SubscriptionChange:
    """Move to ``plan_code`` from ``at`` (already effective): the one in force ends, the new one starts."""
    sub = _cut(stored, at)
    if sub.plan_code == plan_code:
        raise ChangeError(f"--plan: the subscription in force on {at.date().isoformat()} is already {plan_code!r}")
    ended = dataclasses.replace(sub, ends_at=at)
    return SubscriptionChange(sub, ended, Subscription(at, sub.ends_at, plan_code))


def cancellation(stored: Sequence[Subscription], at: dt.datetime) -> SubscriptionChange:
    """End the subscription in force at ``at`` (already effective) there; nothing starts."""
    sub = _cut(stored, at)
    return SubscriptionChange(sub, dataclasses.replace(sub, ends_at=at))
