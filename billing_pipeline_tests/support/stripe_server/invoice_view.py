"""The invoice object as the API renders it: totals, amounts due/paid/remaining, lines, payments."""

from __future__ import annotations

import copy


class InvoiceViewAPI:
    """Mixed into ``StripeServer``: ``_render_invoice`` (every invoice answer goes through it)."""

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
        amount_due = max(total - inv.get("_pre_cn", 0), 0)
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
            "paid_out_of_band": inv["paid_out_of_band"],
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
            "post_payment_credit_notes_amount": inv.get("_post_cn", 0),
            "pre_payment_credit_notes_amount": inv.get("_pre_cn", 0),
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

    def _expanded(self, answer: dict, params: dict, prefix: str) -> dict:
        """``expand[]=customer`` (``data.customer`` on lists): the customer object instead of its id.
        (``payments`` is always included; other expansions are ignored.)"""
        expand = params.get("expand") or []
        if f"{prefix}customer" not in expand:
            return answer
        for view in answer["data"] if prefix else [answer]:
            customer = self.customers.get(view.get("customer") or "")
            if customer is not None:
                view["customer"] = self._public(customer)
        return answer
