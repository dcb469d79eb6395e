"""Customers: create / retrieve / update / list (email filter) / search / delete."""

from __future__ import annotations

import random
import re
import string

from ._common import (
    _apply_metadata,
    _check_known,
    _int,
    _rand_id,
    _str,
    invalid,
    missing,
)


class CustomersAPI:
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
            self._attach(c, params["payment_method"])
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
