"""The billing database: every table, in one SQLAlchemy ``MetaData``.

Money is stored as integer minor units (``*_minor``) with the currency beside it;
usage quantities as integer micro-units (``*_micros``, see ``domain.quantity``).
Migrations in ``db/migrations`` create exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false

from billing_pipeline.db.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("billing_email", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("tax_rate", Numeric(7, 6), nullable=False),
    Column("billing_interval", String(16), nullable=False),
    Column("auto_pay", Boolean, nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # collections (0006): no reminders at all, who is told at escalations, whose calendar days count
    Column("dunning_excluded", Boolean, nullable=False, server_default=sa_false()),
    Column("account_manager_email", String(320), nullable=True),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("sms_phone", String(16), nullable=True),  # 0011: E.164, for policy steps that name sms
    CheckConstraint("status IN ('active', 'suspended', 'closed')", name="status"),
    CheckConstraint("billing_interval IN ('monthly', 'weekly')", name="interval"),
)

catalog_versions = Table(
    "catalog_versions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("document", JSON, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("source", String(1024), nullable=False),
    Column("loaded_at", UTCDateTime, nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", String(64), ForeignKey("organizations.id"), nullable=False),
    Column("plan_code", String(64), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=True),
    UniqueConstraint("org_id", "starts_at", name="uq_subscriptions_org_start"),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("org_id", String(64), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("metric_code", String(64), nullable=False),
    Column("value_micros", BigInteger, nullable=False),
    Column("properties", JSON, nullable=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    # BRIN on PostgreSQL: events arrive roughly in time order, and a B-tree on a 10M-row
    # month costs more to maintain on import than it saves (hour scans read block ranges).
    Index("ix_usage_events_occurred_at", "occurred_at", postgresql_using="brin"),
)

quarantined_events = Table(
    "quarantined_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("import_id", Integer, ForeignKey("event_imports.id"), nullable=True),
    Column("source", String(1024), nullable=False),
    Column("line_number", BigInteger, nullable=False),
    Column("org_id", String(255), nullable=True),
    Column("event_id", String(255), nullable=True),
    Column("reason", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("raw", Text, nullable=False),
    # sha256 of the raw line: one row per distinct bad line, however often it is imported.
    Column("raw_sha256", String(64), nullable=False),
    Column("quarantined_at", UTCDateTime, nullable=False),
    Index("ix_quarantined_events_reason", "reason"),
    Index("uq_quarantined_events_raw_sha256", "raw_sha256", unique=True),
)

event_imports = Table(
    "event_imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(1024), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("read", BigInteger, nullable=False, default=0),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("duplicates", BigInteger, nullable=False, default=0),
    Column("quarantined", BigInteger, nullable=False, default=0),
    # running | succeeded | failed (error says why; the counts are what was committed).
    Column("status", String(16), nullable=False, server_default="running"),
    Column("error", Text, nullable=True),
    CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
)

# Hours that received events since they were last aggregated: the late-event sensor's input.
dirty_hours = Table(
    "dirty_hours",
    metadata,
    Column("hour", UTCDateTime, primary_key=True),
    Column("marked_at", UTCDateTime, nullable=False),
)

aggregated_hours = Table(
    "aggregated_hours",
    metadata,
    Column("hour", UTCDateTime, primary_key=True),
    Column("aggregated_at", UTCDateTime, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("row_count", BigInteger, nullable=False),
)

hourly_usage = Table(
    "hourly_usage",
    metadata,
    Column("hour", UTCDateTime, primary_key=True),
    Column("org_id", String(64), primary_key=True),
    Column("metric_code", String(64), primary_key=True),
    Column("event_count", BigInteger, nullable=False),
    Column("value_sum_micros", BigInteger, nullable=False),
    Column("value_max_micros", BigInteger, nullable=False),
    Column("latest_value_micros", BigInteger, nullable=True),
    Column("latest_at", UTCDateTime, nullable=True),
    Column("latest_event_id", String(255), nullable=True),
    Index("ix_hourly_usage_org_hour", "org_id", "hour"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", String(64), ForeignKey("organizations.id"), nullable=False),
    Column("interval", String(16), nullable=False),
    Column("period_key", String(10), nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("number", String(32), nullable=True, unique=True),
    Column("currency", String(3), nullable=False),
    Column("plan_code", String(64), nullable=False),
    Column("catalog_version", Integer, nullable=False),
    Column("subtotal_minor", BigInteger, nullable=False),
    Column("tax_rate", Numeric(7, 6), nullable=False),
    Column("tax_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("usage", JSON, nullable=False),
    Column("issued_at", UTCDateTime, nullable=True),
    Column("due_at", UTCDateTime, nullable=True),
    Column("finalized_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "interval", "period_key", name="uq_invoices_org_period"),
    CheckConstraint("status IN ('draft', 'finalized', 'paid', 'void', 'uncollectible')", name="status"),
    CheckConstraint("total_minor = subtotal_minor + tax_minor", name="total"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("invoice_id", Integer, ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True),
    Column("line_number", Integer, primary_key=True),
    Column("charge_code", String(64), nullable=False),
    Column("description", String(512), nullable=False),
    Column("metric_code", String(64), nullable=True),
    Column("quantity", String(64), nullable=False),  # exact Decimal text
    Column("unit_price", String(64), nullable=True),  # exact Decimal text
    Column("amount_minor", BigInteger, nullable=False),
    Column("tiers", JSON, nullable=False),
)

# One gapless counter per series (e.g. "INV-2026"), bumped in the finalizing transaction.
invoice_number_sequences = Table(
    "invoice_number_sequences",
    metadata,
    Column("series", String(32), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

# Why an organization's invoice could not be produced for a period (cleared on success).
invoice_errors = Table(
    "invoice_errors",
    metadata,
    Column("org_id", String(64), primary_key=True),
    Column("interval", String(16), primary_key=True),
    Column("period_key", String(10), primary_key=True),
    Column("stage", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

# The delivery ledger: one row per (invoice, channel) makes every channel exactly-once.
invoice_deliveries = Table(
    "invoice_deliveries",
    metadata,
    Column("invoice_id", Integer, ForeignKey("invoices.id"), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("external_id", String(1024), nullable=True),
    Column("checksum", String(64), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    CheckConstraint("channel IN ('pdf', 's3', 'stripe', 'email')", name="channel"),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'skipped', 'ambiguous')", name="status"),
)

# The payments ledger (collections build on it): append-only, one row per money movement.
payments = Table(
    "payments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("method", String(32), nullable=False),
    Column("external_id", String(255), nullable=True, unique=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Late usage billed on a later invoice (domain/late_usage.py): one row per finalized source
# invoice, charge and target invoice. A re-draft of the target replaces its own rows in the
# transaction that writes its lines; a finalized target freezes them; every other target's
# rows count as billed, so a source's late usage is never on two invoices.
late_usage_adjustments = Table(
    "late_usage_adjustments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("charge_code", String(64), nullable=False),
    Column("target_invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("org_id", String(64), nullable=False),
    Column("line_number", Integer, nullable=True),  # the target's line; NULL when it adds no amount
    Column("currency", String(3), nullable=False),
    Column("usage_delta", String(64), nullable=False),  # exact Decimal text: the metric's units
    Column("quantity_delta", String(64), nullable=False),  # exact Decimal text: the line's quantity
    Column("amount_minor", BigInteger, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    UniqueConstraint("source_invoice_id", "charge_code", "target_invoice_id", name="uq_late_usage_adjustments_key"),
    Index("ix_late_usage_adjustments_target", "target_invoice_id"),
)

# When a draft read a finalized invoice's usage for late usage (a source it could adjust). Once
# that draft is finalized, the source is looked at again only for usage aggregated after then.
late_usage_checks = Table(
    "late_usage_checks",
    metadata,
    Column("target_invoice_id", Integer, ForeignKey("invoices.id"), primary_key=True),
    Column("source_invoice_id", Integer, ForeignKey("invoices.id"), primary_key=True),
    Column("checked_at", UTCDateTime, nullable=False),
    Index("ix_late_usage_checks_source", "source_invoice_id"),
)

# The audit trail of an invoice after finalization: status changes (from != to), payments
# recorded and credit notes issued (from == to), each with who, why and when; written in the
# same transaction as the change it describes. Append-only.
invoice_events = Table(
    "invoice_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("from_status", String(16), nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_invoice_events_invoice_id", "invoice_id", "id"),
    CheckConstraint("kind IN ('transition', 'payment', 'credit_note')", name="kind"),
)

# Credit notes: numbered in their own gapless series (invoice_number_sequences, "CN-2026"), one
# per request key (invoice, amount or full, reason), so a re-run never issues a second one.
credit_notes = Table(
    "credit_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(32), nullable=False, unique=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("request_key", String(64), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("subtotal_minor", BigInteger, nullable=False),
    Column("tax_rate", Numeric(7, 6), nullable=False),
    Column("tax_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("document_key", String(1024), nullable=True),  # set once the PDF is stored
    Column("document_sha256", String(64), nullable=True),
    Index("ix_credit_notes_invoice_id", "invoice_id"),
    CheckConstraint("total_minor = subtotal_minor + tax_minor", name="total"),
    CheckConstraint("total_minor > 0", name="positive"),
)

credit_note_lines = Table(
    "credit_note_lines",
    metadata,
    Column("credit_note_id", Integer, ForeignKey("credit_notes.id", ondelete="CASCADE"), primary_key=True),
    Column("line_number", Integer, primary_key=True),
    Column("invoice_line_number", Integer, nullable=True),  # the invoice line it takes back, if one
    Column("description", String(1024), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
)

# The mirror ledger: one row per effect on the payment gateway (void, mark uncollectible, paid out
# of band, credit note), claimed before the call; idempotency_key (void-INV-2026-000001,
# credit-note-CN-2026-000001, ...) is the business key and the key sent to the gateway.
invoice_mirror_effects = Table(
    "invoice_mirror_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("credit_note_id", Integer, ForeignKey("credit_notes.id"), nullable=True),
    Column("action", String(32), nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("external_id", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_invoice_mirror_effects_invoice_id", "invoice_id"),
    CheckConstraint(
        "action IN ('void', 'mark_uncollectible', 'mark_paid_out_of_band', 'create_credit_note')", name="action"
    ),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'skipped')", name="status"),
)

# The reminder ledger: one row per (invoice, dunning step, audience), written before anything is
# sent. status: pending (notification not settled yet) | sent | skipped (superseded by catch-up,
# no account manager) | stopped (paid, void... found at send time).
payment_reminders = Table(
    "payment_reminders",
    metadata,
    Column("invoice_id", Integer, ForeignKey("invoices.id"), primary_key=True),
    Column("step", String(40), primary_key=True),
    Column("audience", String(16), primary_key=True),
    Column("org_id", String(64), nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("step_date", String(10), nullable=False),  # the organization's local day, ISO
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("dedupe_key", String(255), nullable=False),
    Column("amount_due_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("audience IN ('customer', 'account_manager')", name="audience"),
    CheckConstraint("status IN ('pending', 'sent', 'skipped', 'stopped')", name="status"),
    Index("ix_payment_reminders_status", "status"),
)

# The notification ledger (services.notifications): one row per notice x channel, claimed
# before the side effect. dead: gave up (a dead letter holds why); dismissed: an operator closed it.
notifications = Table(
    "notifications",
    metadata,
    Column("dedupe_key", String(255), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("external_id", String(1024), nullable=True),  # e-mail: the Message-ID
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('pending', 'sent', 'failed', 'ambiguous', 'dead', 'dismissed')", name="status"),
)

# Every side effect that failed for good (notifications now; charges, payment syncs and
# deliveries later), one row per business key, for an operator to retry or dismiss.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("business_key", String(512), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("kind", "business_key", name="uq_dead_letters_kind_business_key"),
    CheckConstraint("status IN ('open', 'retried', 'dismissed')", name="status"),
    Index("ix_dead_letters_status", "status"),
)

# The charge ledger (services.collections.charges): one row per (invoice, attempt), written with its
# deterministic idempotency key before the gateway is called. status: pending (called, answer not
# recorded yet: the next run asks find_charge) | succeeded | processing (left to the payment sync) |
# declined | requires_action | settled (processing, then succeeded) | failed (processing, then failed)
# | dead (given up: a dead letter holds why). notified: the receipt / failure notice went out.
charge_attempts = Table(
    "charge_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("gateway_payment_id", String(255), nullable=True),
    Column("decline_code", String(64), nullable=True),
    Column("hard_decline", Boolean, nullable=False, server_default=sa_false()),
    Column("message", Text, nullable=True),
    Column("sync_checks", Integer, nullable=False, server_default="0"),
    Column("notified", Boolean, nullable=False, server_default=sa_false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("invoice_id", "attempt", name="uq_charge_attempts_invoice_attempt"),
    CheckConstraint(
        "status IN ('pending', 'succeeded', 'processing', 'declined', 'requires_action', 'settled', 'failed', 'dead')",
        name="status",
    ),
    CheckConstraint("attempt >= 1", name="attempt"),
    Index("ix_charge_attempts_status", "status"),
)

# The report e-mail ledger: one row per (report, partition) makes each report's e-mail go out once.
# Claimed (pending, attempts + 1, Message-ID) before the SMTP call, succeeded right after it;
# a row left pending by a crashed send, or ambiguous, is never sent again by a run.
report_deliveries = Table(
    "report_deliveries",
    metadata,
    Column("report", String(32), primary_key=True),
    Column("partition_key", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("message_id", String(255), nullable=True),
    Column("recipients", Text, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'ambiguous', 'dead')", name="status"),
)

# The in-app channel: one row per notice (unique dedupe key, so a re-sent notice is written once),
# unread while read_at is null (`billing-pipeline notifications`).
notifications_inbox = Table(
    "notifications_inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(255), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("level", String(16), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("text", Text, nullable=False),
    Column("link", String(1024), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("read_at", UTCDateTime, nullable=True),
    CheckConstraint("level IN ('info', 'warning', 'error')", name="level"),
    Index("ix_notifications_inbox_read_at", "read_at"),
)
# Operator alerts as raised (run failed, failure rate, service health...), with the channels routed
# at that time: the notification ledger dedupes each (key, channel); settled_at is set once no
# channel will be tried again, and alert_redelivery_sensor re-sends the others.
alerts = Table(
    "alerts",
    metadata,
    Column("dedupe_key", String(255), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("level", String(16), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("text", Text, nullable=False),
    Column("link", String(1024), nullable=True),
    Column("channels", String(64), nullable=False),  # comma-separated, e.g. "email,slack,inapp"
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime, nullable=True),
    CheckConstraint("level IN ('info', 'warning', 'error')", name="level"),
    Index("ix_alerts_settled_at", "settled_at"),
)
