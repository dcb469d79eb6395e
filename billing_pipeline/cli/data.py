"""Schema, catalog, events, customers and the demo data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from billing_pipeline.cli.base import billing_engine, load_settings, main, parse_period, redact_url
from billing_pipeline.clock import utc_now

UTC = dt.UTC


@main.command("init-db")
def init_db() -> None:
    """Create or upgrade the billing database schema (Alembic, idempotent)."""
    from billing_pipeline.db.engine import migrate

    settings = load_settings()
    migrate(settings.database_url)
    click.echo(f"billing database ready: {redact_url(settings.database_url)}")


@main.command("load-catalog")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--replace",
    "replacements",
    multiple=True,
    metavar="OLD=NEW",
    help="Move the subscriptions of plan OLD, dropped from this version, to plan NEW (repeatable).",
)
def load_catalog(file: Path, replacements: tuple[str, ...]) -> None:
    """Validate and store a plan catalog YAML file (a version is immutable once loaded).

    At most 2 MB of UTF-8. A plan organizations are still subscribed to cannot be dropped
    unless --replace OLD=NEW names the plan of this version they move to.
    """
    import yaml

    from billing_pipeline import yaml_input
    from billing_pipeline.db.reference import CatalogVersionConflict, save_catalog
    from billing_pipeline.domain.catalog import CatalogError, decode_catalog

    moves: dict[str, str] = {}
    for item in replacements:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"expected OLD=NEW, got {item!r}", param_hint="--replace")
        moves[old] = new
    try:
        document = yaml_input.load(decode_catalog(file.read_bytes(), str(file)))
        catalog, created = save_catalog(billing_engine(load_settings()), document, str(file), replacements=moves)
    except CatalogError as exc:
        raise click.ClickException(str(exc) if str(exc).startswith(str(file)) else f"{file}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        where = f"{file}:{exc.problem_mark.line + 1}" if exc.problem_mark else str(file)
        raise click.ClickException(f"{where}: {exc.problem or exc}") from None
    except (CatalogVersionConflict, yaml.YAMLError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    state = "loaded" if created else "already loaded (unchanged)"
    click.echo(f"catalog version {catalog.version} {state}: {len(catalog.metrics)} metrics, {len(catalog.plans)} plans")
    for old, new in moves.items() if created else ():
        click.echo(f"subscriptions of plan {old} moved to plan {new}")


@main.command("import-events")
@click.argument("file", type=click.Path(allow_dash=True, path_type=Path))
@click.option("--batch-size", default=50_000, show_default=True)
def import_events_cmd(file: Path, batch_size: int) -> None:
    """Import usage events from CSV or JSON Lines (idempotent; bad rows are quarantined)."""
    from billing_pipeline.ingest import EventFileError, ParserProcessError, import_events

    settings = load_settings()
    try:
        summary = import_events(
            billing_engine(settings),
            file,
            batch_size=batch_size,
            max_properties_bytes=settings.ingest_max_properties_bytes,
        )
    except (EventFileError, ParserProcessError, LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    print_import(summary)


@main.command("import-customers")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
def import_customers_cmd(file: Path, dry_run: bool) -> None:
    """Upsert organizations and subscriptions from CSV, JSON Lines or YAML (README, "Customers").

    All or nothing: any bad field is reported with its line, and nothing is written.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from billing_pipeline.db.customer_files import CustomerFileError, read_customer_file
    from billing_pipeline.db.reference import import_customers
    from billing_pipeline.domain.customers import CustomersInvalid

    try:
        records, problems = read_customer_file(file)
        result = import_customers(billing_engine(load_settings()), file.name, records, problems, dry_run=dry_run)
    except CustomersInvalid as exc:
        click.echo(str(exc), err=True)
        raise click.ClickException(f"{file}: {len(exc.problems)} problem(s); nothing was written") from None
    except (CustomerFileError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OperationalError, ProgrammingError) as exc:
        raise click.ClickException(f"billing database: {exc.orig} (is it created? billing-pipeline init-db)") from None
    verb = "would be" if dry_run else "were"
    for what, counts in (("organizations", result.organizations), ("subscriptions", result.subscriptions)):
        detail = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("created", "updated", "unchanged"))
        click.echo(f"{file.name}: {what}: {detail}")
    click.echo(f"dry run: nothing was written (these changes {verb} made)" if dry_run else f"{file.name}: imported")


def print_import(summary) -> None:
    click.echo(
        f"read {summary.read} = accepted {summary.accepted} + duplicates {summary.duplicates} "
        f"+ quarantined {summary.quarantined}  ({summary.events_per_second:,.0f} events/s)"
    )
    for reason, count in sorted(summary.by_reason.items()):
        click.echo(f"  quarantined {reason}: {count}")


@main.command("seed-demo")
@click.option("--period", "period_value", default=None, help="Month YYYY-MM (default: last closed month).")
@click.option("--events-per-org", default=400, show_default=True)
def seed_demo(period_value: str | None, events_per_org: int) -> None:
    """Create demo organizations, subscriptions and a month of usage events."""
    seed_demo_data(load_settings(), period_value, events_per_org)


def seed_demo_data(settings, period_value, events_per_org):
    import yaml

    from billing_pipeline import demo
    from billing_pipeline.db import reference
    from billing_pipeline.db.engine import migrate
    from billing_pipeline.ingest import import_events

    migrate(settings.database_url)
    engine = billing_engine(settings)
    catalog_file = Path(__file__).parent.parent / "catalog" / "plans.yaml"
    reference.save_catalog(engine, yaml.safe_load(catalog_file.read_text()), str(catalog_file))
    period = parse_period(period_value, "monthly") if period_value else demo.demo_period(utc_now())
    reference.upsert_organizations(engine, [o for o, _ in demo.DEMO_ORGS])
    for org, plan in demo.DEMO_ORGS:
        reference.add_subscription(engine, org.id, plan, dt.datetime(2026, 1, 1, tzinfo=UTC))
    path = settings.home / "demo" / f"events-{period.key[:7]}.csv"
    demo.write_events(path, period.start, period.end, events_per_org=events_per_org)
    summary = import_events(engine, path)
    click.echo(f"demo organizations: {', '.join(o.id for o, _ in demo.DEMO_ORGS)}; events file {path}")
    print_import(summary)
    return period
