"""``credit-notes create``: issue a credit note once, store its PDF, mirror it to the gateway.

One transaction on the locked invoice: the domain builds the credit note from the amount due
(``domain.credit_notes``), it is numbered from its own gapless series and stored with its lines,
its audit row and its mirror ledger row (``credit-note-{number}``); when nothing remains due the
invoice becomes ``paid`` in the same transaction (as Stripe does when a credit note covers what
remains). After the commit the PDF is rendered (deterministic bytes) and put under a write-once key
(``credit-notes/{YYYY}/{MM}/{org}/{number}.pdf``), then the gateway effects run. The same request
(invoice, amount or ``--full``, reason) run again finds its credit note and only finishes what is
missing: the PDF, a failed gateway effect.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from billing_pipeline.clients.documents import DocumentStore, validate_key
from billing_pipeline.db import credit_notes as note_rows
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import lifecycle as rows
from billing_pipeline.db import mirror_effects, reference
from billing_pipeline.domain import money
from billing_pipeline.domain.credit_notes import (
    CreditNote,
    CreditNoteRefused,
    build_credit_note,
    check_reason,
    credit_note_pdf_key,
    request_key,
)
from billing_pipeline.domain.model import Organization
from billing_pipeline.domain.receivables import AmountError, parse_amount
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.lifecycle import LifecycleError, LifecycleResult, LifecycleService, check_actor
from billing_pipeline.services.lifecycle_mirror import effect_key

__all__ = ["CreditNoteService", "render_credit_note_pdf"]

Render = Callable[[CreditNote, Organization, Seller], bytes]


def render_credit_note_pdf(note: CreditNote, org: Organization, seller: Seller) -> bytes:
    """``rendering.credit_note.render_credit_note_pdf``, imported on first use (WeasyPrint is slow to load)."""
    from billing_pipeline.rendering.credit_note import render_credit_note_pdf as render

    return render(note, org, seller)


class CreditNoteService(LifecycleService):
    """The lifecycle service plus where credit note PDFs go and who issues them."""

    def __init__(self, engine, *, store: DocumentStore, seller: Seller, render: Render = render_credit_note_pdf, **kw):
        super().__init__(engine, **kw)
        self.store = store
        self.seller = seller
        self.render = render

    def create_credit_note(
        self, number: str, *, amount_text: str | None, full: bool, reason: str, actor: str
    ) -> LifecycleResult:
        """Credit ``amount_text`` (or the whole amount due with ``full``) of invoice ``number``."""
        if full == (amount_text is not None):
            raise LifecycleError("give either --amount A or --full")
        actor = check_actor(actor)
        try:
            reason = check_reason(reason)
            currency = rows.find_invoice(self.engine, number).currency
            amount = None if full else parse_amount(amount_text or "", currency, field="--amount")
        except (CreditNoteRefused, AmountError, rows.InvoiceNotFound) as exc:
            raise LifecycleError(exc.args[0]) from None
        key = request_key(number, amount, currency, reason)
        with self.engine.begin() as conn:
            state = self._lock(conn, number)
            note_id = note_rows.find_by_request(conn, key)
            changed = note_id is None
            if note_id is None:
                note_id = self._issue(conn, state, amount, reason, actor, key)
        stored = note_rows.load_credit_note(self.engine, note_id)
        document = self._store_pdf(stored)
        what = f"credit note {stored.note.number} for {money.format_amount(stored.note.total, currency)}"
        message = what if changed else f"{what} already issued"
        return self._result(number, changed=changed, message=message, document=document)

    def _issue(self, conn, state: rows.InvoiceState, amount: Decimal | None, reason: str, actor: str, key: str) -> int:
        invoice = invoice_rows.load_invoices(self.engine, [state.id])[state.id].invoice
        due = rows.receivables(conn, [state.id])[state.id].amount_due
        try:
            note = build_credit_note(invoice, amount=amount, due=due, reason=reason)
        except CreditNoteRefused as exc:
            raise LifecycleError(str(exc)) from None
        at = self.now()
        note_id, cn_number = note_rows.insert_credit_note(
            conn, state.id, note, request_key=key, actor=actor, issued_at=at
        )
        details = {
            "credit_note": cn_number,
            "amount": str(note.total),
            "currency": note.currency,
            "full": amount is None,
        }
        rows.insert_event(
            conn,
            state.id,
            "credit_note",
            state.status,
            state.status,
            actor=actor,
            reason=reason,
            at=at,
            details=details,
        )
        action = "create_credit_note"
        mirror_effects.add_effect(conn, state.id, action, effect_key(action, cn_number), credit_note_id=note_id)
        if note.total == due:  # nothing remains due
            self._settle(conn, state, actor, f"settled by credit note {cn_number}", at, {"credit_note": cn_number})
        return note_id

    def _store_pdf(self, stored: note_rows.StoredCreditNote) -> str:
        """Render and store the PDF unless it already is (write-once: same bytes are a no-op)."""
        if stored.document_key:
            return stored.document_key
        org = reference.get_organizations(self.engine, [stored.note.organization_id])[stored.note.organization_id]
        key = validate_key(credit_note_pdf_key(stored.note))
        data = self.render(stored.note, org, self.seller)
        if not data.startswith(b"%PDF"):
            raise RuntimeError(f"credit note {stored.note.number}: the renderer returned something that is not a PDF")
        put = self.store.put(key, data, "application/pdf")
        note_rows.set_document(self.engine, stored.id, key, put.sha256_hex)
        return key
