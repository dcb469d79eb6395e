"""Mirror a finalized invoice into Stripe.

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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from billing_pipeline.clients.errors import GatewayTotalMismatch, PermanentGatewayError
from billing_pipeline.clients.payments.customers import StripeCustomers
from billing_pipeline.clients.payments.stripe_api import (
    _created_now,
    _get,
    _iterate,
    _path,
    _quote,
    _stripe_errors,
)
from billing_pipeline.clients.payments.types import GatewayInvoice
from billing_pipeline.domain.model import Invoice, InvoiceStatus, Organization
from billing_pipeline.domain.money import to_minor

_Item = tuple[str, str, Any]  # (line_index, description, amount)


class StripeInvoiceSync(StripeCustomers):
    """The invoice-mirroring half of ``StripeGateway``."""

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
        try:
            with _stripe_errors():
                return self._sync_invoice(invoice, org, idempotency_prefix)
        except BaseException:
            self._remember_customer(org.id, None)  # look it up again next time
            raise

    def _sync_invoice(self, invoice: Invoice, org: Organization, prefix: str) -> GatewayInvoice:
        number = invoice.number or ""
        ours = to_minor(invoice.total, invoice.currency)
        key: Callable[[str], str] = lambda k: self._key(prefix, k)  # noqa: E731
        customer, new_customer, customers = self._upsert_customer(org, prefix)
        # A customer created by this very call has no invoice; with several customers for
        # the org, the invoice may sit on another one (search finds it there).
        # Our invoice cannot have been created before its period ended (finalized after it).
        since = int(invoice.period_end.timestamp()) - 86400
        existing = (
            None
            if new_customer
            else self.find_invoice(customer["id"], number, search=customers > 1, created_since=since)
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
            draft = self._create_draft(invoice, org, customer["id"], key)
            new_draft = _created_now(draft)
        else:
            draft, new_draft = existing, False
        current = self._add_missing_lines(invoice, draft, new_draft, key)
        # Refuse to finalize an invoice whose total is not ours.
        self._checked(current, number, ours, invoice.currency)
        final = self._api(
            "post", _path("invoices", draft["id"], "finalize"), {"auto_advance": False}, key=key(f"fin-{number}")
        )
        return self._checked(final, number, ours, invoice.currency)

    def _create_draft(self, invoice: Invoice, org: Organization, customer_id: str, key: Callable[[str], str]) -> Any:
        number = invoice.number or ""
        params: dict[str, Any] = {
            "customer": customer_id,
            "currency": invoice.currency.lower(),
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
        return self._api("post", _path("invoices"), params, key=key(f"inv-{number}"))

    def _add_missing_lines(self, invoice: Invoice, draft: Any, new_draft: bool, key: Callable[[str], str]) -> Any:
        """All lines in one request, all or none; a resumed draft gets only the missing ones.
        Returns the draft as Stripe answered (with its new total)."""
        number = invoice.number or ""
        items: list[_Item] = [(str(i), line.description, line.amount) for i, line in enumerate(invoice.lines)]
        if invoice.tax:
            rate = f"{(invoice.tax_rate * 100).normalize():f}%"
            items.append(("tax", f"Tax ({rate})", invoice.tax))
        present = set() if new_draft else self._line_indexes(draft, number)
        missing = [item for item in items if item[0] not in present]
        if not missing:
            return draft
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
        suffix = "" if len(missing) == len(items) else "-" + ".".join(i for i, _, _ in missing)
        return self._api(
            "post", _path("invoices", draft["id"], "add_lines"), {"lines": lines}, key=key(f"lines-{number}{suffix}")
        )

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
