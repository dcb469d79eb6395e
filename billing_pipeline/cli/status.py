"""The deployment and a period as the instance and the billing database hold them."""

from __future__ import annotations

from pathlib import Path

import click

from billing_pipeline.cli.base import billing_engine, dagster_instance, load_settings, main, parse_period
from billing_pipeline.clock import utc_now


@main.command("status")
@click.option("--period", "period_value", default=None, help="Month YYYY-MM (default: last closed month).")
@click.option("--interval", type=click.Choice(["monthly", "weekly"]), default="monthly", show_default=True)
def status(period_value: str | None, interval: str) -> None:
    """The deployment (daemon, schedules and sensors as the instance stores them, undelivered
    invoices, late usage), last runs, per-organization invoice state, ambiguous e-mails,
    quarantine counts."""
    settings = load_settings()  # first: importing the definitions reads the settings too, past this handler
    from billing_pipeline import definitions
    from billing_pipeline.db.delivery_views import ambiguous_deliveries
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import previous_period
    from billing_pipeline.services.reporting import format_ambiguous, format_period_report, period_states
    from billing_pipeline.status import deployment_report

    engine = billing_engine(settings)
    now = utc_now()
    instance = dagster_instance()
    click.echo(deployment_report(instance, definitions.defs, engine, now))
    _print_runs(instance)
    period = parse_period(period_value, interval) if period_value else previous_period(BillingInterval(interval), now)
    click.echo(format_period_report(period, period_states(engine, period)))
    click.echo(format_ambiguous(ambiguous_deliveries(engine)))
    _print_receivables(engine, now)
    _print_quarantine(engine)


def _print_receivables(engine, now) -> None:
    """Finalized invoices with something due, by age (the AR aging report's buckets), and open dead letters."""
    from billing_pipeline.db import collections, dead_letters
    from billing_pipeline.domain import money
    from billing_pipeline.domain.aging import BUCKETS, aging
    from billing_pipeline.domain.dunning import amounts_due

    data = collections.load_receivables(engine)
    buckets = aging(data.invoices, amounts_due(data.invoices, data.balances), now)
    click.echo("Receivables:" + ("" if buckets else " nothing due"))
    for key in BUCKETS:
        per_currency = buckets.get(key, {})
        label = "not yet overdue" if key == "current" else f"overdue {key} days"
        parts = [
            f"{n} invoice(s) {money.format_amount(money.from_minor(minor, cur), cur)}"
            for cur, (n, minor) in sorted(per_currency.items())
        ]
        if parts:
            click.echo(f"  {label:<20} " + ", ".join(parts))
    letters = dead_letters.count_open(engine)
    click.echo("Open dead letters: " + (", ".join(f"{k}: {v}" for k, v in sorted(letters.items())) or "none"))


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
