"""Shared by the command modules: settings, the billing engine, the Dagster instance, periods, the group."""

from __future__ import annotations

import os
from pathlib import Path

import click


def load_settings():
    from billing_pipeline.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def billing_engine(settings):
    from billing_pipeline.db.engine import get_engine

    return get_engine(settings.database_url)


def dagster_instance():
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


def parse_period(value: str, interval: str):
    from billing_pipeline.domain.model import BillingInterval
    from billing_pipeline.domain.periods import period_from_key

    key = f"{value}-01" if len(value) == 7 and interval == "monthly" else value
    try:
        return period_from_key(BillingInterval(interval), key)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="PERIOD") from None


def redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


_NO_SCHEMA_SQLSTATES = {"42P01", "42703"}  # PostgreSQL: undefined table, undefined column


def database_problem(exc: Exception) -> str | None:
    """What a database error says about BILLING_DATABASE_URL (unreachable, no schema), or None for others."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    first_line = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    if getattr(exc.orig, "sqlstate", None) in _NO_SCHEMA_SQLSTATES or first_line.startswith(
        ("no such table", "no such column")
    ):
        return f"has no schema ({first_line}); run billing-pipeline init-db"
    if isinstance(exc, OperationalError) and exc.statement is None:  # raised while connecting
        return f"cannot connect: {first_line}"
    return None


class _Commands(click.Group):
    """A billing database that cannot be reached or has no schema is one line naming its variable."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            problem = database_problem(exc)
            if problem is None:
                raise
            url = redact_url(load_settings().database_url)
            raise click.ClickException(f"BILLING_DATABASE_URL ({url}) {problem}") from None


@click.group(cls=_Commands)
def main() -> None:
    """Usage events in, exact invoices out. See README.md."""
