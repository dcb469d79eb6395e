"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa
import billing_pipeline.db.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aggregated_hours',
    sa.Column('hour', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('aggregated_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_count', sa.BigInteger(), nullable=False),
    sa.Column('row_count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('hour', name=op.f('pk_aggregated_hours'))
    )
    op.create_table('catalog_versions',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('loaded_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_catalog_versions'))
    )
    op.create_table('dirty_hours',
    sa.Column('hour', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('marked_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('hour', name=op.f('pk_dirty_hours'))
    )
    op.create_table('event_imports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('started_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('read', sa.BigInteger(), nullable=False),
    sa.Column('accepted', sa.BigInteger(), nullable=False),
    sa.Column('duplicates', sa.BigInteger(), nullable=False),
    sa.Column('quarantined', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_imports'))
    )
    op.create_table('hourly_usage',
    sa.Column('hour', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('metric_code', sa.String(length=64), nullable=False),
    sa.Column('event_count', sa.BigInteger(), nullable=False),
    sa.Column('value_sum_micros', sa.BigInteger(), nullable=False),
    sa.Column('value_max_micros', sa.BigInteger(), nullable=False),
    sa.Column('latest_value_micros', sa.BigInteger(), nullable=True),
    sa.Column('latest_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('latest_event_id', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('hour', 'org_id', 'metric_code', name=op.f('pk_hourly_usage'))
    )
    with op.batch_alter_table('hourly_usage', schema=None) as batch_op:
        batch_op.create_index('ix_hourly_usage_org_hour', ['org_id', 'hour'], unique=False)

    op.create_table('invoice_errors',
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('interval', sa.String(length=16), nullable=False),
    sa.Column('period_key', sa.String(length=10), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('recorded_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'interval', 'period_key', name=op.f('pk_invoice_errors'))
    )
    op.create_table('invoice_number_sequences',
    sa.Column('series', sa.String(length=32), nullable=False),
    sa.Column('last_value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('series', name=op.f('pk_invoice_number_sequences'))
    )
    op.create_table('organizations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('billing_email', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('tax_rate', sa.Numeric(precision=7, scale=6), nullable=False),
    sa.Column('billing_interval', sa.String(length=16), nullable=False),
    sa.Column('auto_pay', sa.Boolean(), nullable=False),
    sa.Column('payment_terms_days', sa.Integer(), nullable=False),
    sa.Column('created_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("billing_interval IN ('monthly', 'weekly')", name=op.f('ck_organizations_interval')),
    sa.CheckConstraint("status IN ('active', 'suspended', 'closed')", name=op.f('ck_organizations_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations'))
    )
    op.create_table('usage_events',
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('metric_code', sa.String(length=64), nullable=False),
    sa.Column('value_micros', sa.BigInteger(), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=True),
    sa.Column('occurred_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ingested_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'event_id', name=op.f('pk_usage_events'))
    )
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.create_index('ix_usage_events_occurred_at', ['occurred_at'], unique=False)

    op.create_table('invoices',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('interval', sa.String(length=16), nullable=False),
    sa.Column('period_key', sa.String(length=10), nullable=False),
    sa.Column('period_start', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('plan_code', sa.String(length=64), nullable=False),
    sa.Column('catalog_version', sa.Integer(), nullable=False),
    sa.Column('subtotal_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_rate', sa.Numeric(precision=7, scale=6), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('usage', sa.JSON(), nullable=False),
    sa.Column('issued_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finalized_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'finalized', 'paid', 'void', 'uncollectible')", name=op.f('ck_invoices_status')),
    sa.CheckConstraint('total_minor = subtotal_minor + tax_minor', name=op.f('ck_invoices_total')),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_invoices_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number')),
    sa.UniqueConstraint('org_id', 'interval', 'period_key', name='uq_invoices_org_period')
    )
    op.create_table('quarantined_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('line_number', sa.BigInteger(), nullable=False),
    sa.Column('org_id', sa.String(length=255), nullable=True),
    sa.Column('event_id', sa.String(length=255), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('quarantined_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['event_imports.id'], name=op.f('fk_quarantined_events_import_id_event_imports')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_events'))
    )
    with op.batch_alter_table('quarantined_events', schema=None) as batch_op:
        batch_op.create_index('ix_quarantined_events_reason', ['reason'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('plan_code', sa.String(length=64), nullable=False),
    sa.Column('starts_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_subscriptions_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('org_id', 'starts_at', name='uq_subscriptions_org_start')
    )
    op.create_table('invoice_deliveries',
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('external_id', sa.String(length=1024), nullable=True),
    sa.Column('checksum', sa.String(length=64), nullable=True),
    sa.Column('updated_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel IN ('pdf', 's3', 'stripe', 'email')", name=op.f('ck_invoice_deliveries_channel')),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'skipped')", name=op.f('ck_invoice_deliveries_status')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_deliveries_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('invoice_id', 'channel', name=op.f('pk_invoice_deliveries'))
    )
    op.create_table('invoice_lines',
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('line_number', sa.Integer(), nullable=False),
    sa.Column('charge_code', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=512), nullable=False),
    sa.Column('metric_code', sa.String(length=64), nullable=True),
    sa.Column('quantity', sa.String(length=64), nullable=False),
    sa.Column('unit_price', sa.String(length=64), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('tiers', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_lines_invoice_id_invoices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('invoice_id', 'line_number', name=op.f('pk_invoice_lines'))
    )
    op.create_table('payments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', billing_pipeline.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_payments_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('external_id', name=op.f('uq_payments_external_id'))
    )


def downgrade() -> None:
    op.drop_table('payments')
    op.drop_table('invoice_lines')
    op.drop_table('invoice_deliveries')
    op.drop_table('subscriptions')
    with op.batch_alter_table('quarantined_events', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantined_events_reason')

    op.drop_table('quarantined_events')
    op.drop_table('invoices')
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_events_occurred_at')

    op.drop_table('usage_events')
    op.drop_table('organizations')
    op.drop_table('invoice_number_sequences')
    op.drop_table('invoice_errors')
    with op.batch_alter_table('hourly_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_hourly_usage_org_hour')

    op.drop_table('hourly_usage')
    op.drop_table('event_imports')
    op.drop_table('dirty_hours')
    op.drop_table('catalog_versions')
    op.drop_table('aggregated_hours')
