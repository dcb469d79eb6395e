"""Customers: list and show them, change their subscriptions, suspend or close them, preview the open period.

Plan changes are prorated by day (README "Subscription changes and proration",
``domain.proration``); a change reaching a finalized period is refused.
"""

from __future__ import annotations

import datetime as dt

import click

from billing_pipeline.cli.base import billing_engine, load_settings, main

WHEN = ("now", "period_end")


def parse_day(value: str | None, param: str = "--at") -> dt.datetime:
    """``--at``: an ISO date (``2026-11-10``), midnight UTC; default today (UTC)."""
    if value is None:
        from billing_pipeline.clock import utc_now

        today = utc_now().date()
        return dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"not an ISO date (YYYY-MM-DD): {value!r}", param_hint=param) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _engine():
    return billing_engine(load_settings())


def _organization(engine, org_id: str):
    from billing_pipeline.db import reference

    org = reference.get_organizations(engine, [org_id]).get(org_id)
    if org is None:
        raise click.ClickException(f"ORG: organization {org_id!r} is not stored")
    return org


def _run(action):
    """``action()``, its refusals as a clear error (exit 1)."""
    try:
        return action()
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _describe(change) -> str:
    text = f"{change.before.describe()} now ends {change.ended.ends_at.date().isoformat()}"
    if change.started is not None:
        text += f"; {change.started.describe()}"
    return text


@main.group("subscriptions")
def subscriptions_group() -> None:
    """Change or cancel an organization's subscription (prorated by day)."""


@subscriptions_group.command("change")
@click.argument("org_id", metavar="ORG")
@click.option("--plan", "plan_code", required=True, help="The new plan's code (latest catalog).")
@click.option("--at", "at_value", required=True, help="The day of the change (YYYY-MM-DD, UTC).")
@click.option(
    "--when",
    type=click.Choice(WHEN),
    default="now",
    show_default=True,
    help="now: from --at, prorated by day (an upgrade); period_end: from the end of --at's period (a downgrade).",
)
def change(org_id: str, plan_code: str, at_value: str, when: str) -> None:
    """Move ORG to --plan: the subscription in force ends, the new one starts."""
    from billing_pipeline.db import subscriptions
    from billing_pipeline.domain.subscription_changes import When, effective_at

    engine = _engine()
    org = _organization(engine, org_id)
    at = _run(lambda: effective_at(parse_day(at_value), When(when), org.billing_interval))
    done = _run(lambda: subscriptions.change_plan(engine, org_id, plan_code, at))
    click.echo(f"{org_id}: {_describe(done)}")


@subscriptions_group.command("cancel")
@click.argument("org_id", metavar="ORG")
@click.option("--at", "at_value", default=None, help="The day it ends (YYYY-MM-DD, UTC; default today).")
@click.option(
    "--at-period-end", is_flag=True, help="End it at the end of --at's billing period instead (no proration)."
)
def cancel(org_id: str, at_value: str | None, at_period_end: bool) -> None:
    """End ORG's subscription: from --at (prorated by day), or at the end of that period."""
    from billing_pipeline.db import subscriptions
    from billing_pipeline.domain.subscription_changes import When, effective_at

    engine = _engine()
    org = _organization(engine, org_id)
    when = When.PERIOD_END if at_period_end else When.NOW
    at = _run(lambda: effective_at(parse_day(at_value), when, org.billing_interval))
    done = _run(lambda: subscriptions.end_subscription(engine, org_id, at))
    click.echo(f"{org_id}: {_describe(done)}")


@main.group("organizations")
def organizations_group() -> None:
    """Suspend or close an organization (reactivate with import-customers)."""


def _set_status(org_id: str, status_value: str, at_value: str | None) -> None:
    from billing_pipeline.db import subscriptions
    from billing_pipeline.domain.model import OrganizationStatus

    engine = _engine()
    at = parse_day(at_value)
    before, change = _run(lambda: subscriptions.set_status(engine, org_id, OrganizationStatus(status_value), at))
    ended = _describe(change) if change else "no subscription in force"
    click.echo(f"{org_id}: {before.status.value} -> {status_value} from {at.date().isoformat()}; {ended}")


_STATUS_AT = click.option("--at", "at_value", default=None, help="From this day (YYYY-MM-DD, UTC; default today).")


@organizations_group.command("suspend")
@click.argument("org_id", metavar="ORG")
@_STATUS_AT
def suspend(org_id: str, at_value: str | None) -> None:
    """Stop billing ORG from --at: its subscription ends there; the days before are billed (prorated)."""
    _set_status(org_id, "suspended", at_value)


@organizations_group.command("close")
@click.argument("org_id", metavar="ORG")
@_STATUS_AT
def close(org_id: str, at_value: str | None) -> None:
    """Close ORG from --at: its subscription ends there, the days before are billed, nothing after."""
    _set_status(org_id, "closed", at_value)


@main.group("customers")
def customers_group() -> None:
    """List and show organizations, their subscriptions and invoices."""


@customers_group.command("list")
def list_customers() -> None:
    """Every organization: id, status, interval, currency and plan today."""
    from billing_pipeline.clock import utc_now
    from billing_pipeline.db import reference, subscriptions

    engine = _engine()
    orgs = reference.get_organizations(engine)
    now = utc_now()
    today = subscriptions.subscriptions_in_period(engine, list(orgs), now, now + dt.timedelta(microseconds=1))
    click.echo(f"{'organization':<24} {'status':<10} {'interval':<8} {'currency':<8} plan today")
    for org_id in sorted(orgs):
        org = orgs[org_id]
        plan = today[org_id][-1].plan_code if today.get(org_id) else "-"
        click.echo(f"{org_id:<24} {org.status.value:<10} {org.billing_interval.value:<8} {org.currency:<8} {plan}")
    click.echo(f"{len(orgs)} organization(s)")


@customers_group.command("show")
@click.argument("org_id", metavar="ORG")
def show(org_id: str) -> None:
    """ORG's fields, subscriptions (with dates) and invoices (status, total, amount due)."""
    from billing_pipeline.db import customer_views, reference
    from billing_pipeline.domain import money

    engine = _engine()
    org = _organization(engine, org_id)
    fields = ("name", "billing_email", "status", "currency", "tax_rate", "billing_interval", "auto_pay")
    collections = ("dunning_excluded", "account_manager_email", "sms_phone")
    for name in (*fields, "payment_terms_days", "time_zone", *collections):
        value = getattr(org, name)
        click.echo(f"{name + ':':<22} {'none' if value is None else getattr(value, 'value', value)}")
    with engine.connect() as conn:
        subs = reference.stored_subscriptions(conn, [org_id]).get(org_id, [])
    click.echo(f"Subscriptions ({len(subs)}):")
    for sub in subs:
        click.echo(f"  {sub.describe()}")
    rows = customer_views.organization_invoices(engine, org_id)
    click.echo(f"Invoices ({len(rows)}):")
    for row in rows:
        total, due = money.format_amount(row.total, row.currency), money.format_amount(row.amount_due, row.currency)
        click.echo(f"  {row.number or '(draft)':<16} {row.period_key} {row.status:<14} total {total:>14}  due {due}")
    outstanding = {c: v for c, v in money.revenue_by_currency((r.currency, r.amount_due) for r in rows).items() if v}
    click.echo(f"Balance due: {money.format_revenue(outstanding)}")


@main.command("preview")
@click.argument("org_id", metavar="ORG")
@click.option("--interval", type=click.Choice(("monthly", "weekly")), default=None, help="Default: ORG's own.")
def preview(org_id: str, interval: str | None) -> None:
    """ORG's upcoming invoice: the open period's draft priced now on the usage aggregated so far.

    Nothing is written (Stripe's "upcoming invoice"); the period is finalized only once it has
    ended and its grace window has closed."""
    from billing_pipeline.clock import utc_now
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_containing
    from billing_pipeline.services import invoicing

    engine = _engine()
    org = _organization(engine, org_id)
    period = period_containing(BillingInterval(interval) if interval else org.billing_interval, utc_now())
    _, [result], drafts = _run(lambda: invoicing.compute_drafts(engine, period, [org_id]))
    click.echo(f"Upcoming invoice of {org_id} for {period.label} (open until {period.end:%Y-%m-%d %H:%M} UTC)")
    draft = drafts.get(org_id)
    if draft is None:
        raise click.ClickException(f"no preview for {org_id}: {result.outcome.value}: {result.message}")
    _print_invoice(draft.invoice, result.total)


def _print_invoice(invoice, total_with_adjustments) -> None:
    from billing_pipeline.domain import money

    currency = invoice.currency
    for line in invoice.lines:
        quantity = money.format_quantity(line.quantity)
        click.echo(f"  {line.description:<64} {quantity:>12} {money.format_amount(line.amount, currency):>16}")
    click.echo(f"  {'Subtotal':<77} {money.format_amount(invoice.subtotal, currency):>16}")
    click.echo(f"  {'Tax ' + money.format_rate(invoice.tax_rate):<77} {money.format_amount(invoice.tax, currency):>16}")
    click.echo(f"  {'Total':<77} {money.format_amount(invoice.total, currency):>16}")
    if total_with_adjustments is not None and total_with_adjustments != invoice.total:
        amount = money.format_amount(total_with_adjustments, currency)
        click.echo(f"  {'Total with late-usage adjustments of earlier periods':<77} {amount:>16}")
    click.echo("Preview only: nothing was written.")
