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


@click.group()
def main() -> None:
    """Usage events in, exact invoices out. See README.md."""
