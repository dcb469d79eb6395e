"""Alerts: the operator alert store (alerts) and the in-app channel (notifications_inbox)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Two new tables, empty at first; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

import billing_pipeline.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_UTC = billing_pipeline.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications_inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=1024), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("read_at", _UTC, nullable=True),
        sa.CheckConstraint("level IN ('info', 'warning', 'error')", name=op.f("ck_notifications_inbox_level")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications_inbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_inbox_dedupe_key")),
    )
    op.create_index("ix_notifications_inbox_read_at", "notifications_inbox", ["read_at"])
    op.create_table(
        "alerts",
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=1024), nullable=True),
        sa.Column("channels", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("settled_at", _UTC, nullable=True),
        sa.CheckConstraint("level IN ('info', 'warning', 'error')", name=op.f("ck_alerts_level")),
        sa.PrimaryKeyConstraint("dedupe_key", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_settled_at", "alerts", ["settled_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_settled_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_notifications_inbox_read_at", table_name="notifications_inbox")
    op.drop_table("notifications_inbox")
