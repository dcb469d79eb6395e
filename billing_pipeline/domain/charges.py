"""Auto-charge decisions: which attempt of which invoice is due at a given instant (pure).

The first attempt is made on the due date; a soft decline is retried ``retry_days[n - 1]`` days
after the due date for attempt ``n + 1``. The default retry days sit one day before each dunning
step after the overdue notice (``retry_days_from_policy``: policy +7, +14, +30 -> 6, 13, 29), so
a retry that succeeds comes before the next, harsher reminder. Hard declines, a missing payment
method and 3-D Secure (``requires_action``: the customer pays on the hosted page) stop the
retries and leave the invoice to the reminders; ``max_attempts`` soft declines give up into a
dead letter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from billing_pipeline.domain.dunning_policy import DunningPolicy

#: attempt statuses that end the automatic charging of an invoice
OPEN, FINAL = ("pending",), ("succeeded", "processing", "settled", "requires_action", "dead")


class NextCharge(StrEnum):
    CHARGE = "charge"  # attempt ``attempt`` is due now
    RESOLVE = "resolve"  # attempt ``attempt`` was called and not recorded: ask find_charge first
    WAIT = "wait"  # the next attempt is not due yet
    STOP = "stop"  # hard decline / no payment method / paid / processing: nothing more to do
    GIVE_UP = "give_up"  # the cap is reached: dead letter


@dataclass(frozen=True)
class AttemptRecord:
    attempt: int
    status: str
    hard_decline: bool = False


@dataclass(frozen=True)
class ChargePlan:
    action: NextCharge
    attempt: int
    reason: str = ""


def retry_days_from_policy(policy: DunningPolicy) -> tuple[int, ...]:
    """One day before each dunning step after the overdue notice (offset > 1): policy 1, 7, 14, 30 -> 6, 13, 29."""
    return tuple(sorted({step.offset_days - 1 for step in policy.steps if step.offset_days > 1}))


def parse_retry_days(text: str) -> tuple[int, ...]:
    """``"3, 7, 14"`` -> (3, 7, 14): strictly increasing whole days after the due date, each 1..365."""
    days: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part.isdigit() or not 1 <= int(part) <= 365:
            raise ValueError(f"retry days: whole days 1-365 separated by commas, got {part!r}")
        if days and int(part) <= days[-1]:
            raise ValueError(f"retry days must increase, got {part} after {days[-1]}")
        days.append(int(part))
    return tuple(days)


def plan_charge(
    attempts: Iterable[AttemptRecord],
    due_at: dt.datetime,
    as_of: dt.datetime,
    retry_days: Sequence[int],
    max_attempts: int,
) -> ChargePlan:
    """What to do with one due invoice (amount due > 0) at ``as_of``, given its recorded attempts."""
    done = sorted(attempts, key=lambda a: a.attempt)
    if as_of < due_at:
        return ChargePlan(NextCharge.WAIT, 1, "not due yet")
    if not done:
        return ChargePlan(NextCharge.CHARGE, 1)
    last = done[-1]
    if last.status in OPEN:
        return ChargePlan(NextCharge.RESOLVE, last.attempt)
    if last.status in FINAL:
        return ChargePlan(NextCharge.STOP, last.attempt, f"attempt {last.attempt} is {last.status}")
    if last.hard_decline:
        return ChargePlan(NextCharge.STOP, last.attempt, f"attempt {last.attempt} was a hard decline")
    if last.attempt >= max_attempts:
        return ChargePlan(NextCharge.GIVE_UP, last.attempt, f"{last.attempt} attempts declined (cap {max_attempts})")
    if last.attempt > len(retry_days):
        return ChargePlan(NextCharge.GIVE_UP, last.attempt, f"no retry scheduled after attempt {last.attempt}")
    when = due_at + dt.timedelta(days=retry_days[last.attempt - 1])
    if as_of < when:
        return ChargePlan(NextCharge.WAIT, last.attempt + 1, f"next attempt on {when:%Y-%m-%d}")
    return ChargePlan(NextCharge.CHARGE, last.attempt + 1)
