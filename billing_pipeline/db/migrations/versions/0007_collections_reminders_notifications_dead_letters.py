"""Collections: organizations' dunning settings; payment_reminders, notifications, dead_letters

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

New columns on organizations carry defaults (not excluded, no account manager, UTC), so every
existing organization keeps being billed as before and is reminded in UTC days. The three new
tables start empty. Independent of 0005 (written in parallel): only new tables and new columns.
"""

import sqlalchemy as sa
from alembic import op

import billing_pipeline.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_UTC = billing_pipeline.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("dunning_excluded", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("account_manager_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False))
    op.create_table(
        "payment_reminders",
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("step_date", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("decided_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.CheckConstraint("audience IN ('customer', 'account_manager')", name=op.f("ck_payment_reminders_audience")),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'skipped', 'stopped')", name=op.f("ck_payment_reminders_status")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_payment_reminders_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("invoice_id", "step", "audience", name=op.f("pk_payment_reminders")),
    )
    op.create_index("ix_payment_reminders_status", "payment_reminders", ["status"])
    op.create_table(
        "notifications",
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(length=1024), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.Column("sent_at", _UTC, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'ambiguous', 'dead', 'dismissed')",
            name=op.f("ck_notifications_status"),
        ),
        sa.PrimaryKeyConstraint("dedupe_key", "channel", name=op.f("pk_notifications")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("business_key", sa.String(length=512), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.CheckConstraint("status IN ('open', 'retried', 'dismissed')", name=op.f("ck_dead_letters_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("kind", "business_key", name="uq_dead_letters_kind_business_key"),
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_status", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("notifications")
    op.drop_index("ix_payment_reminders_status", table_name="payment_reminders")
    op.drop_table("payment_reminders")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("time_zone")
        batch.drop_column("account_manager_email")
        batch.drop_column("dunning_excluded")
