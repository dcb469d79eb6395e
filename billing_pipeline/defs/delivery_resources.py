"""Resources for invoice delivery: the document store, the payment gateway and the mailer.

Each one wraps a client from ``billing_pipeline.clients`` and is chosen by settings
(``DOCUMENT_STORE``, ``PAYMENT_GATEWAY``, ``MAILER``). Secrets arrive as ``dg.EnvVar`` values
(``STRIPE_API_KEY``, ``SMTP_PASSWORD``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``): the
UI shows the variable's name only, and ``secrets()`` lists the values the delivery service
must scrub from every error it records.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from billing_pipeline.clients.documents import DocumentStore, LocalDocumentStore, S3DocumentStore
from billing_pipeline.clients.mailer import Mailer, OutboxMailer, SMTPMailer
from billing_pipeline.clients.payments import NullGateway, PaymentGateway, StripeGateway, stripe_client


class DocumentStoreResource(dg.ConfigurableResource):
    """Where invoice PDFs are kept: an S3 bucket (``kind="s3"``) or a local folder."""

    kind: str = "local"  # local | s3
    documents_dir: str = ".billing_home/documents"
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    aws_access_key_id: str | None = None  # None: boto3's default credential chain
    aws_secret_access_key: str | None = None
    server_side_encryption: str | None = None
    conditional_writes: bool = True  # False for S3-compatible servers without If-None-Match

    def store(self) -> DocumentStore:
        if self.kind == "local":
            return LocalDocumentStore(Path(self.documents_dir))
        if self.kind != "s3" or not self.bucket:
            raise ValueError("DocumentStoreResource: kind must be 'local', or 's3' with a bucket")
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            # SigV4 presigned URLs; botocore's own retries stay short, the service retries with backoff
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=10,
                read_timeout=30,
            ),
        )
        return S3DocumentStore(
            client,
            self.bucket,
            self.prefix,
            server_side_encryption=self.server_side_encryption,
            conditional=self.conditional_writes,
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.aws_secret_access_key,) if s]


class PaymentGatewayResource(dg.ConfigurableResource):
    """Stripe (``kind="stripe"``) or no payment provider (``kind="none"``)."""

    kind: str = "none"  # none | stripe
    api_key: str | None = None  # dg.EnvVar("STRIPE_API_KEY")
    api_base: str | None = None  # a Stripe-compatible server (tests); None: api.stripe.com
    timeout_seconds: int = 30
    use_search: bool = True

    def gateway(self) -> PaymentGateway:
        if self.kind == "none":
            return NullGateway()
        if self.kind != "stripe" or not self.api_key:
            raise ValueError("PaymentGatewayResource: kind must be 'none', or 'stripe' with an api_key")
        client = stripe_client(self.api_key, api_base=self.api_base, timeout=self.timeout_seconds)
        return StripeGateway(client, use_search=self.use_search)

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key,) if s]


class MailerResource(dg.ConfigurableResource):
    """SMTP (``kind="smtp"``) or ``.eml`` files in an outbox folder (``kind="outbox"``)."""

    kind: str = "outbox"  # outbox | smtp
    outbox_dir: str = ".billing_home/outbox"
    host: str = "localhost"
    port: int = 587
    username: str | None = None
    password: str | None = None  # dg.EnvVar("SMTP_PASSWORD")
    security: str = "starttls"  # starttls | ssl | none
    timeout_seconds: int = 30
    ca_file: str | None = None

    def mailer(self) -> Mailer:
        if self.kind == "outbox":
            return OutboxMailer(Path(self.outbox_dir))
        if self.kind != "smtp":
            raise ValueError("MailerResource: kind must be 'outbox' or 'smtp'")
        return SMTPMailer(
            self.host,
            self.port,
            self.username,
            self.password,
            self.security,  # type: ignore[arg-type]
            float(self.timeout_seconds),
            ca_file=self.ca_file,
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.password,) if s]
