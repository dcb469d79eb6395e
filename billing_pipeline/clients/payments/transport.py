"""The HTTP transport under the Stripe SDK, and ``stripe_client`` that builds a ``StripeClient`` with it."""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import urllib.request
from urllib.parse import SplitResult, urlsplit

import stripe


class _PersistentHTTPClient(stripe.HTTPClient):
    """An HTTP client for the Stripe SDK: one kept-alive ``http.client`` connection per thread.

    ``requests`` + ``urllib3`` (the SDK's default) spend about as much CPU per call as the
    rest of the SDK; this keeps only what a Stripe call needs: TLS verified against the SDK's
    CA bundle, a timeout, and a connection that is reopened when the server has closed it
    while idle (checked before each reuse, so no request is ever sent twice). Network
    errors become ``stripe.APIConnectionError``; ``StripeGateway``'s caller retries them.
    """

    name = "http.client"

    def __init__(self, timeout: float, api_base: str) -> None:
        super().__init__()
        parts = urlsplit(api_base)
        self._https = parts.scheme == "https"
        self._host, self._port = _host_port(parts)
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=stripe.ca_bundle_path) if self._https else None

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._thread_local, "conn", None)
        if conn is not None and (conn.sock is None or _dropped(conn.sock)):
            conn.close()
            conn = None
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._thread_local.conn = conn
        return conn

    def request(self, method, url, headers, post_data=None):  # type: ignore[override]
        parts = urlsplit(url)
        if _host_port(parts) != (self._host, self._port):
            raise stripe.APIConnectionError(f"this client only talks to {self._host}:{self._port}", should_retry=False)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        body = post_data.encode() if isinstance(post_data, str) else post_data
        conn = self._connection()
        try:
            conn.request(method.upper(), target, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            content = response.read()
        except ssl.SSLError as exc:
            conn.close()
            raise stripe.APIConnectionError(f"TLS error talking to Stripe: {exc}", should_retry=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise stripe.APIConnectionError(
                f"network error talking to Stripe: {type(exc).__name__}: {exc}", should_retry=True
            ) from exc
        if response.will_close:
            conn.close()
        return content, response.status, response.msg

    def request_stream(self, method, url, headers, post_data=None):  # type: ignore[override]
        content, status, headers = self.request(method, url, headers, post_data)
        return io.BytesIO(content), status, headers

    def close(self) -> None:
        conn = getattr(self._thread_local, "conn", None)
        if conn is not None:
            conn.close()
            self._thread_local.conn = None


def _host_port(parts: SplitResult) -> tuple[str, int]:
    return parts.hostname or "api.stripe.com", parts.port or (443 if parts.scheme == "https" else 80)


def _dropped(sock: socket.socket) -> bool:
    """True when an idle kept-alive connection was closed by the server (readable = EOF or junk)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _RequestsClient(stripe.RequestsClient):
    """stripe's ``requests`` client, used when a proxy applies: its sessions do not re-read
    proxy and CA settings from the environment on every request (``requests`` scans all of
    ``os.environ`` twice per call for them); the proxy is read once, here."""

    def __init__(self, timeout: float, proxies: dict[str, str]) -> None:
        super().__init__(timeout=timeout, proxy=proxies)  # type: ignore[arg-type]

    def _request_internal(self, method, url, headers, post_data, is_streaming):  # type: ignore[override]
        if getattr(self._thread_local, "session", None) is None:
            import requests

            session = requests.Session()
            session.trust_env = False
            self._thread_local.session = session
        return super()._request_internal(method, url, headers, post_data, is_streaming)


def stripe_client(api_key: str, *, api_base: str | None = None, timeout: float = 30) -> stripe.StripeClient:
    """A ``StripeClient`` for ``StripeGateway``: no retries of its own (the delivery service
    retries transient errors with backoff and records them in the ledger); through the
    environment's HTTP(S) proxy when one applies to the API host."""
    base = api_base or "https://api.stripe.com"
    parts = urlsplit(base)
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    proxy_applies = parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")
    http_client: stripe.HTTPClient = (
        _RequestsClient(timeout, proxies) if proxy_applies else _PersistentHTTPClient(timeout, base)
    )
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=0,
        http_client=http_client,
    )
