"""Late usage of finalized invoices: which ones changed, re-priced, and the adjustments ledger.

A finalized invoice is a candidate when an hour of its period was aggregated after it was
finalized (less ``MARGIN``: an aggregation that started before and committed after) and the
organization has an event in those hours ingested after that time. ``aggregated_hours`` is a
few hundred rows a month, so the common case (nothing late) costs one small query per period;
the raw events are read only for the late hours. A candidate whose period still holds hours
not re-aggregated waits for them (``late_usage_sensor``).

Each candidate is re-priced with the plan and catalog version it was invoiced with
(``domain.late_usage``). ``save_draft_with_adjustments`` writes a draft and its adjustment
rows in one transaction, the source invoices locked (``FOR UPDATE`` on PostgreSQL) so that two
drafts cannot both bill the same late usage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, delete, func, insert, not_, select, update
from sqlalchemy.orm import aliased

from billing_pipeline.clock import utc_now
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import reference, usage
from billing_pipeline.db.schema import aggregated_hours, invoices, late_usage_adjustments, usage_events
from billing_pipeline.db.types import UTCDateTime
from billing_pipeline.domain import money
from billing_pipeline.domain.catalog import Plan
from billing_pipeline.domain.invoices import PricingError, build_invoice
from billing_pipeline.domain.late_usage import Billed, PeriodAdjustment, period_adjustment, with_adjustments
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceStatus
from billing_pipeline.domain.periods import BillingPeriod

MARGIN = dt.timedelta(hours=1)
BILLED_STATUSES = (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value, InvoiceStatus.UNCOLLECTIBLE.value)
_CHUNK = 1000
REVIEW = "review: less than billed; never credited automatically (a credit note is a decision)"


@dataclass(frozen=True)
class LateSource:
    """A finalized invoice whose period's usage changed after it was finalized."""

    invoice_id: int
    invoice: Invoice
    period: BillingPeriod
    plan: Plan | None = None
    repriced: Invoice | None = None
    problem: str | None = None  # why it cannot be adjusted automatically now

    def adjustment(self, adjusted: dict[str, Billed]) -> PeriodAdjustment | None:
        if self.plan is None or self.repriced is None:
            return None
        return period_adjustment(self.invoice, self.repriced, self.plan, adjusted, period_label=self.period.label)


def _chunks(items: Sequence, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _billed_invoices(conn: Connection, org_ids: Sequence[str] | None, before: dt.datetime | None) -> list:
    finalized_at = func.coalesce(invoices.c.finalized_at, invoices.c.updated_at, type_=UTCDateTime)
    query = select(
        invoices.c.id,
        invoices.c.org_id,
        invoices.c.period_start,
        invoices.c.period_end,
        finalized_at.label("finalized_at"),
    ).where(invoices.c.status.in_(BILLED_STATUSES))
    if before is not None:
        query = query.where(invoices.c.period_end <= before)
    if org_ids is None:
        return list(conn.execute(query))
    return [row for chunk in _chunks(list(org_ids)) for row in conn.execute(query.where(invoices.c.org_id.in_(chunk)))]


def candidate_invoices(engine: Engine, org_ids: Sequence[str] | None = None, *, before=None) -> dict[int, bool]:
    """Finalized invoices (of ``org_ids``, periods ended by ``before``) whose usage may have changed
    since, each with whether its late events sit in hours not re-aggregated yet."""
    found: dict[int, bool] = {}
    with engine.connect() as conn:
        by_period: dict[tuple[dt.datetime, dt.datetime], list] = defaultdict(list)
        for row in _billed_invoices(conn, org_ids, before):
            by_period[(row.period_start, row.period_end)].append(row)
        for (start, end), rows in sorted(by_period.items()):
            since = min(r.finalized_at for r in rows) - MARGIN
            aggregated = select(aggregated_hours.c.hour).where(
                aggregated_hours.c.hour >= start,
                aggregated_hours.c.hour < end,
                aggregated_hours.c.aggregated_at >= since,
            )
            dirty = usage.unaggregated_hours(engine, start, end)
            hours = [r.hour for r in conn.execute(aggregated)] + dirty
            if not hours:
                continue
            late = _with_late_events(conn, rows, min(hours), max(hours) + usage.HOUR, since)
            waiting = _with_late_events(conn, rows, min(dirty), max(dirty) + usage.HOUR, since) if dirty else set()
            found.update({invoice_id: invoice_id in waiting for invoice_id in late})
    return found


def _with_late_events(conn: Connection, rows: list, first: dt.datetime, end: dt.datetime, since: dt.datetime):
    """The invoices among ``rows`` whose organization has an event in [first, end) ingested after finalization."""
    latest: dict[str, dt.datetime] = {}
    for chunk in _chunks(sorted({r.org_id for r in rows})):
        query = (
            select(usage_events.c.org_id, func.max(usage_events.c.ingested_at).label("ingested"))
            .where(
                usage_events.c.org_id.in_(chunk),
                usage_events.c.occurred_at >= first,
                usage_events.c.occurred_at < end,
                usage_events.c.ingested_at >= since,
            )
            .group_by(usage_events.c.org_id)
        )
        latest.update({r.org_id: r.ingested for r in conn.execute(query)})
    return {r.id for r in rows if r.org_id in latest and latest[r.org_id] >= r.finalized_at - MARGIN}


def late_sources(engine: Engine, org_ids: Sequence[str] | None = None, *, before=None) -> dict[str, list[LateSource]]:
    """Candidate invoices by organization, each re-priced from today's usage (or with its problem)."""
    candidates = candidate_invoices(engine, org_ids, before=before)
    stored = {i: _own_lines(engine, s) for i, s in invoice_rows.load_invoices(engine, sorted(candidates)).items()}
    catalogs = reference.catalogs_by_version(engine, {s.catalog_version for s in stored.values()})
    orgs = reference.get_organizations(engine, sorted({s.invoice.organization_id for s in stored.values()}))
    groups: dict[tuple, list[invoice_rows.StoredInvoice]] = defaultdict(list)
    for s in stored.values():
        groups[(s.invoice.interval, s.invoice.period_start, s.catalog_version)].append(s)
    result: dict[str, list[LateSource]] = defaultdict(list)
    for (interval, start, version), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        period = BillingPeriod(interval, start, group[0].invoice.period_end)
        catalog = catalogs.get(version)
        ready = [s.invoice.organization_id for s in group if not candidates[s.id]]
        quantities = {}
        if catalog is not None and ready:
            quantities = usage.period_usage(engine, ready, period.start, period.end, catalog.metrics)
        for s in group:
            result[s.invoice.organization_id].append(
                _source(s, period, catalog, orgs.get(s.invoice.organization_id), quantities, waiting=candidates[s.id])
            )
    return dict(result)


def _own_lines(engine: Engine, stored: invoice_rows.StoredInvoice) -> invoice_rows.StoredInvoice:
    """``stored`` without the adjustment lines it carries for earlier periods: what it billed for its own."""
    query = select(late_usage_adjustments.c.line_number).where(
        late_usage_adjustments.c.target_invoice_id == stored.id, late_usage_adjustments.c.line_number.is_not(None)
    )
    with engine.connect() as conn:
        numbers = {r.line_number for r in conn.execute(query)}
    if not numbers:
        return stored
    lines = tuple(line for n, line in enumerate(stored.invoice.lines, start=1) if n not in numbers)
    return dataclasses.replace(stored, invoice=dataclasses.replace(stored.invoice, lines=lines))


def _source(stored, period: BillingPeriod, catalog, org, quantities, *, waiting: bool) -> LateSource:
    source = LateSource(stored.id, stored.invoice, period)
    if waiting:
        return dataclasses.replace(source, problem=f"late events in hours of {period.label} not re-aggregated yet")
    if catalog is None or stored.plan_code not in catalog.plans:
        problem = f"plan {stored.plan_code!r} of catalog version {stored.catalog_version} is not readable"
        return dataclasses.replace(source, problem=problem)
    if org is None:
        return dataclasses.replace(source, problem="organization missing")
    if org.currency != stored.invoice.currency:
        return dataclasses.replace(source, problem=f"organization now billed in {org.currency}")
    return _repriced(source, catalog.plans[stored.plan_code], org, quantities.get(org.id, {}))


def _repriced(source: LateSource, plan: Plan, org, quantities) -> LateSource:
    old = source.invoice
    as_invoiced = dataclasses.replace(org, currency=old.currency, tax_rate=old.tax_rate)
    try:
        repriced = build_invoice(as_invoiced, plan, source.period, quantities)
    except (PricingError, ArithmeticError, ValueError) as exc:
        return dataclasses.replace(source, problem=f"re-pricing failed: {exc}")
    return dataclasses.replace(source, plan=plan, repriced=repriced)


def _target():
    return aliased(invoices, name="target")


def adjusted_so_far(
    conn: Connection, source_ids: Iterable[int], *, exclude: tuple[BillingInterval, str] | None = None
) -> dict[int, dict[str, Billed]]:
    """Per source invoice and charge: the adjustments on other invoices that are not void.

    ``exclude`` (interval, period key) leaves out the target being drafted: its own rows are
    replaced, never counted.
    """
    target = _target()
    t = late_usage_adjustments.c
    query = (
        select(t.source_invoice_id, t.charge_code, t.usage_delta, t.quantity_delta, t.amount_minor, t.currency)
        .join(target, target.c.id == t.target_invoice_id)
        .where(target.c.status != InvoiceStatus.VOID.value)
    )
    if exclude is not None:
        query = query.where(not_(and_(target.c.interval == exclude[0].value, target.c.period_key == exclude[1])))
    result: dict[int, dict[str, Billed]] = defaultdict(dict)
    for chunk in _chunks(sorted(set(source_ids))):
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
    usable = [s for s in sources if s.repriced is not None and s.invoice.currency == base.currency]
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
    """Store ``base`` plus its adjustment lines, and replace this draft's ledger rows, at once."""
    invoice, pairs = adjusted_invoice(conn, base, sources, lock=True)
    invoice_id = invoice_rows.save_draft(conn, invoice, plan_code=plan_code, catalog_version=catalog_version)
    conn.execute(delete(late_usage_adjustments).where(late_usage_adjustments.c.target_invoice_id == invoice_id))
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
    return invoice_id, invoice


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
    source, target = aliased(invoices, name="source"), _target()
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
