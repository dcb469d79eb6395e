"""Organizations, subscriptions and catalog versions: the reference data billing reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select

from billing_pipeline.clock import utc_now
from billing_pipeline.db.schema import catalog_versions, organizations, subscriptions
from billing_pipeline.db.types import rate_from_row
from billing_pipeline.domain.catalog import Catalog, CatalogError, parse_catalog
from billing_pipeline.domain.customers import (
    OPTIONAL_FIELDS,
    Customer,
    CustomersInvalid,
    Problem,
    SourceRecord,
    Subscription,
    history_problems,
    parse_customers,
    subscription_problems,
)
from billing_pipeline.domain.model import BillingInterval, Organization, OrganizationStatus
from billing_pipeline.domain.organizations import check_organization


class CatalogVersionConflict(ValueError):
    pass


def org_from_row(row: Any) -> Organization:
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
        dunning_excluded=bool(row.dunning_excluded),
        account_manager_email=row.account_manager_email,
        time_zone=row.time_zone,
        sms_phone=row.sms_phone,
    )


def upsert_organizations(engine: Engine, orgs: Iterable[Organization]) -> int:
    """Insert or update organizations by id; returns how many rows were written.

    Every organization is checked first (``domain.organizations``: lengths the database
    holds, one deliverable address, no control or bidi characters...); one invalid
    organization raises ``InvalidOrganization`` and nothing is written. An organization
    equal to its stored row is left untouched (``updated_at`` too).
    """
    orgs = list(orgs)
    for org in orgs:
        check_organization(org)
    with engine.begin() as conn:
        outcomes = _write_organizations(conn, orgs, utc_now())
    return sum(1 for outcome in outcomes.values() if outcome != "unchanged")


def _write_organizations(conn: Connection, orgs: Sequence[Organization], now: dt.datetime) -> dict[str, str]:
    """Upsert ``orgs`` (already checked); ``{org id: created | updated | unchanged}``."""
    ids = [org.id for org in orgs]
    stored = _organizations_in(conn, ids)
    outcomes: dict[str, str] = {}
    for org in orgs:
        values = {
            "name": org.name,
            "billing_email": org.billing_email,
            "status": org.status.value,
            "currency": org.currency,
            "tax_rate": org.tax_rate,
            "billing_interval": org.billing_interval.value,
            "auto_pay": org.auto_pay,
            "payment_terms_days": org.payment_terms_days,
            "dunning_excluded": org.dunning_excluded,
            "account_manager_email": org.account_manager_email,
            "time_zone": org.time_zone,
            "sms_phone": org.sms_phone,
        }
        before = stored.get(org.id)
        if before is None:
            conn.execute(organizations.insert().values(id=org.id, created_at=now, updated_at=now, **values))
            outcomes[org.id] = "created"
        elif before != org:
            conn.execute(organizations.update().where(organizations.c.id == org.id).values(updated_at=now, **values))
            outcomes.setdefault(org.id, "updated")
        else:
            outcomes.setdefault(org.id, "unchanged")
        stored[org.id] = org
    return outcomes


def _organizations_in(conn: Connection, ids: Sequence[str]) -> dict[str, Organization]:
    return {row.id: org_from_row(row) for row in conn.execute(select(organizations).where(organizations.c.id.in_(ids)))}


def get_organizations(engine: Engine, ids: Sequence[str] | None = None) -> dict[str, Organization]:
    query = select(organizations)
    if ids is not None:
        query = query.where(organizations.c.id.in_(list(ids)))
    with engine.connect() as conn:
        return {row.id: org_from_row(row) for row in conn.execute(query)}


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
    """Subscribe ``org_id`` to ``plan_code`` from ``starts_at``; idempotent on (org, start).

    Checked like a customers file's subscription (``domain.customers``): the plan is in the
    latest catalog, in the organization's currency and interval, and overlaps none of its
    other subscriptions; ``ValueError`` naming the problem otherwise.
    """
    sub = Subscription(starts_at, ends_at, plan_code)
    with engine.begin() as conn:
        org = _organizations_in(conn, [org_id]).get(org_id)
        catalog = latest_catalog_in(conn)
        if org is None or catalog is None:
            raise LookupError(f"organization {org_id!r} is not stored" if org is None else "no plan catalog loaded")
        stored = stored_subscriptions(conn, [org_id]).get(org_id, [])
        problems = subscription_problems(sub, catalog.plans, org.currency, org.billing_interval)
        problems += history_problems(org, [sub], stored, catalog.plans)
        if problems:
            raise ValueError(f"subscription of {org_id!r}: " + "; ".join(f"{f}: {m}" for f, m in problems))
        _write_subscription(conn, org_id, sub, stored)


@dataclass(frozen=True)
class CustomersImported:
    """What an import did (or, dry run, would do): ``created``/``updated``/``unchanged`` counts."""

    organizations: Mapping[str, int]
    subscriptions: Mapping[str, int]
    dry_run: bool


def stored_subscriptions(conn: Connection, org_ids: Sequence[str]) -> dict[str, list[Subscription]]:
    """The subscriptions stored for ``org_ids``, by organization, in start order."""
    query = select(subscriptions).where(subscriptions.c.org_id.in_(list(org_ids))).order_by(subscriptions.c.starts_at)
    result: dict[str, list[Subscription]] = {}
    for row in conn.execute(query):
        result.setdefault(row.org_id, []).append(Subscription(row.starts_at, row.ends_at, row.plan_code))
    return result


def import_customers(
    engine: Engine,
    source: str,
    records: Sequence[SourceRecord],
    problems: Sequence[Problem] = (),
    *,
    dry_run: bool = False,
) -> CustomersImported:
    """Upsert one customers file's organizations and subscriptions in one transaction.

    Every record is validated against the latest catalog and the stored subscriptions
    inside that transaction; any problem (``problems`` are the reader's) raises
    ``CustomersInvalid`` listing them all, and nothing is written. Subscriptions are keyed
    by (organization, start): importing the same file again changes nothing. A dry run
    does the same work and rolls it back. ``LookupError`` when no catalog is loaded.
    """
    org_ids = [r.fields["org_id"] for r in records if isinstance(r.fields.get("org_id"), str)]
    with engine.connect() as conn, conn.begin() as transaction:
        catalog = latest_catalog_in(conn)
        if catalog is None:
            raise LookupError("no plan catalog loaded: run `billing-pipeline load-catalog FILE` first")
        stored = stored_subscriptions(conn, org_ids)
        customers, found = parse_customers(records, catalog.plans, stored, problems)
        if found:
            raise CustomersInvalid(source, found)
        orgs = _keep_omitted_optional_fields(conn, customers)
        org_outcomes = _write_organizations(conn, orgs, utc_now())
        sub_outcomes = [
            _write_subscription(conn, c.organization.id, sub, stored.get(c.organization.id, ()))
            for c in customers
            for sub in c.subscriptions
        ]
        if dry_run:
            transaction.rollback()
    return CustomersImported(
        organizations=Counter(org_outcomes.values()), subscriptions=Counter(sub_outcomes), dry_run=dry_run
    )


def _keep_omitted_optional_fields(conn: Connection, customers: Sequence[Customer]) -> list[Organization]:
    """The customers' organizations, with the stored value of each optional field the file omits."""
    stored = _organizations_in(conn, [c.organization.id for c in customers])
    orgs = []
    for customer in customers:
        before = stored.get(customer.organization.id)
        kept = {name: getattr(before, name) for name in OPTIONAL_FIELDS if before and name not in customer.given}
        orgs.append(dataclasses.replace(customer.organization, **kept))
    return orgs


def _write_subscription(conn: Connection, org_id: str, sub: Subscription, stored: Sequence[Subscription]) -> str:
    same_start = next((s for s in stored if s.starts_at == sub.starts_at), None)
    if same_start == sub:
        return "unchanged"
    values = {"plan_code": sub.plan_code, "ends_at": sub.ends_at}
    if same_start is None:
        conn.execute(subscriptions.insert().values(org_id=org_id, starts_at=sub.starts_at, **values))
        return "created"
    where = and_(subscriptions.c.org_id == org_id, subscriptions.c.starts_at == sub.starts_at)
    conn.execute(subscriptions.update().where(where).values(**values))
    return "updated"


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
    now = utc_now()
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
        return latest_catalog_in(conn)


def latest_catalog_in(conn: Connection) -> Catalog | None:
    row = conn.execute(select(catalog_versions.c.document).order_by(catalog_versions.c.version.desc()).limit(1)).first()
    return parse_catalog(row.document) if row else None


def catalogs_by_version(engine: Engine, versions: Iterable[int]) -> dict[int, Catalog | None]:
    """Stored catalog versions by number (``None``: not stored, or no longer passes validation)."""
    wanted = sorted(set(versions))
    found: dict[int, Catalog | None] = dict.fromkeys(wanted)
    if not wanted:
        return found
    query = select(catalog_versions.c.version, catalog_versions.c.document).where(
        catalog_versions.c.version.in_(wanted)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            found[row.version] = _parsed_or_none(row.document)
    return found
