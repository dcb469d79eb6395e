"""What a delivery run does: enabled channels, dry run, retries, concurrency inside one op."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from billing_pipeline.db.deliveries import CHANNELS
from billing_pipeline.rendering.seller import Seller


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient errors.

    Attempt ``n`` (1 = first retry) waits ``min(max_delay, base_delay * 2**(n-1))`` scaled by a
    random factor in ``[1 - jitter, 1 + jitter]``, never more than ``max_delay``.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("retry policy: max_attempts >= 1, delays >= 0, jitter in [0, 1]")

    def delay(self, retry: int, rand: float) -> float:
        base = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return min(self.max_delay, base * (1 - self.jitter + 2 * self.jitter * rand))


@dataclass(frozen=True)
class DeliveryOptions:
    pdf: bool = True
    s3: bool = True
    stripe: bool = True
    email: bool = True
    dry_run: bool = False
    presigned_url_expiry_seconds: int = 7 * 24 * 3600
    email_from: str = "billing@example.com"
    message_id_domain: str | None = None  # default: the domain of email_from
    idempotency_prefix: str = "billing"  # prefix of every Stripe idempotency key
    resend_ambiguous_email: bool = False
    render_workers: int = 0  # > 0: the pdf step renders in that many processes
    io_workers: int = 0  # > 0: the s3 / stripe / email steps run that many threads
    spool_dir: Path | None = None  # rendered PDFs waiting for the s3 and email steps; None: a temp folder
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DeliveryOptions:
        values = dict(
            pdf=settings.enable_pdf,
            s3=settings.enable_s3,
            stripe=settings.enable_stripe,
            email=settings.enable_email,
            dry_run=settings.dry_run,
            presigned_url_expiry_seconds=settings.presigned_url_expiry_seconds,
            email_from=settings.email_from,
            io_workers=settings.delivery_io_workers,
            spool_dir=settings.home / "rendered",
        )
        values.update(overrides)
        return cls(**values)

    @property
    def channels(self) -> tuple[str, ...]:
        """Enabled channels in order; the PDF is rendered whenever S3 or e-mail needs it."""
        wanted = {"pdf": self.pdf or self.s3 or self.email, "s3": self.s3, "stripe": self.stripe, "email": self.email}
        return tuple(c for c in CHANNELS if wanted[c])

    def before(self, channel: str) -> tuple[str, ...]:
        """The enabled channels that must be final before ``channel`` runs for an invoice."""
        channels = self.channels
        return channels[: channels.index(channel)] if channel in channels else ()

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.email_from.rsplit("@", 1)[-1].strip(" >")


def charges_automatically(settings: Any) -> bool:
    """A payment gateway will charge auto-pay organizations: Stripe configured and its channel on.
    Only then does an invoice say it will be charged automatically (``domain.settlement``)."""
    return settings.payment_gateway == "stripe" and settings.enable_stripe


def seller_from_settings(seller: dict[str, str], *, charges_automatically: bool = False) -> Seller:
    return Seller(
        name=seller.get("name", ""),
        address_lines=tuple(p.strip() for p in seller.get("address", "").split(",") if p.strip()),
        tax_id=seller.get("tax_id") or None,
        email=seller.get("email", ""),
        payment_instructions=seller.get("payment_instructions", ""),
        website=seller.get("website") or None,
        charges_automatically=charges_automatically,
    )
