"""What an invoice still asks for: the amount due, and the money movements that reduce it.

``amount_due`` is the one rule (dunning, AR aging, the lifecycle commands all call it)::

    amount due = total - succeeded payments - credit notes      (never below zero)

and nothing at all for a ``void`` invoice (cancelled) or a ``draft`` (not issued yet); an
``uncollectible`` one still owes its amount (it can be paid later).

Only ``succeeded`` payments count: pending, processing, failed and canceled ones move no
money. An overpayment (payments and credits above the total) shows as ``Receivable.overpaid``;
``amount_due`` is then zero. Amounts are exact ``Decimal`` in one currency; a payment or credit
in another currency is refused, never converted.

Amounts typed by an operator go through ``parse_amount``: exactly the currency's decimals at
most (``"12.345"`` USD is refused, ``"1000"`` JPY is fine, ``"1.5"`` KWD is ``1.500``).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from . import money
from .model import InvoiceStatus


class PaymentStatus(str, enum.Enum):
    """A payment row's status; only ``SUCCEEDED`` and ``CANCELED`` are final (Stripe's rule)."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class ManualMethod(str, enum.Enum):
    """How money paid outside the payment gateway arrived (``payments record --method``)."""

    BANK_TRANSFER = "bank_transfer"
    CHECK = "check"
    CASH = "cash"
    OTHER = "other"


@dataclass(frozen=True)
class Payment:
    amount: Decimal
    currency: str
    status: PaymentStatus | str
    method: str = ""
    external_id: str | None = None
    at: dt.datetime | None = None

    @property
    def succeeded(self) -> bool:
        return PaymentStatus(self.status) is PaymentStatus.SUCCEEDED


@dataclass(frozen=True)
class Receivable:
    """An invoice's money in one currency: what it asked for, what came in, what was credited."""

    currency: str
    total: Decimal
    paid: Decimal
    credited: Decimal
    status: InvoiceStatus | None = None  # None: the arithmetic only

    @property
    def balance(self) -> Decimal:
        """Signed: positive is still owed, negative is overpaid (a void or draft invoice owes nothing)."""
        owed = Decimal(0) if self.status in (InvoiceStatus.VOID, InvoiceStatus.DRAFT) else self.total
        return owed - self.paid - self.credited

    @property
    def amount_due(self) -> Decimal:
        return money.quantize(max(self.balance, Decimal(0)), self.currency)

    @property
    def overpaid(self) -> Decimal:
        return max(-self.balance, Decimal(0))


class AmountError(ValueError):
    """An amount that cannot be accepted (the message names the field and the currency's rule)."""


def receivable(
    total: Decimal,
    currency: str,
    payments: Iterable[Payment] = (),
    credit_notes: Iterable[Decimal] = (),
    status: InvoiceStatus | None = None,
) -> Receivable:
    """The invoice's ``Receivable``; ``credit_notes`` are the credit notes' totals."""
    paid = Decimal(0)
    for p in payments:
        if p.currency != currency:
            raise AmountError(f"payment {p.external_id or ''} is in {p.currency}, the invoice in {currency}".strip())
        if p.succeeded:
            paid += money.to_decimal(p.amount)
    credited = sum((money.to_decimal(c) for c in credit_notes), Decimal(0))
    return Receivable(currency, money.to_decimal(total), paid, credited, status)


def amount_due(
    total: Decimal,
    currency: str,
    payments: Iterable[Payment] = (),
    credit_notes: Iterable[Decimal] = (),
    status: InvoiceStatus | None = None,
) -> Decimal:
    """total - succeeded payments - credit notes, never below zero, in the currency's decimals;
    0 for a void or draft invoice (``status``)."""
    return receivable(total, currency, payments, credit_notes, status).amount_due


_AMOUNT = re.compile(r"^\d+(\.\d+)?$")


def _decimals(n: int) -> str:
    return f"{n} decimal{'' if n == 1 else 's'}"


def parse_amount(text: str, currency: str, *, field: str = "AMOUNT") -> Decimal:
    """A positive amount typed in ``currency``: digits, at most the currency's decimals.

    ``parse_amount("12.50", "USD") == Decimal("12.50")``; ``"12.505"`` USD, ``"1.5"`` JPY,
    ``"-3"``, ``"1e3"``, ``"1,000"`` and ``"0"`` are refused with a message naming ``field``.
    """
    exp = money.exponent(currency)
    raw = text.strip()
    if not _AMOUNT.match(raw):
        raise AmountError(f"{field}: {text!r} is not an amount: digits with an optional '.' and decimals")
    decimals = len(raw.partition(".")[2])
    if decimals > exp:
        allowed = _decimals(exp) if exp else "no decimals"
        raise AmountError(f"{field}: {text!r} has {_decimals(decimals)}; {currency} amounts have {allowed}")
    value = money.from_minor(int(Decimal(raw).scaleb(exp)), currency)
    if value <= 0:
        raise AmountError(f"{field}: must be more than 0 {currency}, got {text!r}")
    return value


def manual_payment_id(
    number: str, method: ManualMethod, amount: Decimal, currency: str, *, reference: str | None, day: dt.date
) -> str:
    """The deterministic ``payments.external_id`` of a payment recorded by hand.

    With a reference (the bank transfer's, the check's number) it is ``manual:{number}:{reference}``:
    one row per reference and invoice. Without one, the same invoice, method, amount and day give
    the same id: re-running the command records nothing twice (a second identical payment that
    day needs a reference).
    """
    if reference is not None:
        ref = reference.strip()
        if not ref or len(ref) > 128 or any(not c.isprintable() for c in ref):
            raise AmountError(f"--reference: 1 to 128 printable characters, got {reference!r}")
        return f"manual:{number}:{ref}"
    digest = hashlib.sha256(
        f"{number}|{method.value}|{money.to_minor(amount, currency)}|{currency}|{day.isoformat()}".encode()
    ).hexdigest()[:24]
    return f"manual:{number}:{method.value}:{day.isoformat()}:{digest}"


def overpayment_refusal(number: str, due: Decimal, amount: Decimal, currency: str) -> str | None:
    """Why a payment of ``amount`` cannot be recorded on an invoice owing ``due``; ``None`` if it can.

    Overpayments are refused, not kept as credit: there is no customer balance to hold them, and
    an operator who typed too much should see it now rather than in a refund later.
    """
    if due <= 0:
        return f"invoice {number} has nothing due"
    if amount > due:
        return (
            f"invoice {number}: {money.format_amount(amount, currency)} is more than the amount due "
            f"{money.format_amount(due, currency)}; overpayments are refused"
        )
    return None


__all__ = [
    "AmountError",
    "ManualMethod",
    "Payment",
    "PaymentStatus",
    "Receivable",
    "amount_due",
    "manual_payment_id",
    "overpayment_refusal",
    "parse_amount",
    "receivable",
]
