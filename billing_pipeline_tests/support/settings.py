"""The project's settings pointed at the tests' real local servers, written once."""

from __future__ import annotations

from pathlib import Path


def real_servers_env(
    *, billing_url: str, billing_home: Path | str, bucket: str | None, s3, stripe, smtp
) -> dict[str, str]:
    """Billing DB, S3-compatible store, Stripe-compatible gateway and SMTP (STARTTLS + AUTH) as
    the settings read them; schedules stopped. ``s3``/``stripe``/``smtp``: the support servers;
    ``s3=None``: documents in a folder under ``billing_home`` (runs that store no PDF)."""
    store = (
        {"DOCUMENT_STORE": "local"}
        if s3 is None
        else {
            "DOCUMENT_STORE": "s3",
            "S3_BUCKET": bucket or "",
            "S3_ENDPOINT_URL": s3.endpoint_url,
            "S3_REGION": s3.region,
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
    )
    return {
        "BILLING_HOME": str(billing_home),
        "BILLING_DATABASE_URL": billing_url,
        **store,
        "PAYMENT_GATEWAY": "stripe",
        "STRIPE_API_KEY": stripe.api_key,
        "STRIPE_API_BASE": stripe.api_base,
        "MAILER": "smtp",
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_USERNAME": smtp.username,
        "SMTP_PASSWORD": smtp.password,
        "SMTP_SECURITY": "starttls",
        "SMTP_CA_FILE": smtp.cert_path,
        "SCHEDULES_RUNNING": "false",
    }
