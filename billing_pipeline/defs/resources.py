"""Resources: the billing database and its settings for runs."""

from __future__ import annotations

import dagster as dg
from sqlalchemy import Engine

from billing_pipeline.db.engine import get_engine
from billing_pipeline.domain.settlement import ZeroTotalPolicy


class BillingDatabaseResource(dg.ConfigurableResource):
    """The billing database (SQLite or PostgreSQL), the invoice numbering series and the
    zero-total policy applied at finalization (``ZERO_TOTAL_INVOICES``)."""

    url: str
    invoice_number_prefix: str = "INV"
    zero_total_invoices: str = ZeroTotalPolicy.FINALIZE_PAID.value  # finalize_paid | finalize | skip

    def engine(self) -> Engine:
        return get_engine(self.url)
