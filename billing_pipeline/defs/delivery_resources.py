"""Delivery resources: one ``ConfigurableResource`` per implementation, each handing out its
client Protocol. ``settings.delivery_resources`` picks one per role from ``DOCUMENT_STORE``,
``PAYMENT_GATEWAY`` and ``MAILER``:

* ``document_store``: ``LocalDocumentStoreResource`` | ``S3DocumentStoreResource``
* ``payment_gateway``: ``NoPaymentGatewayResource`` | ``StripePaymentGatewayResource``
* ``mailer``: ``OutboxMailerResource`` | ``SMTPMailerResource``

Secrets arrive as ``dg.EnvVar`` values (``STRIPE_API_KEY``, ``SMTP_PASSWORD``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``), read when a run starts, never when the
definitions load: the UI shows the variable's name only. ``secrets()`` lists the values the
delivery service scrubs from every error it records. Each real client gets its vendor's token
bucket (``clients.rate_limit``); 0 requests per second means no limit.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

from billing_pipeline.clients.documents import DocumentStore, LocalDocumentStore, S3DocumentStore, s3_client
from billing_pipeline.clients.mailer import Mailer, OutboxMailer, SMTPMailer
from billing_pipeline.clients.payments import NullGateway, PaymentGateway, StripeGateway, stripe_client
from billing_pipeline.clients.rate_limit import TokenBucket


def _bucket(rate: float) -> TokenBucket | None:
    return TokenBucket(rate) if rate > 0 else None


@functools.lru_cache(maxsize=8)
def _s3_client(
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    max_connections: int,
):
    """One boto3 S3 client per configuration per process: every op of a delivery run asks for the
    store, and building a client (session, service model, endpoint resolution) cost ~0.1-0.3 s of
    CPU each time. boto3 clients are thread-safe; the store's state (token bucket, checksum
    fallback) stays per ``store()``."""
    # botocore's own retries stay short: the service retries with backoff
    return s3_client(
        endpoint_url=endpoint_url,
        region=region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        max_attempts=2,
        connect_timeout=10,
        read_timeout=30,
        max_connections=max_connections,
    )


# --- document store ----------------------------------------------------------------------------
class DocumentStoreResource(dg.ConfigurableResource):
    """Where invoice PDFs are kept (base class: op parameters are typed with it)."""

    def store(self) -> DocumentStore:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        return []


class LocalDocumentStoreResource(DocumentStoreResource):
    """Invoice PDFs as write-once files in a local folder."""

    documents_dir: str

    def store(self) -> DocumentStore:
        return LocalDocumentStore(Path(self.documents_dir))


class S3DocumentStoreResource(DocumentStoreResource):
    """Invoice PDFs as private, write-once S3 objects (or an S3-compatible server)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    aws_access_key_id: str | None = None  # None: boto3's default credential chain
    aws_secret_access_key: str | None = None
    server_side_encryption: str | None = None
    conditional_writes: bool = True  # False for S3-compatible servers without If-None-Match
    requests_per_second: float = 0.0
    max_connections: int = 10

    def store(self) -> DocumentStore:
        client = _s3_client(
            self.endpoint_url, self.region, self.aws_access_key_id, self.aws_secret_access_key, self.max_connections
        )
        return S3DocumentStore(
            client,
            self.bucket,
            self.prefix,
            server_side_encryption=self.server_side_encryption,
            conditional=self.conditional_writes,
            rate_limit=_bucket(self.requests_per_second),
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.aws_secret_access_key,) if s]


# --- payment gateway -----------------------------------------------------------------------------
class PaymentGatewayResource(dg.ConfigurableResource):
    """The payment provider invoices are mirrored into (base class)."""

    def gateway(self) -> PaymentGateway:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        return []


class NoPaymentGatewayResource(PaymentGatewayResource):
    """No payment provider: the stripe channel is recorded as skipped."""

    def gateway(self) -> PaymentGateway:
        return NullGateway()


class StripePaymentGatewayResource(PaymentGatewayResource):
    """Stripe (or a Stripe-compatible test server at ``api_base``)."""

    api_key: str  # dg.EnvVar("STRIPE_API_KEY")
    api_base: str | None = None
    timeout_seconds: int = 30
    use_search: bool = True
    requests_per_second: float = 0.0

    def gateway(self) -> PaymentGateway:
        client = stripe_client(self.api_key, api_base=self.api_base, timeout=self.timeout_seconds)
        return StripeGateway(client, use_search=self.use_search, rate_limit=_bucket(self.requests_per_second))

    def secrets(self) -> list[str]:
        return [self.api_key]


# --- mailer ----------------------------------------------------------------------------------------
class MailerResource(dg.ConfigurableResource):
    """Where invoice e-mails go (base class)."""

    def mailer(self) -> Mailer:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        return []


class OutboxMailerResource(MailerResource):
    """E-mails as ``.eml`` files in a folder, one per Message-ID."""

    outbox_dir: str

    def mailer(self) -> Mailer:
        return OutboxMailer(Path(self.outbox_dir))


class SMTPMailerResource(MailerResource):
    """An SMTP server (STARTTLS, implicit TLS, or none for local test servers)."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None  # dg.EnvVar("SMTP_PASSWORD")
    security: str = "starttls"  # starttls | ssl | none
    timeout_seconds: int = 30
    ca_file: str | None = None
    messages_per_second: float = 0.0

    def mailer(self) -> Mailer:
        return SMTPMailer(
            self.host,
            self.port,
            self.username,
            self.password,
            self.security,  # type: ignore[arg-type]
            float(self.timeout_seconds),
            ca_file=self.ca_file,
            rate_limit=_bucket(self.messages_per_second),
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.password,) if s]
