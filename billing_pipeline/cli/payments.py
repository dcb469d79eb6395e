"""Payments received outside the payment gateway (bank transfer, check, cash)."""

from __future__ import annotations

import datetime as dt

import click

from billing_pipeline.cli.base import load_settings, main
from billing_pipeline.cli.invoices import METHODS, actor_option, lifecycle_service, run_command


def parse_at(value: str | None) -> dt.datetime | None:
    """``--at``: an ISO date or time; without an offset it is UTC."""
    if value is None:
        return None
    try:
        at = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"not an ISO date or time: {value!r}", param_hint="--at") from None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


@main.group("payments")
def payments() -> None:
    """Record payments made outside the gateway; partial payments reduce the amount due."""


@payments.command("record")
@click.argument("number")
@click.argument("amount")
@click.option("--method", type=click.Choice(METHODS), required=True)
@click.option("--reference", default=None, help="The payment's reference: one payment per reference and invoice.")
@click.option("--at", "at_value", default=None, help="When the money arrived (ISO; UTC without offset; default now).")
@actor_option
def record(number: str, amount: str, method: str, reference: str | None, at_value: str | None, actor: str) -> None:
    """Record AMOUNT (the invoice's currency, at most its decimals) paid on invoice NUMBER.

    The invoice becomes paid when nothing remains due; more than the amount due is refused.
    Without --reference, the same invoice, method, amount and day are one payment however often
    the command runs."""
    from billing_pipeline.domain.receivables import ManualMethod

    service = lifecycle_service(load_settings())
    at = parse_at(at_value)
    run_command(
        lambda: service.record_payment(
            number, amount, method=ManualMethod(method), actor=actor, reference=reference, at=at
        )
    )
