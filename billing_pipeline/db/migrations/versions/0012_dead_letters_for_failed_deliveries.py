"""Dead letters for delivery rows that were already failed (kind invoice_delivery)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

Since this release a delivery channel that fails for good opens a dead letter in the same
transaction (``db.delivery_dead_letters``). Rows that were ``failed`` before the upgrade get
theirs here, so ``dead-letters list`` shows every failed delivery and ``dead-letters retry``
works on them too. Rows that already have a letter are left alone. Downgrade removes the
letters of that kind (the ledger rows stay as they are).
"""

import sqlalchemy as sa
from alembic import op

from billing_pipeline.clock import utc_now
from billing_pipeline.db.types import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_deliveries = sa.table(
    "invoice_deliveries",
    sa.column("invoice_id", sa.Integer),
    sa.column("channel", sa.String),
    sa.column("status", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("last_error", sa.Text),
)
_invoices = sa.table(
    "invoices",
    sa.column("id", sa.Integer),
    sa.column("number", sa.String),
    sa.column("org_id", sa.String),
    sa.column("interval", sa.String),
    sa.column("period_key", sa.String),
)
_letters = sa.table(
    "dead_letters",
    sa.column("kind", sa.String),
    sa.column("business_key", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("error", sa.Text),
    sa.column("attempts", sa.Integer),
    sa.column("status", sa.String),
    sa.column("created_at", UTCDateTime),
    sa.column("updated_at", UTCDateTime),
)
KIND = "invoice_delivery"


def upgrade() -> None:
    bind = op.get_bind()
    existing = {row.business_key for row in bind.execute(sa.select(_letters.c.business_key).where(_letters.c.kind == KIND))}
    failed = bind.execute(
        sa.select(_deliveries, _invoices.c.number, _invoices.c.org_id, _invoices.c.interval, _invoices.c.period_key)
        .join(_invoices, _invoices.c.id == _deliveries.c.invoice_id)
        .where(_deliveries.c.status == "failed")
        .order_by(_deliveries.c.invoice_id, _deliveries.c.channel)
    ).all()
    now = utc_now()
    rows = [
        {
            "kind": KIND,
            "business_key": f"invoice:{r.invoice_id}|{r.channel}",
            "payload": {
                "invoice_id": r.invoice_id,
                "channel": r.channel,
                "invoice": r.number,
                "organization": r.org_id,
                "interval": r.interval,
                "period": r.period_key,
            },
            "error": (r.last_error or "failed before this release (no error recorded)")[:4000],
            "attempts": r.attempts,
            "status": "open",
            "created_at": now,
            "updated_at": now,
        }
        for r in failed
        if f"invoice:{r.invoice_id}|{r.channel}" not in existing
    ]
    if rows:
        op.bulk_insert(_letters, rows)


def downgrade() -> None:
    op.execute(_letters.delete().where(_letters.c.kind == KIND))
