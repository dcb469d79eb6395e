"""Subscription changes (plan change, cancellation, suspension, closing) and the subscriptions of a period.

Each change is one transaction holding the organization's row lock: the subscriptions
are read, the change decided (``domain.subscription_changes``), checked (the new plan
in the latest catalog, in the organization's currency and interval; no finalized
invoice for a period the change reaches) and written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, and_, or_, select

from billing_pipeline.clock import utc_now
from billing_pipeline.db.reference import latest_catalog_in, org_from_row, stored_subscriptions
from billing_pipeline.db.schema import invoices, organizations, subscriptions
from billing_pipeline.domain.customers import Subscription, subscription_problems
from billing_pipeline.domain.model import InvoiceStatus, Organization, OrganizationStatus
from billing_pipeline.domain.subscription_changes import ChangeError, SubscriptionChange, cancellation, plan_change

__all__ = ["ChangeError", "change_plan", "end_subscription", "set_status", "subscriptions_in_period"]


def subscriptions_in_period(
    engine: Engine, org_ids: Sequence[str], start: dt.datetime, end: dt.datetime
) -> dict[str, list[Subscription]]:
    """Each organization's subscriptions overlapping ``[start, end)``, in start order."""
    overlaps = and_(
        subscriptions.c.starts_at < end,
        or_(subscriptions.c.ends_at.is_(None), subscriptions.c.ends_at > start),
    )
    query = (
        select(subscriptions)
        .where(subscriptions.c.org_id.in_(list(org_ids)), overlaps)
        .order_by(subscriptions.c.org_id, subscriptions.c.starts_at)
    )
    result: dict[str, list[Subscription]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            result.setdefault(row.org_id, []).append(Subscription(row.starts_at, row.ends_at, row.plan_code))
    return result


def _locked_org(conn: Connection, org_id: str) -> Organization:
    row = conn.execute(select(organizations).where(organizations.c.id == org_id).with_for_update()).first()
    if row is None:
        raise LookupError(f"organization {org_id!r} is not stored")
    return org_from_row(row)


def _refuse_finalized(conn: Connection, org_id: str, at: dt.datetime) -> None:
    """A change from ``at`` would alter a period already invoiced: refused."""
    row = conn.execute(
        select(invoices.c.number, invoices.c.status, invoices.c.period_key)
        .where(
            invoices.c.org_id == org_id,
            invoices.c.period_end > at,
            invoices.c.status != InvoiceStatus.DRAFT.value,
        )
        .order_by(invoices.c.period_start)
        .limit(1)
    ).first()
    if row is not None:
        raise ChangeError(
            f"--at: invoice {row.number} for the period {row.period_key} is {row.status}; "
            f"a change from {at.date().isoformat()} would alter a finalized period"
        )


def _write(conn: Connection, org_id: str, change: SubscriptionChange) -> None:
    where = and_(subscriptions.c.org_id == org_id, subscriptions.c.starts_at == change.before.starts_at)
    conn.execute(subscriptions.update().where(where).values(ends_at=change.ended.ends_at))
    if change.started is not None:
        started = change.started
        conn.execute(
            subscriptions.insert().values(
                org_id=org_id, plan_code=started.plan_code, starts_at=started.starts_at, ends_at=started.ends_at
            )
        )


def change_plan(engine: Engine, org_id: str, plan_code: str, at: dt.datetime) -> SubscriptionChange:
    """Move ``org_id`` to ``plan_code`` from ``at`` (midnight UTC, already the effective date)."""
    with engine.begin() as conn:
        org = _locked_org(conn, org_id)
        catalog = latest_catalog_in(conn)
        if catalog is None:
            raise LookupError("no plan catalog loaded")
        change = plan_change(stored_subscriptions(conn, [org_id]).get(org_id, []), plan_code, at)
        problems = subscription_problems(change.started, catalog.plans, org.currency, org.billing_interval)
        if problems:
            raise ChangeError("; ".join(f"--{field}: {message}" for field, message in problems))
        _refuse_finalized(conn, org_id, at)
        _write(conn, org_id, change)
    return change


def end_subscription(engine: Engine, org_id: str, at: dt.datetime) -> SubscriptionChange:
    """End the subscription ``org_id`` has in force at ``at`` there (a cancellation)."""
    with engine.begin() as conn:
        _locked_org(conn, org_id)
        return _end(conn, org_id, at)


def _end(conn: Connection, org_id: str, at: dt.datetime) -> SubscriptionChange:
    change = cancellation(stored_subscriptions(conn, [org_id]).get(org_id, []), at)
    _refuse_finalized(conn, org_id, at)
    _write(conn, org_id, change)
    return change


def set_status(
    engine: Engine, org_id: str, status: OrganizationStatus, at: dt.datetime
) -> tuple[Organization, SubscriptionChange | None]:
    """Suspend or close ``org_id`` from ``at``: its subscription in force then ends there (if any)."""
    if status is OrganizationStatus.ACTIVE:
        raise ValueError("reactivating goes through import-customers")
    with engine.begin() as conn:
        org = _locked_org(conn, org_id)
        if org.status is OrganizationStatus.CLOSED:
            raise ChangeError(f"organization {org_id!r} is closed")
        stored = stored_subscriptions(conn, [org_id]).get(org_id, [])
        in_force = any(s.starts_at < at and (s.ends_at is None or at < s.ends_at) for s in stored)
        change = _end(conn, org_id, at) if in_force else None
        conn.execute(
            organizations.update().where(organizations.c.id == org_id).values(status=status.value, updated_at=utc_now())
        )
    return org, change
