"""quarantined_events.raw_sha256 (one row per distinct bad line); event_imports.status and error

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing quarantine rows get the sha256 of their stored raw text (the raw line itself
unless it held NUL, invalid UTF-8 or more than 10,000 characters); rows doubled by
earlier re-imports are deleted, keeping the first. Finished imports become 'succeeded',
unfinished ones stay 'running' (they were killed or are still running).
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_quarantine = sa.table(
    "quarantined_events", sa.column("id", sa.Integer), sa.column("raw", sa.Text), sa.column("raw_sha256", sa.String)
)


def _backfill_raw_sha256(conn) -> None:
    seen: set[str] = set()
    doubled: list[int] = []
    last_id = -1
    while True:
        rows = conn.execute(
            sa.select(_quarantine.c.id, _quarantine.c.raw)
            .where(_quarantine.c.id > last_id)
            .order_by(_quarantine.c.id)
            .limit(10_000)
        ).all()
        if not rows:
            break
        updates = []
        for row_id, raw in rows:
            digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()
            if digest in seen:
                doubled.append(row_id)
            else:
                seen.add(digest)
                updates.append({"row_id": row_id, "digest": digest})
        if updates:
            conn.execute(
                _quarantine.update()
                .where(_quarantine.c.id == sa.bindparam("row_id"))
                .values(raw_sha256=sa.bindparam("digest")),
                updates,
            )
        last_id = rows[-1][0]
    for start in range(0, len(doubled), 10_000):
        conn.execute(_quarantine.delete().where(_quarantine.c.id.in_(doubled[start : start + 10_000])))


def upgrade() -> None:
    with op.batch_alter_table("quarantined_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_sha256", sa.String(length=64), nullable=True))
    _backfill_raw_sha256(op.get_bind())
    with op.batch_alter_table("quarantined_events", schema=None) as batch_op:
        batch_op.alter_column("raw_sha256", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index("uq_quarantined_events_raw_sha256", ["raw_sha256"], unique=True)
    with op.batch_alter_table("event_imports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), server_default="running", nullable=False))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_event_imports_status"), "status IN ('running', 'succeeded', 'failed')")
    op.execute("UPDATE event_imports SET status = 'succeeded' WHERE finished_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("event_imports", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_event_imports_status"), type_="check")
        batch_op.drop_column("error")
        batch_op.drop_column("status")
    with op.batch_alter_table("quarantined_events", schema=None) as batch_op:
        batch_op.drop_index("uq_quarantined_events_raw_sha256")
        batch_op.drop_column("raw_sha256")
