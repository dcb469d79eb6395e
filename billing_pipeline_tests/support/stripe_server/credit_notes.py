"""Credit notes: create / retrieve / list (``invoice``, ``customer`` filters).

As Stripe: a credit note on an ``open`` invoice is *pre-payment* and lowers the invoice's
``amount_due`` (an invoice credited in full is marked ``paid``); on a ``paid`` invoice it is
*post-payment* and its amount must be split between ``credit_amount`` (the customer's balance),
``refund_amount`` and ``out_of_band_amount`` (all of it to the balance when none is given). The credit
notes of an invoice cannot exceed its total. Amounts come from ``lines`` (``custom_line_item``:
``unit_amount`` x ``quantity``) or ``amount``. Refunds are not emulated: ``refund_amount`` is refused.
"""

from __future__ import annotations

from ._common import _apply_metadata, _check_known, _int, _rand_id, _str, invalid, missing

_CN_PARAMS = {
    "amount",
    "credit_amount",
    "effective_at",
    "email_type",
    "expand",
    "invoice",
    "lines",
    "memo",
    "metadata",
    "out_of_band_amount",
    "reason",
    "refund_amount",
    "refunds",
    "shipping_cost",
}
_REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")


class CreditNotesAPI:
    """Mixed into ``StripeServer``."""

    def _credit_note_lines(self, params: dict) -> list[dict]:
        lines = params.get("lines")
        if lines is None:
            amount = _int(params, "amount", minimum=1)
            if amount is None:
                raise invalid("You must pass either `lines` or `amount`.", param="lines")
            return [{"type": "custom_line_item", "description": "Credit", "quantity": 1, "unit_amount": amount}]
        if not isinstance(lines, list) or not lines:
            raise invalid("Invalid array", param="lines")
        out = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict) or line.get("type") != "custom_line_item":
                raise invalid("Only `custom_line_item` lines are supported by this emulator.", param=f"lines[{i}]")
            _check_known(line, {"type", "description", "quantity", "unit_amount", "metadata"})
            unit = _int(line, "unit_amount", minimum=0)
            if unit is None:
                raise invalid("Missing required param: unit_amount.", param=f"lines[{i}][unit_amount]")
            quantity = _int(line, "quantity", 1, minimum=1)
            out.append(
                {
                    "type": "custom_line_item",
                    "description": _str(line, "description"),
                    "quantity": quantity,
                    "unit_amount": unit,
                }
            )
        return out

    def _h_credit_note_create(self, params: dict) -> dict:
        _check_known(params, _CN_PARAMS)
        inv_id = _str(params, "invoice")
        if not inv_id:
            raise invalid("Missing required param: invoice.", param="invoice")
        inv = self._invoice(inv_id, "invoice")
        if inv["status"] not in ("open", "paid"):
            raise invalid(f"You can only create credit notes for open or paid invoices; this one is {inv['status']}.")
        lines = self._credit_note_lines(params)
        amount = sum(line["unit_amount"] * line["quantity"] for line in lines)
        view = self._render_invoice(inv)
        credited = sum(cn["amount"] for cn in self.credit_notes.values() if cn["invoice"] == inv_id)
        if amount <= 0 or credited + amount > view["total"]:
            raise invalid(
                f"The credit note amount ({amount}) plus the invoice's existing credit notes ({credited}) cannot "
                f"exceed the invoice total ({view['total']}).",
                param="lines",
            )
        pre = inv["status"] == "open"
        split = self._post_payment_split(params, amount) if not pre else {}
        if pre and amount > view["amount_remaining"]:
            raise invalid("The credit note amount cannot exceed the invoice's amount remaining.", param="lines")
        reason = _str(params, "reason")
        if reason is not None and reason not in _REASONS:
            raise invalid(f"Invalid reason: must be one of {', '.join(_REASONS)}", param="reason")
        cn = self._new_credit_note(inv, amount, lines, params, pre, split)
        self._apply_credit_note(inv, cn)
        return self._public(cn)

    @staticmethod
    def _post_payment_split(params: dict, amount: int) -> dict:
        split = {k: _int(params, k, 0, minimum=0) for k in ("credit_amount", "refund_amount", "out_of_band_amount")}
        if split["refund_amount"]:
            raise invalid("Refunds are not supported by this emulator.", param="refund_amount")
        if not any(split.values()):
            split["credit_amount"] = amount
        if sum(split.values()) != amount:
            raise invalid(
                "The sum of credit_amount, refund_amount and out_of_band_amount must equal the credit note amount.",
                param="credit_amount",
            )
        return split

    def _new_credit_note(self, inv: dict, amount: int, lines: list, params: dict, pre: bool, split: dict) -> dict:
        count = sum(1 for cn in self.credit_notes.values() if cn["invoice"] == inv["id"]) + 1
        cn = self._new(
            {
                "id": _rand_id("cn_"),
                "object": "credit_note",
                "amount": amount,
                "currency": inv["currency"],
                "customer": inv["customer"],
                "created": self._now(),
                "effective_at": _int(params, "effective_at") or self._now(),
                "invoice": inv["id"],
                "lines": {
                    "object": "list",
                    "data": [{"id": _rand_id("cnli_"), "object": "credit_note_line_item", **line} for line in lines],
                    "has_more": False,
                },
                "livemode": False,
                "memo": _str(params, "memo"),
                "metadata": _apply_metadata({}, params.get("metadata")),
                "number": f"{inv['number']}-CN-{count:02d}",
                "out_of_band_amount": split.get("out_of_band_amount") or None,
                "pre_payment_amount": amount if pre else 0,
                "post_payment_amount": 0 if pre else amount,
                "reason": _str(params, "reason"),
                "refunds": [],
                "status": "issued",
                "subtotal": amount,
                "total": amount,
                "type": "pre_payment" if pre else "post_payment",
                "voided_at": None,
                "_credit_amount": split.get("credit_amount", 0),
            }
        )
        self.credit_notes[cn["id"]] = cn
        return cn

    def _apply_credit_note(self, inv: dict, cn: dict) -> None:
        if cn["type"] == "pre_payment":
            inv["_pre_cn"] = inv.get("_pre_cn", 0) + cn["amount"]
            if self._render_invoice(inv)["amount_remaining"] == 0:
                inv["status"] = "paid"
                inv["status_transitions"]["paid_at"] = self._now()
        else:
            inv["_post_cn"] = inv.get("_post_cn", 0) + cn["amount"]
            self.customers[inv["customer"]]["balance"] -= cn["_credit_amount"]

    def _h_credit_note_retrieve(self, params: dict, id_: str) -> dict:
        cn = self.credit_notes.get(id_)
        if cn is None:
            raise missing("credit_note", id_)
        return self._public(cn)

    def _h_credit_note_list(self, params: dict) -> dict:
        _check_known(params, {"invoice", "customer", "limit", "starting_after", "ending_before", "created", "expand"})
        objs = list(self.credit_notes.values())
        for f in ("invoice", "customer"):
            if f in params:
                objs = [cn for cn in objs if cn[f] == params[f]]
        return self._list("credit_notes", objs, params, "/v1/credit_notes")
