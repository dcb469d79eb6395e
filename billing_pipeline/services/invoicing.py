"""Draft, reconcile and finalize the invoices of one period for a batch of organizations.

Each organization is handled on its own: one that fails is recorded with the stage and
the reason (``invoice_errors``) and never stops the others. ``dry_run`` computes
everything and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import late_usage, late_usage_ledger, lifecycle, reference, subscriptions, usage
from billing_pipeline.domain import money
from billing_pipeline.domain.catalog import Catalog
from billing_pipeline.domain.invoices import PricingError, build_invoice, reconcile_usage
from billing_pipeline.domain.model import Invoice, InvoiceStatus, Organization
from billing_pipeline.domain.periods import BillingPeriod
from billing_pipeline.domain.proration import billing_refusal, change_lines
from billing_pipeline.domain.settlement import ZERO_TOTAL_SKIP_REASON, ZeroTotalPolicy, zero_total_status

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


class Outcome(str, enum.Enum):
    DRAFTED = "drafted"
    FINALIZED = "finalized"
    ALREADY_FINALIZED = "already_finalized"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class OrgResult:
    org_id: str
    outcome: Outcome
    message: str = ""
    invoice_id: int | None = None
    number: str | None = None
    currency: str | None = None
    total: Decimal | None = None
    lines: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.FAILED


@dataclass
class BatchResult:
    period: BillingPeriod
    dry_run: bool
    results: list[OrgResult] = field(default_factory=list)

    def by_outcome(self, outcome: Outcome) -> list[OrgResult]:
        return [r for r in self.results if r.outcome is outcome]

    @property
    def failed(self) -> list[OrgResult]:
        return self.by_outcome(Outcome.FAILED)

    def revenue_by_currency(self) -> dict[str, Decimal]:
        """Totals of the invoices this batch produced or confirmed, per currency."""
        return revenue_by_currency(self.results)


def revenue_by_currency(results: Iterable[OrgResult]) -> dict[str, Decimal]:
    """Totals of the invoices produced or confirmed, per currency (failures left out)."""
    return money.revenue_by_currency((r.currency, r.total) for r in results if r.ok)


class CatalogMissing(RuntimeError):
    pass


def _catalog(engine: Engine) -> Catalog:
    catalog = reference.latest_catalog(engine)
    if catalog is None:
        raise CatalogMissing("no catalog loaded: run `billing-pipeline load-catalog FILE` first")
    return catalog


@dataclass(frozen=True)
class Draft:
    """One organization's priced period before it is stored: the period's own invoice, and the
    finalized invoices whose late usage it may carry (``db.late_usage``)."""

    invoice: Invoice
    plan_code: str
    late_sources: tuple[late_usage.LateSource, ...] = ()


def compute_drafts(
    engine: Engine, period: BillingPeriod, org_ids: Sequence[str]
) -> tuple[Catalog, list[OrgResult], dict[str, Draft]]:
    """Price every organization's period; nothing is written.

    Returns the catalog used, one result per org (DRAFTED, SKIPPED, ALREADY_FINALIZED or
    FAILED; a draft's total includes the late-usage adjustments it would carry now) and the
    drafts by org id.
    """
    catalog = _catalog(engine)
    orgs = reference.get_organizations(engine, org_ids)
    states = invoice_rows.get_invoice_states(engine, period.interval, period.key, org_ids)
    spans = subscriptions.subscriptions_in_period(engine, org_ids, period.start, period.end)
    billable = [o for o in org_ids if o in orgs and billing_refusal(orgs[o], period, spans.get(o, [])) is None]
    usage_by_org = usage.period_usage(engine, billable, period.start, period.end, catalog.metrics)
    late = late_usage.late_sources(engine, billable, before=period.start, target=(period.interval, period.key))
    results: list[OrgResult] = []
    drafts: dict[str, Draft] = {}
    for org_id in org_ids:
        result, draft = _draft(
            org_id, orgs.get(org_id), states.get(org_id), spans.get(org_id, []), catalog, period, usage_by_org
        )
        if draft is not None:
            drafts[org_id] = Draft(draft[0], draft[1], tuple(late.get(org_id, ())))
            result = _with_late_usage(engine, result, drafts[org_id])
        results.append(result)
    return catalog, results, drafts


def _with_late_usage(engine: Engine, result: OrgResult, draft: Draft) -> OrgResult:
    """The drafted result with the late usage it carries now (sources that cannot be adjusted: logged)."""
    for source in draft.late_sources:
        if source.problem:
            log.warning("late usage of %s for %s waits: %s", source.invoice.number, result.org_id, source.problem)
    if not draft.late_sources:
        return result
    with engine.connect() as conn:
        invoice, pairs = late_usage_ledger.adjusted_invoice(conn, draft.invoice, draft.late_sources)
    return _drafted(result, invoice, sum(len(a.lines()) for _, a in pairs))


def _drafted(result: OrgResult, invoice: Invoice, adjustment_lines: int) -> OrgResult:
    message = f"{adjustment_lines} late-usage adjustment line(s)" if adjustment_lines else result.message
    return replace(result, message=message, total=invoice.total, lines=len(invoice.lines))


def skip_reason(org: Organization, period: BillingPeriod, plan_code: str | None, subs=()) -> str | None:
    """Why ``org`` gets no invoice for ``period`` (not billable, or no subscription in it); ``None`` when billed."""
    reason = billing_refusal(org, period, subs)
    if reason is None and plan_code is None:
        reason = f"not subscribed in {period.label}"
    return reason


def _draft(org_id, org, state, subs, catalog, period, usage_by_org) -> tuple[OrgResult, tuple | None]:
    """One organization's draft (or why there is none), with the plan code (the last one in the period)."""
    plan_code = subs[-1].plan_code if subs else None
    if org is None:
        return OrgResult(org_id, Outcome.FAILED, f"organization {org_id!r} does not exist"), None
    if state is not None and state[1] != InvoiceStatus.DRAFT.value:
        message = f"invoice {state[2]} is {state[1]}; left unchanged"
        return OrgResult(org_id, Outcome.ALREADY_FINALIZED, message, invoice_id=state[0], number=state[2]), None
    reason = skip_reason(org, period, plan_code, subs)
    if reason:
        return OrgResult(org_id, Outcome.SKIPPED, reason), None
    plan = catalog.plans.get(plan_code)
    if plan is None:
        message = f"plan {plan_code!r} is not in catalog version {catalog.version}"
        return OrgResult(org_id, Outcome.FAILED, message), None
    try:
        flat_lines = change_lines(period, subs, catalog.plans, plan.currency)
        invoice = build_invoice(org, plan, period, usage_by_org.get(org_id, {}), flat_lines=flat_lines)
    except (PricingError, ArithmeticError, ValueError) as exc:
        return OrgResult(org_id, Outcome.FAILED, f"pricing failed: {exc}"), None
    drafted = OrgResult(
        org_id, Outcome.DRAFTED, "", currency=invoice.currency, total=invoice.total, lines=len(invoice.lines)
    )
    return drafted, (invoice, plan_code)


def draft_batch(engine: Engine, period: BillingPeriod, org_ids: Sequence[str], *, dry_run: bool) -> BatchResult:
    """Compute and (unless ``dry_run``) store drafts; failures are recorded per organization."""
    catalog, results, drafts = compute_drafts(engine, period, org_ids)
    batch = BatchResult(period, dry_run)
    for result in results:
        if dry_run:
            batch.results.append(result)
            continue
        try:
            with engine.begin() as conn:
                if result.outcome is Outcome.DRAFTED:
                    draft = drafts[result.org_id]
                    invoice_id, invoice = late_usage_ledger.save_draft_with_adjustments(
                        conn,
                        draft.invoice,
                        draft.late_sources,
                        plan_code=draft.plan_code,
                        catalog_version=catalog.version,
                    )
                    invoice_rows.clear_error(conn, result.org_id, period.interval, period.key)
                    extra = len(invoice.lines) - len(draft.invoice.lines)
                    result = replace(_drafted(result, invoice, extra), invoice_id=invoice_id)
                elif result.outcome is Outcome.FAILED:
                    invoice_rows.record_error(conn, result.org_id, period.interval, period.key, "draft", result.message)
                else:
                    invoice_rows.clear_error(conn, result.org_id, period.interval, period.key)
        except invoice_rows.FinalizedInvoiceError as exc:  # finalized meanwhile
            result = OrgResult(result.org_id, Outcome.ALREADY_FINALIZED, str(exc))
        except Exception as exc:  # noqa: BLE001 - isolate one organization's storage failure
            log.exception("storing the draft for %s failed", result.org_id)
            result = OrgResult(result.org_id, Outcome.FAILED, f"storing the draft failed: {exc}")
        batch.results.append(result)
    return batch


@dataclass(frozen=True)
class Reconciliation:
    checked: int
    stale_hours: list[dt.datetime]
    mismatches: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not self.stale_hours and not self.mismatches


def reconcile_batch(engine: Engine, period: BillingPeriod, org_ids: Sequence[str]) -> Reconciliation:
    """Compare stored drafts with hourly usage, and hourly usage with the raw events.

    Fails on: hours in the period holding events not yet aggregated (late events), a
    draft whose quantities differ from hourly usage now, or hourly totals that differ
    from the raw events (an hour never aggregated).
    """
    catalog = _catalog(engine)
    states = invoice_rows.get_invoice_states(engine, period.interval, period.key, org_ids)
    draft_ids = {org: s[0] for org, s in states.items() if s[1] == InvoiceStatus.DRAFT.value}
    stored = invoice_rows.load_invoices(engine, list(draft_ids.values()))
    orgs = sorted(draft_ids)
    recomputed = usage.period_usage(engine, orgs, period.start, period.end, catalog.metrics)
    raw = usage.raw_totals(engine, orgs, period.start, period.end)
    hourly = usage.hourly_totals(engine, orgs, period.start, period.end)
    mismatches: dict[str, list[str]] = {}
    for org in orgs:
        invoice = stored[draft_ids[org]].invoice
        now_usage = {code: u.quantity for code, u in recomputed.get(org, {}).items() if code in invoice.usage}
        problems = reconcile_usage(invoice.usage, {**{c: Decimal(0) for c in invoice.usage}, **now_usage})
        for key in sorted({k for k in raw if k[0] == org} | {k for k in hourly if k[0] == org}):
            if raw.get(key) != hourly.get(key):
                r_count, _ = raw.get(key, (0, 0))
                h_count, _ = hourly.get(key, (0, 0))
                problems.append(
                    f"{key[1]}: hourly_usage has {h_count} events, raw events {r_count} (hours not aggregated)"
                )
        if problems:
            mismatches[org] = problems
    stale = usage.unaggregated_hours(engine, period.start, period.end)
    return Reconciliation(len(orgs), stale, mismatches)


def finalize_batch(
    engine: Engine,
    period: BillingPeriod,
    org_ids: Sequence[str],
    *,
    prefix: str,
    now: dt.datetime,
    dry_run: bool,
    zero_total: ZeroTotalPolicy = ZeroTotalPolicy.FINALIZE_PAID,
) -> BatchResult:
    """Number and freeze every organization's draft; idempotent, isolated per organization.

    A zero-total draft follows ``zero_total`` (``domain.settlement``; ``ZERO_TOTAL_INVOICES``):
    finalized and paid at once (the default), finalized, or skipped without a number.
    """
    zero_total = ZeroTotalPolicy(zero_total)
    batch = BatchResult(period, dry_run)
    if dry_run:
        _, results, _ = compute_drafts(engine, period, org_ids)
        batch.results.extend(_dry_run_finalized(r, zero_total) for r in results)
        return batch
    orgs = reference.get_organizations(engine, org_ids)
    errors = invoice_rows.get_errors(engine, period.interval, period.key, org_ids)
    plans = reference.plans_for_period(engine, org_ids, period.start, period.end)
    for org_id in org_ids:
        if org_id in errors:
            stage, message = errors[org_id]
            batch.results.append(OrgResult(org_id, Outcome.FAILED, f"{stage}: {message}"))
        elif org_id not in orgs:
            batch.results.append(OrgResult(org_id, Outcome.FAILED, f"organization {org_id!r} does not exist"))
        else:
            org = orgs[org_id]
            result = _finalize_one(engine, org, period, prefix=prefix, now=now, zero_total=zero_total)
            if result.outcome is Outcome.FAILED and (reason := skip_reason(org, period, plans.get(org_id))):
                result = OrgResult(org_id, Outcome.SKIPPED, reason)  # no draft, and none was due
            batch.results.append(result)
    _attach_totals(engine, batch)
    return batch


def _dry_run_finalized(result: OrgResult, zero_total: ZeroTotalPolicy) -> OrgResult:
    """What finalizing a computed draft would do (the same rule as ``db.invoices.finalize``)."""
    if result.outcome is not Outcome.DRAFTED or result.total is None:
        return result
    status = zero_total_status(result.total, zero_total)
    if status is None:
        return replace(result, outcome=Outcome.SKIPPED, message=f"dry run: {ZERO_TOTAL_SKIP_REASON}")
    paid = " and marked paid (zero total)" if status is InvoiceStatus.PAID else ""
    return replace(result, outcome=Outcome.FINALIZED, message=f"dry run: would be finalized{paid}")


def _finalize_one(
    engine: Engine,
    org: Organization,
    period: BillingPeriod,
    *,
    prefix: str,
    now: dt.datetime,
    zero_total: ZeroTotalPolicy,
) -> OrgResult:
    try:
        with engine.begin() as conn:
            outcome, invoice_id, number = invoice_rows.finalize(
                conn,
                org.id,
                period.interval,
                period.key,
                prefix=prefix,
                issued_at=now,
                terms_days=org.payment_terms_days,
                zero_total=zero_total,
            )
            if outcome is invoice_rows.FinalizeOutcome.FINALIZED_PAID:
                _audit_zero_total_paid(conn, invoice_id, now)
    except Exception as exc:  # noqa: BLE001 - isolate one organization
        log.exception("finalizing %s failed", org.id)
        return OrgResult(org.id, Outcome.FAILED, f"finalize failed: {exc}")
    if outcome is invoice_rows.FinalizeOutcome.NO_DRAFT:
        return OrgResult(org.id, Outcome.FAILED, "no draft to finalize (drafting did not run)")
    if outcome is invoice_rows.FinalizeOutcome.ZERO_TOTAL_SKIPPED:
        return OrgResult(org.id, Outcome.SKIPPED, ZERO_TOTAL_SKIP_REASON)  # the draft stays, unnumbered
    if outcome is invoice_rows.FinalizeOutcome.FINALIZED_PAID:
        message = "zero total: finalized and marked paid, nothing to collect"
        return OrgResult(org.id, Outcome.FINALIZED, message, invoice_id=invoice_id, number=number)
    if outcome is invoice_rows.FinalizeOutcome.FINALIZED:
        return OrgResult(org.id, Outcome.FINALIZED, "", invoice_id=invoice_id, number=number)
    message = f"invoice {number} was already final; no change"
    return OrgResult(org.id, Outcome.ALREADY_FINALIZED, message, invoice_id=invoice_id, number=number)


def _audit_zero_total_paid(conn, invoice_id: int | None, now: dt.datetime) -> None:
    """The audit row of the automatic finalized -> paid (``invoice_events``), in the finalizing
    transaction: the invoice history says why a zero invoice is paid without a payment."""
    assert invoice_id is not None
    lifecycle.insert_event(
        conn,
        invoice_id,
        "transition",
        InvoiceStatus.FINALIZED,
        InvoiceStatus.PAID,
        actor="billing-pipeline",
        reason="zero total: paid at finalization, nothing to collect (ZERO_TOTAL_INVOICES=finalize_paid)",
        at=now,
        details={"zero_total_invoices": ZeroTotalPolicy.FINALIZE_PAID.value},
    )


def _attach_totals(engine: Engine, batch: BatchResult) -> None:
    ids = [r.invoice_id for r in batch.results if r.invoice_id is not None]
    stored = invoice_rows.load_invoices(engine, ids)
    for i, r in enumerate(batch.results):
        if r.invoice_id in stored:
            inv = stored[r.invoice_id].invoice
            batch.results[i] = replace(r, currency=inv.currency, total=inv.total, lines=len(inv.lines))


def format_summary(batch: BatchResult) -> str:
    """Human-readable per-organization summary with revenue per currency and failures."""
    out = [
        f"{batch.period.interval.value} invoices for {batch.period.label}"
        + (" (DRY RUN: nothing written)" if batch.dry_run else "")
    ]
    for r in sorted(batch.results, key=lambda r: r.org_id):
        total = money.format_amount(r.total, r.currency) if r.total is not None and r.currency else "-"
        out.append(f"  {r.org_id:<20} {r.outcome.value:<18} {r.number or '-':<18} {total:>16}  {r.message}")
    counts = {o.value: len(batch.by_outcome(o)) for o in Outcome if batch.by_outcome(o)}
    out.append("  " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    out.append("  revenue: " + money.format_revenue(batch.revenue_by_currency()))
    return "\n".join(out)
