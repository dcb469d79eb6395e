"""The ``StripeServer``: lifecycle, fault injection, inspection, routes and generic helpers."""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from .._util import LOCALHOST, free_port, registry
from ..wsgi import KeepAliveWSGIServer
from ._common import (
    RequestRecord,
    _check_known,
    _clause_matches,
    _created_match,
    _Fault,
    _int,
    invalid,
    missing,
    parse_search,
)
from ._http import HTTPLayer
from .credit_notes import CreditNotesAPI
from .customers import CustomersAPI
from .invoice_view import InvoiceViewAPI
from .invoiceitems import InvoiceItemsAPI
from .invoices import InvoicesAPI
from .payment_methods import PaymentMethodsAPI
from .payments import PaymentsAPI
from .routes import build_routes


# --------------------------------------------------------------------------- server
class StripeServer(
    HTTPLayer,
    CustomersAPI,
    InvoiceItemsAPI,
    InvoicesAPI,
    InvoiceViewAPI,
    PaymentMethodsAPI,
    PaymentsAPI,
    CreditNotesAPI,
):
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
        self._url_map = build_routes()
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
                self.payment_methods: dict[str, dict] = {}
                self.credit_notes: dict[str, dict] = {}
                self._scripted: dict[str, list[tuple]] = {}  # decline_next: customer/method -> outcomes
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
                self.payment_methods,
                self.credit_notes,
                self._scripted,
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
            self.processing_seconds = None
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
            for kind in ("customers", "invoiceitems", "invoices", "payment_intents", "payment_methods", "credit_notes"):
                if obj_id in self._store(kind):
                    return self._render(kind, self._store(kind)[obj_id])
        raise KeyError(obj_id)

    def _store(self, kind: str) -> dict[str, dict]:
        stores = {
            "customers": self.customers,
            "invoiceitems": self.invoiceitems,
            "invoices": self.invoices,
            "payment_intents": self.payment_intents,
            "payment_methods": self.payment_methods,
            "credit_notes": self.credit_notes,
        }
        if kind not in stores:
            raise ValueError(f"unknown kind {kind!r}; one of {sorted(stores)} or 'requests'")
        return stores[kind]

    # ------------------------------------------------------------------ WSGI plumbing

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
        _check_known(params, {"query", "limit", "page", "expand"})
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

    def __repr__(self) -> str:
        return f"<StripeServer {self.api_base}>"
