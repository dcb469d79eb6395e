"""Collections by hand: the dead letters (list, retry, dismiss) and the reminder ledger."""

from __future__ import annotations

import json

import click

from billing_pipeline.cli.base import billing_engine, load_settings, main


def _dead_letters_api():
    from billing_pipeline.db import dead_letters, notifications  # noqa: F401  (registers the notification kind)

    return dead_letters


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Side effects that failed for good: notifications (reminders, notices), charges, payment syncs,
    invoice deliveries (kind invoice_delivery, one per invoice x channel)."""


@dead_letters_group.command("list")
@click.option("--status", type=click.Choice(["open", "retried", "dismissed", "all"]), default="open", show_default=True)
@click.option("--kind", default=None, help="Only this kind (e.g. notification).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_dead_letters(status: str, kind: str | None, as_json: bool) -> None:
    """List dead letters, oldest first."""
    api = _dead_letters_api()
    engine = billing_engine(load_settings())
    letters = api.list_dead_letters(engine, status=None if status == "all" else status, kind=kind)
    for letter in letters:
        if as_json:
            row = {k: v for k, v in letter.__dict__.items() if k not in ("created_at", "updated_at")}
            click.echo(json.dumps({**row, "updated_at": letter.updated_at.isoformat()}, sort_keys=True))
        else:
            click.echo(
                f"{letter.id:>6}  {letter.status:<9} {letter.kind:<12} {letter.business_key}  "
                f"attempts {letter.attempts}  {letter.updated_at:%Y-%m-%d %H:%M}  {letter.error[:160]}"
            )
    if not letters and not as_json:
        click.echo(f"no {'' if status == 'all' else status + ' '}dead letters")


@dead_letters_group.command("retry")
@click.argument("letter_id", type=int)
def retry_dead_letter(letter_id: int) -> None:
    """Reset LETTER_ID's ledger row: the next run performs it once more."""
    api = _dead_letters_api()
    try:
        letter = api.retry_dead_letter(billing_engine(load_settings()), letter_id)
    except (api.DeadLetterStateError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"dead letter {letter.id} ({letter.kind} {letter.business_key}): retried by the next run")


@dead_letters_group.command("dismiss")
@click.argument("letter_id", type=int)
def dismiss_dead_letter(letter_id: int) -> None:
    """Close LETTER_ID for good (its ledger row is never tried again)."""
    api = _dead_letters_api()
    try:
        letter = api.dismiss_dead_letter(billing_engine(load_settings()), letter_id)
    except (api.DeadLetterStateError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"dead letter {letter.id} ({letter.kind} {letter.business_key}): dismissed")


@main.group("reminders")
def reminders_group() -> None:
    """Payment reminders (the schedule send_payment_reminders_job_schedule runs them daily)."""


@reminders_group.command("list")
@click.option("--status", type=click.Choice(["pending", "sent", "skipped", "stopped"]), default=None)
def list_reminders(status: str | None) -> None:
    """The reminder ledger: one line per invoice x step x audience."""
    from billing_pipeline.db.collections import reminder_rows

    for row in reminder_rows(billing_engine(load_settings()), status=status):
        reason = f"  ({row.reason})" if row.reason else ""
        click.echo(f"{row.invoice_id:>8}  {row.step:<14} {row.audience:<16} {row.step_date}  {row.status:<8}{reason}")
