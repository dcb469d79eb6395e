"""late_usage_adjustments, late_usage_checks: late usage of finalized invoices billed once on a later one

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Two new tables; nothing existing changes. (Written as 0005 after 0004; re-chained after 0006
when the lifecycle and report migrations landed first.)
"""

import sqlalchemy as sa
from alembic import op

from billing_pipeline.db.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "late_usage_adjustments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_invoice_id", sa.Integer(), nullable=False),
        sa.Column("charge_code", sa.String(length=64), nullable=False),
        sa.Column("target_invoice_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("usage_delta", sa.String(length=64), nullable=False),
        sa.Column("quantity_delta", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_invoice_id"],
            ["invoices.id"],
            name=op.f("fk_late_usage_adjustments_source_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["target_invoice_id"],
            ["invoices.id"],
            name=op.f("fk_late_usage_adjustments_target_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_late_usage_adjustments")),
        sa.UniqueConstraint(
            "source_invoice_id", "charge_code", "target_invoice_id", name="uq_late_usage_adjustments_key"
        ),
    )
    op.create_index("ix_late_usage_adjustments_target", "late_usage_adjustments", ["target_invoice_id"])
    op.create_table(
        "late_usage_checks",
        sa.Column("target_invoice_id", sa.Integer(), nullable=False),
        sa.Column("source_invoice_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_invoice_id"], ["invoices.id"], name=op.f("fk_late_usage_checks_source_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["target_invoice_id"], ["invoices.id"], name=op.f("fk_late_usage_checks_target_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("target_invoice_id", "source_invoice_id", name=op.f("pk_late_usage_checks")),
    )
    op.create_index("ix_late_usage_checks_source", "late_usage_checks", ["source_invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_late_usage_checks_source", table_name="late_usage_checks")
    op.drop_table("late_usage_checks")
    op.drop_index("ix_late_usage_adjustments_target", table_name="late_usage_adjustments")
    op.drop_table("late_usage_adjustments")
