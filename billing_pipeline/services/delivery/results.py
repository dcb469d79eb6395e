"""What delivery reports: per channel (one op's work) and per invoice (read back from the ledger)."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from billing_pipeline.db.deliveries import CHANNELS
from billing_pipeline.domain import money


class ChannelStatus(str, enum.Enum):
    SUCCEEDED = "succeeded"  # done by this run
    ALREADY_DONE = "already_done"  # the ledger said succeeded/skipped: nothing sent
    SKIPPED = "skipped"  # nothing to do (no payment gateway)
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"  # an e-mail that may have been delivered: left alone until resolved
    BLOCKED = "blocked"  # not tried: an earlier channel of this invoice is not done
    DRY_RUN = "dry_run"  # validated; nothing sent or written


OK_STATUSES = (ChannelStatus.SUCCEEDED, ChannelStatus.ALREADY_DONE, ChannelStatus.SKIPPED, ChannelStatus.DRY_RUN)
_PROBLEMS = (ChannelStatus.AMBIGUOUS, ChannelStatus.FAILED)


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    status: ChannelStatus
    attempts: int = 0  # side-effect attempts made by this run
    external_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass
class ChannelReport:
    """One channel over a batch of invoices (what one op did)."""

    channel: str
    results: dict[int, ChannelResult] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.status.value for r in self.results.values()).items()))

    def failures(self) -> dict[int, str]:
        return {i: r.error or r.status.value for i, r in self.results.items() if r.status in _PROBLEMS}

    def text(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items()) or "nothing to do"
        return f"{self.channel}: {counts}"


@dataclass
class InvoiceDelivery:
    invoice_id: int
    org_id: str
    number: str | None
    currency: str | None
    total: Decimal | None
    channels: dict[str, ChannelResult] = field(default_factory=dict)
    error: str | None = None  # invoice-level problem (not found, not finalized)

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.channels.values())

    @property
    def failure(self) -> str | None:
        if self.error:
            return self.error
        for status in (*_PROBLEMS, ChannelStatus.BLOCKED):
            for r in self.channels.values():
                if r.status is status:
                    return f"{r.channel}: {r.error or status.value}"
        return None


@dataclass(frozen=True)
class DeliverySummary:
    invoices: int
    delivered: int
    failed: int
    revenue_by_currency: dict[str, Decimal]
    errors_by_channel: dict[str, int]
    failed_orgs: dict[str, str]
    dry_run: bool
    ambiguous: dict[str, str] = field(default_factory=dict)  # org id -> Message-ID that may have been sent

    def revenue_text(self) -> str:
        return ", ".join(money.format_amount(v, c) for c, v in sorted(self.revenue_by_currency.items())) or "none"


def summarize(results: Sequence[InvoiceDelivery], *, dry_run: bool = False) -> DeliverySummary:
    revenue: dict[str, Decimal] = {}
    for r in results:
        if r.ok and r.total is not None and r.currency:
            revenue[r.currency] = revenue.get(r.currency, Decimal(0)) + r.total
    errors = {c: 0 for c in CHANNELS}
    for r in results:
        for c, cr in r.channels.items():
            errors[c] += cr.status is ChannelStatus.FAILED
    return DeliverySummary(
        invoices=len(results),
        delivered=sum(1 for r in results if r.ok),
        failed=sum(1 for r in results if not r.ok),
        revenue_by_currency=dict(sorted(revenue.items())),
        errors_by_channel=errors,
        failed_orgs={r.org_id: r.failure or "failed" for r in results if not r.ok},
        dry_run=dry_run,
        ambiguous={
            r.org_id: cr.external_id or "?"
            for r in results
            for cr in r.channels.values()
            if cr.status is ChannelStatus.AMBIGUOUS
        },
    )


def format_summary(summary: DeliverySummary, results: Sequence[InvoiceDelivery] = ()) -> str:
    out = ["invoice delivery" + (" (DRY RUN: nothing sent or written)" if summary.dry_run else "")]
    for r in sorted(results, key=lambda r: r.org_id):
        states = " ".join(f"{c}={cr.status.value}" for c, cr in r.channels.items())
        out.append(f"  {r.org_id:<20} {r.number or '-':<18} {states}  {r.failure or ''}".rstrip())
    out.append(
        f"  invoices: {summary.invoices}, delivered: {summary.delivered}, failed: {summary.failed}; "
        f"revenue: {summary.revenue_text()}"
    )
    out.append("  errors: " + ", ".join(f"{c} {n}" for c, n in summary.errors_by_channel.items()))
    if summary.ambiguous:
        out.append(
            f"  ambiguous e-mails: {len(summary.ambiguous)} (may have been delivered; not sent again until "
            "resolved: `billing-pipeline deliveries resolve INVOICE --channel email --sent|--resend`)"
        )
    return "\n".join(out)
