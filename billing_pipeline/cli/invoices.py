"""Invoice lifecycle by hand: void, mark uncollectible, mark paid, credit notes, the audit trail.

Every command is safe to run again: a re-run changes nothing and only retries gateway effects that
failed (README "Invoice lifecycle, payments and credit notes").
"""

from __future__ import annotations

import getpass
import sys

import click

from billing_pipeline.cli.base import billing_engine, load_settings, main

METHODS = ("bank_transfer", "check", "cash", "other")


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


actor_option = click.option("--actor", default=default_actor, help="Who does it (default: the OS user).")
reason_option = click.option("--reason", required=True, help="Why: kept in the audit trail.")


def lifecycle_mirror(settings):
    """The gateway effects for ``PAYMENT_GATEWAY``: none -> NullMirror; stripe -> the Stripe gateway as
    ``services.lifecycle_mirror.InvoiceMirror`` (``clients.payments.GatewayInvoiceMirror``, keys with the
    delivery's idempotency prefix)."""
    from billing_pipeline.services.lifecycle_mirror import NullMirror

    if settings.payment_gateway == "none":
        return NullMirror()
    import dagster as dg

    from billing_pipeline.clients.payments import GatewayInvoiceMirror
    from billing_pipeline.services.delivery.options import DeliveryOptions
    from billing_pipeline.settings import delivery_resources

    with dg.build_resources({"payment_gateway": delivery_resources(settings)["payment_gateway"]}) as res:
        gateway = res.payment_gateway.gateway()
    return GatewayInvoiceMirror(gateway, idempotency_prefix=DeliveryOptions().idempotency_prefix)


def lifecycle_service(settings):
    from billing_pipeline.services.lifecycle import LifecycleService

    return LifecycleService(billing_engine(settings), mirror=lifecycle_mirror(settings))


def credit_note_service(settings):
    import dagster as dg

    from billing_pipeline.services.delivery.options import seller_from_settings
    from billing_pipeline.services.lifecycle_credit_notes import CreditNoteService
    from billing_pipeline.settings import delivery_resources

    with dg.build_resources({"document_store": delivery_resources(settings)["document_store"]}) as res:
        store = res.document_store.store()
    return CreditNoteService(
        billing_engine(settings),
        store=store,
        seller=seller_from_settings(settings.seller),
        mirror=lifecycle_mirror(settings),
    )


def run_command(call) -> None:
    """Run a lifecycle call and print its result; refusals exit 1, so do gateway failures (the
    change itself is recorded: running the same command again retries the gateway)."""
    from billing_pipeline.domain import money
    from billing_pipeline.services.lifecycle import LifecycleError

    try:
        result = call()
    except LifecycleError as exc:
        raise click.ClickException(str(exc)) from None
    due = money.format_amount(result.amount_due, result.currency)
    click.echo(f"{result.number}: {result.message}; status {result.status.value}, amount due {due}")
    if result.document:
        click.echo(f"  document: {result.document}")
    for effect in result.mirror:
        error = f": {effect.last_error}" if effect.last_error else ""
        click.echo(f"  gateway {effect.idempotency_key}: {effect.status}{error}")
    if result.mirror_failed:
        click.echo("the change is recorded; run the same command again to retry the gateway", err=True)
        sys.exit(1)


@main.group("invoices")
def invoices() -> None:
    """Invoice lifecycle after finalization (void, uncollectible, paid) and its audit trail."""


@invoices.command("void")
@click.argument("number")
@reason_option
@actor_option
def void(number: str, reason: str, actor: str) -> None:
    """Void invoice NUMBER (finalized or uncollectible, nothing paid or credited)."""
    service = lifecycle_service(load_settings())
    run_command(lambda: service.void(number, actor=actor, reason=reason))


@invoices.command("mark-uncollectible")
@click.argument("number")
@reason_option
@actor_option
def mark_uncollectible(number: str, reason: str, actor: str) -> None:
    """Write invoice NUMBER off as uncollectible (it can still be paid or voided later)."""
    service = lifecycle_service(load_settings())
    run_command(lambda: service.mark_uncollectible(number, actor=actor, reason=reason))


@invoices.command("mark-paid")
@click.argument("number")
@reason_option
@click.option("--method", type=click.Choice(METHODS), default="other", show_default=True)
@click.option("--reference", default=None, help="The payment's reference (bank transfer, check number).")
@actor_option
def mark_paid(number: str, reason: str, method: str, reference: str | None, actor: str) -> None:
    """Record an out-of-band payment of the whole amount due of NUMBER and mark it paid."""
    from billing_pipeline.domain.receivables import ManualMethod

    service = lifecycle_service(load_settings())
    run_command(
        lambda: service.mark_paid(number, actor=actor, reason=reason, method=ManualMethod(method), reference=reference)
    )


@invoices.command("history")
@click.argument("number")
def history(number: str) -> None:
    """The audit trail of invoice NUMBER: status changes, payments, credit notes, gateway effects."""
    from billing_pipeline.services.lifecycle_history import format_history

    try:
        click.echo(format_history(billing_engine(load_settings()), number))
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None


@main.group("credit-notes")
def credit_notes() -> None:
    """Credit notes: part or all of a finalized invoice taken back, numbered CN-YYYY-NNNNNN."""


@credit_notes.command("create")
@click.argument("number")
@click.option("--amount", default=None, help="Amount to credit, tax included, in the invoice's currency.")
@click.option("--full", is_flag=True, help="Credit the whole amount due.")
@reason_option
@actor_option
def create_credit_note(number: str, amount: str | None, full: bool, reason: str, actor: str) -> None:
    """Issue a credit note on invoice NUMBER (PDF stored, mirrored to the gateway)."""
    service = credit_note_service(load_settings())
    run_command(lambda: service.create_credit_note(number, amount_text=amount, full=full, reason=reason, actor=actor))
