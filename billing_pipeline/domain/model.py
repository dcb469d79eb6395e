"""Value objects shared by every layer: customers, invoice lines, invoices.

These are plain frozen dataclasses. Amounts are ``Decimal`` already rounded to the
currency's minor unit (see ``domain.money``); quantities and unit prices are exact
``Decimal`` values and are never rounded for storage.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from decimal import Decimal


class OrganizationStatus(str, enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class BillingInterval(str, enum.Enum):
    MONTHLY = "monthly"
    WEEKLY = "weekly"


class InvoiceStatus(str, enum.Enum):
    """Invoice lifecycle: draft -> finalized -> paid | void | uncollectible. Only ``DRAFT``
    may change its lines or totals."""

    DRAFT = "draft"
    FINALIZED = "finalized"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class TransitionRefused(ValueError):
    """A status change the transition table does not allow (nothing was changed)."""


#: Every allowed status change, as Stripe allows them for its invoices (draft -> open -> paid |
#: void | uncollectible; uncollectible -> paid | void): ``paid`` and ``void`` are final.
TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.FINALIZED}),
    InvoiceStatus.FINALIZED: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
}


def check_transition(current: InvoiceStatus, target: InvoiceStatus, *, number: str | None = None) -> None:
    """Raise ``TransitionRefused`` unless ``TRANSITIONS`` allows ``current`` -> ``target``."""
    if target in TRANSITIONS[current]:
        return
    allowed = sorted(s.value for s in TRANSITIONS[current])
    what = f"invoice {number}" if number else "an invoice"
    rule = f"from {current.value} only: {', '.join(allowed)}" if allowed else f"{current.value} is final"
    raise TransitionRefused(f"{what} is {current.value}: it cannot become {target.value} ({rule})")


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    billing_email: str
    status: OrganizationStatus
    currency: str
    tax_rate: Decimal  # fraction: Decimal("0.20") is 20 %
    billing_interval: BillingInterval
    auto_pay: bool
    payment_terms_days: int = 30
    # collections (domain.dunning): reminders off, who is told at escalations, whose days count
    dunning_excluded: bool = False
    account_manager_email: str | None = None
    time_zone: str = "UTC"  # IANA name: the day boundary of the organization's reminders
    sms_phone: str | None = None  # E.164 (+14155550123): where reminders go when a policy step names sms


@dataclass(frozen=True)
class TierLine:
    """One tier's share of a tiered charge, printed under its invoice line.

    With a block size (Kill Bill tiered blocks) ``quantity`` counts blocks, ``unit_price``
    is the price of one block. Invoices stored before the largest-remainder split hold the
    exact tier amounts.
    """

    first_unit: Decimal
    last_unit: Decimal | None  # None: unbounded
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal  # this tier's share of the rounded line amount (money.allocate)


@dataclass(frozen=True)
class InvoiceLine:
    charge_code: str
    description: str
    metric_code: str | None
    quantity: Decimal
    unit_price: Decimal | None  # None where a single unit price does not apply (tiers, %)
    amount: Decimal  # rounded to the currency's minor unit
    tiers: tuple[TierLine, ...] = ()


@dataclass(frozen=True)
class Invoice:
    organization_id: str
    period_start: dt.datetime  # inclusive, UTC
    period_end: dt.datetime  # exclusive, UTC
    interval: BillingInterval
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    status: InvoiceStatus = InvoiceStatus.DRAFT
    number: str | None = None  # set when finalized
    issued_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    usage: dict[str, Decimal] = field(default_factory=dict)  # metric code -> billed quantity
