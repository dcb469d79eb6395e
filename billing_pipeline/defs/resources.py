"""Resources: the billing database and its settings for runs."""

from __future__ import annotations

import dagster as dg
from sqlalchemy import Engine

from billing_pipeline.db.engine import get_engine


class BillingDatabaseResource(dg.ConfigurableResource):
    """The billing database (SQLite or PostgreSQL) and the invoice numbering series."""

    url: str
    invoice_number_prefix: str = "INV"

    def engine(self) -> Engine:
        return get_engine(self.url)
