"""A Stripe-compatible HTTP server for tests, driven by the official ``stripe`` library.

    with StripeServer() as srv:
        client = srv.client()                       # stripe.StripeClient pointed at srv
        cus = client.v1.customers.create(params={"email": "a@example.com"})
        # or the global style:  stripe.api_key = srv.api_key; stripe.api_base = srv.api_base

What it implements (API version agnostic, shapes follow the current API):

* customers: create / retrieve / update / list (email filter) / search / delete
* invoiceitems: create (``amount`` or ``quantity``/``quantity_decimal`` + ``unit_amount_decimal``
  or ``price_data``), retrieve / update / delete / list (customer, invoice, pending)
* invoices: create / retrieve / update / delete (drafts) / list / search,
  ``lines``, ``add_lines`` (all or none), ``finalize``, ``pay``, ``send``, ``void``, ``mark_uncollectible``
* payment_intents: retrieve (created by ``pay``)
* Idempotency-Key semantics as documented by Stripe (replay with ``Idempotent-Replayed: true``,
  ``idempotency_error`` on reuse with other parameters or another endpoint, 409 while in flight;
  validation errors are not saved; 402s and 500s are).
* auth (Bearer or Basic, unknown key -> 401), unknown parameters -> 400 ``parameter_unknown``.
* fault injection: ``fail_next``, ``down``/``up``, ``latency``; a request log and ``count()``.

Simplifications (documented, deliberate):

* No time passes on its own: ``auto_advance`` never finalizes or charges anything; call
  ``finalize``/``pay`` explicitly (like a test clock that never advances).
* Payment: the payment method is taken from ``pay(payment_method=...)``, the invoice's
  ``default_payment_method``, the customer's ``invoice_settings.default_payment_method``, or a
  customer metadata value that is a Stripe test token (``metadata[test_payment_method]``).
  Stripe test tokens ``pm_card_chargeDeclined*`` decline with 402 ``card_error``; any other
  token succeeds.  A customer without any payment method is charged successfully unless the
  server was created with ``require_payment_method=True`` (then 400).
* ``quantity x unit_amount_decimal`` is rounded half-up to an integer amount (``ROUNDING``).
* Finalizing an invoice whose total is 0 marks it ``paid`` (as Stripe does).  Paying or sending a
  draft finalizes it first.  No taxes, discounts, credit balance, events or webhooks.
* Search is read-after-write consistent unless ``search_delay`` seconds is set (real Stripe
  search lags by up to a minute).
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, NamedTuple

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ._util import LOCALHOST, free_port, registry
from .wsgi import KeepAliveWSGIServer

ROUNDING = ROUND_HALF_UP
DEFAULT_API_VERSION = "2026-10-28.endive"
_ALNUM = string.ascii_letters + string.digits
_ids = random.Random(secrets.randbits(64))  # object ids: unique enough, and cheap (no syscall per character)


def _rand_id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(_ids.choices(_ALNUM, k=n))


class RequestRecord(NamedTuple):
    method: str
    path: str
    idempotency_key: str | None


class StripeHTTPError(Exception):
    """An error response in Stripe's shape.  ``saved`` = kept by the idempotency layer."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
        saved: bool | None = None,
        headers: dict | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param
        self.body.update(extra)
        # validation errors (400/404) happen before the endpoint executes => not saved
        self.saved = saved if saved is not None else status not in (400, 401, 404, 409, 429)
        self.headers = headers or {}


def invalid(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> StripeHTTPError:
    return StripeHTTPError(status, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, id_: str, param: str = "id") -> StripeHTTPError:
    return StripeHTTPError(
        404, "invalid_request_error", f"No such {kind}: '{id_}'", code="resource_missing", param=param
    )


# --------------------------------------------------------------------------- params
def parse_form(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracket notation (``metadata[k]=v``, ``expand[0]=x``, ``a[b][c]=d``)."""
    root: dict[str, Any] = {}
    for key, value in items:
        m = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not m:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # a[]=x -> append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[part] = nxt
                node = nxt
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
        return node
    return node


def _int(params: dict, name: str, default: Any = None, *, minimum: int | None = None) -> Any:
    if name not in params or params[name] is None:
        return default
    v = params[name]
    try:
        i = int(v)
        if str(i) != str(v).strip().lstrip("+"):
            raise ValueError
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {v}", param=name) from None
    if minimum is not None and i < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", param=name)
    return i


def _decimal(params: dict, name: str, default: Any = None) -> Any:
    if name not in params or params[name] in (None, ""):
        return default
    try:
        d = Decimal(str(params[name]))
        if not d.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise invalid(f"Invalid decimal: {params[name]}", param=name) from None
    return d


def _bool(params: dict, name: str, default: Any = None) -> Any:
    if name not in params:
        return default
    v = str(params[name]).lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise invalid(f"Invalid boolean: {params[name]}", param=name)


def _enum(params: dict, name: str, allowed: tuple[str, ...], default: Any = None) -> Any:
    if name not in params:
        return default
    v = params[name]
    if v not in allowed:
        raise invalid(f"Invalid {name}: must be one of {', '.join(allowed)}", param=name)
    return v


def _str(params: dict, name: str, default: Any = None) -> Any:
    if name not in params:
        return default
    v = params[name]
    if isinstance(v, (dict, list)):
        raise invalid(f"Invalid string: {name}", param=name)
    return v if v != "" else None


def _check_known(params: dict, allowed: set[str]) -> None:
    for k in params:
        if k not in allowed and k != "expand":
            raise invalid(f"Received unknown parameter: {k}", param=k, code="parameter_unknown")


def _apply_metadata(current: dict, new: Any, param: str = "metadata") -> dict:
    if new is None:
        return current
    if new == "":
        return {}
    if not isinstance(new, dict):
        raise invalid("Invalid object", param=param)
    out = dict(current)
    for k, v in new.items():
        if len(k) > 40:
            raise invalid("Metadata keys can have up to 40 characters.", param=f"{param}[{k}]")
        if v == "" or v is None:
            out.pop(k, None)
        else:
            if len(str(v)) > 500:
                raise invalid("Metadata values can have up to 500 characters.", param=f"{param}[{k}]")
            out[k] = str(v)
    if len(out) > 50:
        raise invalid("Metadata can have up to 50 keys.", param=param)
    return out


# --------------------------------------------------------------------------- search
_CLAUSE_RE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>[a-z_]+)(?:\[(?:'(?P<k1>[^']*)'|"(?P<k2>[^"]*)")\])?\s*"""
    r"""(?P<op>>=|<=|:|~|>|<)\s*"""
    r"""(?:'(?P<v1>(?:[^'\\]|\\.)*)'|"(?P<v2>(?:[^"\\]|\\.)*)"|(?P<num>-?\d+(?:\.\d+)?)|(?P<null>null))"""
)
_JOIN_RE = re.compile(r"\s+(AND|OR)\s+|\s+(?=-?[a-z_]+[\[:~<>])")


def parse_search(query: str, fields: set[str], resource: str) -> tuple[str, list[dict]]:
    if not query or not query.strip():
        raise invalid("Missing required param: query.", param="query")
    pos, clauses, joins = 0, [], set()
    q = query.strip()
    while True:
        m = _CLAUSE_RE.match(q, pos)
        if not m:
            raise invalid(
                f"We were unable to parse your search query. Error near: '{q[pos : pos + 20]}'", param="query"
            )
        field = m.group("field")
        if field not in fields:
            raise invalid(
                f"Field `{field}` is an unsupported search field for resource `{resource}`. "
                f"See http://stripe.com/docs/search#query-fields-for-{resource} for a list of supported fields.",
                param="query",
            )
        key = m.group("k1") if m.group("k1") is not None else m.group("k2")
        if field == "metadata" and key is None:
            raise invalid("metadata must be queried as metadata['key']", param="query")
        value: Any
        if m.group("null"):
            value = None
        elif m.group("num") is not None:
            value = Decimal(m.group("num"))
        else:
            raw = m.group("v1") if m.group("v1") is not None else m.group("v2")
            value = re.sub(r"\\(.)", r"\1", raw)
        if m.group("op") == "~" and (not isinstance(value, str) or len(value) < 3):
            raise invalid("Substring matching (~) requires a string of at least 3 characters.", param="query")
        clauses.append({"neg": bool(m.group("neg")), "field": field, "key": key, "op": m.group("op"), "value": value})
        pos = m.end()
        if pos >= len(q):
            break
        j = _JOIN_RE.match(q, pos)
        if not j:
            raise invalid(
                f"We were unable to parse your search query. Error near: '{q[pos : pos + 20]}'", param="query"
            )
        joins.add(j.group(1) or "AND")
        pos = j.end()
    if len(joins) > 1:
        raise invalid("Search queries cannot mix AND and OR.", param="query")
    if len(clauses) > 10:
        raise invalid("Search queries can have at most 10 clauses.", param="query")
    return (joins.pop() if joins else "AND"), clauses


def _clause_matches(obj: dict, c: dict) -> bool:
    if c["field"] == "metadata":
        actual = (obj.get("metadata") or {}).get(c["key"])
        case_sensitive = True
    else:
        actual = obj.get(c["field"])
        case_sensitive = False
    v = c["value"]
    op = c["op"]
    if v is None:
        res = actual is None
    elif op in (">", "<", ">=", "<="):
        try:
            a = Decimal(str(actual))
            b = Decimal(str(v))
        except (InvalidOperation, TypeError):
            return False
        res = {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
    elif actual is None:
        res = False
    else:
        a, b = str(actual), str(v)
        if isinstance(v, Decimal):
            try:
                res = Decimal(a) == v
            except InvalidOperation:
                res = False
        else:
            if not case_sensitive:
                a, b = a.lower(), b.lower()
            res = (b in a) if op == "~" else (a == b)
    return not res if c["neg"] else res


# --------------------------------------------------------------------------- test cards
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_visa_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedFraudulent": ("card_declined", "fraudulent", "Your card was declined."),
    "pm_card_chargeDeclinedLostCard": ("card_declined", "lost_card", "Your card was declined."),
    "pm_card_chargeDeclinedStolenCard": ("card_declined", "stolen_card", "Your card was declined."),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "pm_card_chargeDeclinedProcessingError": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}


class _Fault(NamedTuple):
    status: int | None
    path_prefix: str | None
    method: str | None
    after: bool
    disconnect: bool
    should_retry: bool | None


# --------------------------------------------------------------------------- server
class StripeServer:
    """In-memory Stripe API emulation served on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_local",
        extra_api_keys: tuple[str, ...] = (),
        port: int | None = None,
        require_payment_method: bool = False,
        search_delay: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.api_keys = {api_key, *extra_api_keys}
        self.host = LOCALHOST
        self._requested_port = port
        self.port: int | None = None
        self.require_payment_method = require_payment_method
        self.search_delay = search_delay
        self.clock = clock
        self.latency = 0.0  # seconds slept before handling each request
        self.startup_seconds: float | None = None
        self._server: KeepAliveWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._inflight_lock = threading.Lock()
        self._inflight: set[tuple[str, str]] = set()
        self._url_map = self._build_routes()
        self._down_mode: str | None = None
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StripeServer:
        if self._server is not None:
            return self
        t0 = time.monotonic()
        self.port = self._requested_port or self.port or free_port()
        self._serve()
        registry.add(self)
        self.startup_seconds = time.monotonic() - t0
        return self

    def _serve(self) -> None:
        last: OSError | None = None
        for _ in range(5):
            try:
                self._server = KeepAliveWSGIServer(self.host, self.port, self._wsgi)
                break
            except OSError as e:  # port taken meanwhile
                last = e
                if self._requested_port:
                    raise
                self.port = free_port()
        else:
            raise RuntimeError(f"could not bind the Stripe server: {last}")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"stripe-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        self._down_mode = None
        self._close_listener()
        registry.remove(self)

    def __enter__(self) -> StripeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every object, idempotency key, fault and logged request."""
        with self._lock:
            if not hasattr(self, "customers"):
                self.customers: dict[str, dict] = {}
                self.invoiceitems: dict[str, dict] = {}
                self.invoices: dict[str, dict] = {}
                self.payment_intents: dict[str, dict] = {}
                self.requests: list[RequestRecord] = []
                self.request_log: list[dict] = []
                self.sent_invoices: list[str] = []
                self._idempotency: dict[tuple[str, str], dict] = {}
                self._faults: list[_Fault] = []
                # customers by e-mail and by metadata value, so that listing by e-mail and searching
                # by metadata do not scan every customer (Stripe's own lookups are indexed too)
                self._cust_index: dict[tuple, set[str]] = {}
                self._cust_index_keys: dict[str, set[tuple]] = {}
            for container in (
                self.customers,
                self.invoiceitems,
                self.invoices,
                self.payment_intents,
                self.requests,
                self.request_log,
                self.sent_invoices,
                self._idempotency,
                self._faults,
                self._cust_index,
                self._cust_index_keys,
            ):
                container.clear()  # in place: references held by tests stay valid
            self._seq = 0
            self.latency = 0.0
        if self._down_mode is not None:
            self.up()

    # ------------------------------------------------------------------ client helpers
    def client(self, **kwargs):
        """A ``stripe.StripeClient`` for this server (``max_network_retries`` defaults to 0)."""
        import stripe

        kwargs.setdefault("max_network_retries", 0)
        return stripe.StripeClient(kwargs.pop("api_key", self.api_key), base_addresses={"api": self.api_base}, **kwargs)

    def configure_stripe_module(self):
        """Point the global ``stripe`` module at this server; returns a function that restores it."""
        import stripe

        saved = (stripe.api_key, stripe.api_base, stripe.max_network_retries)
        stripe.api_key, stripe.api_base = self.api_key, self.api_base

        def restore() -> None:
            stripe.api_key, stripe.api_base, stripe.max_network_retries = saved

        return restore

    # ------------------------------------------------------------------ fault injection
    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        after: bool = False,
        disconnect: bool = False,
        should_retry: bool | None = None,
    ) -> None:
        """Make the next *n* matching requests fail.

        status: 500/503 (``api_error``), 429 (``rate_limit``), 409 (``lock_timeout``) or any code.
        path_prefix / method: only requests whose path starts with it (e.g. ``/v1/invoices``).
        after=True: execute the request first (state changes, result saved under its
          Idempotency-Key) and then answer with the error: a response lost on the way back.
        disconnect=True: close the connection instead of answering (client sees a network error).
        should_retry: send ``Stripe-Should-Retry: true/false`` with the error.
        """
        with self._lock:
            for _ in range(n):
                self._faults.append(
                    _Fault(status, path_prefix, method.upper() if method else None, after, disconnect, should_retry)
                )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def down(self, mode: str = "503") -> None:
        """Simulate an outage: ``mode="503"`` answers 503 to everything, ``"refuse"`` closes the port."""
        if mode not in ("503", "refuse"):
            raise ValueError("mode must be '503' or 'refuse'")
        self._down_mode = mode
        if mode == "refuse":
            self._close_listener()

    def up(self) -> None:
        mode, self._down_mode = self._down_mode, None
        if mode == "refuse" or (self._server is None and self.port):
            self._serve()

    def expire_idempotency_keys(self) -> None:
        """Forget saved idempotent responses (what Stripe does after 24 h)."""
        with self._lock:
            self._idempotency.clear()

    # ------------------------------------------------------------------ inspection
    def count(self, kind: str, **filters: Any) -> int:
        """Number of stored objects of *kind* (customers, invoiceitems, invoices, payment_intents,
        requests), optionally filtered by top-level fields, e.g. ``count("invoices", status="paid")``."""
        with self._lock:
            if kind == "requests":
                return len(self.requests)
            store = self._store(kind)
            objs = [self._render(kind, o) for o in store.values()] if filters else list(store.values())
            return sum(1 for o in objs if all(o.get(k) == v for k, v in filters.items()))

    def objects(self, kind: str) -> list[dict]:
        with self._lock:
            return [self._render(kind, o) for o in self._store(kind).values()]

    def get(self, obj_id: str) -> dict:
        with self._lock:
            for kind in ("customers", "invoiceitems", "invoices", "payment_intents"):
                if obj_id in self._store(kind):
                    return self._render(kind, self._store(kind)[obj_id])
        raise KeyError(obj_id)

    def _store(self, kind: str) -> dict[str, dict]:
        stores = {
            "customers": self.customers,
            "invoiceitems": self.invoiceitems,
            "invoices": self.invoices,
            "payment_intents": self.payment_intents,
        }
        if kind not in stores:
            raise ValueError(f"unknown kind {kind!r}; one of {sorted(stores)} or 'requests'")
        return stores[kind]

    # ------------------------------------------------------------------ WSGI plumbing
    def _build_routes(self) -> Map:
        r = [
            Rule("/v1/customers", methods=["POST"], endpoint="customer_create"),
            Rule("/v1/customers", methods=["GET"], endpoint="customer_list"),
            Rule("/v1/customers/search", methods=["GET"], endpoint="customer_search"),
            Rule("/v1/customers/<id_>", methods=["GET"], endpoint="customer_retrieve"),
            Rule("/v1/customers/<id_>", methods=["POST"], endpoint="customer_update"),
            Rule("/v1/customers/<id_>", methods=["DELETE"], endpoint="customer_delete"),
            Rule("/v1/invoiceitems", methods=["POST"], endpoint="invoiceitem_create"),
            Rule("/v1/invoiceitems", methods=["GET"], endpoint="invoiceitem_list"),
            Rule("/v1/invoiceitems/<id_>", methods=["GET"], endpoint="invoiceitem_retrieve"),
            Rule("/v1/invoiceitems/<id_>", methods=["POST"], endpoint="invoiceitem_update"),
            Rule("/v1/invoiceitems/<id_>", methods=["DELETE"], endpoint="invoiceitem_delete"),
            Rule("/v1/invoices", methods=["POST"], endpoint="invoice_create"),
            Rule("/v1/invoices", methods=["GET"], endpoint="invoice_list"),
            Rule("/v1/invoices/search", methods=["GET"], endpoint="invoice_search"),
            Rule("/v1/invoices/<id_>", methods=["GET"], endpoint="invoice_retrieve"),
            Rule("/v1/invoices/<id_>", methods=["POST"], endpoint="invoice_update"),
            Rule("/v1/invoices/<id_>", methods=["DELETE"], endpoint="invoice_delete"),
            Rule("/v1/invoices/<id_>/lines", methods=["GET"], endpoint="invoice_lines"),
            Rule("/v1/invoices/<id_>/finalize", methods=["POST"], endpoint="invoice_finalize"),
            Rule("/v1/invoices/<id_>/add_lines", methods=["POST"], endpoint="invoice_add_lines"),
            Rule("/v1/invoices/<id_>/pay", methods=["POST"], endpoint="invoice_pay"),
            Rule("/v1/invoices/<id_>/send", methods=["POST"], endpoint="invoice_send"),
            Rule("/v1/invoices/<id_>/void", methods=["POST"], endpoint="invoice_void"),
            Rule("/v1/invoices/<id_>/mark_uncollectible", methods=["POST"], endpoint="invoice_mark_uncollectible"),
            Rule("/v1/payment_intents/<id_>", methods=["GET"], endpoint="payment_intent_retrieve"),
            Rule("/_hosted/invoices/<id_>", methods=["GET"], endpoint="hosted_invoice"),
            Rule("/_hosted/invoices/<id_>/pdf", methods=["GET"], endpoint="hosted_invoice_pdf"),
        ]
        return Map(r, strict_slashes=False)

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self._handle(request)
        except _Disconnect:
            sock = environ.get("werkzeug.socket")
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            response = Response(b"", status=500, headers={"Connection": "close"})
        return response(environ, start_response)

    def _json(self, status: int, body: Any, headers: dict | None = None, version: str | None = None) -> Response:
        h = {
            "Request-Id": _rand_id("req_", 14),
            "Stripe-Version": version or DEFAULT_API_VERSION,
            "Cache-Control": "no-cache, no-store",
            "Access-Control-Allow-Origin": "*",
        }
        h.update(headers or {})
        return Response(json.dumps(body, separators=(",", ":")), status=status, headers=h, mimetype="application/json")

    def _error(self, e: StripeHTTPError, version: str | None = None) -> Response:
        return self._json(e.status, {"error": e.body}, e.headers, version)

    def _handle(self, request: Request) -> Response:
        method, path = request.method.upper(), request.path
        idem_key = request.headers.get("Idempotency-Key")
        version = request.headers.get("Stripe-Version")
        record = {
            "method": method,
            "path": path,
            "idempotency_key": idem_key,
            "stripe_version": version,
            "time": self.clock(),
            "status": None,
            "replayed": False,
            "fault": None,
        }
        with self._lock:
            self.requests.append(RequestRecord(method, path, idem_key))
            self.request_log.append(record)

        def done(resp: Response) -> Response:
            record["status"] = resp.status_code
            return resp

        if self._down_mode == "refuse":
            record["fault"] = "refused"
            raise _Disconnect()
        if self._down_mode == "503":
            record["fault"] = "down"
            return done(self._error(StripeHTTPError(503, "api_error", "Service unavailable (server.down())."), version))

        if path.startswith("/_hosted/"):
            return done(self._dispatch_hosted(request))

        # ---- auth
        api_key = self._authenticate(request)
        if isinstance(api_key, StripeHTTPError):
            return done(self._error(api_key, version))

        # ---- routing
        try:
            endpoint, args = self._url_map.bind_to_environ(request.environ).match(path, method=method)
        except (NotFound, MethodNotAllowed):
            return done(
                self._error(
                    invalid(
                        f"Unrecognized request URL ({method}: {path}). "
                        "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                        status=404,
                    ),
                    version,
                )
            )
        except HTTPException as e:  # pragma: no cover
            return done(self._error(invalid(str(e), status=404), version))

        # ---- parameters
        try:
            if method == "POST":
                ctype = request.mimetype
                if ctype and ctype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
                    raise invalid(
                        f"Invalid request: unsupported Content-Type {ctype}. If error persists and you "
                        f"need assistance, please contact support@stripe.com."
                    )
                pairs = list(request.form.items(multi=True))
                if request.args:
                    pairs = list(request.args.items(multi=True)) + pairs
            else:
                pairs = list(request.args.items(multi=True))
            params = parse_form(pairs)
        except StripeHTTPError as e:
            return done(self._error(e, version))

        # ---- injected faults (before execution)
        fault = self._take_fault(method, path)
        if fault and not fault.after:
            record["fault"] = "disconnect" if fault.disconnect else fault.status
            if fault.disconnect:
                raise _Disconnect()
            return done(self._fault_response(fault, version))

        # ---- idempotency (POST only, like Stripe)
        use_idem = method == "POST" and idem_key is not None
        if use_idem:
            if len(idem_key) > 255:
                return done(
                    self._error(
                        invalid("Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key"),
                        version,
                    )
                )
            store_key = (api_key, idem_key)
            fingerprint = sorted(pairs)
            with self._lock:
                saved = self._idempotency.get(store_key)
            if saved is not None:
                if saved["path"] != path or saved["method"] != method:
                    return done(
                        self._error(
                            StripeHTTPError(
                                400,
                                "idempotency_error",
                                "Keys for idempotent requests can only be used for the same endpoint they were "
                                f"first used for ('{saved['method']} {saved['path']}' vs '{method} {path}'). "
                                f"Try using a key other than '{idem_key}' if you meant to execute a different request.",
                            ),
                            version,
                        )
                    )
                if saved["fingerprint"] != fingerprint:
                    return done(
                        self._error(
                            StripeHTTPError(
                                400,
                                "idempotency_error",
                                "Keys for idempotent requests can only be used with the same parameters they "
                                f"were first used with. Try using a key other than '{idem_key}' if you meant to "
                                "execute a different request.",
                            ),
                            version,
                        )
                    )
                record["replayed"] = True
                headers = {
                    "Idempotent-Replayed": "true",
                    "Original-Request": saved["request_id"],
                    "Idempotency-Key": idem_key,
                }
                resp = self._json(saved["status"], saved["body"], headers, version)
                if fault and fault.after:  # pragma: no cover - unusual combination
                    return done(self._fault_response(fault, version))
                return done(resp)
            with self._inflight_lock:
                if store_key in self._inflight:
                    return done(
                        self._error(
                            StripeHTTPError(
                                409,
                                "idempotency_error",
                                "There is currently another in-progress request using this Stripe-Idempotency-Key. "
                                "Please try again later.",
                                code="idempotency_key_in_use",
                            ),
                            version,
                        )
                    )
                self._inflight.add(store_key)
        try:
            if self.latency:  # simulated processing time (an in-flight idempotent request answers 409 meanwhile)
                time.sleep(self.latency)
            status, body, saved_flag, extra_headers = self._execute(endpoint, args, params)
            resp = self._json(status, body, extra_headers, version)
            if use_idem:
                resp.headers["Idempotency-Key"] = idem_key
                if saved_flag:
                    with self._lock:
                        self._idempotency[(api_key, idem_key)] = {
                            "method": method,
                            "path": path,
                            "fingerprint": fingerprint,
                            "status": status,
                            "body": body,
                            "request_id": resp.headers["Request-Id"],
                        }
        finally:
            if use_idem:
                with self._inflight_lock:
                    self._inflight.discard((api_key, idem_key))
        if fault and fault.after:
            record["fault"] = ("disconnect" if fault.disconnect else fault.status, "after")
            if fault.disconnect:
                raise _Disconnect()
            return done(self._fault_response(fault, version))
        return done(resp)

    def _execute(self, endpoint: str, args: dict, params: dict) -> tuple[int, Any, bool, dict]:
        handler = getattr(self, "_h_" + endpoint)
        with self._lock:
            try:
                body = handler(params, **args)
                return 200, body, True, {}
            except StripeHTTPError as e:
                return e.status, {"error": e.body}, e.saved, e.headers
            except Exception as e:  # an emulator bug: surface like Stripe's 500 (and save it, as Stripe does)
                return 500, {"error": {"type": "api_error", "message": f"Internal emulator error: {e!r}"}}, True, {}

    def _authenticate(self, request: Request) -> str | StripeHTTPError:
        auth = request.headers.get("Authorization", "")
        key = None
        if auth.startswith("Bearer "):
            key = auth[7:].strip()
        elif auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except Exception:
                key = ""
        if not key:
            return StripeHTTPError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#"
                "authentication for details, or we can help at https://support.stripe.com/.",
            )
        if key not in self.api_keys:
            masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)
            return StripeHTTPError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")
        return key

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if (f.path_prefix is None or path.startswith(f.path_prefix)) and (
                    f.method is None or f.method == method
                ):
                    return self._faults.pop(i)
        return None

    def _fault_response(self, f: _Fault, version: str | None) -> Response:
        status = f.status or 500
        headers = {}
        if f.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if f.should_retry else "false"
        if status == 429:
            err = StripeHTTPError(
                429,
                "invalid_request_error",
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                headers=headers,
            )
        elif status == 409:
            err = StripeHTTPError(
                409,
                "invalid_request_error",
                "This object cannot be accessed right now because another API request or Stripe "
                "process is currently accessing it.",
                code="lock_timeout",
                headers=headers,
            )
        elif status >= 500:
            err = StripeHTTPError(
                status, "api_error", f"Injected fault: HTTP {status} (server.fail_next).", headers=headers
            )
        else:
            err = StripeHTTPError(status, "invalid_request_error", f"Injected fault: HTTP {status}.", headers=headers)
        return self._error(err, version)

    def _dispatch_hosted(self, request: Request) -> Response:
        m = re.match(r"^/_hosted/invoices/([^/]+)(/pdf)?$", request.path)
        inv = self.invoices.get(m.group(1)) if m else None
        if inv is None or inv["status"] == "draft":
            return Response("Not found", status=404)
        view = self._render("invoices", inv)
        if m.group(2):
            text = f"Invoice {view['number']} total {view['total']} {view['currency']}"
            pdf = _tiny_pdf(text)
            return Response(pdf, mimetype="application/pdf")
        return Response(
            f"<html><body><h1>Invoice {view['number']}</h1><p>Amount due: {view['amount_due']} "
            f"{view['currency']}</p><p>Status: {view['status']}</p></body></html>",
            mimetype="text/html",
        )

    # ------------------------------------------------------------------ generic helpers
    def _now(self) -> int:
        return int(self.clock())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new(self, obj: dict) -> dict:
        obj["_seq"] = self._next_seq()
        obj["_mono"] = time.monotonic()
        return obj

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _render(self, kind: str, obj: dict) -> dict:
        if kind == "invoices":
            return self._render_invoice(obj)
        return self._public(obj)

    def _list(self, kind: str, objs: list[dict], params: dict, url: str) -> dict:
        limit = _int(params, "limit", 10, minimum=1)
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", param="limit")
        objs = sorted(objs, key=lambda o: o["_seq"], reverse=True)  # newest first, like Stripe
        created = params.get("created")
        if created is not None:
            objs = [o for o in objs if _created_match(o.get("created"), created)]
        sa, eb = params.get("starting_after"), params.get("ending_before")
        if sa and eb:
            raise invalid("You may only specify one of these parameters: ending_before, starting_after.")
        store = self._store(kind)
        if sa:
            if sa not in store:
                raise missing(kind.rstrip("s"), sa, param="starting_after")
            seq = store[sa]["_seq"]
            objs = [o for o in objs if o["_seq"] < seq]
            page, has_more = objs[:limit], len(objs) > limit
        elif eb:
            if eb not in store:
                raise missing(kind.rstrip("s"), eb, param="ending_before")
            seq = store[eb]["_seq"]
            objs = [o for o in objs if o["_seq"] > seq]
            page, has_more = objs[-limit:], len(objs) > limit
        else:
            page, has_more = objs[:limit], len(objs) > limit
        return {"object": "list", "data": [self._render(kind, o) for o in page], "has_more": has_more, "url": url}

    def _search(self, kind: str, params: dict, fields: set[str], url: str) -> dict:
        _check_known(params, {"query", "limit", "page"})
        limit = _int(params, "limit", 10, minimum=1)
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", param="limit")
        join, clauses = parse_search(params.get("query", ""), fields, kind)
        cutoff = time.monotonic() - self.search_delay
        combine = all if join == "AND" else any
        # Match on the stored objects (same field names; invoices need their computed totals) and
        # copy only the hits: copying every object per search made it O(objects) deep copies.
        view = self._render_invoice if kind == "invoices" else (lambda o: o)
        candidates: Any = self._store(kind).values()
        if kind == "customers" and (join == "AND" or len(clauses) == 1):
            exact = [
                c
                for c in clauses
                if c["field"] == "metadata" and c["op"] == ":" and not c["neg"] and isinstance(c["value"], str)
            ]
            if exact:
                candidates = self._customers_with(("meta", exact[0]["key"], exact[0]["value"]))
        found = [
            o for o in candidates if o["_mono"] <= cutoff and combine(_clause_matches(view(o), c) for c in clauses)
        ]
        found.sort(key=lambda o: o["_seq"], reverse=True)
        hits = [self._render(kind, o) for o in found]
        offset = 0
        if params.get("page"):
            try:
                offset = int(base64.urlsafe_b64decode(params["page"].encode()).decode().split(":", 1)[1])
            except Exception:
                raise invalid("Invalid page token.", param="page") from None
        page = hits[offset : offset + limit]
        has_more = len(hits) > offset + limit
        next_page = base64.urlsafe_b64encode(f"page:{offset + limit}".encode()).decode() if has_more else None
        return {"object": "search_result", "data": page, "has_more": has_more, "next_page": next_page, "url": url}

    # ------------------------------------------------------------------ customers
    _CUSTOMER_PARAMS = {
        "address",
        "balance",
        "description",
        "email",
        "invoice_prefix",
        "invoice_settings",
        "metadata",
        "name",
        "next_invoice_sequence",
        "payment_method",
        "phone",
        "preferred_locales",
        "shipping",
        "source",
        "tax",
        "tax_exempt",
        "tax_id_data",
        "test_clock",
        "cash_balance",
        "business_name",
        "individual_name",
    }

    def _customer(self, id_: str, param: str = "id") -> dict:
        c = self.customers.get(id_)
        if c is None or c.get("deleted"):
            raise missing("customer", id_, param)
        return c

    def _h_customer_create(self, params: dict) -> dict:
        _check_known(params, self._CUSTOMER_PARAMS)
        prefix = _str(params, "invoice_prefix") or "".join(
            random.choice(string.ascii_uppercase + string.digits) for _ in range(8)
        )
        if not re.fullmatch(r"[A-Z0-9]{3,12}", prefix):
            raise invalid("Invoice prefix must be 3-12 uppercase letters or numbers.", param="invoice_prefix")
        c = self._new(
            {
                "id": _rand_id("cus_", 14),
                "object": "customer",
                "address": params.get("address") or None,
                "balance": _int(params, "balance", 0),
                "created": self._now(),
                "currency": None,
                "default_source": None,
                "delinquent": False,
                "description": _str(params, "description"),
                "discount": None,
                "email": _str(params, "email"),
                "invoice_prefix": prefix,
                "invoice_settings": {
                    "custom_fields": None,
                    "default_payment_method": None,
                    "footer": None,
                    "rendering_options": None,
                },
                "livemode": False,
                "metadata": _apply_metadata({}, params.get("metadata")),
                "name": _str(params, "name"),
                "next_invoice_sequence": _int(params, "next_invoice_sequence", 1, minimum=1),
                "phone": _str(params, "phone"),
                "preferred_locales": params.get("preferred_locales") or [],
                "shipping": params.get("shipping") or None,
                "tax_exempt": params.get("tax_exempt", "none"),
                "test_clock": None,
                "_payment_methods": [],
            }
        )
        self._apply_customer_pm(c, params)
        self.customers[c["id"]] = c
        self._index_customer(c)
        return self._public(c)

    def _apply_customer_pm(self, c: dict, params: dict) -> None:
        if params.get("payment_method"):
            c["_payment_methods"].append(params["payment_method"])
        if params.get("source"):
            c["default_source"] = params["source"]
        inv_settings = params.get("invoice_settings")
        if inv_settings is not None:
            if not isinstance(inv_settings, dict):
                raise invalid("Invalid object", param="invoice_settings")
            for k, v in inv_settings.items():
                if k not in c["invoice_settings"]:
                    raise invalid(
                        f"Received unknown parameter: invoice_settings[{k}]",
                        param=f"invoice_settings[{k}]",
                        code="parameter_unknown",
                    )
                c["invoice_settings"][k] = v if v != "" else None

    def _h_customer_retrieve(self, params: dict, id_: str) -> dict:
        c = self.customers.get(id_)
        if c is None:
            raise missing("customer", id_)
        if c.get("deleted"):
            return {"id": id_, "object": "customer", "deleted": True}
        return self._public(c)

    def _h_customer_update(self, params: dict, id_: str) -> dict:
        _check_known(
            params, self._CUSTOMER_PARAMS - {"payment_method", "test_clock", "tax_id_data"} | {"default_source"}
        )
        c = self._customer(id_)
        for f in ("description", "email", "name", "phone"):
            if f in params:
                c[f] = _str(params, f)
        for f in ("address", "shipping"):
            if f in params:
                c[f] = params[f] or None
        if "balance" in params:
            c["balance"] = _int(params, "balance")
        if "preferred_locales" in params:
            c["preferred_locales"] = params["preferred_locales"] or []
        if "tax_exempt" in params:
            c["tax_exempt"] = params["tax_exempt"]
        if "invoice_prefix" in params:
            c["invoice_prefix"] = params["invoice_prefix"]
        if "next_invoice_sequence" in params:
            c["next_invoice_sequence"] = _int(params, "next_invoice_sequence", minimum=1)
        if "default_source" in params:
            c["default_source"] = _str(params, "default_source")
        c["metadata"] = _apply_metadata(c["metadata"], params.get("metadata"))
        self._index_customer(c)
        self._apply_customer_pm(c, params)
        return self._public(c)

    def _h_customer_delete(self, params: dict, id_: str) -> dict:
        c = self._customer(id_)
        c["deleted"] = True
        return {"id": id_, "object": "customer", "deleted": True}

    def _index_customer(self, c: dict) -> None:
        keys = {("email", c.get("email"))} | {("meta", k, v) for k, v in (c.get("metadata") or {}).items()}
        old = self._cust_index_keys.get(c["id"], set())
        for key in old - keys:
            self._cust_index.get(key, set()).discard(c["id"])
        for key in keys - old:
            self._cust_index.setdefault(key, set()).add(c["id"])
        self._cust_index_keys[c["id"]] = keys

    def _customers_with(self, key: tuple) -> list[dict]:
        return [self.customers[i] for i in self._cust_index.get(key, ())]

    def _h_customer_list(self, params: dict) -> dict:
        _check_known(params, {"email", "limit", "starting_after", "ending_before", "created", "test_clock"})
        if "email" in params:  # case-sensitive, like Stripe
            objs = [c for c in self._customers_with(("email", params["email"])) if not c.get("deleted")]
        else:
            objs = [c for c in self.customers.values() if not c.get("deleted")]
        return self._list("customers", objs, params, "/v1/customers")

    def _h_customer_search(self, params: dict) -> dict:
        return self._search(
            "customers", params, {"created", "email", "metadata", "name", "phone"}, "/v1/customers/search"
        )

    # ------------------------------------------------------------------ invoice items
    _II_PARAMS = {
        "amount",
        "currency",
        "customer",
        "description",
        "discountable",
        "discounts",
        "invoice",
        "metadata",
        "period",
        "price_data",
        "pricing",
        "quantity",
        "quantity_decimal",
        "subscription",
        "tax_behavior",
        "tax_code",
        "tax_rates",
        "unit_amount_decimal",
        "customer_account",
    }

    def _invoiceitem(self, id_: str, param: str = "id") -> dict:
        ii = self.invoiceitems.get(id_)
        if ii is None:
            raise missing("invoiceitem", id_, param)
        return ii

    def _compute_item_amount(self, params: dict, current: dict | None = None) -> tuple[int, Decimal, Decimal]:
        """Return (amount, quantity_decimal, unit_amount_decimal)."""
        qty_i = _int(params, "quantity", None, minimum=0)
        qty_d = _decimal(params, "quantity_decimal")
        if qty_i is not None and qty_d is not None:
            raise invalid("You may only specify one of these parameters: quantity, quantity_decimal.", param="quantity")
        price_data = params.get("price_data") or {}
        if params.get("pricing"):
            price = (params["pricing"] or {}).get("price")
            raise missing("price", str(price), param="pricing[price]")
        unit = _decimal(params, "unit_amount_decimal")
        if price_data:
            if not isinstance(price_data, dict):
                raise invalid("Invalid object", param="price_data")
            if unit is not None:
                raise invalid(
                    "You may only specify one of these parameters: price_data, unit_amount_decimal.",
                    param="unit_amount_decimal",
                )
            if price_data.get("unit_amount") not in (None, ""):
                unit = Decimal(_int(price_data, "unit_amount"))
            else:
                unit = _decimal(price_data, "unit_amount_decimal")
            if unit is None:
                raise invalid("Missing required param: price_data[unit_amount].", param="price_data[unit_amount]")
        amount = _int(params, "amount")
        if amount is not None and unit is not None:
            raise invalid("You may only specify one of these parameters: amount, unit_amount_decimal.", param="amount")
        quantity = qty_d if qty_d is not None else (Decimal(qty_i) if qty_i is not None else None)
        if current is not None:
            if quantity is None:
                quantity = Decimal(current["quantity_decimal"])
            if amount is None and unit is None:
                if "quantity" in params or "quantity_decimal" in params:
                    unit = Decimal(current["pricing"]["unit_amount_decimal"])
                else:
                    amount = current["amount"]
        if quantity is None:
            quantity = Decimal(1)
        if amount is not None:
            unit_dec = (Decimal(amount) / quantity) if quantity else Decimal(0)
            return amount, quantity, unit_dec
        if unit is None:
            raise invalid("Missing required param: amount.", param="amount")
        total = (quantity * unit).quantize(Decimal(1), rounding=ROUNDING)
        return int(total), quantity, unit

    def _new_invoiceitem(
        self,
        params: dict,
        amount: int,
        qty: Decimal,
        unit: Decimal,
        *,
        customer: str,
        currency: str,
        invoice: str | None,
        now: int,
    ) -> dict:
        """An invoice item from create (or one ``add_lines`` line) parameters, already validated."""
        period = params.get("period") or {}
        return self._new(
            {
                "id": _rand_id("ii_"),
                "object": "invoiceitem",
                "amount": amount,
                "currency": currency,
                "customer": customer,
                "date": now,
                "description": _str(params, "description"),
                "discountable": _bool(params, "discountable", True),
                "discounts": [],
                "invoice": invoice,
                "livemode": False,
                "metadata": _apply_metadata({}, params.get("metadata")),
                "net_amount": amount,
                "parent": None,
                "period": {"start": _int(period, "start", now), "end": _int(period, "end", now)},
                "pricing": {"price_details": None, "type": None, "unit_amount_decimal": _dec_str(unit)},
                "proration": False,
                "proration_details": {"credited_items": None},
                "quantity": int(qty),
                "quantity_decimal": _dec_str(qty),
                "tax_rates": [],
                "test_clock": None,
            }
        )

    def _h_invoiceitem_create(self, params: dict) -> dict:
        _check_known(params, self._II_PARAMS)
        cust_id = params.get("customer")
        if not cust_id:
            raise invalid("Missing required param: customer.", param="customer")
        cust = self._customer(cust_id, "customer")
        currency = (_str(params, "currency") or "").lower() or None
        if params.get("price_data"):
            currency = currency or (params["price_data"].get("currency") or "").lower() or None
        inv = None
        if params.get("invoice"):
            inv = self.invoices.get(params["invoice"])
            if inv is None or inv.get("deleted"):
                raise missing("invoice", params["invoice"], "invoice")
            if inv["customer"] != cust_id:
                raise invalid(f"Invoice {inv['id']} does not belong to customer {cust_id}.", param="invoice")
            if inv["status"] != "draft":
                raise invalid(
                    "You can only add invoice items to draft invoices.", param="invoice", code="invoice_not_editable"
                )
            currency = currency or inv["currency"]
            if currency != inv["currency"]:
                raise invalid(
                    f"The currency of this invoice item ({currency}) must match the currency of the "
                    f"invoice ({inv['currency']}).",
                    param="currency",
                )
        currency = currency or cust["currency"]
        if not currency:
            raise invalid("Missing required param: currency.", param="currency")
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise invalid(f"Invalid currency: {currency}.", param="currency")
        ii = self._new_invoiceitem(
            params,
            *self._compute_item_amount(params),
            customer=cust_id,
            currency=currency,
            invoice=inv["id"] if inv else None,
            now=self._now(),
        )
        if cust["currency"] is None:
            cust["currency"] = currency
        self.invoiceitems[ii["id"]] = ii
        if inv is not None:
            inv["_lines"].append(ii["id"])
        return self._public(ii)

    def _h_invoiceitem_retrieve(self, params: dict, id_: str) -> dict:
        return self._public(self._invoiceitem(id_))

    def _h_invoiceitem_update(self, params: dict, id_: str) -> dict:
        _check_known(params, self._II_PARAMS - {"customer", "currency", "invoice", "subscription", "customer_account"})
        ii = self._invoiceitem(id_)
        if ii["invoice"] and self.invoices[ii["invoice"]]["status"] != "draft":
            if set(params) - {"metadata", "expand"}:
                raise invalid(
                    "Updating an invoice item is only possible when it's attached to a draft invoice.",
                    code="invoice_not_editable",
                )
        if {"amount", "quantity", "quantity_decimal", "unit_amount_decimal", "price_data"} & set(params):
            amount, qty, unit = self._compute_item_amount(params, current=ii)
            ii.update(amount=amount, net_amount=amount, quantity=int(qty), quantity_decimal=_dec_str(qty))
            ii["pricing"]["unit_amount_decimal"] = _dec_str(unit)
        if "description" in params:
            ii["description"] = _str(params, "description")
        if "discountable" in params:
            ii["discountable"] = _bool(params, "discountable")
        if "period" in params:
            ii["period"] = {"start": _int(params["period"], "start"), "end": _int(params["period"], "end")}
        ii["metadata"] = _apply_metadata(ii["metadata"], params.get("metadata"))
        return self._public(ii)

    def _h_invoiceitem_delete(self, params: dict, id_: str) -> dict:
        ii = self._invoiceitem(id_)
        if ii["invoice"]:
            inv = self.invoices[ii["invoice"]]
            if inv["status"] != "draft":
                raise invalid(
                    "You can only delete invoice items that are attached to draft invoices.",
                    code="invoice_not_editable",
                )
            inv["_lines"].remove(id_)
        del self.invoiceitems[id_]
        return {"id": id_, "object": "invoiceitem", "deleted": True}

    def _h_invoiceitem_list(self, params: dict) -> dict:
        _check_known(
            params,
            {
                "customer",
                "invoice",
                "pending",
                "limit",
                "starting_after",
                "ending_before",
                "created",
                "customer_account",
            },
        )
        objs = list(self.invoiceitems.values())
        if "customer" in params:
            objs = [o for o in objs if o["customer"] == params["customer"]]
        if "invoice" in params:
            objs = [o for o in objs if o["invoice"] == params["invoice"]]
        if "pending" in params:
            pending = _bool(params, "pending")
            objs = [o for o in objs if (o["invoice"] is None) == pending]
        return self._list("invoiceitems", objs, params, "/v1/invoiceitems")

    # ------------------------------------------------------------------ invoices
    _INV_PARAMS = {
        "account_tax_ids",
        "application_fee_amount",
        "auto_advance",
        "automatic_tax",
        "automatically_finalizes_at",
        "collection_method",
        "currency",
        "custom_fields",
        "customer",
        "customer_account",
        "days_until_due",
        "default_payment_method",
        "default_source",
        "default_tax_rates",
        "description",
        "discounts",
        "due_date",
        "effective_at",
        "footer",
        "from_invoice",
        "issuer",
        "metadata",
        "number",
        "on_behalf_of",
        "payment_settings",
        "pending_invoice_items_behavior",
        "rendering",
        "shipping_cost",
        "shipping_details",
        "statement_descriptor",
        "subscription",
        "transfer_data",
    }

    def _invoice(self, id_: str, param: str = "id") -> dict:
        inv = self.invoices.get(id_)
        if inv is None or inv.get("deleted"):
            raise missing("invoice", id_, param)
        return inv

    def _h_invoice_create(self, params: dict) -> dict:
        _check_known(params, self._INV_PARAMS)
        cust_id = params.get("customer")
        if not cust_id:
            raise invalid("Missing required param: customer.", param="customer")
        cust = self._customer(cust_id, "customer")
        method = _enum(params, "collection_method", ("charge_automatically", "send_invoice"), "charge_automatically")
        days = _int(params, "days_until_due", None, minimum=0)
        due_date = _int(params, "due_date")
        if method == "send_invoice" and days is None and due_date is None:
            raise invalid("Missing required param: days_until_due.", param="days_until_due")
        if method == "charge_automatically" and (days is not None or due_date is not None):
            param = "days_until_due" if days is not None else "due_date"
            raise invalid(f"You can only set `{param}` if `collection_method` is `send_invoice`.", param=param)
        behavior = _enum(params, "pending_invoice_items_behavior", ("exclude", "include"), "exclude")
        currency = (_str(params, "currency") or "").lower() or cust["currency"] or "usd"
        now = self._now()
        inv = self._new(
            {
                "id": _rand_id("in_"),
                "object": "invoice",
                "customer": cust_id,
                "status": "draft",
                "collection_method": method,
                "days_until_due": days,
                "due_date": due_date,
                "auto_advance": _bool(params, "auto_advance", False),
                "currency": currency,
                "description": _str(params, "description"),
                "footer": _str(params, "footer"),
                "metadata": _apply_metadata({}, params.get("metadata")),
                "created": now,
                "default_payment_method": _str(params, "default_payment_method"),
                "default_source": _str(params, "default_source"),
                "statement_descriptor": _str(params, "statement_descriptor"),
                "number": _str(params, "number"),
                "custom_fields": params.get("custom_fields") or None,
                "effective_at": _int(params, "effective_at"),
                "amount_paid": 0,
                "attempt_count": 0,
                "attempted": False,
                "status_transitions": {
                    "finalized_at": None,
                    "marked_uncollectible_at": None,
                    "paid_at": None,
                    "voided_at": None,
                },
                "payments": [],
                "hosted_invoice_url": None,
                "invoice_pdf": None,
                "paid_out_of_band": False,
                "_lines": [],
            }
        )
        if behavior == "include":
            for ii in sorted(self.invoiceitems.values(), key=lambda o: o["_seq"]):
                if ii["customer"] == cust_id and ii["invoice"] is None and ii["currency"] == currency:
                    ii["invoice"] = inv["id"]
                    inv["_lines"].append(ii["id"])
        self.invoices[inv["id"]] = inv
        return self._render_invoice(inv)

    def _line_items(self, inv: dict) -> list[dict]:
        lines = []
        for ii_id in inv["_lines"]:
            ii = self.invoiceitems[ii_id]
            lines.append(
                {
                    "id": "il_" + ii_id[3:],
                    "object": "line_item",
                    "amount": ii["amount"],
                    "currency": ii["currency"],
                    "description": ii["description"],
                    "discount_amounts": [],
                    "discountable": ii["discountable"],
                    "discounts": [],
                    "invoice": inv["id"],
                    "livemode": False,
                    "metadata": dict(ii["metadata"]),
                    "parent": {
                        "type": "invoice_item_details",
                        "invoice_item_details": {
                            "invoice_item": ii_id,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": None,
                        },
                        "subscription_item_details": None,
                    },
                    "period": dict(ii["period"]),
                    "pretax_credit_amounts": [],
                    "pricing": copy.deepcopy(ii["pricing"]),
                    "quantity": ii["quantity"],
                    "quantity_decimal": ii["quantity_decimal"],
                    "subscription": None,
                    "subtotal": ii["amount"],
                    "taxes": [],
                }
            )
        return lines

    def _render_invoice(self, inv: dict) -> dict:
        if inv.get("deleted"):
            return {"id": inv["id"], "object": "invoice", "deleted": True}
        cust = self.customers[inv["customer"]]
        lines = self._line_items(inv)
        subtotal = sum(line["amount"] for line in lines)
        total = subtotal
        amount_due = max(total, 0)
        if inv["status"] == "void":
            amount_remaining = 0
        else:
            amount_remaining = max(amount_due - inv["amount_paid"], 0)
        out = {
            "id": inv["id"],
            "object": "invoice",
            "account_country": "US",
            "account_name": "Billing Pipeline Tests",
            "account_tax_ids": None,
            "amount_due": amount_due,
            "amount_overpaid": 0,
            "amount_paid": inv["amount_paid"],
            "amount_paid_off_stripe": inv["amount_paid"] if inv["paid_out_of_band"] else 0,
            "amount_remaining": amount_remaining,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": inv["attempt_count"],
            "attempted": inv["attempted"],
            "auto_advance": inv["auto_advance"],
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": "manual",
            "collection_method": inv["collection_method"],
            "confirmation_secret": None,
            "created": inv["created"],
            "currency": inv["currency"],
            "custom_fields": inv["custom_fields"],
            "customer": inv["customer"],
            "customer_account": None,
            "customer_address": cust["address"],
            "customer_email": cust["email"],
            "customer_name": cust["name"],
            "customer_phone": cust["phone"],
            "customer_shipping": cust["shipping"],
            "customer_tax_exempt": cust["tax_exempt"],
            "customer_tax_ids": [],
            "default_payment_method": inv["default_payment_method"],
            "default_source": inv["default_source"],
            "default_tax_rates": [],
            "description": inv["description"],
            "discounts": [],
            "due_date": inv["due_date"],
            "effective_at": inv["effective_at"],
            "ending_balance": (0 if inv["status"] != "draft" else None),
            "footer": inv["footer"],
            "from_invoice": None,
            "hosted_invoice_url": inv["hosted_invoice_url"],
            "invoice_pdf": inv["invoice_pdf"],
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{inv['id']}/lines",
            },
            "livemode": False,
            "metadata": dict(inv["metadata"]),
            "next_payment_attempt": None,
            "number": inv["number"],
            "on_behalf_of": None,
            "parent": None,
            "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
            "payments": {
                "object": "list",
                "data": copy.deepcopy(inv["payments"]),
                "has_more": False,
                "total_count": len(inv["payments"]),
                "url": "/v1/invoice_payments",
            },
            "period_end": inv["created"],
            "period_start": inv["created"],
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": inv["statement_descriptor"],
            "status": inv["status"],
            "status_transitions": dict(inv["status_transitions"]),
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": inv["created"],
        }
        return out

    def _h_invoice_retrieve(self, params: dict, id_: str) -> dict:
        inv = self.invoices.get(id_)
        if inv is None:
            raise missing("invoice", id_)
        return self._render_invoice(inv)

    def _h_invoice_lines(self, params: dict, id_: str) -> dict:
        inv = self._invoice(id_)
        lines = self._line_items(inv)
        return {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{id_}/lines"}

    _LINE_PARAMS = {
        "amount",
        "description",
        "discountable",
        "discounts",
        "invoice_item",
        "margins",
        "metadata",
        "period",
        "price_data",
        "pricing",
        "quantity",
        "tax_amounts",
        "tax_rates",
    }

    def _h_invoice_add_lines(self, params: dict, id_: str) -> dict:
        """``POST /v1/invoices/:id/add_lines``: all lines or none (everything is validated first)."""
        _check_known(params, {"lines", "invoice_metadata", "expand"})
        inv = self._invoice(id_)
        if inv["status"] != "draft":
            raise invalid("You can only add lines to draft invoices.", code="invoice_not_editable")
        lines = params.get("lines")
        if not isinstance(lines, list) or not lines:
            raise invalid("Missing required param: lines.", param="lines")
        planned = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict):
                raise invalid("Invalid object", param=f"lines[{i}]")
            _check_known(line, self._LINE_PARAMS)
            if line.get("invoice_item"):
                raise invalid(
                    "Attaching existing invoice items is not supported by this emulator.",
                    param=f"lines[{i}][invoice_item]",
                )
            try:
                amount, qty, unit = self._compute_item_amount(line)
            except StripeHTTPError as e:
                if e.body.get("param"):
                    e.body["param"] = f"lines[{i}][{e.body['param']}]"
                raise
            planned.append((line, amount, qty, unit))
        now = self._now()
        for line, amount, qty, unit in planned:
            ii = self._new_invoiceitem(
                line, amount, qty, unit, customer=inv["customer"], currency=inv["currency"], invoice=inv["id"], now=now
            )
            self.invoiceitems[ii["id"]] = ii
            inv["_lines"].append(ii["id"])
        inv["metadata"] = _apply_metadata(inv["metadata"], params.get("invoice_metadata"))
        return self._render_invoice(inv)

    def _h_invoice_update(self, params: dict, id_: str) -> dict:
        _check_known(
            params,
            self._INV_PARAMS
            - {
                "customer",
                "currency",
                "pending_invoice_items_behavior",
                "subscription",
                "from_invoice",
                "customer_account",
            },
        )
        inv = self._invoice(id_)
        if inv["status"] != "draft":
            allowed = {"metadata", "description", "footer", "auto_advance", "custom_fields", "expand"}
            if inv["status"] in ("paid", "void"):
                allowed = {"metadata", "expand"}
            bad = set(params) - allowed
            if bad:
                raise invalid(
                    f"You can't update `{sorted(bad)[0]}` on an invoice with status `{inv['status']}`.",
                    param=sorted(bad)[0],
                    code="invoice_not_editable",
                )
        for f in (
            "description",
            "footer",
            "default_payment_method",
            "default_source",
            "statement_descriptor",
            "number",
        ):
            if f in params:
                inv[f] = _str(params, f)
        if "auto_advance" in params:
            inv["auto_advance"] = _bool(params, "auto_advance")
        if "collection_method" in params:
            inv["collection_method"] = _enum(params, "collection_method", ("charge_automatically", "send_invoice"))
        if "days_until_due" in params:
            inv["days_until_due"] = _int(params, "days_until_due", minimum=0)
        if "due_date" in params:
            inv["due_date"] = _int(params, "due_date")
        if "custom_fields" in params:
            inv["custom_fields"] = params["custom_fields"] or None
        inv["metadata"] = _apply_metadata(inv["metadata"], params.get("metadata"))
        return self._render_invoice(inv)

    def _h_invoice_delete(self, params: dict, id_: str) -> dict:
        inv = self._invoice(id_)
        if inv["status"] != "draft":
            raise invalid("You can only delete draft invoices.", code="invoice_not_editable")
        for ii_id in inv["_lines"]:
            self.invoiceitems.pop(ii_id, None)
        inv["_lines"] = []
        inv["deleted"] = True
        return {"id": id_, "object": "invoice", "deleted": True}

    def _h_invoice_list(self, params: dict) -> dict:
        _check_known(
            params,
            {
                "customer",
                "status",
                "collection_method",
                "limit",
                "starting_after",
                "ending_before",
                "created",
                "due_date",
                "subscription",
                "customer_account",
            },
        )
        objs = [o for o in self.invoices.values() if not o.get("deleted")]
        for f in ("customer", "status", "collection_method"):
            if f in params:
                objs = [o for o in objs if o[f] == params[f]]
        return self._list("invoices", objs, params, "/v1/invoices")

    def _h_invoice_search(self, params: dict) -> dict:
        return self._search(
            "invoices",
            params,
            {
                "created",
                "currency",
                "customer",
                "metadata",
                "number",
                "receipt_number",
                "status",
                "subscription",
                "total",
                "collection_method",
            },
            "/v1/invoices/search",
        )

    def _finalize(self, inv: dict, params: dict) -> None:
        if inv["status"] != "draft":
            raise invalid("This invoice is already finalized, you can't re-finalize a non-draft invoice.")
        cust = self.customers[inv["customer"]]
        now = self._now()
        if "auto_advance" in params:
            inv["auto_advance"] = _bool(params, "auto_advance")
        if not inv["number"]:
            inv["number"] = f"{cust['invoice_prefix']}-{cust['next_invoice_sequence']:04d}"
            cust["next_invoice_sequence"] += 1
        inv["status"] = "open"
        inv["status_transitions"]["finalized_at"] = now
        if inv["effective_at"] is None:
            inv["effective_at"] = now
        if inv["collection_method"] == "send_invoice" and inv["due_date"] is None:
            inv["due_date"] = now + 86400 * (inv["days_until_due"] or 0)
        inv["hosted_invoice_url"] = f"{self.api_base}/_hosted/invoices/{inv['id']}"
        inv["invoice_pdf"] = f"{self.api_base}/_hosted/invoices/{inv['id']}/pdf"
        if self._render_invoice(inv)["amount_due"] == 0:
            inv["status"] = "paid"
            inv["status_transitions"]["paid_at"] = now

    def _h_invoice_finalize(self, params: dict, id_: str) -> dict:
        _check_known(params, {"auto_advance"})
        inv = self._invoice(id_)
        self._finalize(inv, params)
        return self._render_invoice(inv)

    def _payment_method_for(self, inv: dict, params: dict) -> str | None:
        cust = self.customers[inv["customer"]]
        candidates = [
            params.get("payment_method"),
            params.get("source"),
            inv["default_payment_method"],
            inv["default_source"],
            cust["invoice_settings"].get("default_payment_method"),
            cust["default_source"],
            cust["metadata"].get("test_payment_method"),
        ]
        candidates += [v for v in cust["metadata"].values() if str(v).startswith("pm_card_")]
        candidates += cust["_payment_methods"]
        for c in candidates:
            if c:
                return c
        return None

    def _h_invoice_pay(self, params: dict, id_: str) -> dict:
        _check_known(params, {"forgive", "mandate", "off_session", "paid_out_of_band", "payment_method", "source"})
        inv = self._invoice(id_)
        if inv["status"] == "draft":
            self._finalize(inv, {})
            if inv["status"] == "paid":
                return self._render_invoice(inv)
        if inv["status"] == "paid":
            raise invalid("Invoice is already paid.")
        if inv["status"] == "void":
            raise invalid("This invoice can no longer be paid because it has been voided.")
        now = self._now()
        view = self._render_invoice(inv)
        amount = view["amount_remaining"]
        if _bool(params, "paid_out_of_band", False):
            inv["paid_out_of_band"] = True
            inv["amount_paid"] += amount
            inv["status"] = "paid"
            inv["status_transitions"]["paid_at"] = now
            return self._render_invoice(inv)
        pm = self._payment_method_for(inv, params)
        if pm is None and self.require_payment_method:
            raise StripeHTTPError(
                400,
                "invalid_request_error",
                "This customer has no attached payment source or default payment method. Please consider adding a "
                "default payment method.",
                saved=True,
            )
        pm = pm or "pm_card_visa"
        inv["attempt_count"] += 1
        inv["attempted"] = True
        pi = self._new(
            {
                "id": _rand_id("pi_"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": 0,
                "currency": inv["currency"],
                "customer": inv["customer"],
                "created": now,
                "livemode": False,
                "metadata": {},
                "payment_method": pm,
                "description": f"Payment for Invoice {inv['number']}",
                "status": "requires_payment_method",
                "last_payment_error": None,
                "latest_charge": _rand_id("ch_"),
                "capture_method": "automatic",
                "confirmation_method": "automatic",
                "payment_method_types": ["card"],
            }
        )
        self.payment_intents[pi["id"]] = pi
        decline = DECLINES.get(pm)
        if decline:
            code, decline_code, message = decline
            err = {
                "type": "card_error",
                "code": code,
                "decline_code": decline_code,
                "message": message,
                "charge": pi["latest_charge"],
                "payment_method": {"id": pm, "object": "payment_method", "type": "card"},
                "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            }
            pi["last_payment_error"] = dict(err)
            error = StripeHTTPError(
                402,
                "card_error",
                message,
                code=code,
                saved=True,
                decline_code=decline_code,
                charge=pi["latest_charge"],
                payment_intent=self._public(pi),
            )
            raise error
        pi["status"] = "succeeded"
        pi["amount_received"] = amount
        inv["payments"].append(
            {
                "id": _rand_id("inpay_"),
                "object": "invoice_payment",
                "amount_paid": amount,
                "amount_requested": amount,
                "created": now,
                "currency": inv["currency"],
                "invoice": inv["id"],
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": now},
            }
        )
        inv["amount_paid"] += amount
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = now
        return self._render_invoice(inv)

    def _h_invoice_send(self, params: dict, id_: str) -> dict:
        _check_known(params, set())
        inv = self._invoice(id_)
        if inv["collection_method"] != "send_invoice":
            raise invalid("You can only manually send an invoice if its collection method is 'send_invoice'.")
        if inv["status"] == "draft":
            self._finalize(inv, {})
        if inv["status"] == "void":
            raise invalid("You can't send a voided invoice.")
        self.sent_invoices.append(inv["id"])
        return self._render_invoice(inv)

    def _h_invoice_void(self, params: dict, id_: str) -> dict:
        _check_known(params, set())
        inv = self._invoice(id_)
        if inv["status"] not in ("open", "uncollectible"):
            raise invalid(f"You can only void open or uncollectible invoices; this invoice is {inv['status']}.")
        inv["status"] = "void"
        inv["status_transitions"]["voided_at"] = self._now()
        return self._render_invoice(inv)

    def _h_invoice_mark_uncollectible(self, params: dict, id_: str) -> dict:
        _check_known(params, set())
        inv = self._invoice(id_)
        if inv["status"] != "open":
            raise invalid(f"You can only mark open invoices as uncollectible; this invoice is {inv['status']}.")
        inv["status"] = "uncollectible"
        inv["status_transitions"]["marked_uncollectible_at"] = self._now()
        return self._render_invoice(inv)

    def _h_payment_intent_retrieve(self, params: dict, id_: str) -> dict:
        pi = self.payment_intents.get(id_)
        if pi is None:
            raise missing("payment_intent", id_)
        return self._public(pi)

    def __repr__(self) -> str:
        return f"<StripeServer {self.api_base}>"


class _Disconnect(Exception):
    pass


def _dec_str(d: Decimal) -> str:
    s = format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _created_match(value: Any, cond: Any) -> bool:
    if value is None:
        return False
    if isinstance(cond, dict):
        ops = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        return all(ops[k](value, int(v)) for k, v in cond.items() if k in ops)
    return value == int(cond)


def _tiny_pdf(text: str) -> bytes:
    text = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)
