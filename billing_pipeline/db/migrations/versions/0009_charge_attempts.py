"""Auto-charge: the charge_attempts ledger

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A new table only, empty at first: nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

import billing_pipeline.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_UTC = billing_pipeline.db.types.UTCDateTime(timezone=True)
_STATUSES = "'pending', 'succeeded', 'processing', 'declined', 'requires_action', 'settled', 'failed', 'dead'"


def upgrade() -> None:
    op.create_table(
        "charge_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gateway_payment_id", sa.String(length=255), nullable=True),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("hard_decline", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("sync_checks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("notified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_charge_attempts_status")),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_charge_attempts_attempt")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_charge_attempts_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_attempts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_charge_attempts_idempotency_key")),
        sa.UniqueConstraint("invoice_id", "attempt", name="uq_charge_attempts_invoice_attempt"),
    )
    op.create_index("ix_charge_attempts_status", "charge_attempts", ["status"])


def downgrade() -> None:
    op.drop_index("ix_charge_attempts_status", table_name="charge_attempts")
    op.drop_table("charge_attempts")
