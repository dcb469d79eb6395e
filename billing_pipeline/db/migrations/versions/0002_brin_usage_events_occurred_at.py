"""usage_events.occurred_at: BRIN index on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps its B-tree
    op.drop_index("ix_usage_events_occurred_at", table_name="usage_events")
    op.create_index("ix_usage_events_occurred_at", "usage_events", ["occurred_at"], postgresql_using="brin")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_usage_events_occurred_at", table_name="usage_events")
    op.create_index("ix_usage_events_occurred_at", "usage_events", ["occurred_at"])
