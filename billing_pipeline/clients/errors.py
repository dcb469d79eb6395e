"""Errors raised by every client, split by what the caller should do about them.

``DeliveryError.transient`` is the only thing orchestration needs: True -> retry later
(network, timeouts, rate limits, 5xx); False -> retrying the same request cannot help
(bad request, auth, declined card, conflicting document). Catch ``TransientError`` /
``PermanentError`` for all clients at once, or the per-client classes.

Messages never contain credentials.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """Base of all client errors."""

    transient: bool = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TransientError(DeliveryError):
    transient = True


class PermanentError(DeliveryError):
    transient = False


# --- documents ---------------------------------------------------------------------------
class DocumentStoreError(DeliveryError):
    pass


class TransientStorageError(DocumentStoreError, TransientError):
    pass


class PermanentStorageError(DocumentStoreError, PermanentError):
    pass


class DocumentConflict(PermanentStorageError):
    """The key already holds different bytes: a stored document never changes silently."""

    def __init__(self, key: str, existing_sha256: str | None, new_sha256: str) -> None:
        super().__init__(
            f"document {key!r} already exists with sha256 {existing_sha256}, refusing to replace "
            f"it with sha256 {new_sha256}",
            code="document_conflict",
        )
        self.key = key
        self.existing_sha256 = existing_sha256
        self.new_sha256 = new_sha256


class DocumentNotFound(PermanentStorageError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


# --- payments ----------------------------------------------------------------------------
class GatewayError(DeliveryError):
    pass


class TransientGatewayError(GatewayError, TransientError):
    pass


class PermanentGatewayError(GatewayError, PermanentError):
    pass


class GatewayTotalMismatch(PermanentGatewayError):
    """The gateway's invoice total differs from ours: never charge or send it."""

    def __init__(self, invoice_ref: str, ours_minor: int, theirs_minor: int, currency: str) -> None:
        super().__init__(
            f"invoice {invoice_ref}: gateway total {theirs_minor} != our total {ours_minor} ({currency} minor units)",
            code="total_mismatch",
        )
        self.invoice_ref = invoice_ref
        self.ours_minor = ours_minor
        self.theirs_minor = theirs_minor
        self.currency = currency

    @property
    def difference_minor(self) -> int:
        return self.theirs_minor - self.ours_minor


# --- mail --------------------------------------------------------------------------------
class MailError(DeliveryError):
    pass


class TransientMailError(MailError, TransientError):
    pass


class PermanentMailError(MailError, PermanentError):
    pass


class AmbiguousMailError(MailError):
    """The server may have accepted the message: it had the whole of it (it had answered 354
    to DATA) when the connection failed or timed out before its final reply. Never retried:
    resending could deliver it twice; an operator checks the mail log for the Message-ID."""

    transient = False

    def __init__(self, message: str, *, message_id: str) -> None:
        super().__init__(message, code="ambiguous")
        self.message_id = message_id


__all__ = [
    "DeliveryError",
    "TransientError",
    "PermanentError",
    "DocumentStoreError",
    "TransientStorageError",
    "PermanentStorageError",
    "DocumentConflict",
    "DocumentNotFound",
    "GatewayError",
    "TransientGatewayError",
    "PermanentGatewayError",
    "GatewayTotalMismatch",
    "MailError",
    "TransientMailError",
    "PermanentMailError",
    "AmbiguousMailError",
]
