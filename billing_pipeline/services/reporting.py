"""Read-only views of billing state for the CLI and run summaries (the queries are in ``db``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from billing_pipeline.db import delivery_views, reference, subscriptions
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db.deliveries import AMBIGUOUS
from billing_pipeline.domain import money
from billing_pipeline.domain.periods import BillingPeriod
from billing_pipeline.domain.proration import billing_refusal

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass(frozen=True)
class OrgPeriodState:
    org_id: str
    name: str
    state: str  # finalized | paid | void | uncollectible | draft | failed | skipped | missing
    number: str | None
    total: Decimal | None
    currency: str
    detail: str


def period_states(engine: Engine, period: BillingPeriod) -> list[OrgPeriodState]:
    """Every organization billed on ``period.interval``: its invoice (or why there is none)."""
    orgs = {o.id: o for o in reference.get_organizations(engine).values() if o.billing_interval is period.interval}
    states = invoice_rows.get_invoice_states(engine, period.interval, period.key)
    errors = invoice_rows.get_errors(engine, period.interval, period.key)
    stored = invoice_rows.load_invoices(engine, [s[0] for s in states.values()])
    spans = subscriptions.subscriptions_in_period(engine, list(orgs), period.start, period.end)
    rows = []
    for org_id, org in sorted(orgs.items()):
        if org_id in errors:
            stage, message = errors[org_id]
            rows.append(OrgPeriodState(org_id, org.name, "failed", None, None, org.currency, f"{stage}: {message}"))
        elif org_id in states:
            inv_id, status, number = states[org_id]
            inv = stored[inv_id].invoice
            rows.append(OrgPeriodState(org_id, org.name, status, number, inv.total, inv.currency, ""))
        elif reason := billing_refusal(org, period, spans.get(org_id, [])):
            rows.append(OrgPeriodState(org_id, org.name, "skipped", None, None, org.currency, reason))
        else:
            rows.append(OrgPeriodState(org_id, org.name, "missing", None, None, org.currency, "not invoiced yet"))
    return rows


def format_period_report(period: BillingPeriod, rows: list[OrgPeriodState]) -> str:
    lines = [
        f"{period.interval.value.capitalize()} invoices for {period.label} "
        f"({period.start:%Y-%m-%d} to {period.end:%Y-%m-%d}, end exclusive)"
    ]
    lines.append(f"  {'organization':<16} {'state':<10} {'invoice':<17} {'total':>18}  detail")
    for r in rows:
        total = money.format_amount(r.total, r.currency) if r.total is not None else "-"
        lines.append(f"  {r.org_id:<16} {r.state:<10} {r.number or '-':<17} {total:>18}  {r.detail}")
    revenue = money.revenue_by_currency((r.currency, r.total) for r in rows if r.state in {"finalized", "paid"})
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    invoiced = counts.get("finalized", 0) + counts.get("paid", 0)
    lines.append(f"  invoices: {invoiced}; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    lines.append("  revenue: " + money.format_revenue(revenue))
    lines.append(f"  failures: {counts.get('failed', 0)}")
    return "\n".join(lines)


def delivery_states(
    engine: Engine, period: BillingPeriod, org_ids: Sequence[str] = ()
) -> dict[str, dict[str, tuple[str, str | None]]]:
    """org id -> channel -> (ledger status, last error) for the period's invoices (``org_ids``: only those)."""
    return delivery_views.delivery_states(engine, period.interval.value, period.key, org_ids or None)


def format_delivery_report(states: dict[str, dict[str, tuple[str, str | None]]]) -> str:
    channels = ("pdf", "s3", "stripe", "email")
    lines = ["  delivery (ledger):"]
    errors = {c: 0 for c in channels}
    ambiguous = 0
    for org_id, by_channel in sorted(states.items()):
        cells = " ".join(f"{c}={by_channel.get(c, ('-', None))[0]}" for c in channels)
        problems = "; ".join(f"{c}: {e}" for c, (s, e) in by_channel.items() if s in ("failed", AMBIGUOUS) and e)
        lines.append(f"    {org_id:<16} {cells}  {problems}".rstrip())
        for c, (status, _) in by_channel.items():
            errors[c] += status == "failed"
            ambiguous += status == AMBIGUOUS
    lines.append("    errors per channel: " + ", ".join(f"{c} {n}" for c, n in errors.items()))
    if ambiguous:
        lines.append(f"    ambiguous (may have been delivered, not sent again until resolved): {ambiguous}")
    return "\n".join(lines)


def format_ambiguous(rows: Sequence[delivery_views.AmbiguousDelivery]) -> str:
    """The ``status`` section listing e-mails that may have been delivered."""
    if not rows:
        return "Ambiguous deliveries: none"
    lines = [
        f"Ambiguous deliveries: {len(rows)} (may have been delivered; never sent again until resolved). "
        "Look each Message-ID up in the mail server log, then "
        "`billing-pipeline deliveries resolve INVOICE --channel email --sent` or `--resend`:"
    ]
    for r in rows:
        lines.append(
            f"  {r.number or r.invoice_id!s:<18} {r.org_id:<16} {r.period_key:<10} {r.channel:<6} "
            f"{r.external_id or '-'}  since {r.since:%Y-%m-%d %H:%M} UTC"
        )
    return "\n".join(lines)
