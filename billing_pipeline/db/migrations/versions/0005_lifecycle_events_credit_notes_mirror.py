"""lifecycle: invoice events (audit trail), credit notes and their lines, the mirror ledger

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

New tables only.
"""

from alembic import op
import sqlalchemy as sa
import billing_pipeline.db.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_notes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('request_key', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('subtotal_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_rate', sa.Numeric(precision=7, scale=6), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('issued_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('document_key', sa.String(length=1024), nullable=True),
    sa.Column('document_sha256', sa.String(length=64), nullable=True),
    sa.CheckConstraint('total_minor = subtotal_minor + tax_minor', name=op.f('ck_credit_notes_total')),
    sa.CheckConstraint('total_minor > 0', name=op.f('ck_credit_notes_positive')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_credit_notes_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_notes')),
    sa.UniqueConstraint('number', name=op.f('uq_credit_notes_number')),
    sa.UniqueConstraint('request_key', name=op.f('uq_credit_notes_request_key'))
    )
    with op.batch_alter_table('credit_notes', schema=None) as batch_op:
        batch_op.create_index('ix_credit_notes_invoice_id', ['invoice_id'], unique=False)

    op.create_table('invoice_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=False),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.CheckConstraint("kind IN ('transition', 'payment', 'credit_note')", name=op.f('ck_invoice_events_kind')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_events_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_events'))
    )
    with op.batch_alter_table('invoice_events', schema=None) as batch_op:
        batch_op.create_index('ix_invoice_events_invoice_id', ['invoice_id', 'id'], unique=False)

    op.create_table('credit_note_lines',
    sa.Column('credit_note_id', sa.Integer(), nullable=False),
    sa.Column('line_number', sa.Integer(), nullable=False),
    sa.Column('invoice_line_number', sa.Integer(), nullable=True),
    sa.Column('description', sa.String(length=1024), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['credit_note_id'], ['credit_notes.id'], name=op.f('fk_credit_note_lines_credit_note_id_credit_notes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('credit_note_id', 'line_number', name=op.f('pk_credit_note_lines'))
    )
    op.create_table('invoice_mirror_effects',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('credit_note_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("action IN ('void', 'mark_uncollectible', 'mark_paid_out_of_band', 'create_credit_note')", name=op.f('ck_invoice_mirror_effects_action')),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'skipped')", name=op.f('ck_invoice_mirror_effects_status')),
    sa.ForeignKeyConstraint(['credit_note_id'], ['credit_notes.id'], name=op.f('fk_invoice_mirror_effects_credit_note_id_credit_notes')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_mirror_effects_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_mirror_effects')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_invoice_mirror_effects_idempotency_key'))
    )
    with op.batch_alter_table('invoice_mirror_effects', schema=None) as batch_op:
        batch_op.create_index('ix_invoice_mirror_effects_invoice_id', ['invoice_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('invoice_mirror_effects', schema=None) as batch_op:
        batch_op.drop_index('ix_invoice_mirror_effects_invoice_id')

    op.drop_table('invoice_mirror_effects')
    op.drop_table('credit_note_lines')
    with op.batch_alter_table('invoice_events', schema=None) as batch_op:
        batch_op.drop_index('ix_invoice_events_invoice_id')

    op.drop_table('invoice_events')
    with op.batch_alter_table('credit_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_notes_invoice_id')

    op.drop_table('credit_notes')
