"""Organizations: sms_phone, where payment reminders go by SMS when a dunning step names sms

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

One nullable column: every existing organization has no phone, so nothing is sent by SMS until a
customers file sets one and the dunning policy names the sms channel.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("sms_phone", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("sms_phone")
