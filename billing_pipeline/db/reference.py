"""Organizations, subscriptions and catalog versions: the reference data billing reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from billing_pipeline.clock import utc_now
from billing_pipeline.db.schema import catalog_versions, organizations, subscriptions
from billing_pipeline.db.types import rate_from_row
from billing_pipeline.domain.catalog import Catalog, parse_catalog
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
        tax_rate=rate_from_row(row.tax_rate),
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


def save_catalog(engine: Engine, document: Mapping[str, Any], source: str) -> tuple[Catalog, bool]:
    """Validate and store a catalog version. Returns (catalog, created).

    Loading the same version with the same content again is a no-op; the same version
    with different content is refused: published versions are immutable, bump ``version``.
    """
    catalog = parse_catalog(document)
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
        latest = conn.execute(select(func.max(catalog_versions.c.version))).scalar()
        if latest is not None and catalog.version < latest:
            raise CatalogVersionConflict(f"version: {catalog.version} is older than the loaded version {latest}")
        conn.execute(
            catalog_versions.insert().values(
                version=catalog.version,
                document=json.loads(canonical),
                sha256=digest,
                source=source,
                loaded_at=utc_now(),
            )
        )
    return catalog, True


def latest_catalog(engine: Engine) -> Catalog | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(catalog_versions.c.document).order_by(catalog_versions.c.version.desc()).limit(1)
        ).first()
    return parse_catalog(row.document) if row else None
