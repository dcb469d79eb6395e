"""A recording ``InvoiceMirror`` for the lifecycle tests: every call kept, failures on demand."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingMirror:
    """Records (action, number, idempotency key) per call; ``fail`` raises for the next N calls."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    fail: int = 0

    def _record(self, action: str, number: str, key: str) -> str:
        self.calls.append((action, number, key))
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError(f"gateway down during {action} (sk_test_secret123 must not show)")
        return f"gw_{action}_{number}"

    def void_invoice(self, invoice, *, idempotency_key):
        return self._record("void", invoice.number, idempotency_key)

    def mark_uncollectible(self, invoice, *, idempotency_key):
        return self._record("mark_uncollectible", invoice.number, idempotency_key)

    def mark_paid_out_of_band(self, invoice, *, idempotency_key):
        return self._record("mark_paid_out_of_band", invoice.number, idempotency_key)

    def create_credit_note(self, invoice, credit_note, *, idempotency_key):
        return self._record("create_credit_note", credit_note.number, idempotency_key)
