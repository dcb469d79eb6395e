"""Shared pieces of the Stripe gateway: error translation, JSON access helpers, the API call.

Errors are wrapped: ``TransientGatewayError`` (connection, timeout, rate limit, 5xx,
lock timeouts) vs ``PermanentGatewayError``; messages carry Stripe's request id, never
the API key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import stripe

from billing_pipeline.clients.errors import DeliveryError, PermanentGatewayError, TransientGatewayError
from billing_pipeline.clients.rate_limit import TokenBucket
from billing_pipeline.clients.redaction import redact


# --- error translation -------------------------------------------------------------------
def _stripe_message(exc: stripe.StripeError) -> str:
    raw = getattr(exc, "_message", None) or type(exc).__name__
    rid = f" (request {exc.request_id})" if getattr(exc, "request_id", None) else ""
    return redact(f"Stripe {type(exc).__name__}: {raw}{rid}")


def translate_stripe_error(exc: BaseException) -> DeliveryError:
    """Map a stripe (or network) exception to Transient/PermanentGatewayError."""
    if isinstance(exc, stripe.StripeError):
        status = exc.http_status
        code = exc.code or ("idempotency_error" if isinstance(exc, stripe.IdempotencyError) else None)
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


class StripeAPI:
    """The raw API call every part of ``StripeGateway`` goes through (and its settings)."""

    def __init__(self, client: Any, *, use_search: bool = True, rate_limit: TokenBucket | None = None) -> None:
        self.client = client
        self.use_search = use_search
        self.rate_limit = rate_limit  # one token per API request

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

    def _our_invoice(self, number: str, external_id: str | None) -> _Obj:
        """Our invoice in Stripe, ``payments`` and ``customer`` expanded: by id when known (checked to be
        ours), else by search on ``metadata['invoice_id']`` (which can lag a minute behind a new invoice:
        pass the id that ``sync_invoice`` returned when there is one). Not found ->
        ``PermanentGatewayError``."""
        if external_id:
            found = self._api("get", _path("invoices", external_id), {"expand": ["payments", "customer"]})
            if _get(_get(found, "metadata"), "invoice_id") != number:
                raise PermanentGatewayError(
                    f"Stripe invoice {external_id} is not invoice {number}", code="invoice_mismatch"
                )
            return found
        query = f"metadata['invoice_id']:'{_quote(number)}'"
        listed = self._api(
            "get",
            _path("invoices", "search"),
            {"query": query, "limit": 10, "expand": ["data.payments", "data.customer"]},
        )
        ours = [
            _Obj(i)
            for i in _iterate(listed)
            if _get(_get(i, "metadata"), "invoice_id") == number and _get(i, "status") != "draft"
        ]
        if not ours:
            raise PermanentGatewayError(f"invoice {number} is not in Stripe", code="invoice_not_in_gateway")
        ours.sort(key=lambda i: (_get(i, "status") == "void", -int(_get(i, "created", 0))))
        return ours[0]
