"""Operator alerts: what each one says, its dedupe key, and the failure-rate rule.

An ``Alert`` is a notice to the operators (not a customer): its ``dedupe_key`` comes from our own
ids (a run id, a component's probe time, a failing run that crossed the threshold), so raising
the same alert twice sends it once per channel.

**Failure rate** (edge-triggered, as Lago's triggered alerts): a job is *in alarm* once it has more
than ``threshold`` failed runs in the window. ``failure_rate_changes`` compares the counts with the
jobs already in alarm and yields one ``over`` notice per crossing and one ``under`` notice when
the count is back at or under the threshold; nothing while it stays on one side. A crossing is
named by the newest failed run at the moment it was seen, so its over and under notices share it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from billing_pipeline.domain import money
from billing_pipeline.domain.health import HealthChange, Transition

__all__ = [
    "Alert",
    "health_alert",
    "invoice_failures_alert",
    "late_usage_alert",
    "FailedRun",
    "FailureRateChange",
    "failure_rate_changes",
    "run_failure_alert",
    "run_link",
]

LEVELS = ("info", "warning", "error")
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
MAX_ERROR = 2000


@dataclass(frozen=True)
class Alert:
    dedupe_key: str
    kind: str  # run_failure | failure_rate | failure_rate_cleared | service_health | ...
    level: str  # info | warning | error
    subject: str
    text: str
    link: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level: must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if not self.dedupe_key or any(c.isspace() for c in self.dedupe_key):
            raise ValueError(f"dedupe_key: must be non-empty without spaces, got {self.dedupe_key!r}")


def run_link(webserver_url: str, run_id: str) -> str:
    return f"{webserver_url.rstrip('/')}/runs/{run_id}"


def _partitions(tags: Mapping[str, str]) -> str | None:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]} … {tags.get(RANGE_END_TAG, tags[RANGE_START_TAG])}"
    return None


def run_failure_alert(*, run_id: str, job_name: str, tags: Mapping[str, str], error: str, webserver_url: str) -> Alert:
    """One alert per failed run: job, partition (or range), error, and a link to the run."""
    partitions = _partitions(tags)
    link = run_link(webserver_url, run_id)
    error = error.strip() or "(no error message)"
    if len(error) > MAX_ERROR:
        error = error[: MAX_ERROR - 1] + "…"
    lines = [f"Job: {job_name}", f"Run: {run_id}"]
    if partitions is not None:
        lines.append(f"Partitions: {partitions}")
    lines += [f"Error: {error}", f"Run in the UI: {link}"]
    where = f" ({partitions})" if partitions else ""
    return Alert(
        dedupe_key=f"run_failure:{run_id}",
        kind="run_failure",
        level="error",
        subject=f"Run failed: {job_name}{where}",
        text="\n".join(lines),
        link=link,
    )


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    job_name: str
    at: dt.datetime


@dataclass(frozen=True)
class FailureRateChange:
    job_name: str
    crossing: str  # the newest failed run when the crossing was seen
    over: bool  # True: went over the threshold; False: back at or under it
    failures: int
    threshold: int
    window: dt.timedelta

    def alert(self, webserver_url: str) -> Alert:
        hours = f"{self.window.total_seconds() / 3600:g} h"
        link = f"{webserver_url.rstrip('/')}/runs?q%5B0%5D=job%3A{self.job_name}"
        if self.over:
            return Alert(
                dedupe_key=f"failure_rate:{self.job_name}:{self.crossing}:over",
                kind="failure_rate",
                level="error",
                subject=f"{self.job_name}: {self.failures} failed runs in {hours} (more than {self.threshold})",
                text=f"Job {self.job_name} failed {self.failures} times in the last {hours}, more than the "
                f"threshold of {self.threshold}. Latest failed run: {self.crossing}.\nRuns: {link}",
                link=link,
            )
        return Alert(
            dedupe_key=f"failure_rate:{self.job_name}:{self.crossing}:under",
            kind="failure_rate_cleared",
            level="info",
            subject=f"{self.job_name}: back under {self.threshold + 1} failed runs in {hours}",
            text=f"Job {self.job_name} has {self.failures} failed runs in the last {hours} "
            f"(threshold {self.threshold}): the failure-rate alert of run {self.crossing} is cleared.",
            link=link,
        )


def failure_rate_changes(
    failed: list[FailedRun],
    in_alarm: Mapping[str, str],
    *,
    threshold: int,
    window: dt.timedelta,
    now: dt.datetime,
) -> tuple[list[FailureRateChange], dict[str, str]]:
    """The notices to send and the jobs in alarm afterwards (job -> its crossing).

    ``failed`` are failed runs (any age: only those in ``(now - window, now]`` count);
    ``in_alarm`` is the previous result."""
    if threshold < 0:
        raise ValueError(f"threshold must be at least 0, got {threshold}")
    start = now - window
    by_job: dict[str, list[FailedRun]] = {}
    for run in failed:
        if start < run.at <= now:
            by_job.setdefault(run.job_name, []).append(run)
    changes: list[FailureRateChange] = []
    after: dict[str, str] = {}
    for job in sorted(set(by_job) | set(in_alarm)):
        runs = sorted(by_job.get(job, []), key=lambda r: (r.at, r.run_id))
        count, crossing = len(runs), in_alarm.get(job)
        if count > threshold:
            if crossing is None:
                crossing = runs[-1].run_id
                changes.append(FailureRateChange(job, crossing, True, count, threshold, window))
            after[job] = crossing
        elif crossing is not None:
            changes.append(FailureRateChange(job, crossing, False, count, threshold, window))
    return changes, after


def health_alert(change: HealthChange, webserver_url: str) -> Alert:
    """A component went down or came back, under the change's own dedupe key (once each way)."""
    down = change.transition is Transition.BECAME_UNHEALTHY
    link = f"{webserver_url.rstrip('/')}/assets/service_health"
    return Alert(
        dedupe_key=change.dedupe_key,
        kind="service_health",
        level="error" if down else "info",
        subject=change.subject,
        text=f"{change.subject} (probe at {change.at.isoformat()}): {change.detail}\nService health: {link}",
        link=link,
    )


MAX_LISTED = 50


def invoice_failures_alert(
    *, interval: str, period_key: str, errors: Mapping[str, tuple[str, str]], webserver_url: str
) -> Alert:
    """An invoice run left organizations without an invoice for a period: one alert per period
    (``invoice_failures:{interval}:{period}``) listing them (org, stage, reason), at most 50."""
    if not errors:
        raise ValueError("invoice_failures_alert needs at least one failed organization")
    orgs = sorted(errors)
    lines = [f"{org}: {errors[org][0]}: {errors[org][1].splitlines()[0][:300]}" for org in orgs[:MAX_LISTED]]
    if len(orgs) > MAX_LISTED:
        lines.append(f"... and {len(orgs) - MAX_LISTED} more (billing-pipeline status --period {period_key})")
    link = f"{webserver_url.rstrip('/')}/assets/{interval}_invoices"
    return Alert(
        dedupe_key=f"invoice_failures:{interval}:{period_key}",
        kind="invoice_failures",
        level="error",
        subject=f"{len(orgs)} organization(s) not invoiced for the {interval} period {period_key}",
        text="\n".join([f"The {interval} invoices of {period_key} failed for:", *lines, f"Assets: {link}"]),
        link=link,
    )


class PendingLateUsageLike(Protocol):
    """What ``db.late_usage_ledger.pending_late_usage`` yields (branch ``lateusage``)."""

    org_id: str
    source_number: str
    period_label: str
    charge_code: str
    amount: Decimal
    currency: str
    state: str


def late_usage_alert(pending: Sequence[PendingLateUsageLike], *, webserver_url: str) -> Alert | None:
    """Late-usage adjustments no finalized invoice carries yet: one alert per distinct set (the key is a
    hash of the set), so the same backlog is told once and a changed one again; None when empty."""
    if not pending:
        return None
    rows = sorted(pending, key=lambda p: (p.org_id, p.source_number, p.charge_code, p.state))
    identity = "\n".join(f"{p.org_id}|{p.source_number}|{p.charge_code}|{p.state}|{p.amount}" for p in rows)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    lines = [
        f"{p.org_id} {p.period_label} {p.source_number} {p.charge_code} "
        f"{money.format_amount(p.amount, p.currency)}: {p.state}"
        for p in rows[:MAX_LISTED]
    ]
    if len(rows) > MAX_LISTED:
        lines.append(f"... and {len(rows) - MAX_LISTED} more (billing-pipeline status)")
    return Alert(
        dedupe_key=f"late_usage_pending:{digest}",
        kind="late_usage_pending",
        level="warning",
        subject=f"{len(rows)} late-usage adjustment(s) pending",
        text="\n".join(["Late usage of finalized periods that no finalized invoice carries yet:", *lines]),
        link=f"{webserver_url.rstrip('/')}/assets/hourly_usage",
    )
