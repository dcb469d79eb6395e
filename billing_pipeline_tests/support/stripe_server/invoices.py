"""Invoices: create / retrieve / update / delete / list / search, lines, add_lines, finalize,
send, void, mark_uncollectible."""

from __future__ import annotations

from ._common import (
    StripeHTTPError,
    _apply_metadata,
    _bool,
    _check_known,
    _enum,
    _int,
    _rand_id,
    _str,
    invalid,
    missing,
)


class InvoicesAPI:
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

    def _h_invoice_retrieve(self, params: dict, id_: str) -> dict:
        inv = self.invoices.get(id_)
        if inv is None:
            raise missing("invoice", id_)
        return self._expanded(self._render_invoice(inv), params, "")

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
                "expand",
            },
        )
        objs = [o for o in self.invoices.values() if not o.get("deleted")]
        for f in ("customer", "status", "collection_method"):
            if f in params:
                objs = [o for o in objs if o[f] == params[f]]
        return self._expanded(self._list("invoices", objs, params, "/v1/invoices"), params, "data.")

    def _h_invoice_search(self, params: dict) -> dict:
        return self._expanded(self._invoice_search(params), params, "data.")

    def _invoice_search(self, params: dict) -> dict:
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
