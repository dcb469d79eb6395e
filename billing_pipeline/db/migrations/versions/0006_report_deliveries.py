"""reports: the report e-mail ledger (report_deliveries)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

New table only, after 0005 (lifecycle); re-chained if another migration lands first.
"""

from alembic import op
import sqlalchemy as sa
import billing_pipeline.db.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_deliveries',
    sa.Column('report', sa.String(length=32), nullable=False),
    sa.Column('partition_key', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('recipients', sa.Text(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'ambiguous', 'dead')", name=op.f('ck_report_deliveries_status')),
    sa.PrimaryKeyConstraint('report', 'partition_key', name=op.f('pk_report_deliveries'))
    )


def downgrade() -> None:
    op.drop_table('report_deliveries')
