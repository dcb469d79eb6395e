"""The in-app inbox: ``billing-pipeline notifications [--unread] | read ID | read --all``."""

from __future__ import annotations

import json

import click

from billing_pipeline.cli.base import billing_engine, load_settings, main


@main.group("notifications", invoke_without_command=True)
@click.option("--unread", is_flag=True, help="Only unread notifications.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def notifications_group(ctx: click.Context, unread: bool, limit: int, as_json: bool) -> None:
    """In-app notifications (operator alerts), newest first; `read ID` or `read --all` marks them read."""
    if ctx.invoked_subcommand is not None:
        return
    from billing_pipeline.db import inbox

    engine = billing_engine(load_settings())
    items = inbox.list_items(engine, unread_only=unread, limit=limit)
    for item in items:
        if as_json:
            row = {**item.__dict__, "created_at": item.created_at.isoformat(), "unread": item.unread}
            row["read_at"] = item.read_at.isoformat() if item.read_at else None
            click.echo(json.dumps(row, sort_keys=True))
        else:
            mark = "*" if item.unread else " "
            click.echo(f"{mark}{item.id:>6}  {item.created_at:%Y-%m-%d %H:%M}  {item.level:<7} {item.subject}")
    if not as_json:
        click.echo(f"{inbox.unread_count(engine)} unread" if items else "no notifications")


@notifications_group.command("read")
@click.argument("item_id", type=int, required=False)
@click.option("--all", "read_all", is_flag=True, help="Mark every unread notification read.")
def read_notification(item_id: int | None, read_all: bool) -> None:
    """Mark notification ITEM_ID (or --all) read; print it."""
    from billing_pipeline.db import inbox

    if (item_id is None) == (not read_all):
        raise click.UsageError("give a notification ID or --all (not both)")
    engine = billing_engine(load_settings())
    if read_all:
        click.echo(f"{inbox.mark_read(engine)} notification(s) marked read")
        return
    item = inbox.get(engine, item_id)
    if item is None:
        raise click.ClickException(f"no notification {item_id}")
    inbox.mark_read(engine, item_id)
    click.echo(f"{item.subject}\n{item.created_at:%Y-%m-%d %H:%M} UTC  {item.level}  {item.kind}\n\n{item.text}")
    if item.link:
        click.echo(f"\n{item.link}")
