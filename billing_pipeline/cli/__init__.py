"""``billing-pipeline``: set up the billing database, import events, run and inspect billing.

Runs started here (run-month, aggregate-usage, demo) are Dagster runs on the instance
in DAGSTER_HOME, so they show in the UI like runs launched from it. One module per
group of commands; importing them registers the commands on ``main``.
"""

from billing_pipeline.cli import (  # noqa: F401  (registers the commands)
    collections,
    customers,
    data,
    deliveries,
    health,
    invoices,
    notifications,
    payments,
    runs,
    status,
)
from billing_pipeline.cli.base import main

__all__ = ["main"]
