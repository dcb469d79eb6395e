"""Invoice items: create / retrieve / update / delete / list."""

from __future__ import annotations

import re
from decimal import Decimal

from ._common import (
    ROUNDING,
    _apply_metadata,
    _bool,
    _check_known,
    _dec_str,
    _decimal,
    _int,
    _rand_id,
    _str,
    invalid,
    missing,
)


class InvoiceItemsAPI:
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
