"""Organizations, subscriptions and catalog versions: the reference data billing reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select

from billing_pipeline.clock import utc_now
from billing_pipeline.db.schema import catalog_versions, organizations, subscriptions
from billing_pipeline.domain.catalog import Catalog, CatalogError, parse_catalog
from billing_pipeline.domain.model import BillingInterval, Organization, OrganizationStatus


class CatalogVersionConflict(ValueError):
    pass


def _org_from_row(row: Any) -> Organization:
    return Organization(
        id=row.id,
        name=row.name,
        billing_email=row.billing_email,
        status=OrganizationStatus(row.status),
        currency=row.currency,
        tax_rate=Decimal(str(row.tax_rate)).normalize() if row.tax_rate else Decimal(0),
        billing_interval=BillingInterval(row.billing_interval),
        auto_pay=bool(row.auto_pay),
        payment_terms_days=row.payment_terms_days,
    )


def upsert_organizations(engine: Engine, orgs: Iterable[Organization]) -> int:
    """Insert or update organizations by id; returns how many rows were written."""
    now = utc_now()
    count = 0
    with engine.begin() as conn:
        existing = {r.id for r in conn.execute(select(organizations.c.id))}
        for org in orgs:
            if "|" in org.id or "," in org.id or not org.id.strip():
                raise ValueError(f"organization id {org.id!r}: must be non-empty without '|' or ','")
            values = {
                "name": org.name,
                "billing_email": org.billing_email,
                "status": org.status.value,
                "currency": org.currency,
                "tax_rate": org.tax_rate,
                "billing_interval": org.billing_interval.value,
                "auto_pay": org.auto_pay,
                "payment_terms_days": org.payment_terms_days,
                "updated_at": now,
            }
            if org.id in existing:
                conn.execute(organizations.update().where(organizations.c.id == org.id).values(**values))
            else:
                conn.execute(organizations.insert().values(id=org.id, created_at=now, **values))
                existing.add(org.id)
            count += 1
    return count


def get_organizations(engine: Engine, ids: Sequence[str] | None = None) -> dict[str, Organization]:
    query = select(organizations)
    if ids is not None:
        query = query.where(organizations.c.id.in_(list(ids)))
    with engine.connect() as conn:
        return {row.id: _org_from_row(row) for row in conn.execute(query)}


def organization_ids_by_interval(engine: Engine) -> dict[BillingInterval, list[str]]:
    """Every organization id (any status) grouped by billing interval, sorted."""
    result: dict[BillingInterval, list[str]] = {i: [] for i in BillingInterval}
    with engine.connect() as conn:
        rows = conn.execute(select(organizations.c.id, organizations.c.billing_interval).order_by(organizations.c.id))
        for row in rows:
            result[BillingInterval(row.billing_interval)].append(row.id)
    return result


def add_subscription(
    engine: Engine, org_id: str, plan_code: str, starts_at: dt.datetime, ends_at: dt.datetime | None = None
) -> None:
    """Subscribe ``org_id`` to ``plan_code`` from ``starts_at``; idempotent on (org, start)."""
    with engine.begin() as conn:
        found = conn.execute(
            select(subscriptions.c.id).where(subscriptions.c.org_id == org_id, subscriptions.c.starts_at == starts_at)
        ).first()
        values = {"plan_code": plan_code, "ends_at": ends_at}
        if found:
            conn.execute(subscriptions.update().where(subscriptions.c.id == found.id).values(**values))
        else:
            conn.execute(subscriptions.insert().values(org_id=org_id, starts_at=starts_at, **values))


def plans_for_period(engine: Engine, org_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> dict[str, str]:
    """The plan each organization is on for a period: the latest subscription overlapping it."""
    overlaps = and_(
        subscriptions.c.starts_at < end,
        or_(subscriptions.c.ends_at.is_(None), subscriptions.c.ends_at > start),
    )
    query = (
        select(subscriptions.c.org_id, subscriptions.c.plan_code)
        .where(subscriptions.c.org_id.in_(list(org_ids)), overlaps)
        .order_by(subscriptions.c.org_id, subscriptions.c.starts_at)
    )
    plans: dict[str, str] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            plans[row.org_id] = row.plan_code  # later starts overwrite earlier ones
    return plans


def save_catalog(
    engine: Engine, document: Mapping[str, Any], source: str, *, replacements: Mapping[str, str] | None = None
) -> tuple[Catalog, bool]:
    """Validate and store a catalog version. Returns (catalog, created).

    Loading the same version with the same content again is a no-op; the same version
    with different content is refused: published versions are immutable, bump ``version``.
    A plan still subscribed (``_subscribed_plans``) cannot disappear from a new version
    unless ``replacements`` maps it to a plan of the new version with the same currency
    and interval; its subscriptions then move to that plan in the same transaction.
    """
    catalog = parse_catalog(document)
    replacements = dict(replacements or {})
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    with engine.begin() as conn:
        row = conn.execute(
            select(catalog_versions.c.sha256).where(catalog_versions.c.version == catalog.version)
        ).first()
        if row is not None:
            if row.sha256 != digest:
                raise CatalogVersionConflict(
                    f"version: catalog version {catalog.version} is already loaded with different "
                    "content; published versions are immutable, increase 'version'"
                )
            return catalog, False
        latest = conn.execute(
            select(catalog_versions.c.version, catalog_versions.c.document)
            .order_by(catalog_versions.c.version.desc())
            .limit(1)
        ).first()
        if latest is not None and catalog.version < latest.version:
            raise CatalogVersionConflict(
                f"version: {catalog.version} is older than the loaded version {latest.version}"
            )
        previous = _parsed_or_none(latest.document) if latest is not None else None
        _check_replacements(catalog, previous, replacements)
        _check_subscribed_plans(conn, catalog, replacements)
        conn.execute(
            catalog_versions.insert().values(
                version=catalog.version,
                document=json.loads(canonical),
                sha256=digest,
                source=source,
                loaded_at=utc_now(),
            )
        )
        for old, new in replacements.items():
            conn.execute(
                subscriptions.update()
                .where(subscriptions.c.plan_code == old, _still_subscribed())
                .values(plan_code=new)
            )
    return catalog, True


def _parsed_or_none(document: Mapping[str, Any]) -> Catalog | None:
    """A stored version, or None if it no longer passes today's validation (being replaced)."""
    try:
        return parse_catalog(document)
    except CatalogError:
        return None


class PlanStillSubscribed(CatalogVersionConflict):
    """A new catalog version drops a plan that organizations are subscribed to."""


def _still_subscribed():
    """Subscriptions not ended, or ended since the start of the previous UTC month.

    A period that ended before that has been billed; the previous month and the current
    one may still be drafted, finalized or re-drafted with the latest catalog.
    """
    now = _now()
    this_month = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    previous_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    return or_(subscriptions.c.ends_at.is_(None), subscriptions.c.ends_at > previous_month)


def _check_replacements(catalog: Catalog, previous: Catalog | None, replacements: Mapping[str, str]) -> None:
    for old, new in replacements.items():
        where = f"replace {old}={new}"
        if old in catalog.plans:
            raise CatalogVersionConflict(f"{where}: plan {old!r} is still in catalog version {catalog.version}")
        target = catalog.plans.get(new)
        if target is None:
            raise CatalogVersionConflict(f"{where}: plan {new!r} is not in catalog version {catalog.version}")
        replaced = previous.plans.get(old) if previous else None
        if replaced and (replaced.currency, replaced.interval) != (target.currency, target.interval):
            raise CatalogVersionConflict(
                f"{where}: {old!r} is billed {replaced.interval.value} in {replaced.currency}, {new!r} "
                f"{target.interval.value} in {target.currency}; a replacement must match both"
            )


def _check_subscribed_plans(conn: Connection, catalog: Catalog, replacements: Mapping[str, str]) -> None:
    query = (
        select(subscriptions.c.plan_code, subscriptions.c.org_id)
        .where(_still_subscribed())
        .distinct()
        .order_by(subscriptions.c.plan_code, subscriptions.c.org_id)
    )
    dropped: dict[str, list[str]] = {}
    for row in conn.execute(query):
        if row.plan_code not in catalog.plans and row.plan_code not in replacements:
            dropped.setdefault(row.plan_code, []).append(row.org_id)
    for code, orgs in dropped.items():
        shown = ", ".join(orgs[:5]) + (f" and {len(orgs) - 5} more" if len(orgs) > 5 else "")
        raise PlanStillSubscribed(
            f"plans: plan {code!r} is not in catalog version {catalog.version} but {len(orgs)} "
            f"organization(s) are subscribed to it ({shown}); keep the plan, or move them to another "
            f"plan of this version (load-catalog --replace {code}=NEW_PLAN)"
        )


def latest_catalog(engine: Engine) -> Catalog | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(catalog_versions.c.document).order_by(catalog_versions.c.version.desc()).limit(1)
        ).first()
    return parse_catalog(row.document) if row else None
