"""Invoice rows: drafts replaced freely, finalized invoices numbered once and frozen.

Amounts are written as integer minor units and read back as exact Decimals. A
finalized (or later) invoice is never rewritten: ``save_draft`` refuses it and
``finalize`` on it is a no-op that says so. Numbers come from a gapless per-series
counter bumped in the same transaction as the status change, so a rollback gives the
number back.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.engine import dialect_insert
from billing_pipeline.db.schema import (
    invoice_errors,
    invoice_lines,
    invoice_number_sequences,
    invoices,
)
from billing_pipeline.db.types import rate_from_row
from billing_pipeline.domain import money
from billing_pipeline.domain.invoices import format_invoice_number
from billing_pipeline.domain.model import (
    BillingInterval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    TierLine,
)
from billing_pipeline.domain.periods import due_date
from billing_pipeline.domain.settlement import ZeroTotalPolicy, zero_total_status


class FinalizedInvoiceError(RuntimeError):
    """A finalized invoice was about to be changed."""


class FinalizeOutcome(str, enum.Enum):
    FINALIZED = "finalized"
    FINALIZED_PAID = "finalized_paid"  # a zero total under ZERO_TOTAL_INVOICES=finalize_paid
    ALREADY_FINALIZED = "already_finalized"
    NO_DRAFT = "no_draft"
    ZERO_TOTAL_SKIPPED = "zero_total_skipped"  # ZERO_TOTAL_INVOICES=skip: the draft stays unnumbered


@dataclass(frozen=True)
class StoredInvoice:
    id: int
    invoice: Invoice
    plan_code: str
    catalog_version: int


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _tiers_json(tiers: Sequence[TierLine]) -> list[dict[str, Any]]:
    return [
        {
            "first_unit": _dec(t.first_unit),
            "last_unit": _dec(t.last_unit),
            "quantity": _dec(t.quantity),
            "unit_price": _dec(t.unit_price),
            "flat_fee": _dec(t.flat_fee),
            "amount": _dec(t.amount),
        }
        for t in tiers
    ]


def _tiers_from_json(items: list[dict[str, Any]]) -> tuple[TierLine, ...]:
    return tuple(
        TierLine(
            first_unit=Decimal(t["first_unit"]),
            last_unit=None if t["last_unit"] is None else Decimal(t["last_unit"]),
            quantity=Decimal(t["quantity"]),
            unit_price=Decimal(t["unit_price"]),
            flat_fee=Decimal(t["flat_fee"]),
            amount=Decimal(t["amount"]),
        )
        for t in items
    )


def _period_key(invoice: Invoice) -> str:
    return invoice.period_start.date().isoformat()


def get_invoice_states(
    engine: Engine, interval: BillingInterval, period_key: str, org_ids: Sequence[str] | None = None
) -> dict[str, tuple[int, str, str | None]]:
    """org id -> (invoice id, status, number) for one period."""
    query = select(invoices.c.org_id, invoices.c.id, invoices.c.status, invoices.c.number).where(
        invoices.c.interval == interval.value, invoices.c.period_key == period_key
    )
    if org_ids is not None:
        query = query.where(invoices.c.org_id.in_(list(org_ids)))
    with engine.connect() as conn:
        return {r.org_id: (r.id, r.status, r.number) for r in conn.execute(query)}


def save_draft(conn: Connection, invoice: Invoice, *, plan_code: str, catalog_version: int) -> int:
    """Insert or replace the draft for (org, interval, period); returns its id.

    Raises ``FinalizedInvoiceError`` when the period's invoice is no longer a draft.
    """
    return store_draft(conn, invoice, plan_code=plan_code, catalog_version=catalog_version)[0]


def store_draft(conn: Connection, invoice: Invoice, *, plan_code: str, catalog_version: int) -> tuple[int, bool]:
    """``save_draft``, also saying whether an earlier draft was replaced (False: a new row)."""
    if invoice.status is not InvoiceStatus.DRAFT:
        raise ValueError("only drafts can be saved")
    currency = invoice.currency
    now = utc_now()
    period_key = _period_key(invoice)
    found = conn.execute(
        select(invoices.c.id, invoices.c.status).where(
            invoices.c.org_id == invoice.organization_id,
            invoices.c.interval == invoice.interval.value,
            invoices.c.period_key == period_key,
        )
    ).first()
    values = {
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "status": InvoiceStatus.DRAFT.value,
        "currency": currency,
        "plan_code": plan_code,
        "catalog_version": catalog_version,
        "subtotal_minor": money.to_minor(invoice.subtotal, currency),
        "tax_rate": invoice.tax_rate,
        "tax_minor": money.to_minor(invoice.tax, currency),
        "total_minor": money.to_minor(invoice.total, currency),
        "usage": {code: _dec(q) for code, q in sorted(invoice.usage.items())},
        "updated_at": now,
    }
    if found is not None:
        if found.status != InvoiceStatus.DRAFT.value:
            raise FinalizedInvoiceError(
                f"invoice {found.id} for {invoice.organization_id} {period_key} is {found.status}; "
                "it cannot be redrafted"
            )
        invoice_id = found.id
        conn.execute(update(invoices).where(invoices.c.id == invoice_id).values(**values))
        conn.execute(delete(invoice_lines).where(invoice_lines.c.invoice_id == invoice_id))
        _insert_lines(conn, invoice_id, invoice)
        return invoice_id, True
    invoice_id = conn.execute(
        insert(invoices)
        .values(
            org_id=invoice.organization_id,
            interval=invoice.interval.value,
            period_key=period_key,
            created_at=now,
            **values,
        )
        .returning(invoices.c.id)
    ).scalar_one()
    _insert_lines(conn, invoice_id, invoice)
    return invoice_id, False


def _insert_lines(conn: Connection, invoice_id: int, invoice: Invoice) -> None:
    if not invoice.lines:
        return
    conn.execute(
        insert(invoice_lines),
        [
            {
                "invoice_id": invoice_id,
                "line_number": i,
                "charge_code": line.charge_code,
                "description": line.description,
                "metric_code": line.metric_code,
                "quantity": _dec(line.quantity),
                "unit_price": _dec(line.unit_price),
                "amount_minor": money.to_minor(line.amount, invoice.currency),
                "tiers": _tiers_json(line.tiers),
            }
            for i, line in enumerate(invoice.lines, start=1)
        ],
    )


def next_series_number(conn: Connection, prefix: str, year: int) -> str:
    """Bump the series counter under a row lock; a rolled-back transaction gives it back."""
    series = f"{prefix}-{year}"
    conn.execute(
        dialect_insert(conn.dialect.name)(invoice_number_sequences)
        .values(series=series, last_value=0)
        .on_conflict_do_nothing(index_elements=["series"])
    )
    value = conn.execute(
        update(invoice_number_sequences)
        .where(invoice_number_sequences.c.series == series)
        .values(last_value=invoice_number_sequences.c.last_value + 1)
        .returning(invoice_number_sequences.c.last_value)
    ).scalar_one()
    return format_invoice_number(prefix, year, value)


def finalize(
    conn: Connection,
    org_id: str,
    interval: BillingInterval,
    period_key: str,
    *,
    prefix: str,
    issued_at: dt.datetime,
    terms_days: int,
    zero_total: ZeroTotalPolicy = ZeroTotalPolicy.FINALIZE,
) -> tuple[FinalizeOutcome, int | None, str | None]:
    """Turn the period's draft into a numbered, immutable invoice (idempotent).

    A zero-total draft follows ``zero_total`` (``domain.settlement``), decided on the row
    read under the lock: finalized, finalized and ``paid`` at once, or left an unnumbered
    draft (``ZERO_TOTAL_SKIPPED``, no number taken).
    """
    found = conn.execute(
        select(invoices.c.id, invoices.c.status, invoices.c.number, invoices.c.total_minor)
        .where(
            invoices.c.org_id == org_id,
            invoices.c.interval == interval.value,
            invoices.c.period_key == period_key,
        )
        .with_for_update()
    ).first()
    if found is None:
        return FinalizeOutcome.NO_DRAFT, None, None
    if found.status != InvoiceStatus.DRAFT.value:
        return FinalizeOutcome.ALREADY_FINALIZED, found.id, found.number
    status = zero_total_status(Decimal(found.total_minor), zero_total)
    if status is None:
        return FinalizeOutcome.ZERO_TOTAL_SKIPPED, found.id, None
    number = next_series_number(conn, prefix, issued_at.year)
    now = utc_now()
    conn.execute(
        update(invoices)
        .where(invoices.c.id == found.id, invoices.c.status == InvoiceStatus.DRAFT.value)
        .values(
            status=status.value,
            number=number,
            issued_at=issued_at,
            due_at=due_date(issued_at, terms_days),
            finalized_at=now,
            updated_at=now,
        )
    )
    outcome = FinalizeOutcome.FINALIZED_PAID if status is InvoiceStatus.PAID else FinalizeOutcome.FINALIZED
    return outcome, found.id, number


def load_invoices(engine: Engine, invoice_ids: Sequence[int]) -> dict[int, StoredInvoice]:
    """Read invoices with their lines back into domain objects."""
    result: dict[int, StoredInvoice] = {}
    if not invoice_ids:
        return result
    with engine.connect() as conn:
        lines_by_invoice: dict[int, list[Any]] = {}
        for i in range(0, len(invoice_ids), 1000):
            chunk = list(invoice_ids[i : i + 1000])
            for line in conn.execute(
                select(invoice_lines)
                .where(invoice_lines.c.invoice_id.in_(chunk))
                .order_by(invoice_lines.c.invoice_id, invoice_lines.c.line_number)
            ):
                lines_by_invoice.setdefault(line.invoice_id, []).append(line)
            for row in conn.execute(select(invoices).where(invoices.c.id.in_(chunk))):
                currency = row.currency
                lines = tuple(
                    InvoiceLine(
                        charge_code=line.charge_code,
                        description=line.description,
                        metric_code=line.metric_code,
                        quantity=Decimal(line.quantity),
                        unit_price=None if line.unit_price is None else Decimal(line.unit_price),
                        amount=money.from_minor(line.amount_minor, currency),
                        tiers=_tiers_from_json(line.tiers),
                    )
                    for line in lines_by_invoice.get(row.id, [])
                )
                invoice = Invoice(
                    organization_id=row.org_id,
                    period_start=row.period_start,
                    period_end=row.period_end,
                    interval=BillingInterval(row.interval),
                    currency=currency,
                    lines=lines,
                    subtotal=money.from_minor(row.subtotal_minor, currency),
                    tax_rate=rate_from_row(row.tax_rate),
                    tax=money.from_minor(row.tax_minor, currency),
                    total=money.from_minor(row.total_minor, currency),
                    status=InvoiceStatus(row.status),
                    number=row.number,
                    issued_at=row.issued_at,
                    due_at=row.due_at,
                    usage={k: Decimal(v) for k, v in (row.usage or {}).items()},
                )
                result[row.id] = StoredInvoice(row.id, invoice, row.plan_code, row.catalog_version)
    return result


def record_error(
    conn: Connection, org_id: str, interval: BillingInterval, period_key: str, stage: str, message: str
) -> None:
    conn.execute(
        delete(invoice_errors).where(
            invoice_errors.c.org_id == org_id,
            invoice_errors.c.interval == interval.value,
            invoice_errors.c.period_key == period_key,
        )
    )
    conn.execute(
        insert(invoice_errors).values(
            org_id=org_id,
            interval=interval.value,
            period_key=period_key,
            stage=stage,
            message=message[:4000],
            recorded_at=utc_now(),
        )
    )


def clear_error(conn: Connection, org_id: str, interval: BillingInterval, period_key: str) -> None:
    conn.execute(
        delete(invoice_errors).where(
            invoice_errors.c.org_id == org_id,
            invoice_errors.c.interval == interval.value,
            invoice_errors.c.period_key == period_key,
        )
    )


def drafts_of_ended_periods(engine: Engine, interval: BillingInterval, ended_by: dt.datetime) -> dict[str, list[str]]:
    """period key -> organization ids with a draft still unfinalized in a period that ended by ``ended_by``."""
    query = (
        select(invoices.c.period_key, invoices.c.org_id)
        .where(
            invoices.c.interval == interval.value,
            invoices.c.status == InvoiceStatus.DRAFT.value,
            invoices.c.period_end <= ended_by,
        )
        .order_by(invoices.c.period_key, invoices.c.org_id)
    )
    drafts: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            drafts.setdefault(row.period_key, []).append(row.org_id)
    return drafts


def get_errors(
    engine: Engine, interval: BillingInterval, period_key: str, org_ids: Sequence[str] | None = None
) -> dict[str, tuple[str, str]]:
    """org id -> (stage, message) of the recorded failures for a period."""
    query = select(invoice_errors).where(
        invoice_errors.c.interval == interval.value, invoice_errors.c.period_key == period_key
    )
    if org_ids is not None:
        query = query.where(invoice_errors.c.org_id.in_(list(org_ids)))
    with engine.connect() as conn:
        return {r.org_id: (r.stage, r.message) for r in conn.execute(query)}
