"""Settling the delivery ledger by hand."""

from __future__ import annotations

import click

from billing_pipeline.cli.base import billing_engine, load_settings, main


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
    engine = billing_engine(load_settings())
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
