"""``billing-pipeline``: set up the billing database, import events, run and inspect billing.

Runs started here (run-month, aggregate-usage, demo) are Dagster runs on the instance
in DAGSTER_HOME, so they show in the UI like runs launched from it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click

from billing_pipeline.clock import utc_now

UTC = dt.UTC


def _settings():
    from billing_pipeline.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def _engine(settings):
    from billing_pipeline.db.engine import get_engine

    return get_engine(settings.database_url)


def _instance():
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        home = Path.cwd() / ".dagster_home"
        home.mkdir(exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and not (home / "dagster.yml").exists():
        # Dagster logs "No dagster instance configuration file (dagster.yaml) found at ...
        # create an empty dagster.yaml file" on every command otherwise; the embedded
        # defaults (SQLite in DAGSTER_HOME) are what these commands want.
        (home / "dagster.yaml").write_text("# Dagster's defaults: SQLite storage in this folder (billing-pipeline)\n")
    return dg.DagsterInstance.get()


def _parse_period(value: str, interval: str):
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_from_key

    key = f"{value}-01" if len(value) == 7 and interval == "monthly" else value
    try:
        return period_from_key(BillingInterval(interval), key)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="PERIOD") from None


@click.group()
def main() -> None:
    """Usage events in, exact invoices out. See README.md."""


@main.command("init-db")
def init_db() -> None:
    """Create or upgrade the billing database schema (Alembic, idempotent)."""
    from billing_pipeline.db.engine import migrate

    settings = _settings()
    migrate(settings.database_url)
    click.echo(f"billing database ready: {_redact(settings.database_url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


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

    from billing_pipeline.db.reference import CatalogVersionConflict, save_catalog
    from billing_pipeline.domain.catalog import CatalogError, decode_catalog

    moves: dict[str, str] = {}
    for item in replacements:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"expected OLD=NEW, got {item!r}", param_hint="--replace")
        moves[old] = new
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when libyaml is there
    try:
        document = yaml.load(decode_catalog(file.read_bytes(), str(file)), Loader=loader)  # noqa: S506
        catalog, created = save_catalog(_engine(_settings()), document, str(file), replacements=moves)
    except CatalogError as exc:
        raise click.ClickException(str(exc) if str(exc).startswith(str(file)) else f"{file}: {exc}") from None
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

    settings = _settings()
    try:
        summary = import_events(
            _engine(settings),
            file,
            batch_size=batch_size,
            max_properties_bytes=settings.ingest_max_properties_bytes,
        )
    except (EventFileError, ParserProcessError, LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _print_import(summary)


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
        result = import_customers(_engine(_settings()), file.name, records, problems, dry_run=dry_run)
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


def _print_import(summary) -> None:
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
    _seed_demo(_settings(), period_value, events_per_org)


def _seed_demo(settings, period_value, events_per_org):
    import yaml

    from billing_pipeline import demo
    from billing_pipeline.db import reference
    from billing_pipeline.db.engine import migrate
    from billing_pipeline.ingest import import_events

    migrate(settings.database_url)
    engine = _engine(settings)
    catalog_file = Path(__file__).parent / "catalog" / "plans.yaml"
    reference.save_catalog(engine, yaml.safe_load(catalog_file.read_text()), str(catalog_file))
    period = _parse_period(period_value, "monthly") if period_value else demo.demo_period(utc_now())
    reference.upsert_organizations(engine, [o for o, _ in demo.DEMO_ORGS])
    for org, plan in demo.DEMO_ORGS:
        reference.add_subscription(engine, org.id, plan, dt.datetime(2026, 1, 1, tzinfo=UTC))
    path = settings.home / "demo" / f"events-{period.key[:7]}.csv"
    demo.write_events(path, period.start, period.end, events_per_org=events_per_org)
    summary = import_events(engine, path)
    click.echo(f"demo organizations: {', '.join(o.id for o, _ in demo.DEMO_ORGS)}; events file {path}")
    _print_import(summary)
    return period


@main.command("aggregate-usage")
@click.argument("first")
@click.argument("last", required=False)
def aggregate_usage(first: str, last: str | None) -> None:
    """Materialize hourly_usage for hours FIRST..LAST (ISO hours, UTC) or a month YYYY-MM."""
    start, end = _hour_range(first, last)
    outcome = _run_hours(_settings(), _instance(), start, end)
    click.echo(
        f"hourly_usage {outcome.partition_range[0]}..{outcome.partition_range[1]}: "
        f"{'success' if outcome.success else 'FAILED'} (run {outcome.run_id})"
    )
    if not outcome.success:
        sys.exit(1)


def _hour_range(first: str, last: str | None) -> tuple[dt.datetime, dt.datetime]:
    """FIRST..LAST as UTC hours (an offset is converted, none means UTC), or a month YYYY-MM."""
    from billing_pipeline.domain.periods import parse_hour

    if len(first) == 7 and last is None:
        period = _parse_period(first, "monthly")
        return period.start, period.end - dt.timedelta(hours=1)
    try:
        start = parse_hour(first)
        end = parse_hour(last) if last else start
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if end < start:
        raise click.BadParameter(f"LAST {end:%Y-%m-%d %H:%M} UTC is before FIRST {start:%Y-%m-%d %H:%M} UTC")
    return start, end


@main.command("run-month")
@click.argument("period_value", metavar="PERIOD")
@click.option("--org", "orgs", multiple=True, help="Only these organizations (repeatable).")
@click.option("--dry-run", is_flag=True, help="Compute and show everything, write nothing.")
@click.option("--interval", type=click.Choice(["monthly", "weekly"]), default="monthly", show_default=True)
@click.option("--no-delivery", is_flag=True, help="Finalize only; the invoice_delivery_sensor delivers later.")
@click.option(
    "--finalize-now",
    is_flag=True,
    help="Finalize an ended period inside its grace window (INVOICE_GRACE_HOURS); "
    "usage arriving later goes to the next invoice.",
)
def run_month(
    period_value: str, orgs: tuple[str, ...], dry_run: bool, interval: str, no_delivery: bool, finalize_now: bool
) -> None:
    """Invoice PERIOD (YYYY-MM, or a week's Monday YYYY-MM-DD with --interval weekly), then deliver.

    A period that has not ended is refused. Inside the grace window after its end, drafts are
    computed and shown, and finalized once the window closes (or now, with --finalize-now).
    """
    settings = _settings()
    period = _parse_period(period_value, interval)
    ok = _run_period(settings, period, orgs, dry_run, deliver=not no_delivery, finalize_now=finalize_now)
    if not ok:
        sys.exit(1)


@main.command("deliver")
@click.argument("period_value", metavar="PERIOD")
@click.option("--org", "orgs", multiple=True, help="Only these organizations (repeatable).")
@click.option("--dry-run", is_flag=True, help="Render and validate, send nothing.")
@click.option("--interval", type=click.Choice(["monthly", "weekly"]), default="monthly", show_default=True)
@click.option(
    "--resend-ambiguous-email",
    is_flag=True,
    help="Resend emails whose delivery was interrupted mid-send (same Message-ID).",
)
def deliver(
    period_value: str, orgs: tuple[str, ...], dry_run: bool, interval: str, resend_ambiguous_email: bool
) -> None:
    """Deliver PERIOD's finalized invoices (PDF, S3, Stripe, email); channels already done are skipped."""
    settings = _settings()
    period = _parse_period(period_value, interval)
    if not _deliver(settings, period, orgs, dry_run, resend_ambiguous_email):
        sys.exit(1)


def _deliver(settings, period, orgs, dry_run, resend_ambiguous_email=False, defs=None) -> bool:
    from billing_pipeline.definitions import build_definitions
    from billing_pipeline.defs.delivery import run_delivery
    from billing_pipeline.launch import sync_organization_partitions
    from billing_pipeline.services.reporting import delivery_states, format_delivery_report

    engine = _engine(settings)
    instance = _instance()
    sync_organization_partitions(instance, engine)
    defs = defs or build_definitions(settings)
    try:
        outcomes = run_delivery(
            defs,
            instance,
            period.interval,
            period.key,
            organizations=orgs,
            dry_run=dry_run,
            resend_ambiguous_email=resend_ambiguous_email,
            batch_size=settings.invoice_batch_size,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for o in outcomes:
        click.echo(
            f"delivery run {o.run_id} {o.partition_range[0]}..{o.partition_range[1]}: "
            f"{'success' if o.success else 'FAILED (see the ledger below and the run in the UI)'}"
        )
    click.echo(format_delivery_report(delivery_states(engine, period, orgs)))
    if settings.document_store == "local":
        click.echo(f"  PDFs: {settings.documents_dir}")
    if settings.mailer == "outbox":
        click.echo(f"  emails (.eml): {settings.outbox_dir}")
    return all(o.success for o in outcomes)


def _run_hours(settings, instance, first: dt.datetime, last: dt.datetime):
    from billing_pipeline import definitions, launch

    return launch.run_hours(
        definitions.build_definitions(settings), instance, definitions.hourly_usage_job.name, first, last
    )


def _run_period(settings, period, orgs, dry_run, deliver=True, finalize_now=False) -> bool:
    from billing_pipeline import definitions, launch
    from billing_pipeline.domain.invoices import finalization_refusal
    from billing_pipeline.services.reporting import format_period_report, period_states

    now = utc_now()
    refused = finalization_refusal(period, now, dt.timedelta(0))
    if refused:
        raise click.ClickException(f"refused: {refused}; nothing was run")
    waiting = finalization_refusal(period, now, settings.invoice_grace, within_grace=finalize_now)
    engine = _engine(settings)
    instance = _instance()
    launch.sync_organization_partitions(instance, engine)
    defs = definitions.build_definitions(settings)
    try:
        outcomes = launch.run_period(
            defs,
            instance,
            definitions.INVOICE_JOBS[period.interval],
            period.key,
            organizations=orgs,
            dry_run=dry_run,
            batch_size=settings.invoice_batch_size,
            finalize_within_grace=finalize_now,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for o in outcomes:
        click.echo(
            f"run {o.run_id} {o.partition_range[0]}..{o.partition_range[1]}: "
            f"{'success' if o.success else 'FAILED (see failures below and the run in the UI)'}"
        )
    ok = all(o.success for o in outcomes)
    if dry_run:
        _print_dry_run(instance, outcomes, definitions.INVOICE_JOBS[period.interval].config_ops[0])
        return ok
    click.echo(format_period_report(period, period_states(engine, period)))
    if waiting:
        click.echo(f"not finalized yet: {waiting} (--finalize-now finalizes now)")
    elif deliver:
        ok = _deliver(settings, period, orgs, False, defs=defs) and ok
    return ok


@main.group("deliveries")
def deliveries() -> None:
    """Settle the delivery ledger by hand (see README "Delivery, exactly once")."""


@deliveries.command("resolve")
@click.argument("invoice_number")
@click.option("--channel", type=click.Choice(["email"]), default="email", show_default=True)
@click.option("--sent", "outcome", flag_value="sent", help="The mail log shows it delivered: record it so.")
@click.option("--resend", "outcome", flag_value="resend", help="It was not delivered: the next run resends it.")
def resolve_delivery(invoice_number: str, channel: str, outcome: str | None) -> None:
    """Settle an ambiguous delivery of INVOICE_NUMBER after checking the mail server log."""
    from billing_pipeline.db import delivery_views

    if outcome is None:
        raise click.UsageError("say what the mail server log shows: --sent or --resend")
    engine = _engine(_settings())
    found = delivery_views.find_invoice(engine, invoice_number)
    if found is None:
        raise click.ClickException(f"no invoice numbered {invoice_number!r}")
    invoice_id, org_id, interval, period_key = found
    try:
        mid = delivery_views.resolve_ambiguous(engine, invoice_id, channel, sent=outcome == "sent")
    except delivery_views.NotAmbiguous as exc:
        raise click.ClickException(f"{invoice_number}: {exc}") from None
    if outcome == "sent":
        click.echo(f"{invoice_number} {channel} {mid}: recorded as delivered")
    else:
        period = period_key[:7] if interval == "monthly" else period_key
        click.echo(
            f"{invoice_number} {channel} {mid}: will be sent again (same Message-ID) by the next delivery run: "
            f"billing-pipeline deliver {period} --interval {interval} --org {org_id}"
        )


def _print_dry_run(instance, outcomes, drafts_asset: str) -> None:
    from billing_pipeline import launch

    click.echo("dry run: nothing was written; each organization's result (also recorded as an observation):")
    for o in outcomes:
        for meta in sorted(launch.run_observations(instance, o.run_id, drafts_asset), key=lambda m: m["organization"]):
            click.echo(
                f"  {meta['organization']:<16} {meta['outcome']:<18} {meta.get('total', '-'):>18}  "
                f"{meta.get('message', '')}".rstrip()
            )


@main.command("status")
@click.option("--period", "period_value", default=None, help="Month YYYY-MM (default: last closed month).")
@click.option("--interval", type=click.Choice(["monthly", "weekly"]), default="monthly", show_default=True)
def status(period_value: str | None, interval: str) -> None:
    """The deployment (daemon, schedules and sensors as the instance stores them, undelivered
    invoices, late usage), last runs, per-organization invoice state, ambiguous e-mails,
    quarantine counts."""
    from billing_pipeline import definitions
    from billing_pipeline.db.delivery_views import ambiguous_deliveries
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import previous_period
    from billing_pipeline.services.reporting import format_ambiguous, format_period_report, period_states
    from billing_pipeline.status import deployment_report

    settings = _settings()
    engine = _engine(settings)
    now = utc_now()
    instance = _instance()
    click.echo(deployment_report(instance, definitions.defs, engine, now))
    _print_runs(instance)
    period = _parse_period(period_value, interval) if period_value else previous_period(BillingInterval(interval), now)
    click.echo(format_period_report(period, period_states(engine, period)))
    click.echo(format_ambiguous(ambiguous_deliveries(engine)))
    _print_quarantine(engine)


def _print_runs(instance, limit: int = 8) -> None:
    from billing_pipeline.launch import RANGE_END_TAG, RANGE_START_TAG

    click.echo("Last runs:")
    for run in instance.get_runs(limit=limit):
        ends = [run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)]
        part = run.tags.get("dagster/partition") or "..".join(filter(None, ends))
        click.echo(f"  {run.run_id[:8]} {run.job_name:<22} {run.status.value:<10} {part}")


def _print_quarantine(engine) -> None:
    from billing_pipeline.db.reports import quarantine_counts, recent_imports

    counts = quarantine_counts(engine)
    click.echo("Quarantined events: " + (", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"))
    for imp in recent_imports(engine, 3):
        click.echo(
            f"  import #{imp.id} {Path(imp.source).name}: read {imp.read}, accepted {imp.accepted}, "
            f"duplicates {imp.duplicates}, quarantined {imp.quarantined}"
        )


@main.command("demo")
@click.option("--period", "period_value", default=None, help="Month YYYY-MM (default: last closed month).")
def demo_cmd(period_value: str | None) -> None:
    """Everything on embedded defaults: schema, catalog, demo data, hourly usage, invoices."""
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_containing

    settings = _settings()
    click.echo(f"billing database: {_redact(settings.database_url)}")
    click.echo(f"dagster instance: {os.environ.get('DAGSTER_HOME') or Path.cwd() / '.dagster_home'}")
    period = _seed_demo(settings, period_value, 400)
    instance = _instance()
    outcome = _run_hours(settings, instance, period.start, period.end - dt.timedelta(hours=1))
    click.echo(f"hourly_usage for {period.label}: {'success' if outcome.success else 'FAILED'} ({period.hours} hours)")
    # the demo's events are all in: no grace window to wait for
    ok = _run_period(settings, period, (), False, finalize_now=True)
    last_week = period_containing(BillingInterval.WEEKLY, period.end - dt.timedelta(days=7))
    ok = _run_period(settings, last_week, (), False, finalize_now=True) and ok
    click.echo("\nOpen the UI on the same instance:  make ui   (then http://127.0.0.1:3000)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
