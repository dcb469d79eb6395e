"""invoice_deliveries.status: 'ambiguous' (an e-mail that may have been delivered)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Only the CHECK constraint changes (SQLite: the table is rebuilt by Alembic's batch mode).
Downgrade turns ambiguous rows into 'failed' with their Message-ID kept, which is how the
previous code recorded them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NAME = "ck_invoice_deliveries_status"
_OLD = "status IN ('pending', 'succeeded', 'failed', 'skipped')"
_NEW = "status IN ('pending', 'succeeded', 'failed', 'skipped', 'ambiguous')"

_deliveries = sa.table(
    "invoice_deliveries", sa.column("status", sa.String), sa.column("last_error", sa.Text)
)


def _replace_check(condition: str) -> None:
    with op.batch_alter_table("invoice_deliveries", recreate="auto") as batch:
        batch.drop_constraint(op.f(_NAME), type_="check")
        batch.create_check_constraint(op.f(_NAME), condition)


def upgrade() -> None:
    _replace_check(_NEW)


def downgrade() -> None:
    op.execute(
        _deliveries.update()
        .where(_deliveries.c.status == "ambiguous")
        .values(status="failed", last_error="ambiguous: " + sa.func.coalesce(_deliveries.c.last_error, ""))
    )
    _replace_check(_OLD)
