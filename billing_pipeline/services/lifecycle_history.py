"""``invoices history``: an invoice's audit trail as text (formatting only)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from billing_pipeline.db import credit_notes as note_rows
from billing_pipeline.db import lifecycle as rows
from billing_pipeline.db import mirror_effects
from billing_pipeline.domain import money

if TYPE_CHECKING:
    from sqlalchemy import Engine


def format_history(engine: Engine, number: str) -> str:
    """Status, amounts, then every event (oldest first), the credit notes and the gateway effects."""
    state = rows.find_invoice(engine, number)
    cur = state.currency
    money_in = rows.receivables(engine, [state.id])[state.id]
    out = [
        f"{number}  {state.org_id}  status {state.status.value}  total {money.format_amount(state.total, cur)}  "
        f"paid {money.format_amount(money_in.paid, cur)}  credited {money.format_amount(money_in.credited, cur)}  "
        f"amount due {money.format_amount(money_in.amount_due, cur)}",
        "Events:",
    ]
    events = rows.history(engine, state.id)
    for e in events:
        change = f"{e.from_status} -> {e.to_status}" if e.from_status != e.to_status else e.to_status
        details = json.dumps(e.details, sort_keys=True, separators=(",", ":"))
        out.append(f"  {e.at:%Y-%m-%d %H:%M:%S}Z  {e.kind:<11} {change:<24} by {e.actor}: {e.reason}  {details}")
    if not events:
        out.append("  none")
    for note_id in note_rows.credit_note_ids(engine, state.id):
        stored = note_rows.load_credit_note(engine, note_id)
        note = stored.note
        lines = f"{len(note.lines)} line{'s' if len(note.lines) != 1 else ''}"
        document = stored.document_key or "not stored"
        out.append(f"Credit note {note.number}: {money.format_amount(note.total, cur)} ({lines}), document {document}")
    effects = mirror_effects.effects_of(engine, state.id)
    out.append("Gateway: " + (", ".join(f"{e.idempotency_key} {e.status}" for e in effects) or "nothing to mirror"))
    return "\n".join(out)


__all__ = ["format_history"]
