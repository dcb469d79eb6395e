"""Late usage of finalized invoices: which ones may owe more, re-priced from today's usage.

A finalized invoice is a candidate when an hour of its period was aggregated after its usage was
last read, and the organization has an event in those hours ingested after then. "Last read" is
its finalization, or, once a later invoice that read it for late usage is finalized, that read
(``late_usage_checks``): a settled period is not looked at again until new usage lands in it.
Both less ``MARGIN`` (an import or an aggregation that started before and committed after).
``aggregated_hours`` is a few hundred rows a month, so drafting without late usage costs one small
query per past period; raw events are read only for the late hours, and usage only for the
organizations with late events. A candidate whose late events sit in hours not re-aggregated yet
waits for them (``late_usage_sensor``).

Each candidate is re-priced with the plan and catalog version it was invoiced with
(``domain.late_usage``); ``db.late_usage_ledger`` bills it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import aliased

from billing_pipeline.clock import utc_now
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import reference, usage
from billing_pipeline.db.schema import (
    aggregated_hours,
    invoices,
    late_usage_adjustments,
    late_usage_checks,
    usage_events,
)
from billing_pipeline.db.types import UTCDateTime
from billing_pipeline.domain.catalog import MINIMUM_SPEND_CODE, Plan
from billing_pipeline.domain.invoices import PricingError, build_invoice
from billing_pipeline.domain.late_usage import Billed, PeriodAdjustment, period_adjustment
from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceStatus
from billing_pipeline.domain.periods import BillingPeriod

MARGIN = dt.timedelta(hours=1)
BILLED_STATUSES = (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value, InvoiceStatus.UNCOLLECTIBLE.value)
_CHUNK = 1000


@dataclass(frozen=True)
class LateSource:
    """A finalized invoice whose period's usage changed after it was finalized."""

    invoice_id: int
    invoice: Invoice
    period: BillingPeriod
    plan: Plan | None = None
    repriced: Invoice | None = None
    problem: str | None = None  # why it cannot be adjusted automatically now
    read_at: dt.datetime | None = None  # when its usage was read (before the read)

    def currency_ok(self, target: Invoice) -> bool:
        return self.invoice.currency == target.currency

    def adjustment(self, adjusted: dict[str, Billed]) -> PeriodAdjustment | None:
        if self.plan is None or self.repriced is None:
            return None
        return period_adjustment(self.invoice, self.repriced, self.plan, adjusted, period_label=self.period.label)


def chunks(items: Sequence, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


@dataclass(frozen=True)
class _Billed:
    id: int
    org_id: str
    period_start: dt.datetime
    period_end: dt.datetime
    checked: dt.datetime  # usage after this may not be billed: its finalization, or a finalized later check


def _billed_invoices(conn: Connection, org_ids: Sequence[str] | None, before: dt.datetime | None) -> list[_Billed]:
    finalized_at = func.coalesce(invoices.c.finalized_at, invoices.c.updated_at, type_=UTCDateTime)
    query = select(
        invoices.c.id, invoices.c.org_id, invoices.c.period_start, invoices.c.period_end, finalized_at.label("at")
    ).where(invoices.c.status.in_(BILLED_STATUSES))
    if before is not None:
        query = query.where(invoices.c.period_end <= before)
    parts = [None] if org_ids is None else list(chunks(list(org_ids)))
    rows = [r for c in parts for r in conn.execute(query if c is None else query.where(invoices.c.org_id.in_(c)))]
    checked = _checked_through(conn, [r.id for r in rows])
    return [_Billed(r.id, r.org_id, r.period_start, r.period_end, max(r.at, checked.get(r.id, r.at))) for r in rows]


def _checked_through(conn: Connection, source_ids: Sequence[int]) -> dict[int, dt.datetime]:
    """The latest time each source's usage was read by a draft that has since been finalized."""
    target, c = target_alias(), late_usage_checks.c
    query = (
        select(c.source_invoice_id, func.max(c.checked_at).label("at"))
        .join(target, target.c.id == c.target_invoice_id)
        .where(target.c.status.in_(BILLED_STATUSES))
        .group_by(c.source_invoice_id)
    )
    found: dict[int, dt.datetime] = {}
    for chunk in chunks(sorted(source_ids)):
        found.update({r.source_invoice_id: r.at for r in conn.execute(query.where(c.source_invoice_id.in_(chunk)))})
    return found


def candidate_invoices(engine: Engine, org_ids: Sequence[str] | None = None, *, before=None) -> dict[int, bool]:
    """Finalized invoices (of ``org_ids``, periods ended by ``before``) whose usage may have changed
    since it was last read, each with whether its late events sit in hours not re-aggregated yet."""
    found: dict[int, bool] = {}
    with engine.connect() as conn:
        by_period: dict[tuple[dt.datetime, dt.datetime], list] = defaultdict(list)
        for row in _billed_invoices(conn, org_ids, before):
            by_period[(row.period_start, row.period_end)].append(row)
        for (start, end), rows in sorted(by_period.items()):
            since = min(r.checked for r in rows) - MARGIN
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
    for chunk in chunks(sorted({r.org_id for r in rows})):
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
    return {r.id for r in rows if r.org_id in latest and latest[r.org_id] >= r.checked - MARGIN}


def late_sources(
    engine: Engine, org_ids: Sequence[str] | None = None, *, before=None, target: tuple | None = None
) -> dict[str, list[LateSource]]:
    """Candidate invoices by organization, each re-priced from today's usage (or with its problem).

    ``target`` (interval, period key): the draft being computed; the sources its stored draft
    read are included whether or not they are candidates still (its adjustments are redone).
    """
    read_at = utc_now()  # before any usage is read: what lands later is looked at again
    candidates = candidate_invoices(engine, org_ids, before=before)
    if target is not None:
        candidates = {**dict.fromkeys(_read_by_draft(engine, org_ids, target), False), **candidates}
    stored = _own_lines(engine, invoice_rows.load_invoices(engine, sorted(candidates)))
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
                _source(
                    s,
                    period,
                    catalog,
                    orgs.get(s.invoice.organization_id),
                    quantities,
                    read_at,
                    waiting=candidates[s.id],
                )
            )
    return dict(result)


def _read_by_draft(engine: Engine, org_ids: Sequence[str] | None, target: tuple) -> list[int]:
    """The sources the stored draft of ``target`` (interval, period key) read for late usage."""
    draft, c = target_alias(), late_usage_checks.c
    query = (
        select(c.source_invoice_id)
        .join(draft, draft.c.id == c.target_invoice_id)
        .join(invoices, invoices.c.id == c.source_invoice_id)
        .where(
            invoices.c.status.in_(BILLED_STATUSES),  # a source voided since is owed nothing more
            draft.c.status == InvoiceStatus.DRAFT.value,
            draft.c.interval == BillingInterval(target[0]).value,
            draft.c.period_key == target[1],
        )
    )
    with engine.connect() as conn:
        if org_ids is None:
            return [r.source_invoice_id for r in conn.execute(query)]
        return [
            r.source_invoice_id
            for chunk in chunks(list(org_ids))
            for r in conn.execute(query.where(draft.c.org_id.in_(chunk)))
        ]


def _own_lines(engine: Engine, stored: dict[int, invoice_rows.StoredInvoice]) -> dict[int, invoice_rows.StoredInvoice]:
    """The invoices without the adjustment lines they carry for earlier periods: what each billed for its own."""
    t = late_usage_adjustments.c
    query = select(t.target_invoice_id, t.line_number).where(t.line_number.is_not(None))
    numbers: dict[int, set[int]] = defaultdict(set)
    with engine.connect() as conn:
        for chunk in chunks(sorted(stored)):
            for r in conn.execute(query.where(t.target_invoice_id.in_(chunk))):
                numbers[r.target_invoice_id].add(r.line_number)
    for invoice_id, skip in numbers.items():
        invoice = stored[invoice_id].invoice
        lines = tuple(line for n, line in enumerate(invoice.lines, start=1) if n not in skip)
        stored[invoice_id] = dataclasses.replace(stored[invoice_id], invoice=dataclasses.replace(invoice, lines=lines))
    return stored


def _source(stored, period: BillingPeriod, catalog, org, quantities, read_at, *, waiting: bool) -> LateSource:
    source = LateSource(stored.id, stored.invoice, period, read_at=read_at)
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
    # Flat charges do not depend on usage: the billed ones are kept (a month cut by a plan
    # change billed them prorated, domain.proration), so re-pricing moves only usage charges.
    flat = tuple(line for line in old.lines if line.metric_code is None and line.charge_code != MINIMUM_SPEND_CODE)
    try:
        repriced = build_invoice(as_invoiced, plan, source.period, quantities, flat_lines=flat or None)
    except (PricingError, ArithmeticError, ValueError) as exc:
        return dataclasses.replace(source, problem=f"re-pricing failed: {exc}")
    return dataclasses.replace(source, plan=plan, repriced=repriced)


def target_alias():
    return aliased(invoices, name="target")
