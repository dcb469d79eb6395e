"""Every environment variable the project reads, validated in one place.

``Settings.from_env()`` runs when the Dagster definitions load (and in the CLI). A bad
value fails right there with the variable's name, e.g.
``INVOICE_BATCH_SIZE: must be an integer from 1 to 10000, got 'lots'``.
Secrets (STRIPE_API_KEY, SMTP_PASSWORD, AWS keys) are never stored here: resources
read them through ``dagster.EnvVar`` at run time, so they never reach the UI or logs.
Defaults are the embedded mode: SQLite and local folders under BILLING_HOME.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from billing_pipeline.domain.events import DEFAULT_MAX_PROPERTIES_BYTES


class SettingsError(ValueError):
    """A configuration value is invalid; the message starts with the variable name."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _cron_ok(expr: str) -> bool:
    # Dagster's own check: a value accepted here makes a schedule that loads.
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="cron_check", cron_schedule=expr, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


def _shown(value: str) -> str:
    """A value for an error message: any password in a URL masked, cut to a readable length."""
    masked = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", value)
    return repr(masked if len(masked) <= 120 else masked[:117] + "...")


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def str(self, name: str, default: str) -> str:
        return self.env.get(name, default).strip() or default

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def bool(self, name: str, default: bool) -> bool:
        raw = self.env.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise SettingsError(f"{name}: must be true or false, got {raw!r}")

    def int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}: must be an integer from {low} to {high}, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be an integer from {low} to {high}, got {raw!r}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    def cron(self, name: str, default: str) -> str:
        value = self.str(name, default)
        if not _cron_ok(value):
            raise SettingsError(f"{name}: not a valid cron expression: {value!r}")
        return value

    def database_url(self, name: str, default: str) -> str:
        """A SQLite or PostgreSQL SQLAlchemy URL, parsed here so a typo names the variable."""
        raw = self.str(name, default)
        scheme = raw.split(":", 1)[0].split("+", 1)[0].lower() if ":" in raw else ""
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise SettingsError(f"{name}: must be a sqlite:/// or postgresql:// URL, got {_shown(raw)}")
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(raw)
            port = url.port  # parsing the port happens here: "host:abc" fails
        except (ArgumentError, ValueError) as exc:
            raise SettingsError(f"{name}: not a valid database URL ({type(exc).__name__}): {_shown(raw)}") from None
        if scheme != "sqlite" and not (url.host and url.database):
            raise SettingsError(f"{name}: a postgresql URL needs a host and a database name, got {_shown(raw)}")
        if port is not None and not 1 <= port <= 65535:
            raise SettingsError(f"{name}: port must be from 1 to 65535, got {port}")
        return raw

    def http_url(self, name: str) -> str | None:
        """An optional http(s) base URL with a host (and a valid port, if any)."""
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            parts = urllib.parse.urlsplit(raw)
            port = parts.port
        except ValueError:
            raise SettingsError(f"{name}: not a valid URL: {_shown(raw)}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{name}: must be an http:// or https:// URL with a host, got {_shown(raw)}")
        if port == 0 or any(c.isspace() for c in raw):
            raise SettingsError(f"{name}: not a valid URL: {_shown(raw)}")
        return raw

    def date(self, name: str, default: str) -> dt.date:
        raw = self.str(name, default)
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise SettingsError(f"{name}: must be a date YYYY-MM-DD, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    partitions_start: dt.date
    invoice_batch_size: int
    invoice_number_prefix: str
    invoice_grace_hours: int
    hourly_usage_cron: str
    monthly_invoice_cron: str
    weekly_invoice_cron: str
    schedules_running: bool
    dry_run: bool
    enable_pdf: bool
    enable_s3: bool
    enable_stripe: bool
    enable_email: bool
    delivery_io_workers: int
    document_store: str  # local | s3
    documents_dir: Path
    s3_bucket: str | None
    s3_prefix: str
    s3_endpoint_url: str | None
    s3_region: str
    s3_conditional_writes: bool
    presigned_url_expiry_seconds: int
    payment_gateway: str  # none | stripe
    stripe_api_base: str | None
    mailer: str  # outbox | smtp
    outbox_dir: Path
    smtp_host: str
    smtp_port: int
    smtp_username: str | None
    smtp_security: str  # starttls | ssl | none
    smtp_timeout_seconds: int
    email_from: str
    seller: dict[str, str] = field(default_factory=dict)

    @property
    def invoice_grace(self) -> dt.timedelta:
        """How long after a period ends its drafts wait before finalization (INVOICE_GRACE_HOURS)."""
        return dt.timedelta(hours=self.invoice_grace_hours)

    smtp_ca_file: str | None = None  # CA bundle for a private SMTP server's certificate
    ingest_max_properties_bytes: int = DEFAULT_MAX_PROPERTIES_BYTES  # larger: quarantined properties_too_large
    # vendor rate limits, enforced by each client's token bucket per run process (0: no limit)
    stripe_requests_per_second: int = 80
    s3_requests_per_second: int = 100
    smtp_messages_per_second: int = 20
    # collections: reminders (services.collections, defs.reminders)
    payment_reminders_cron: str = "0 9 * * *"
    dunning_policy_file: Path | None = None  # None: the packaged billing_pipeline/catalog/dunning.yaml
    notification_max_attempts: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        r = _Reader(env)
        home = Path(r.str("BILLING_HOME", str(Path.cwd() / ".billing_home"))).expanduser().resolve()
        database_url = r.database_url("BILLING_DATABASE_URL", f"sqlite:///{home / 'billing.db'}")
        document_store = r.choice("DOCUMENT_STORE", "local", ("local", "s3"))
        s3_bucket = r.optional("S3_BUCKET")
        if document_store == "s3" and not s3_bucket:
            raise SettingsError("S3_BUCKET: required when DOCUMENT_STORE=s3")
        payment_gateway = r.choice("PAYMENT_GATEWAY", "none", ("none", "stripe"))
        # STRIPE_API_KEY is read when a run starts (dg.EnvVar): loading needs no secret.
        mailer = r.choice("MAILER", "outbox", ("outbox", "smtp"))
        smtp_security = r.choice("SMTP_SECURITY", "starttls", ("starttls", "ssl", "none"))
        if mailer == "smtp" and not r.optional("SMTP_HOST"):
            raise SettingsError("SMTP_HOST: required when MAILER=smtp")
        email_from = r.str("EMAIL_FROM", "billing@example.com")
        if "@" not in email_from or any(c in email_from for c in "\r\n"):
            raise SettingsError(f"EMAIL_FROM: must be an email address, got {email_from!r}")
        prefix = r.str("INVOICE_NUMBER_PREFIX", "INV")
        if not prefix.replace("-", "").isalnum() or len(prefix) > 12:
            raise SettingsError(f"INVOICE_NUMBER_PREFIX: letters, digits and '-' only, at most 12, got {prefix!r}")
        return cls(
            home=home,
            database_url=database_url,
            partitions_start=r.date("BILLING_PARTITIONS_START", "2026-01-01"),
            invoice_batch_size=r.int("INVOICE_BATCH_SIZE", 1000, 1, 10_000),
            invoice_number_prefix=prefix,
            invoice_grace_hours=r.int("INVOICE_GRACE_HOURS", 72, 0, 24 * 28),
            hourly_usage_cron=r.cron("HOURLY_USAGE_CRON", "5 * * * *"),
            monthly_invoice_cron=r.cron("MONTHLY_INVOICE_CRON", "0 0 1 * *"),
            weekly_invoice_cron=r.cron("WEEKLY_INVOICE_CRON", "0 0 * * 1"),
            schedules_running=r.bool("SCHEDULES_RUNNING", True),
            dry_run=r.bool("DRY_RUN", False),
            enable_pdf=r.bool("INVOICE_ENABLE_PDF", True),
            enable_s3=r.bool("INVOICE_ENABLE_S3", True),
            enable_stripe=r.bool("INVOICE_ENABLE_STRIPE", True),
            enable_email=r.bool("INVOICE_ENABLE_EMAIL", True),
            delivery_io_workers=r.int("DELIVERY_IO_WORKERS", 4, 0, 64),
            document_store=document_store,
            documents_dir=Path(r.str("DOCUMENTS_DIR", str(home / "documents"))).resolve(),
            s3_bucket=s3_bucket,
            s3_prefix=r.str("S3_PREFIX", ""),
            s3_endpoint_url=r.http_url("S3_ENDPOINT_URL"),
            s3_region=r.str("S3_REGION", "us-east-1"),
            s3_conditional_writes=r.bool("S3_CONDITIONAL_WRITES", True),
            presigned_url_expiry_seconds=r.int("PRESIGNED_URL_EXPIRY_SECONDS", 7 * 24 * 3600, 60, 7 * 24 * 3600),
            payment_gateway=payment_gateway,
            stripe_api_base=r.http_url("STRIPE_API_BASE"),
            mailer=mailer,
            outbox_dir=Path(r.str("OUTBOX_DIR", str(home / "outbox"))).resolve(),
            smtp_host=r.str("SMTP_HOST", "localhost"),
            smtp_port=r.int("SMTP_PORT", 465 if smtp_security == "ssl" else 587, 1, 65535),
            smtp_username=r.optional("SMTP_USERNAME"),
            smtp_security=smtp_security,
            smtp_timeout_seconds=r.int("SMTP_TIMEOUT_SECONDS", 30, 1, 600),
            email_from=email_from,
            smtp_ca_file=r.optional("SMTP_CA_FILE"),
            ingest_max_properties_bytes=r.int("INGEST_MAX_PROPERTIES_BYTES", DEFAULT_MAX_PROPERTIES_BYTES, 2, 64 << 20),
            stripe_requests_per_second=r.int("STRIPE_REQUESTS_PER_SECOND", 80, 0, 10_000),
            s3_requests_per_second=r.int("S3_REQUESTS_PER_SECOND", 100, 0, 10_000),
            smtp_messages_per_second=r.int("SMTP_MESSAGES_PER_SECOND", 20, 0, 10_000),
            payment_reminders_cron=r.cron("PAYMENT_REMINDERS_CRON", "0 9 * * *"),
            dunning_policy_file=_optional_path(r.optional("DUNNING_POLICY_FILE")),
            notification_max_attempts=r.int("NOTIFICATION_MAX_ATTEMPTS", 3, 1, 100),
            seller={
                "name": r.str("SELLER_NAME", "Example Cloud Ltd"),
                "address": r.str("SELLER_ADDRESS", "1 Example Street, London EC1A 1AA"),
                "email": r.str("SELLER_EMAIL", email_from),
                "tax_id": r.str("SELLER_TAX_ID", ""),
                "payment_instructions": r.str(
                    "SELLER_PAYMENT_INSTRUCTIONS", "Pay by bank transfer, quoting the invoice number."
                ),
            },
        )


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


def _env_var(name: str):
    """A secret as a ``dg.EnvVar`` when it is set: its value is read when a run starts, never here."""
    import dagster as dg

    return dg.EnvVar(name) if os.environ.get(name) else None


def delivery_resources(settings: Settings) -> dict:
    """The one place that picks the delivery implementations: document store, payment gateway, mailer."""
    import dagster as dg

    from billing_pipeline.defs import delivery_resources as r

    if settings.document_store == "s3":
        document_store: r.DocumentStoreResource = r.S3DocumentStoreResource(
            bucket=settings.s3_bucket or "",
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            aws_access_key_id=_env_var("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=_env_var("AWS_SECRET_ACCESS_KEY"),
            conditional_writes=settings.s3_conditional_writes,
            requests_per_second=settings.s3_requests_per_second,
            max_connections=max(10, settings.delivery_io_workers),
        )
    else:
        document_store = r.LocalDocumentStoreResource(documents_dir=str(settings.documents_dir))
    if settings.payment_gateway == "stripe":
        payment_gateway: r.PaymentGatewayResource = r.StripePaymentGatewayResource(
            api_key=dg.EnvVar("STRIPE_API_KEY"),
            api_base=settings.stripe_api_base,
            requests_per_second=settings.stripe_requests_per_second,
        )
    else:
        payment_gateway = r.NoPaymentGatewayResource()
    if settings.mailer == "smtp":
        mailer: r.MailerResource = r.SMTPMailerResource(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=_env_var("SMTP_PASSWORD"),
            security=settings.smtp_security,
            timeout_seconds=settings.smtp_timeout_seconds,
            ca_file=settings.smtp_ca_file,
            messages_per_second=settings.smtp_messages_per_second,
        )
    else:
        mailer = r.OutboxMailerResource(outbox_dir=str(settings.outbox_dir))
    return {"document_store": document_store, "payment_gateway": payment_gateway, "mailer": mailer}
