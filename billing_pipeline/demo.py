"""Demo data: a handful of organizations across currencies and plans, and a month of events.

Deterministic for a given period and seed, so the demo prints the same invoices every
time. The events file includes a few malformed rows to show the quarantine at work.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path

from billing_pipeline.domain.model import BillingInterval, Organization, OrganizationStatus
from billing_pipeline.domain.periods import BillingPeriod

DEMO_ORGS: list[tuple[Organization, str]] = [
    (
        Organization(
            "acme",
            "Acme Analytics",
            "billing@acme.test",
            OrganizationStatus.ACTIVE,
            "USD",
            Decimal("0.20"),
            BillingInterval.MONTHLY,
            True,
            14,
        ),
        "starter",
    ),
    (
        Organization(
            "globex",
            "Globex GmbH",
            "ap@globex.test",
            OrganizationStatus.ACTIVE,
            "EUR",
            Decimal("0.19"),
            BillingInterval.MONTHLY,
            False,
            30,
        ),
        "growth_eur",
    ),
    (
        Organization(
            "initech",
            "Initech KK",
            "keiri@initech.test",
            OrganizationStatus.ACTIVE,
            "JPY",
            Decimal("0.10"),
            BillingInterval.MONTHLY,
            False,
            30,
        ),
        "hosting_jpy",
    ),
    (
        Organization(
            "souq",
            "Souq Traders",
            "finance@souq.test",
            OrganizationStatus.ACTIVE,
            "KWD",
            Decimal("0"),
            BillingInterval.MONTHLY,
            False,
            30,
        ),
        "shop_kwd",
    ),
    (
        Organization(
            "umbrella",
            "Umbrella Corp",
            "billing@umbrella.test",
            OrganizationStatus.SUSPENDED,
            "USD",
            Decimal("0.08"),
            BillingInterval.MONTHLY,
            False,
            30,
        ),
        "starter",
    ),
    (
        Organization(
            "hooli",
            "Hooli Weekly",
            "pay@hooli.test",
            OrganizationStatus.ACTIVE,
            "USD",
            Decimal("0"),
            BillingInterval.WEEKLY,
            True,
            7,
        ),
        "weekly_usd",
    ),
]

_METRICS_BY_PLAN = {
    "starter": ["api_calls", "storage_gb"],
    "growth_eur": ["api_calls", "active_users"],
    "hosting_jpy": ["server_hours", "seats"],
    "shop_kwd": ["attributed_revenue"],
    "weekly_usd": ["api_calls"],
}


def _value(metric: str, rng: random.Random) -> str:
    if metric == "storage_gb":
        return str(Decimal(rng.randint(50, 15000)) / 100)
    if metric == "server_hours":
        return "1"
    if metric == "seats":
        return str(rng.randint(3, 12))
    if metric == "attributed_revenue":
        return str(Decimal(rng.randint(100, 250000)) / 1000)
    return "1"


def write_events(
    path: Path,
    start: dt.datetime,
    end: dt.datetime,
    *,
    seed: int = 7,
    events_per_org: int = 400,
    malformed: bool = True,
) -> int:
    """Write a CSV of usage events between ``start`` and ``end``; returns rows written."""
    rng = random.Random(seed)
    span = int((end - start).total_seconds())
    rows = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["org_id", "event_id", "metric", "value", "occurred_at", "properties"])
        for org, plan in DEMO_ORGS:
            for i in range(events_per_org):
                metric = _METRICS_BY_PLAN[plan][i % len(_METRICS_BY_PLAN[plan])]
                when = start + dt.timedelta(seconds=rng.randrange(span))
                props = {"user_id": f"u{rng.randint(1, 60)}"} if metric == "active_users" else {}
                writer.writerow(
                    [
                        org.id,
                        f"{org.id}-{start:%Y%m}-{i:06d}",
                        metric,
                        _value(metric, rng),
                        when.isoformat().replace("+00:00", "Z"),
                        json.dumps(props) if props else "",
                    ]
                )
                rows += 1
        if malformed:
            mid = (start + (end - start) / 2).isoformat()
            for row in (
                ["nobody", "x-1", "api_calls", "1", mid, ""],  # unknown organization
                ["acme", "x-2", "teleportations", "1", mid, ""],  # unknown metric
                ["acme", "x-3", "storage_gb", "lots", mid, ""],  # not a number
                ["acme", "x-4", "storage_gb", "NaN", mid, ""],  # not finite
                ["acme", "x-5", "api_calls", "1", "2026-10-01 10:00:00", ""],  # no time zone
                ["acme", f"acme-{start:%Y%m}-000000", "api_calls", "999", mid, ""],  # same id, other payload
            ):
                writer.writerow(row)
                rows += 1
    return rows


def demo_period(now: dt.datetime) -> BillingPeriod:
    from billing_pipeline.domain.periods import previous_period

    return previous_period(BillingInterval.MONTHLY, now)
