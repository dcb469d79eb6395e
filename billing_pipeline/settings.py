"""Every environment variable the project reads, validated in one place.

``Settings.from_env()`` runs when the Dagster definitions load (and in the CLI). A bad
value fails right there with the variable's name, e.g.
``INVOICE_BATCH_SIZE: must be an integer from 1 to 10000, got 'lots'``.
Secrets (STRIPE_API_KEY, SMTP_PASSWORD, AWS keys) are never stored here: resources
read them through ``dagster.EnvVar`` at run time, so they never reach the UI or logs.
Defaults are the embedded mode: SQLite and local folders under BILLING_HOME.

A setting is a field of ``Settings`` and one line of ``_VARS``: its variable, its parser (which
validates the text), its default (a value, or a function of the settings read before it) and
any further check; the variable goes into ``.env.example`` too.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from billing_pipeline.domain.events import DEFAULT_MAX_PROPERTIES_BYTES
from billing_pipeline.domain.organizations import address_problem, name_problem, unsafe_character
from billing_pipeline.domain.settlement import ZeroTotalPolicy


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


#: (variable, its text or None when unset, default) -> the value; a bad text raises SettingsError naming the variable
Parser = Callable[[str, str | None, Any], Any]


def _text(name: str, raw: str | None, default: str) -> str:
    return (default if raw is None else raw).strip() or default


def _optional(name: str, raw: str | None, default: None) -> str | None:
    return (raw or "").strip() or None


def _flag(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}: must be true or false, got {raw!r}")


def _int(low: int, high: int) -> Parser:
    def parse(name: str, raw: str | None, default: int) -> int:
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}: must be an integer from {low} to {high}, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be an integer from {low} to {high}, got {raw!r}")
        return value

    return parse


def _one_of(*choices: str) -> Parser:
    def parse(name: str, raw: str | None, default: str) -> str:
        value = _text(name, raw, default).lower()
        if value not in choices:
            raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _cron(name: str, raw: str | None, default: str) -> str:
    value = _text(name, raw, default)
    if not _cron_ok(value):
        raise SettingsError(f"{name}: not a valid cron expression: {value!r}")
    return value


def _database_url(name: str, raw: str | None, default: str) -> str:
    """A SQLite or PostgreSQL SQLAlchemy URL, parsed here so a typo names the variable."""
    url_text = _text(name, raw, default)
    scheme = url_text.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url_text else ""
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise SettingsError(f"{name}: must be a sqlite:/// or postgresql:// URL, got {_shown(url_text)}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(url_text)
        port = url.port  # parsing the port happens here: "host:abc" fails
    except (ArgumentError, ValueError) as exc:
        raise SettingsError(f"{name}: not a valid database URL ({type(exc).__name__}): {_shown(url_text)}") from None
    if scheme != "sqlite" and not (url.host and url.database):
        raise SettingsError(f"{name}: a postgresql URL needs a host and a database name, got {_shown(url_text)}")
    if port is not None and not 1 <= port <= 65535:
        raise SettingsError(f"{name}: port must be from 1 to 65535, got {port}")
    _database_driver(name, url_text)
    return url_text


def _database_driver(name: str, url_text: str) -> None:
    """The URL's driver loads here (``postgresql+nodriver://`` would fail at the first query)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    from billing_pipeline.db.engine import normalize_url

    url = make_url(normalize_url(url_text))
    try:
        url.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError):
        raise SettingsError(
            f"{name}: no database driver {url.drivername!r} here (sqlite:/// or postgresql://, which is psycopg 3), "
            f"got {_shown(url_text)}"
        ) from None


def _http_url(name: str, raw: str | None, default: None) -> str | None:
    """An optional http(s) base URL with a host (and a valid port, if any)."""
    url_text = _optional(name, raw, None)
    if url_text is None:
        return None
    try:
        parts = urllib.parse.urlsplit(url_text)
        port = parts.port
    except ValueError:
        raise SettingsError(f"{name}: not a valid URL: {_shown(url_text)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name}: must be an http:// or https:// URL with a host, got {_shown(url_text)}")
    if port == 0 or any(c.isspace() for c in url_text):
        raise SettingsError(f"{name}: not a valid URL: {_shown(url_text)}")
    return url_text


def _base_url(name: str, raw: str | None, default: str) -> str:
    """An http(s) base URL, with a default."""
    return (_http_url(name, raw, None) or default).rstrip("/")


def _date(name: str, raw: str | None, default: str) -> dt.date:
    text = _text(name, raw, default)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"{name}: must be a date YYYY-MM-DD, got {text!r}") from None


def _path(name: str, raw: str | None, default: str) -> Path:
    return Path(_text(name, raw, default)).resolve()


def _optional_path(name: str, raw: str | None, default: None) -> Path | None:
    value = _optional(name, raw, default)
    return Path(value).expanduser().resolve() if value else None


def _retry_days(name: str, value: str) -> None:
    from billing_pipeline.domain.charges import parse_retry_days

    if value.strip():
        try:
            parse_retry_days(value)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None


def _home(name: str, raw: str | None, default: str) -> Path:
    return Path(_text(name, raw, default)).expanduser().resolve()


def _recipients(name: str, raw: str | None, default: str) -> tuple[str, ...]:
    """Comma-separated e-mail addresses (empty: the reports are stored, not sent)."""
    out = tuple(a.strip() for a in (raw if raw is not None else default).split(",") if a.strip())
    for addr in out:
        if not re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+", addr):
            raise SettingsError(f"{name}: not an e-mail address: {addr!r}")
    return out


#: the channels operator alerts can go to (services.alerts.ALERT_CHANNELS)
_ALERT_CHANNELS = ("email", "slack", "inapp")


def _channels(name: str, raw: str | None, default: str) -> tuple[str, ...]:
    """A comma-separated list of alert channels, in order, each once ("" or "none": no alerts)."""
    text = _text(name, raw, default).lower()
    if text in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for channel in names:
        if channel not in _ALERT_CHANNELS:
            raise SettingsError(f"{name}: unknown channel {channel!r}; choose from {', '.join(_ALERT_CHANNELS)}")
    return names


# --- checks of a parsed value


def _email_address(name: str, value: str) -> None:
    """One address, or ``Name <address>``: what the e-mail renderer takes (the organizations' rules)."""
    display, address = email.utils.parseaddr(value) if "<" in value else (None, value)
    problem = unsafe_character(value)
    if not problem and display and (problem := name_problem(display)):
        problem = f"its name {problem}"
    if problem:
        raise SettingsError(f"{name}: must be an email address: {problem}")
    _plain_address(name, address)


def _plain_address(name: str, value: str) -> None:
    if problem := address_problem(value):
        raise SettingsError(f"{name}: must be an email address: {problem}")


def _display_name(name: str, value: str) -> None:
    """A name shown in From/Reply-To headers and on PDFs (an organization name's rule)."""
    if problem := name_problem(value):
        raise SettingsError(f"{name}: {problem}")


def _optional_email_address(name: str, value: str | None) -> None:
    if value is not None:
        _email_address(name, value)


def _optional_phone(name: str, value: str | None) -> None:
    from billing_pipeline.domain.organizations import phone_problem

    if value is not None and (message := phone_problem(value)):
        raise SettingsError(f"{name}: {message}")


def _account_sid(name: str, value: str | None) -> None:
    if value is not None and not re.fullmatch(r"AC[0-9a-fA-F]{32}", value):
        raise SettingsError(f"{name}: must be a Twilio Account SID, AC and 32 hex digits, got {_shown(value)}")


def _number_prefix(name: str, value: str) -> None:
    if not value.replace("-", "").isalnum() or len(value) > 12:
        raise SettingsError(f"{name}: letters, digits and '-' only, at most 12, got {value!r}")


@dataclass(frozen=True)
class _Var:
    """One setting: its environment variable, its parser, its default and any further check."""

    name: str
    parse: Parser
    default: Any = None  # a value, or a function of the settings read before it (lambda s: ...)
    check: Callable[[str, Any], None] | None = None
    required_when: tuple[str, str] | None = None  # (setting, value): the variable must be set then

    def read(self, env: Mapping[str, str], before: Mapping[str, Any]) -> Any:
        raw = env.get(self.name)
        if self.required_when is not None:
            setting, value = self.required_when
            if before[setting] == value and not (raw or "").strip():
                raise SettingsError(f"{self.name}: required when {_VARS[setting].name}={value}")
        default = self.default(before) if callable(self.default) else self.default
        value = self.parse(self.name, raw, default)
        if self.check is not None:
            self.check(self.name, value)
        return value


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
    zero_total_invoices: str = ZeroTotalPolicy.FINALIZE_PAID.value  # finalize_paid | finalize | skip
    health_check_cron: str = "*/15 * * * *"  # service_health_schedule, UTC
    health_probe_timeout_seconds: int = 5  # each health probe's connect/read timeout
    # collections: reminders (services.collections, defs.reminders)
    payment_reminders_cron: str = "0 9 * * *"
    dunning_policy_file: Path | None = None  # None: the packaged billing_pipeline/catalog/dunning.yaml
    notification_max_attempts: int = 3
    # collections: auto-charge and payment sync (services.collections.charges / payment_sync, defs.charges)
    charge_due_invoices_cron: str = "0 6 * * *"
    charge_retry_days: str = ""  # days after the due date of attempts 2, 3...; empty: from the dunning policy
    charge_max_attempts: int = 4
    payment_sync_cron: str = "*/30 * * * *"
    payment_sync_max_checks: int = 48
    ar_aging_report_cron: str = "0 7 * * 1"  # Monday 07:00 UTC
    mrr_report_cron: str = "0 8 1 * *"  # the 1st of the month, 08:00 UTC
    daily_analytics_report_cron: str = "0 2 * * *"  # every day, 02:00 UTC
    weekly_bi_report_cron: str = "0 3 * * 0"  # Sunday 03:00 UTC
    report_recipients: tuple[str, ...] = ()  # who gets the AR aging and MRR reports (none: stored only)
    # operator alerts (services.alerts, defs.alerts); SLACK_WEBHOOK_URL is a secret: read at run time
    alert_channels: tuple[str, ...] = ("inapp",)
    alert_email_to: str | None = None
    dagster_webserver_url: str = "http://127.0.0.1:3000"
    alert_failure_threshold: int = 10
    alert_failure_window_hours: int = 24
    slack_timeout_seconds: int = 10
    alert_sensor_interval_seconds: int = 300  # failure_rate_alert_sensor and alert_redelivery_sensor
    # SMS (clients.sms, defs.sms): off by default; TWILIO_AUTH_TOKEN is a secret, read at run time
    sms_provider: str = "none"  # none | twilio
    twilio_account_sid: str | None = None
    twilio_from: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    sms_timeout_seconds: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting, var in _VARS.items():
            values[setting] = var.read(env, values)
        values["seller"] = {key: var.read(env, values) for key, var in _SELLER_VARS.items()}
        if "email" in values["alert_channels"] and not values["alert_email_to"]:
            raise SettingsError("ALERT_EMAIL_TO: required when ALERT_CHANNELS includes email")
        return cls(**values)


#: Settings field -> its variable, parser, default, check. Read in this order: a default or a
#: requirement may use the settings above it, and the first bad value is the one reported.
_VARS: dict[str, _Var] = {
    "home": _Var("BILLING_HOME", _home, lambda s: str(Path.cwd() / ".billing_home")),
    "database_url": _Var("BILLING_DATABASE_URL", _database_url, lambda s: f"sqlite:///{s['home'] / 'billing.db'}"),
    "document_store": _Var("DOCUMENT_STORE", _one_of("local", "s3"), "local"),
    "s3_bucket": _Var("S3_BUCKET", _optional, required_when=("document_store", "s3")),
    # STRIPE_API_KEY is read when a run starts (dg.EnvVar): loading needs no secret.
    "payment_gateway": _Var("PAYMENT_GATEWAY", _one_of("none", "stripe"), "none"),
    "mailer": _Var("MAILER", _one_of("outbox", "smtp"), "outbox"),
    "smtp_security": _Var("SMTP_SECURITY", _one_of("starttls", "ssl", "none"), "starttls"),
    "smtp_host": _Var("SMTP_HOST", _text, "localhost", required_when=("mailer", "smtp")),
    "email_from": _Var("EMAIL_FROM", _text, "billing@example.com", check=_email_address),
    "invoice_number_prefix": _Var("INVOICE_NUMBER_PREFIX", _text, "INV", check=_number_prefix),
    "partitions_start": _Var("BILLING_PARTITIONS_START", _date, "2026-01-01"),
    "invoice_batch_size": _Var("INVOICE_BATCH_SIZE", _int(1, 10_000), 1000),
    "invoice_grace_hours": _Var("INVOICE_GRACE_HOURS", _int(0, 24 * 28), 72),
    "hourly_usage_cron": _Var("HOURLY_USAGE_CRON", _cron, "5 * * * *"),
    "monthly_invoice_cron": _Var("MONTHLY_INVOICE_CRON", _cron, "0 0 1 * *"),
    "weekly_invoice_cron": _Var("WEEKLY_INVOICE_CRON", _cron, "0 0 * * 1"),
    "schedules_running": _Var("SCHEDULES_RUNNING", _flag, True),
    "dry_run": _Var("DRY_RUN", _flag, False),
    "enable_pdf": _Var("INVOICE_ENABLE_PDF", _flag, True),
    "enable_s3": _Var("INVOICE_ENABLE_S3", _flag, True),
    "enable_stripe": _Var("INVOICE_ENABLE_STRIPE", _flag, True),
    "enable_email": _Var("INVOICE_ENABLE_EMAIL", _flag, True),
    "delivery_io_workers": _Var("DELIVERY_IO_WORKERS", _int(0, 64), 4),
    "documents_dir": _Var("DOCUMENTS_DIR", _path, lambda s: str(s["home"] / "documents")),
    "s3_prefix": _Var("S3_PREFIX", _text, ""),
    "s3_endpoint_url": _Var("S3_ENDPOINT_URL", _http_url),
    "s3_region": _Var("S3_REGION", _text, "us-east-1"),
    "s3_conditional_writes": _Var("S3_CONDITIONAL_WRITES", _flag, True),
    "presigned_url_expiry_seconds": _Var("PRESIGNED_URL_EXPIRY_SECONDS", _int(60, 7 * 24 * 3600), 7 * 24 * 3600),
    "stripe_api_base": _Var("STRIPE_API_BASE", _http_url),
    "outbox_dir": _Var("OUTBOX_DIR", _path, lambda s: str(s["home"] / "outbox")),
    "smtp_port": _Var("SMTP_PORT", _int(1, 65535), lambda s: 465 if s["smtp_security"] == "ssl" else 587),
    "smtp_username": _Var("SMTP_USERNAME", _optional),
    "smtp_timeout_seconds": _Var("SMTP_TIMEOUT_SECONDS", _int(1, 600), 30),
    "smtp_ca_file": _Var("SMTP_CA_FILE", _optional),
    "ingest_max_properties_bytes": _Var("INGEST_MAX_PROPERTIES_BYTES", _int(2, 64 << 20), DEFAULT_MAX_PROPERTIES_BYTES),
    "stripe_requests_per_second": _Var("STRIPE_REQUESTS_PER_SECOND", _int(0, 10_000), 80),
    "s3_requests_per_second": _Var("S3_REQUESTS_PER_SECOND", _int(0, 10_000), 100),
    "smtp_messages_per_second": _Var("SMTP_MESSAGES_PER_SECOND", _int(0, 10_000), 20),
    "zero_total_invoices": _Var(
        "ZERO_TOTAL_INVOICES", _one_of(*(p.value for p in ZeroTotalPolicy)), ZeroTotalPolicy.FINALIZE_PAID.value
    ),
    "health_check_cron": _Var("HEALTH_CHECK_CRON", _cron, "*/15 * * * *"),
    "health_probe_timeout_seconds": _Var("HEALTH_PROBE_TIMEOUT_SECONDS", _int(1, 60), 5),
    "payment_reminders_cron": _Var("PAYMENT_REMINDERS_CRON", _cron, "0 9 * * *"),
    "dunning_policy_file": _Var("DUNNING_POLICY_FILE", _optional_path),
    "notification_max_attempts": _Var("NOTIFICATION_MAX_ATTEMPTS", _int(1, 100), 3),
    "charge_due_invoices_cron": _Var("CHARGE_DUE_INVOICES_CRON", _cron, "0 6 * * *"),
    "charge_retry_days": _Var("CHARGE_RETRY_DAYS", _text, "", check=_retry_days),
    "charge_max_attempts": _Var("CHARGE_MAX_ATTEMPTS", _int(1, 20), 4),
    "payment_sync_cron": _Var("PAYMENT_SYNC_CRON", _cron, "*/30 * * * *"),
    "payment_sync_max_checks": _Var("PAYMENT_SYNC_MAX_CHECKS", _int(1, 10_000), 48),
    "ar_aging_report_cron": _Var("AR_AGING_REPORT_CRON", _cron, "0 7 * * 1"),
    "mrr_report_cron": _Var("MRR_REPORT_CRON", _cron, "0 8 1 * *"),
    "daily_analytics_report_cron": _Var("DAILY_ANALYTICS_REPORT_CRON", _cron, "0 2 * * *"),
    "weekly_bi_report_cron": _Var("WEEKLY_BI_REPORT_CRON", _cron, "0 3 * * 0"),
    "report_recipients": _Var("REPORT_RECIPIENTS", _recipients, ""),
    "alert_channels": _Var("ALERT_CHANNELS", _channels, "inapp"),
    "alert_email_to": _Var("ALERT_EMAIL_TO", _optional, check=_optional_email_address),
    "dagster_webserver_url": _Var("DAGSTER_WEBSERVER_URL", _base_url, "http://127.0.0.1:3000"),
    "alert_failure_threshold": _Var("ALERT_FAILURE_THRESHOLD", _int(0, 100_000), 10),
    "alert_failure_window_hours": _Var("ALERT_FAILURE_WINDOW_HOURS", _int(1, 24 * 31), 24),
    "slack_timeout_seconds": _Var("SLACK_TIMEOUT_SECONDS", _int(1, 120), 10),
    "alert_sensor_interval_seconds": _Var("ALERT_SENSOR_INTERVAL_SECONDS", _int(30, 3600), 300),
    "sms_provider": _Var("SMS_PROVIDER", _one_of("none", "twilio"), "none"),
    "twilio_account_sid": _Var(
        "TWILIO_ACCOUNT_SID", _optional, check=_account_sid, required_when=("sms_provider", "twilio")
    ),
    "twilio_from": _Var("TWILIO_FROM", _optional, check=_optional_phone, required_when=("sms_provider", "twilio")),
    "twilio_api_base": _Var("TWILIO_API_BASE", _base_url, "https://api.twilio.com"),
    "sms_timeout_seconds": _Var("SMS_TIMEOUT_SECONDS", _int(1, 120), 10),
}
#: ``Settings.seller``: the seller block on invoices and e-mails.
_SELLER_VARS: dict[str, _Var] = {
    "name": _Var("SELLER_NAME", _text, "Example Cloud Ltd", check=_display_name),
    "address": _Var("SELLER_ADDRESS", _text, "1 Example Street, London EC1A 1AA"),
    "email": _Var("SELLER_EMAIL", _text, lambda s: email.utils.parseaddr(s["email_from"])[1], check=_plain_address),
    "tax_id": _Var("SELLER_TAX_ID", _text, ""),
    "payment_instructions": _Var(
        "SELLER_PAYMENT_INSTRUCTIONS", _text, "Pay by bank transfer, quoting the invoice number."
    ),
}


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


def sms_resource(settings: Settings):
    """The SMS sender (``SMS_PROVIDER``): none, or Twilio with its Auth Token read when a run starts."""
    import dagster as dg

    from billing_pipeline.defs import sms

    if settings.sms_provider == "twilio":
        return sms.TwilioSmsResource(
            account_sid=settings.twilio_account_sid or "",
            auth_token=dg.EnvVar("TWILIO_AUTH_TOKEN"),
            from_number=settings.twilio_from or "",
            api_base=settings.twilio_api_base,
            timeout_seconds=settings.sms_timeout_seconds,
        )
    return sms.NoSmsResource()
