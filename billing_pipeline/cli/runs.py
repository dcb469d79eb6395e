"""Runs on the Dagster instance: hourly usage, a period's invoices, their delivery, the demo."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click

from billing_pipeline.cli.base import billing_engine, dagster_instance, load_settings, main, parse_period, redact_url
from billing_pipeline.cli.data import seed_demo_data
from billing_pipeline.clock import utc_now

UTC = dt.UTC


@main.command("aggregate-usage")
@click.argument("first")
@click.argument("last", required=False)
def aggregate_usage(first: str, last: str | None) -> None:
    """Materialize hourly_usage for hours FIRST..LAST (ISO hours, UTC) or a month YYYY-MM."""
    start, end = _hour_range(first, last)
    outcome = _run_hours(load_settings(), dagster_instance(), start, end)
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
        period = parse_period(first, "monthly")
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
    settings = load_settings()
    period = parse_period(period_value, interval)
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
    settings = load_settings()
    period = parse_period(period_value, interval)
    if not _deliver(settings, period, orgs, dry_run, resend_ambiguous_email):
        sys.exit(1)


def _deliver(settings, period, orgs, dry_run, resend_ambiguous_email=False, defs=None) -> bool:
    from billing_pipeline.definitions import build_definitions
    from billing_pipeline.defs.delivery import run_delivery
    from billing_pipeline.launch import sync_organization_partitions
    from billing_pipeline.services.reporting import delivery_states, format_delivery_report

    engine = billing_engine(settings)
    instance = dagster_instance()
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
    engine = billing_engine(settings)
    instance = dagster_instance()
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


def _print_dry_run(instance, outcomes, drafts_asset: str) -> None:
    from billing_pipeline import launch

    click.echo("dry run: nothing was written; each organization's result (also recorded as an observation):")
    for o in outcomes:
        for meta in sorted(launch.run_observations(instance, o.run_id, drafts_asset), key=lambda m: m["organization"]):
            click.echo(
                f"  {meta['organization']:<16} {meta['outcome']:<18} {meta.get('total', '-'):>18}  "
                f"{meta.get('message', '')}".rstrip()
            )


@main.command("demo")
@click.option("--period", "period_value", default=None, help="Month YYYY-MM (default: last closed month).")
def demo_cmd(period_value: str | None) -> None:
    """Everything on embedded defaults: schema, catalog, demo data, hourly usage, invoices."""
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_containing

    settings = load_settings()
    click.echo(f"billing database: {redact_url(settings.database_url)}")
    click.echo(f"dagster instance: {os.environ.get('DAGSTER_HOME') or Path.cwd() / '.dagster_home'}")
    period = seed_demo_data(settings, period_value, 400)
    instance = dagster_instance()
    outcome = _run_hours(settings, instance, period.start, period.end - dt.timedelta(hours=1))
    click.echo(f"hourly_usage for {period.label}: {'success' if outcome.success else 'FAILED'} ({period.hours} hours)")
    # the demo's events are all in: no grace window to wait for
    ok = _run_period(settings, period, (), False, finalize_now=True)
    last_week = period_containing(BillingInterval.WEEKLY, period.end - dt.timedelta(days=7))
    ok = _run_period(settings, last_week, (), False, finalize_now=True) and ok
    click.echo("\nOpen the UI on the same instance:  make ui   (then http://127.0.0.1:3000)")
    if not ok:
        sys.exit(1)
