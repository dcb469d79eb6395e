"""Late usage: what a finalized period still owes, billed once on a later invoice.

The rule (Kill Bill's "late usage data", Zuora's "late usage"): a finalized invoice is never
changed. When an organization's next invoice is drafted, each earlier finalized period whose
usage changed since it was finalized is **re-priced as a whole** from today's usage, with the
plan and catalog version that invoice was priced with, and compared charge by charge with what
was billed for it so far (the invoice's own line plus adjustments already on other invoices).

* A charge that now costs more gets one adjustment line for the **difference of the charge's
  amounts** (each side rounded once by ``domain.money``), not the extra units at a marginal
  price: graduated, volume, package and percentage charges are priced over the whole period's
  quantity, so crossing a tier or starting a package is billed as the period would have been.
* The plan's ``minimum_spend`` is re-applied to what the period's charges now cost: late usage
  first fills the shortfall the true-up line billed, so the true-up's (negative) difference is
  its own adjustment line and the period's lines never add up to less than zero. A period whose
  late usage stays under its minimum gets no line at all (its quantities are still recorded).
* A charge that now costs less or counts less (a ``latest`` value that went down, events
  corrected or deleted) is **not credited**: it is reported for review (a credit note is a
  decision, as in Lago and Stripe; Kill Bill refuses to invoice on deleted usage). Nothing else
  of that period waits for it.

Amounts stay in the source invoice's currency; the caller refuses a target in another one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from . import money
from .catalog import MINIMUM_SPEND_CODE, Plan
from .invoices import minimum_spend_line
from .model import Invoice, InvoiceLine

_ZERO = Decimal(0)


@dataclass(frozen=True)
class Billed:
    """What has been billed for one charge of a period: its line plus earlier adjustments."""

    usage: Decimal = _ZERO  # the metric's quantity (units of usage)
    quantity: Decimal = _ZERO  # the line's quantity (units, packages, blocks...)
    amount: Decimal = _ZERO

    def __add__(self, other: Billed) -> Billed:
        return Billed(self.usage + other.usage, self.quantity + other.quantity, self.amount + other.amount)


@dataclass(frozen=True)
class ChargeDelta:
    """One charge's difference between the re-priced period and what was billed for it."""

    charge_code: str
    description: str
    metric_code: str | None
    usage: Decimal
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class PeriodAdjustment:
    """What one finalized invoice still owes, and what is left for a person to decide."""

    source_number: str
    period_label: str
    currency: str
    charges: tuple[ChargeDelta, ...]  # to bill (amount >= 0, true-up <= 0) and record
    reviews: tuple[ChargeDelta, ...]  # decreases: never credited automatically

    @property
    def amount(self) -> Decimal:
        return sum((c.amount for c in self.charges), _ZERO)

    def lines(self) -> tuple[InvoiceLine, ...]:
        """The adjustment lines for the next invoice: every charge whose amount changed, none
        when the period owes nothing more (late usage absorbed by its minimum spend)."""
        if not self.amount:
            return ()
        return tuple(self._line(c) for c in self.charges if c.amount)

    def _line(self, delta: ChargeDelta) -> InvoiceLine:
        what = f"{delta.description} {_signed(delta.usage)}" if delta.metric_code else delta.description
        text = f"Adjustment for {self.period_label} ({self.source_number}): {what} (late usage)"
        return InvoiceLine(delta.charge_code, text, delta.metric_code, delta.quantity, None, delta.amount)


def _signed(value: Decimal) -> str:
    return ("+" if value >= 0 else "-") + money.format_quantity(abs(value))


def billed_by_charge(source: Invoice) -> dict[str, Billed]:
    """A stored invoice's lines as ``Billed`` per charge code (its metric usage beside them)."""
    billed: dict[str, Billed] = {}
    for line in source.lines:
        usage = source.usage.get(line.metric_code, _ZERO) if line.metric_code else _ZERO
        billed[line.charge_code] = billed.get(line.charge_code, Billed()) + Billed(usage, line.quantity, line.amount)
    return billed


def period_adjustment(
    source: Invoice,
    repriced: Invoice,
    plan: Plan,
    adjusted: Mapping[str, Billed],
    *,
    period_label: str,
) -> PeriodAdjustment:
    """What ``source`` (finalized) still owes given ``repriced`` (the same period priced today).

    ``adjusted`` holds, per charge code, the adjustments of this source already on other
    invoices; they count as billed. See the module docstring for the rule.
    """
    if repriced.currency != source.currency:
        raise ValueError(f"re-priced in {repriced.currency}, invoice {source.number} is in {source.currency}")
    billed = billed_by_charge(source)
    charges: list[ChargeDelta] = []
    reviews: list[ChargeDelta] = []
    effective = _ZERO  # what the period's charges cost once the increases are billed
    for line in repriced.lines:
        if line.charge_code == MINIMUM_SPEND_CODE:
            continue
        so_far = billed.get(line.charge_code, Billed()) + adjusted.get(line.charge_code, Billed())
        usage = repriced.usage.get(line.metric_code, _ZERO) if line.metric_code else _ZERO
        delta = ChargeDelta(
            line.charge_code,
            _charge_name(line, plan),
            line.metric_code,
            usage - so_far.usage,
            line.quantity - so_far.quantity,
            line.amount - so_far.amount,
        )
        if delta.amount < 0 or delta.usage < 0:
            reviews.append(delta)
            effective += so_far.amount
        else:
            effective += line.amount
            if delta.amount or delta.usage or delta.quantity:
                charges.append(delta)
    true_up = _true_up_delta(plan, effective, billed, adjusted)
    if true_up is not None and charges:
        charges.append(true_up)
    return PeriodAdjustment(source.number or "draft", period_label, source.currency, tuple(charges), tuple(reviews))


def _charge_name(line: InvoiceLine, plan: Plan) -> str:
    for charge in plan.charges:
        if charge.code == line.charge_code:
            return charge.description
    return line.description


def _true_up_delta(
    plan: Plan, effective: Decimal, billed: Mapping[str, Billed], adjusted: Mapping[str, Billed]
) -> ChargeDelta | None:
    """The minimum-spend true-up's change once the period's charges cost ``effective``."""
    so_far = billed.get(MINIMUM_SPEND_CODE, Billed()) + adjusted.get(MINIMUM_SPEND_CODE, Billed())
    line = minimum_spend_line(plan, effective)
    now = line.amount if line is not None else _ZERO
    if now == so_far.amount:
        return None
    quantity = (_ZERO if line is None else line.quantity) - so_far.quantity
    return ChargeDelta(MINIMUM_SPEND_CODE, "Minimum spend true-up", None, _ZERO, quantity, now - so_far.amount)


def with_adjustments(invoice: Invoice, adjustments: Sequence[PeriodAdjustment]) -> Invoice:
    """``invoice`` with the adjustment lines appended after its own, tax and total recomputed.

    The lines join the subtotal, and tax is applied once on it at the invoice's rate (the one
    rounding rule); the period's own minimum-spend true-up is not reduced by them.
    """
    lines = tuple(line for adjustment in adjustments for line in adjustment.lines())
    for adjustment in adjustments:
        if adjustment.currency != invoice.currency:
            raise ValueError(
                f"late usage of {adjustment.source_number} is in {adjustment.currency}; "
                f"invoice of {invoice.organization_id} is in {invoice.currency}"
            )
    if not lines:
        return invoice
    subtotal = invoice.subtotal + sum((line.amount for line in lines), _ZERO)
    tax = money.quantize(subtotal * invoice.tax_rate, invoice.currency)
    return dataclasses.replace(invoice, lines=invoice.lines + lines, subtotal=subtotal, tax=tax, total=subtotal + tax)
