"""Payment gateway: mirror a finalized invoice into Stripe (charging comes with collections).

``StripeGateway.sync_invoice`` is safe to re-run at any point (a crashed run, a retried
step, a re-executed backfill):

1. customer: found by listing customers with the billing e-mail (read-after-write
   consistent) or, when the e-mail changed, by search ``metadata['org_id']``, else created
   with idempotency key ``cus-{org_id}``; name/e-mail updated when they changed. Customers are
   remembered for a few minutes per gateway (a batch does not look the same org up twice);
2. invoice: found by listing the customer's invoices (consistent; Stripe search can lag by
   ~1 min) and, only when the org has several customers, by search ``metadata['invoice_id']``
   (it may sit on another one); open/paid -> returned as is, draft -> reused, else created
   with key ``inv-{number}``. The list only asks for invoices created since the day before
   the period ended (ours cannot be older), so it stays short for long-lived customers. A
   customer that this very call created (its create was not an idempotent replay) has no
   invoices yet: no lookup;
3. all lines in one ``add_lines`` request (key ``lines-{number}``; metadata ``line_index``
   per line; ``tax`` for the tax line), which Stripe applies all or none. A reused draft
   (a run that died after creating it) gets only the lines it lacks (a draft this call
   created, not replayed, has none). Tax is an explicit line (not a Stripe TaxRate) so
   Stripe adds exactly our rounded amounts;
4. Stripe's total is compared with ours in minor units *before* finalizing (from the
   ``add_lines`` answer) and after; any difference raises ``GatewayTotalMismatch``;
5. finalize with key ``fin-{number}`` (``auto_advance=False``: Stripe sends no e-mail and
   attempts no charge on its own).

Idempotency keys are derived from our own ids (``{idempotency_prefix}-`` + the keys above).
Stripe keeps them 24 h; after that the metadata lookups are what prevent duplicates.
Errors are wrapped: ``TransientGatewayError`` (connection, timeout, rate limit, 5xx,
lock timeouts) vs ``PermanentGatewayError``; messages carry Stripe's request id, never
the API key.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, quote, urlsplit

import stripe

from billing_pipeline.clients.errors import (
    DeliveryError,
    GatewayTotalMismatch,
    PermanentGatewayError,
    TransientGatewayError,
)
from billing_pipeline.clients.rate_limit import TokenBucket
from billing_pipeline.clients.redaction import redact
from billing_pipeline.domain.model import Invoice, InvoiceStatus, Organization
from billing_pipeline.domain.money import to_minor

__all__ = [
    "stripe_client",
    "GatewayInvoice",
    "PaymentGateway",
    "NullGateway",
    "StripeGateway",
    "translate_stripe_error",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayInvoice:
    external_id: str | None
    number: str | None  # the gateway's own number (Stripe assigns one at finalization)
    status: str  # Stripe's status ("open", "paid", ...) or "skipped"
    total_minor: int
    currency: str  # upper-case ISO 4217
    hosted_url: str | None


@runtime_checkable
class PaymentGateway(Protocol):
    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice: ...


class NullGateway:
    """No payment provider: records nothing, every call reports ``skipped``."""

    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice:
        return GatewayInvoice(
            external_id=None,
            number=invoice.number,
            status="skipped",
            total_minor=to_minor(invoice.total, invoice.currency),
            currency=invoice.currency,
            hosted_url=None,
        )


# --- the client ---------------------------------------------------------------------------
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


# --- error translation -------------------------------------------------------------------
def _stripe_message(exc: stripe.StripeError) -> str:
    raw = getattr(exc, "_message", None) or type(exc).__name__
    rid = f" (request {exc.request_id})" if getattr(exc, "request_id", None) else ""
    return redact(f"Stripe {type(exc).__name__}: {raw}{rid}")


def translate_stripe_error(exc: BaseException) -> DeliveryError:
    """Map a stripe (or network) exception to Transient/PermanentGatewayError."""
    if isinstance(exc, stripe.StripeError):
        status = exc.http_status
        code = exc.code
        transient = (
            isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError))
            or (isinstance(exc, stripe.APIError) and (status is None or status >= 500))
            or status == 429
            or (status is not None and status >= 500)
            or code == "lock_timeout"  # 409: another request holds the object's lock
        )
        if isinstance(exc, (stripe.CardError, stripe.AuthenticationError, stripe.IdempotencyError)):
            transient = False
        cls = TransientGatewayError if transient else PermanentGatewayError
        err = cls(_stripe_message(exc), code=code, status=status)
        err.request_id = getattr(exc, "request_id", None)  # type: ignore[attr-defined]
        return err
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return TransientGatewayError(f"network error talking to Stripe: {type(exc).__name__}")
    return PermanentGatewayError(redact(f"unexpected gateway error: {type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _stripe_errors() -> Iterator[None]:
    try:
        yield
    except DeliveryError:
        raise
    except (stripe.StripeError, TimeoutError, ConnectionError) as exc:
        # 'from None': the original stripe exception can carry headers and bodies we do
        # not want in Dagster's event log; the request id is kept on the new error.
        raise translate_stripe_error(exc) from None


# --- helpers -------------------------------------------------------------------------------
def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    try:
        value = obj[key]
    except (KeyError, TypeError, AttributeError):
        return default
    return default if value is None else value


def _iterate(list_obj: Any) -> Iterator[Any]:
    """The items of a list page (the gateway asks for pages of 100 that fit one page)."""
    yield from _get(list_obj, "data", [])


class _Obj(dict):
    """A Stripe API object as plain JSON data, plus whether a create really happened now."""

    created_now = False


def _is_fresh_create(headers: Any, code: Any) -> bool:
    """True for a create that really happened now (not an idempotent replay).

    Unknown (no headers) counts as False: the caller then looks up.
    """
    try:
        items = headers.items()
    except AttributeError:
        return False
    for name, value in items:
        if str(name).lower() == "idempotent-replayed":
            return str(value).strip().lower() != "true"
    return code == 200


def _created_now(obj: Any) -> bool:
    return bool(getattr(obj, "created_now", False))


def _path(*parts: str) -> str:
    return "/v1/" + "/".join(quote(p, safe="") for p in parts)


def _quote(value: str) -> str:
    """A value inside a Stripe search query string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


class StripeGateway:
    """Stripe through a ``stripe.StripeClient`` (``client.v1.*`` services).

    Build the client with ``stripe_client(api_key)``.
    """

    #: How long a customer found or created is reused for the same org without a lookup.
    CUSTOMER_CACHE_SECONDS = 300.0

    def __init__(self, client: Any, *, use_search: bool = True, rate_limit: TokenBucket | None = None) -> None:
        self.client = client
        self.use_search = use_search
        self.rate_limit = rate_limit  # one token per API request
        self._customers: dict[str, tuple[float, Any]] = {}
        self._customers_lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_customers"] = {}
        del state["_customers_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._customers_lock = threading.Lock()

    def forget_customers(self) -> None:
        with self._customers_lock:
            self._customers.clear()

    def _cached_customer(self, org_id: str) -> Any | None:
        with self._customers_lock:
            hit = self._customers.get(org_id)
            if hit is None:
                return None
            if time.monotonic() - hit[0] > self.CUSTOMER_CACHE_SECONDS:
                del self._customers[org_id]
                return None
            return hit[1]

    def _remember_customer(self, org_id: str, customer: Any | None) -> None:
        with self._customers_lock:
            if customer is None:
                self._customers.pop(org_id, None)
            else:
                if len(self._customers) > 50_000:
                    self._customers.clear()
                self._customers[org_id] = (time.monotonic(), customer)

    def _api(self, method: str, path: str, params: dict[str, Any] | None = None, *, key: str | None = None) -> _Obj:
        """One API call through ``StripeClient.raw_request``: the answer stays plain JSON data.
        (Building stripe's typed objects from an invoice costs about as much CPU as the rest
        of the request.) Errors are stripe's usual exceptions."""
        options = {"idempotency_key": key} if key else {}
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        response = self.client.raw_request(method, path, **(params or {}), **options)
        obj = _Obj(response.data)
        obj.created_now = _is_fresh_create(getattr(response, "headers", None), getattr(response, "code", None))
        return obj

    @staticmethod
    def _key(prefix: str, key: str) -> str:
        return f"{prefix}-{key}" if prefix else key

    # customers -----------------------------------------------------------------------
    def _find_customer(self, org: Organization) -> Any | None:
        return self._lookup_customer(org)[0]

    def _lookup_customer(self, org: Organization) -> tuple[Any | None, int]:
        """(the org's oldest customer or None, how many it has).

        By listing the billing e-mail (consistent and cheap), and when that finds none (the
        e-mail changed) by search on ``metadata.org_id``. Search is never the only way: a
        customer created within the last minute may not be searchable yet.
        """
        matches: list[Any] = []
        if org.billing_email:
            listed = self._api("get", _path("customers"), {"email": org.billing_email, "limit": 100})
            matches = [c for c in _iterate(listed) if self._is_org(c, org.id)]
        if not matches and self.use_search:
            found = self._api(
                "get", _path("customers", "search"), {"query": f"metadata['org_id']:'{_quote(org.id)}'", "limit": 10}
            )
            matches = [c for c in _get(found, "data", []) if self._is_org(c, org.id)]
        if len(matches) > 1:
            log.warning("org %s has %d Stripe customers; using the oldest", org.id, len(matches))
        best = min(matches, key=lambda c: _get(c, "created", 0)) if matches else None
        return best, len(matches)

    @staticmethod
    def _is_org(customer: Any, org_id: str) -> bool:
        return _get(_get(customer, "metadata"), "org_id") == org_id and not _get(customer, "deleted", False)

    def upsert_customer(self, org: Organization, *, idempotency_prefix: str = "") -> Any:
        return self._upsert_customer(org, idempotency_prefix)[0]

    def _upsert_customer(self, org: Organization, idempotency_prefix: str) -> tuple[Any, bool, int]:
        """(customer, created by this call (no invoices yet), number of customers the org has)."""
        with _stripe_errors():
            customer = self._cached_customer(org.id)
            count = 1
            if customer is None:
                customer, count = self._lookup_customer(org)
            if customer is None:
                customer = self._api(
                    "post",
                    _path("customers"),
                    {"name": org.name, "email": org.billing_email, "metadata": {"org_id": org.id}},
                    key=self._key(idempotency_prefix, f"cus-{org.id}"),
                )
                self._remember_customer(org.id, customer)
                return customer, _created_now(customer), 1
            changes = {}
            if _get(customer, "email") != org.billing_email:
                changes["email"] = org.billing_email
            if _get(customer, "name") != org.name:
                changes["name"] = org.name
            if changes:
                customer = self._api("post", _path("customers", customer["id"]), changes)
            self._remember_customer(org.id, customer)
            return customer, False, count

    # invoices ------------------------------------------------------------------------
    def find_invoice(
        self, customer_id: str, number: str, *, search: bool = True, created_since: int | None = None
    ) -> Any | None:
        """Our invoice in Stripe by ``metadata.invoice_id``: the customer's list (consistent;
        ``created_since``: only invoices created from then on, e.g. the end of the invoiced
        period), then (``search``) search, which also finds it under another customer of the org."""
        with _stripe_errors():
            params: dict[str, Any] = {"customer": customer_id, "limit": 100}
            if created_since is not None:
                params["created"] = {"gte": created_since}
            listed = self._api("get", _path("invoices"), params)
            ours = [c for c in _iterate(listed) if self._is_ours(c, number)]
            if not ours and search and self.use_search:
                found = self._api(
                    "get",
                    _path("invoices", "search"),
                    {"query": f"metadata['invoice_id']:'{_quote(number)}'", "limit": 10},
                )
                ours = [c for c in _get(found, "data", []) if self._is_ours(c, number)]
            # Prefer a live invoice over a voided leftover.
            ours.sort(key=lambda c: (_get(c, "status") in ("void", "uncollectible"), _get(c, "created", 0)))
            return ours[0] if ours else None

    @staticmethod
    def _is_ours(stripe_invoice: Any, number: str) -> bool:
        return _get(_get(stripe_invoice, "metadata"), "invoice_id") == number

    def sync_invoice(self, invoice: Invoice, org: Organization, *, idempotency_prefix: str) -> GatewayInvoice:
        if not invoice.number or invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            raise ValueError("only finalized invoices (with a number) are synced to the gateway")
        number = invoice.number
        currency = invoice.currency.lower()
        ours = to_minor(invoice.total, invoice.currency)
        key = lambda k: self._key(idempotency_prefix, k)  # noqa: E731

        try:
            return self._sync_invoice(invoice, org, number, currency, ours, key, idempotency_prefix)
        except BaseException:
            self._remember_customer(org.id, None)  # look it up again next time
            raise

    def _sync_invoice(
        self,
        invoice: Invoice,
        org: Organization,
        number: str,
        currency: str,
        ours: int,
        key: Any,
        idempotency_prefix: str,
    ) -> GatewayInvoice:
        with _stripe_errors():
            customer, new_customer, customers = self._upsert_customer(org, idempotency_prefix)
            customer_id = customer["id"]
            # A customer created by this very call has no invoice; with several customers for
            # the org, the invoice may sit on another one (search finds it there).
            # Our invoice cannot have been created before its period ended (finalized after it).
            since = int(invoice.period_end.timestamp()) - 86400
            existing = (
                None
                if new_customer
                else self.find_invoice(customer_id, number, search=customers > 1, created_since=since)
            )
            status = _get(existing, "status")
            if existing is not None and status in ("open", "paid"):
                return self._checked(existing, number, ours, invoice.currency)
            if existing is not None and status != "draft":
                raise PermanentGatewayError(
                    f"invoice {number} exists in Stripe as {existing['id']} with status {status!r}",
                    code="unexpected_status",
                )
            if existing is None:
                params: dict[str, Any] = {
                    "customer": customer_id,
                    "currency": currency,
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "metadata": {
                        "invoice_id": number,
                        "org_id": org.id,
                        "period": f"{invoice.period_start:%Y-%m-%d}/{invoice.period_end:%Y-%m-%d}",
                    },
                }
                if org.auto_pay:
                    params["collection_method"] = "charge_automatically"
                else:
                    params["collection_method"] = "send_invoice"
                    params["days_until_due"] = org.payment_terms_days
                draft = self._api("post", _path("invoices"), params, key=key(f"inv-{number}"))
                new_draft = _created_now(draft)
            else:
                draft = existing
                new_draft = False
            draft_id = draft["id"]

            items = [(str(i), line.description, line.amount) for i, line in enumerate(invoice.lines)]
            if invoice.tax:
                rate = f"{(invoice.tax_rate * 100).normalize():f}%"
                items.append(("tax", f"Tax ({rate})", invoice.tax))
            present = set() if new_draft else self._line_indexes(draft, number)
            missing = [item for item in items if item[0] not in present]
            current = draft
            if missing:
                period = {"start": int(invoice.period_start.timestamp()), "end": int(invoice.period_end.timestamp())}
                lines = [
                    {
                        "amount": to_minor(amount, invoice.currency),
                        "description": description[:500],
                        "period": period,
                        "metadata": {"invoice_id": number, "line_index": index},
                    }
                    for index, description, amount in missing
                ]
                # All lines in one request, all or none; a resumed draft gets only the missing ones.
                suffix = "" if len(missing) == len(items) else "-" + ".".join(i for i, _, _ in missing)
                current = self._api(
                    "post",
                    _path("invoices", draft_id, "add_lines"),
                    {"lines": lines},
                    key=key(f"lines-{number}{suffix}"),
                )
            # Refuse to finalize an invoice whose total is not ours.
            self._checked(current, number, ours, invoice.currency)
            final = self._api(
                "post", _path("invoices", draft_id, "finalize"), {"auto_advance": False}, key=key(f"fin-{number}")
            )
            return self._checked(final, number, ours, invoice.currency)

    def _line_indexes(self, draft: Any, number: str) -> set[str]:
        """``line_index`` of the lines of ours already on a draft (its embedded page, else listed)."""
        embedded = _get(draft, "lines")
        pages = [embedded] if embedded is not None and not _get(embedded, "has_more", False) else None
        if pages is None:
            pages = [self._api("get", _path("invoices", draft["id"], "lines"), {"limit": 100})]
        return {
            _get(_get(line, "metadata"), "line_index")
            for page in pages
            for line in _iterate(page)
            if _get(_get(line, "metadata"), "invoice_id") == number
        }

    @staticmethod
    def _checked(stripe_invoice: Any, number: str, ours: int, currency: str) -> GatewayInvoice:
        theirs = int(_get(stripe_invoice, "total", 0))
        their_currency = str(_get(stripe_invoice, "currency", "")).upper()
        if theirs != ours or their_currency != currency.upper():
            raise GatewayTotalMismatch(number, ours, theirs, f"{currency}/{their_currency}")
        return GatewayInvoice(
            external_id=stripe_invoice["id"],
            number=_get(stripe_invoice, "number"),
            status=_get(stripe_invoice, "status", ""),
            total_minor=theirs,
            currency=their_currency,
            hosted_url=_get(stripe_invoice, "hosted_invoice_url"),
        )
