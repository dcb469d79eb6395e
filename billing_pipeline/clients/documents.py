"""Write-once document storage for invoice PDFs: S3 (``S3DocumentStore``) or a folder
(``LocalDocumentStore``).

Key scheme (``invoice_pdf_key``)::

    invoices/{YYYY}/{MM}/{org_id}/{invoice_number}.pdf

``YYYY/MM`` is the first month of the invoice's service period (UTC), so the key is known
before the invoice is issued and never depends on when a run happened. ``org_id`` and the
number must be plain ``[A-Za-z0-9._-]`` tokens.

``put`` is idempotent and write-once: the same bytes under the same key are a no-op
(``created=False``); different bytes raise ``DocumentConflict`` -- a finalized invoice's PDF
must never silently change. Objects are private; share them through ``presigned_url``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from billing_pipeline.clients.errors import (
    DocumentConflict,
    DocumentNotFound,
    PermanentStorageError,
    TransientStorageError,
)
from billing_pipeline.clients.files import write_once
from billing_pipeline.clients.rate_limit import TokenBucket
from billing_pipeline.domain.model import Invoice

__all__ = [
    "StoredDocument",
    "DocumentStore",
    "LocalDocumentStore",
    "S3DocumentStore",
    "invoice_pdf_key",
    "validate_key",
]

_TOKEN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._=-]{0,254}$")


@dataclass(frozen=True)
class StoredDocument:
    key: str
    sha256_hex: str
    size: int
    url_or_path: str  # s3://bucket/key or a filesystem path
    created: bool  # False: identical bytes were already stored


@runtime_checkable
class DocumentStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> StoredDocument: ...

    def exists(self, key: str) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def presigned_url(self, key: str, expires_in: int) -> str: ...


def invoice_pdf_key(invoice: Invoice) -> str:
    """``invoices/{YYYY}/{MM}/{org_id}/{invoice_number}.pdf`` (period start month, UTC)."""
    if not invoice.number:
        raise ValueError("a draft invoice has no number and no document key")
    for label, token in (("organization id", invoice.organization_id), ("invoice number", invoice.number)):
        if not _TOKEN.match(token) or ".." in token:
            raise ValueError(f"{label} {token!r} cannot be used in a document key")
    start = invoice.period_start
    return f"invoices/{start:%Y}/{start:%m}/{invoice.organization_id}/{invoice.number}.pdf"


def validate_key(key: str) -> str:
    """Relative, '/'-separated, no empty/'.'/'..' segments, safe characters only."""
    segments = key.split("/")
    if not key or any(not _KEY_SEGMENT.match(s) or s in (".", "..") for s in segments):
        raise ValueError(f"invalid document key {key!r}")
    return key


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalDocumentStore:
    """Documents as files under ``root`` (for local runs and tests).

    Written with ``clients.files.write_once`` (temp file, fsync, ``os.link``): two concurrent
    writers cannot overwrite each other. Content type is not stored.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"document key {key!r} escapes the store root")
        return path

    def _existing(self, key: str, path: Path, sha: str, size: int) -> StoredDocument:
        existing = _sha256(path.read_bytes())
        if existing != sha:
            raise DocumentConflict(key, existing, sha)
        return StoredDocument(key, sha, size, str(path), created=False)

    def put(self, key: str, data: bytes, content_type: str) -> StoredDocument:
        path = self._path(key)
        sha = _sha256(data)
        if not write_once(path, data):
            return self._existing(key, path, sha, len(data))
        return StoredDocument(key, sha, len(data), str(path), created=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise DocumentNotFound(f"no document {key!r}", code="not_found") from None

    def presigned_url(self, key: str, expires_in: int) -> str:
        """A ``file://`` URI (local files do not expire; ``expires_in`` is ignored)."""
        path = self._path(key)
        if not path.is_file():
            raise DocumentNotFound(f"no document {key!r}", code="not_found")
        return path.as_uri()


# ---------------------------------------------------------------------------------------
_TRANSIENT_S3_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "503",
    "500",
    "ConditionalRequestConflict",  # 409: a concurrent conditional write to the same key
}
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
#: Errors an S3-compatible server may answer when it does not support additional checksums.
_UNSUPPORTED_CODES = {"NotImplemented", "InvalidArgument", "InvalidRequest", "501", "400"}


def s3_client(
    *,
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
    max_connections: int = 10,
):
    """A boto3 S3 client as the project uses it: SigV4 (presigned URLs), path-style addressing
    (S3-compatible servers), botocore's own retries bounded by ``max_attempts``."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_connections,
        ),
    )


def _client_error_info(exc: Exception) -> tuple[str, int | None]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


class S3DocumentStore:
    """Private, write-once objects in ``bucket`` under ``prefix``.

    ``client`` is a boto3 S3 client (``boto3.client("s3", endpoint_url=...)``, or the one a
    dagster-aws ``S3Resource`` returns). Every object carries ``Metadata={"sha256": hex}``
    (that is what existence checks compare); when ``checksum=True`` the upload also sends
    ``ChecksumSHA256`` so S3 verifies the bytes in transit -- a server that rejects it gets
    one retry without it and the store stops sending it. No ACL is set (objects stay
    private). ``server_side_encryption`` is e.g. ``"AES256"`` or ``"aws:kms"``.

    Objects are write-once: ``put_object`` carries ``If-None-Match: *`` (S3 conditional
    writes; MinIO and SeaweedFS have them too), so a new object costs one request, an
    existing key answers 412 and is then compared by its ``sha256`` metadata (same bytes: not
    created again; other bytes: ``DocumentConflict``), and two writers racing on one key
    cannot overwrite each other. For a server without conditional writes pass
    ``conditional=False``: the key is then checked with ``head_object`` first (one more
    request, and not safe against two writers racing between the two).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        server_side_encryption: str | None = None,
        sse_kms_key_id: str | None = None,
        checksum: bool = True,
        conditional: bool = True,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.client = client
        self.rate_limit = rate_limit
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.server_side_encryption = server_side_encryption
        self.sse_kms_key_id = sse_kms_key_id
        self.checksum = checksum
        self.conditional = conditional

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, method: str, **kwargs: Any) -> Any:
        """Call the client, mapping botocore errors to Transient/PermanentStorageError."""
        if self.rate_limit is not None and method != "generate_presigned_url":  # presigning is local
            self.rate_limit.acquire()
        try:
            return getattr(self.client, method)(**kwargs)
        except Exception as exc:  # botocore exceptions; classified below
            raise self._classify(exc, method) from exc

    def _classify(self, exc: Exception, method: str) -> Exception:
        name = type(exc).__name__
        code, status = _client_error_info(exc)
        if code in _NOT_FOUND_CODES or status == 404:
            return DocumentNotFound(f"S3 {method}: not found", code="not_found", status=404)
        if code == "NotImplemented" or status == 501:
            return PermanentStorageError(
                f"S3 {method}: not implemented by this server", code="NotImplemented", status=status
            )
        transient = (
            code in _TRANSIENT_S3_CODES
            or (status is not None and (status >= 500 or status == 429))
            or name
            in {
                "EndpointConnectionError",
                "ConnectTimeoutError",
                "ReadTimeoutError",
                "ConnectionClosedError",
                "ResponseStreamingError",
            }
            or isinstance(exc, (ConnectionError, TimeoutError))
        )
        cls = TransientStorageError if transient else PermanentStorageError
        return cls(f"S3 {method} failed: {name} {code} (HTTP {status})", code=code or name, status=status)

    def _head(self, full_key: str) -> dict | None:
        try:
            return self._call("head_object", Bucket=self.bucket, Key=full_key)
        except DocumentNotFound:
            return None

    def _stored_sha(self, full_key: str, head: dict) -> str:
        sha = (head.get("Metadata") or {}).get("sha256")
        if sha:
            return sha
        # Written by someone else without our metadata: hash the bytes.
        return _sha256(self._get_bytes(full_key))

    def _get_bytes(self, full_key: str) -> bytes:
        response = self._call("get_object", Bucket=self.bucket, Key=full_key)
        try:
            return response["Body"].read()
        except Exception as exc:
            raise self._classify(exc, "get_object") from exc

    def put(self, key: str, data: bytes, content_type: str) -> StoredDocument:
        full_key = self._key(key)
        sha = _sha256(data)
        url = f"s3://{self.bucket}/{full_key}"
        if not self.conditional:
            head = self._head(full_key)
            if head is not None:
                return self._same_or_conflict(key, full_key, head, sha, len(data), url)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full_key,
            "Body": data,
            "ContentType": content_type,
            "Metadata": {"sha256": sha},
        }
        if self.conditional:
            params["IfNoneMatch"] = "*"  # write-once: S3 answers 412 when the key exists
        if self.server_side_encryption:
            params["ServerSideEncryption"] = self.server_side_encryption
        if self.sse_kms_key_id:
            params["SSEKMSKeyId"] = self.sse_kms_key_id
        try:
            self._put_object(params, data)
        except PermanentStorageError as exc:
            if not self.conditional or exc.status != 412:
                raise
            head = self._head(full_key)
            if head is None:  # deleted since: let the caller retry
                raise TransientStorageError(
                    f"S3 put_object: {full_key} existed, then vanished", code="PreconditionFailed", status=412
                ) from None
            return self._same_or_conflict(key, full_key, head, sha, len(data), url)
        return StoredDocument(key, sha, len(data), url, created=True)

    def _same_or_conflict(self, key: str, full_key: str, head: dict, sha: str, size: int, url: str) -> StoredDocument:
        existing = self._stored_sha(full_key, head)
        if existing != sha:
            raise DocumentConflict(key, existing, sha)
        return StoredDocument(key, sha, size, url, created=False)

    def _put_object(self, params: dict[str, Any], data: bytes) -> None:
        if not self.checksum:
            self._call("put_object", **params)
            return
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        try:
            self._call("put_object", ChecksumAlgorithm="SHA256", ChecksumSHA256=digest, **params)
        except PermanentStorageError as exc:
            if exc.code not in _UNSUPPORTED_CODES:
                raise
            self.checksum = False  # this server does not do additional checksums
            self._call("put_object", **params)

    def exists(self, key: str) -> bool:
        return self._head(self._key(key)) is not None

    def get(self, key: str) -> bytes:
        return self._get_bytes(self._key(key))

    def presigned_url(self, key: str, expires_in: int) -> str:
        """A GET URL valid for ``expires_in`` seconds (SigV4 allows at most 7 days).

        Build the client with ``Config(signature_version="s3v4")`` for SigV4 URLs.
        """
        if not 1 <= expires_in <= 7 * 24 * 3600:
            raise ValueError("expires_in must be between 1 s and 7 days")
        return self._call(
            "generate_presigned_url",
            ClientMethod="get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_in,
        )
