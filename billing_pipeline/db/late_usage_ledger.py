"""The late-usage ledger: adjustments a draft carries, written with its lines, and what is pending.

``save_draft_with_adjustments`` writes a draft, its adjustment rows (``late_usage_adjustments``)
and the time it read each source's usage (``late_usage_checks``) in one transaction, the source
invoices locked first so that two drafts cannot both bill the same late usage. A re-draft
replaces its own rows; a finalized draft freezes them; every other invoice's rows (not void)
count as billed. ``pending_late_usage`` is what ``billing-pipeline status`` lists.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, delete, insert, not_, select, update
from sqlalchemy.orm import aliased

from billing_pipeline.clock import utc_now
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db.late_usage import LateSource, chunks, late_sources, target_alias
from billing_pipeline.db.schema import invoices, late_usage_adjustments, late_usage_checks
from billing_pipeline.domain import money
from billing_pipeline.domain.late_usage import Billed, PeriodAdjustment, with_adjustments
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceStatus
from billing_pipeline.domain.periods import BillingPeriod

REVIEW = "review: less than billed; never credited automatically (a credit note is a decision)"


def adjusted_so_far(
    conn: Connection, source_ids: Iterable[int], *, exclude: tuple[BillingInterval, str] | None = None
) -> dict[int, dict[str, Billed]]:
    """Per source invoice and charge: the adjustments on other invoices that are not void.

    ``exclude`` (interval, period key) leaves out the target being drafted: its own rows are
    replaced, never counted.
    """
    target = target_alias()
    t = late_usage_adjustments.c
    query = (
        select(t.source_invoice_id, t.charge_code, t.usage_delta, t.quantity_delta, t.amount_minor, t.currency)
        .join(target, target.c.id == t.target_invoice_id)
        .where(target.c.status != InvoiceStatus.VOID.value)
    )
    if exclude is not None:
        query = query.where(not_(and_(target.c.interval == exclude[0].value, target.c.period_key == exclude[1])))
    result: dict[int, dict[str, Billed]] = defaultdict(dict)
    for chunk in chunks(sorted(set(source_ids))):
        for r in conn.execute(query.where(t.source_invoice_id.in_(chunk))):
            row = Billed(
                Decimal(r.usage_delta), Decimal(r.quantity_delta), money.from_minor(r.amount_minor, r.currency)
            )
            charges = result[r.source_invoice_id]
            charges[r.charge_code] = charges.get(r.charge_code, Billed()) + row
    return dict(result)


def _lock(conn: Connection, source_ids: Sequence[int]) -> None:
    """Serialize drafts that may bill the same sources: row locks on PostgreSQL; on SQLite a
    no-op write first, so the transaction holds the database's write lock before it reads."""
    if not source_ids:
        return
    where = invoices.c.id.in_(list(source_ids))
    if conn.dialect.name == "postgresql":
        conn.execute(select(invoices.c.id).where(where).with_for_update()).all()
    else:
        conn.execute(update(invoices).where(where).values(updated_at=invoices.c.updated_at))


def adjusted_invoice(
    conn: Connection, base: Invoice, sources: Sequence[LateSource], *, lock: bool = False
) -> tuple[Invoice, list[tuple[LateSource, PeriodAdjustment]]]:
    """``base`` with the late usage its sources still owe (currency mismatches left out)."""
    usable = [s for s in sources if s.repriced is not None and s.currency_ok(base)]
    ids = [s.invoice_id for s in usable]
    if lock:
        _lock(conn, ids)
    adjusted = adjusted_so_far(conn, ids, exclude=(base.interval, base.period_start.date().isoformat()))
    pairs = []
    for s in sorted(usable, key=lambda s: s.period.start):
        adjustment = s.adjustment(adjusted.get(s.invoice_id, {}))
        if adjustment is not None and adjustment.charges:
            pairs.append((s, adjustment))
    return with_adjustments(base, [a for _, a in pairs]), pairs


def save_draft_with_adjustments(
    conn: Connection, base: Invoice, sources: Sequence[LateSource], *, plan_code: str, catalog_version: int
) -> tuple[int, Invoice]:
    """Store ``base`` plus its adjustment lines, and replace this draft's ledger rows, at once.

    ``sources`` include every source the stored draft read that is still billed
    (``late_sources(target=...)``), so that its adjustments are redone, not dropped.
    """
    invoice, pairs = adjusted_invoice(conn, base, sources, lock=True) if sources else (base, [])
    invoice_id, replaced = invoice_rows.store_draft(conn, invoice, plan_code=plan_code, catalog_version=catalog_version)
    if replaced:  # a re-draft: its earlier rows go (a new draft has none; adjustments only beside checks)
        checks = late_usage_checks.c
        gone = conn.execute(
            delete(late_usage_checks).where(checks.target_invoice_id == invoice_id).returning(checks.source_invoice_id)
        ).all()
        if gone:
            table = late_usage_adjustments
            conn.execute(delete(table).where(table.c.target_invoice_id == invoice_id))
    rows, line_number, now = [], len(base.lines), utc_now()
    for source, adjustment in pairs:
        for charge in adjustment.charges:
            billed_line = bool(adjustment.amount and charge.amount)
            line_number += billed_line
            rows.append(
                {
                    "source_invoice_id": source.invoice_id,
                    "charge_code": charge.charge_code,
                    "target_invoice_id": invoice_id,
                    "org_id": base.organization_id,
                    "line_number": line_number if billed_line else None,
                    "currency": adjustment.currency,
                    "usage_delta": format(charge.usage, "f"),
                    "quantity_delta": format(charge.quantity, "f"),
                    "amount_minor": money.to_minor(charge.amount, adjustment.currency),
                    "recorded_at": now,
                }
            )
    if rows:
        conn.execute(insert(late_usage_adjustments), rows)
    _record_checks(conn, invoice_id, [s for s in sources if s.repriced is not None and s.currency_ok(base)])
    return invoice_id, invoice


def _record_checks(conn: Connection, target_id: int, sources: Sequence[LateSource]) -> None:
    """When this draft read each source's usage: once it is finalized, usage before that is settled."""
    if sources:
        conn.execute(
            insert(late_usage_checks),
            [
                {"source_invoice_id": s.invoice_id, "target_invoice_id": target_id, "checked_at": s.read_at}
                for s in sources
            ],
        )


@dataclass(frozen=True)
class PendingLateUsage:
    """Late usage of a finalized period that no finalized invoice carries yet."""

    org_id: str
    source_number: str
    period_label: str
    charge_code: str
    usage_delta: Decimal
    amount: Decimal
    currency: str
    state: str  # not on an invoice yet | on the draft of ... | review: ... | blocked: ...


def pending_late_usage(engine: Engine) -> list[PendingLateUsage]:
    """Every late-usage adjustment not on a finalized invoice: awaiting the next draft, on a draft
    not finalized yet, a decrease left for review (never credited automatically), or blocked."""
    sources = [s for group in late_sources(engine).values() for s in group]
    with engine.connect() as conn:
        adjusted = adjusted_so_far(conn, [s.invoice_id for s in sources])
        pending = _on_drafts(conn)
    for s in sources:
        number, org = s.invoice.number or "-", s.invoice.organization_id
        if s.problem is not None:
            pending.append(
                PendingLateUsage(
                    org,
                    number,
                    s.period.label,
                    "-",
                    Decimal(0),
                    Decimal(0),
                    s.invoice.currency,
                    f"blocked: {s.problem}",
                )
            )
            continue
        adjustment = s.adjustment(adjusted.get(s.invoice_id, {}))
        for state, deltas in (("not on an invoice yet", adjustment.charges), (REVIEW, adjustment.reviews)):
            for d in deltas:
                pending.append(
                    PendingLateUsage(
                        org, number, s.period.label, d.charge_code, d.usage, d.amount, adjustment.currency, state
                    )
                )
    return sorted(pending, key=lambda p: (p.org_id, p.source_number, p.charge_code))


def _on_drafts(conn: Connection) -> list[PendingLateUsage]:
    source, target = aliased(invoices, name="source"), target_alias()
    t = late_usage_adjustments.c
    query = (
        select(
            t.org_id,
            t.charge_code,
            t.usage_delta,
            t.amount_minor,
            t.currency,
            source.c.number,
            source.c.interval,
            source.c.period_start,
            source.c.period_end,
            target.c.period_key,
        )
        .join(source, source.c.id == t.source_invoice_id)
        .join(target, target.c.id == t.target_invoice_id)
        .where(target.c.status == InvoiceStatus.DRAFT.value)
    )
    found = []
    for r in conn.execute(query):
        label = BillingPeriod(r.interval, r.period_start, r.period_end).label
        amount = money.from_minor(r.amount_minor, r.currency)
        found.append(
            PendingLateUsage(
                r.org_id,
                r.number or "-",
                label,
                r.charge_code,
                Decimal(r.usage_delta),
                amount,
                r.currency,
                f"on the draft of {r.period_key}",
            )
        )
    return found
