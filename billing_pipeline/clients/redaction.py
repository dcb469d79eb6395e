"""The one redactor: secrets out of every error text before it reaches a ledger, a log or the UI.

``redact(text)`` removes secret-looking tokens (Stripe keys, also masked ones such as
``sk_test_****1234``, webhook secrets, bearer tokens, ``user:password@`` in URLs, S3 signatures
and credentials in presigned URLs). ``Redactor(secrets)`` also removes the configured secret
values themselves (exact matches, longest first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["Redactor", "redact"]

REDACTED = "[redacted]"

_SECRET_PATTERNS = re.compile(
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9*]+"  # Stripe keys (masked ones too)
    r"|\bwhsec_[A-Za-z0-9*]+"
    r"|Bearer\s+\S+"
    r"|(?<=://)[^/\s:@]+:[^@\s/]+(?=@)"  # user:password@ in URLs
    r"|(?i:(?:X-Amz-Signature|Signature|X-Amz-Credential|AWSAccessKeyId)=)[^&\s]+"
)


def redact(text: str) -> str:
    """Remove secret-looking tokens from ``text``."""
    return _SECRET_PATTERNS.sub(REDACTED, text)


class Redactor:
    """Removes known secrets (exact values of at least 4 characters) and secret-looking tokens."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return redact(text)
