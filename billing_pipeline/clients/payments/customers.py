"""Stripe customers of our organizations: found (by e-mail list, then by search on
``metadata['org_id']``), else created with idempotency key ``cus-{org_id}``; name/e-mail updated
when they changed. Customers are remembered for a few minutes per gateway (a batch does not look
the same org up twice)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from billing_pipeline.clients.payments.stripe_api import (
    StripeAPI,
    _created_now,
    _get,
    _iterate,
    _path,
    _quote,
    _stripe_errors,
)
from billing_pipeline.domain.model import Organization

log = logging.getLogger(__name__)


class StripeCustomers(StripeAPI):
    """The customer half of ``StripeGateway``."""

    #: How long a customer found or created is reused for the same org without a lookup.
    CUSTOMER_CACHE_SECONDS = 300.0

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
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
