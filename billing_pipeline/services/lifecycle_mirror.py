"""Mirroring lifecycle changes to the payment gateway: what the lifecycle needs, and doing it once.

``InvoiceMirror`` is the small interface the lifecycle commands call; the Stripe gateway is adapted
to it (``clients.payments``). Its contract:

* each method is called with a deterministic idempotency key (``void-{number}``,
  ``uncollectible-{number}``, ``paid-{number}``, ``credit-note-{cn_number}``) and must be safe to
  call again with the same key and arguments: an invoice that is already void / uncollectible /
  paid in the gateway, or a credit note already there (found by its number in metadata), is a
  success, not an error;
* it returns the gateway's id of what it changed or created, or ``None`` when nothing was mirrored
  (``NullMirror``: no gateway configured; the ledger row is then ``skipped``);
* it raises on failure; the ledger row becomes ``failed`` with the (redacted) error and the next
  lifecycle command on that invoice tries again with the same key.

``perform_effects`` is the one driver: every open row of the mirror ledger of one invoice, in the
order they were recorded (a credit note before the "paid" it caused), claimed before the call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from billing_pipeline.clients.redaction import Redactor
from billing_pipeline.db import credit_notes as credit_note_rows
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import mirror_effects
from billing_pipeline.domain.credit_notes import CreditNote
from billing_pipeline.domain.model import Invoice

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


@runtime_checkable
class InvoiceMirror(Protocol):
    def void_invoice(self, invoice: Invoice, *, idempotency_key: str) -> str | None: ...

    def mark_uncollectible(self, invoice: Invoice, *, idempotency_key: str) -> str | None: ...

    def mark_paid_out_of_band(self, invoice: Invoice, *, idempotency_key: str) -> str | None: ...

    def create_credit_note(self, invoice: Invoice, credit_note: CreditNote, *, idempotency_key: str) -> str | None: ...


class NullMirror:
    """No payment gateway: nothing is mirrored and every effect is recorded as ``skipped``."""

    def void_invoice(self, invoice: Invoice, *, idempotency_key: str) -> str | None:
        return None

    def mark_uncollectible(self, invoice: Invoice, *, idempotency_key: str) -> str | None:
        return None

    def mark_paid_out_of_band(self, invoice: Invoice, *, idempotency_key: str) -> str | None:
        return None

    def create_credit_note(self, invoice: Invoice, credit_note: CreditNote, *, idempotency_key: str) -> str | None:
        return None


def effect_key(action: str, number: str) -> str:
    """The idempotency key (and ledger business key) of one effect on one invoice or credit note."""
    prefix = {
        "void": "void",
        "mark_uncollectible": "uncollectible",
        "mark_paid_out_of_band": "paid",
        "create_credit_note": "credit-note",
    }[action]
    return f"{prefix}-{number}"


def _call(mirror: InvoiceMirror, engine: Engine, effect: mirror_effects.MirrorEffect) -> str | None:
    invoice = invoice_rows.load_invoices(engine, [effect.invoice_id])[effect.invoice_id].invoice
    key = effect.idempotency_key
    if effect.action == "void":
        return mirror.void_invoice(invoice, idempotency_key=key)
    if effect.action == "mark_uncollectible":
        return mirror.mark_uncollectible(invoice, idempotency_key=key)
    if effect.action == "mark_paid_out_of_band":
        return mirror.mark_paid_out_of_band(invoice, idempotency_key=key)
    if effect.credit_note_id is None:
        raise ValueError(f"mirror effect {effect.id}: a credit note effect without its credit note")
    note = credit_note_rows.load_credit_note(engine, effect.credit_note_id).note
    return mirror.create_credit_note(invoice, note, idempotency_key=key)


def perform_effects(
    engine: Engine, mirror: InvoiceMirror, invoice_id: int, *, secrets: Iterable[str | None] = ()
) -> list[mirror_effects.MirrorEffect]:
    """Perform the invoice's open mirror effects once each; returns the ledger rows afterwards.

    A failed effect stops the ones after it (a "paid" is not mirrored before the credit note that
    caused it)."""
    redact = Redactor(secrets)
    for effect in mirror_effects.effects_of(engine, invoice_id, open_only=True):
        if not mirror_effects.claim(engine, effect):
            continue  # another process has it
        try:
            external_id = _call(mirror, engine, effect)
        except Exception as exc:  # recorded, retried by the next command on this invoice
            message = redact(f"{type(exc).__name__}: {exc}")
            log.warning("mirror %s failed: %s", effect.idempotency_key, message)
            mirror_effects.finish(engine, effect.id, "failed", error=message)
            break
        status = "succeeded" if external_id is not None else "skipped"
        mirror_effects.finish(engine, effect.id, status, external_id=external_id)
    return mirror_effects.effects_of(engine, invoice_id)


__all__ = ["InvoiceMirror", "NullMirror", "effect_key", "perform_effects"]
