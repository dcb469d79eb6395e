"""Credit note rows: numbered once from their own gapless series, never rewritten.

The number comes from ``invoice_number_sequences`` (series ``CN-{year}``), bumped under a row lock
in the transaction that inserts the credit note, like invoice numbers: a rollback gives the number
back, concurrent creations queue on the lock. ``request_key`` is unique: the same request (invoice,
amount or full, reason) finds the credit note it made instead of issuing another. Only the stored
PDF's key and checksum are set later (``set_document``, once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

# The one gapless counter (invoice_number_sequences): invoice numbers and credit note numbers alike.
from billing_pipeline.db.invoices import next_series_number
from billing_pipeline.db.schema import credit_note_lines, credit_notes, invoices
from billing_pipeline.db.types import rate_from_row
from billing_pipeline.domain import money
from billing_pipeline.domain.credit_notes import CREDIT_NOTE_PREFIX, CreditNote, CreditNoteLine

_c = credit_notes.c


@dataclass(frozen=True)
class StoredCreditNote:
    id: int
    invoice_id: int
    note: CreditNote
    actor: str
    document_key: str | None
    document_sha256: str | None


def find_by_request(conn: Connection, request_key: str) -> int | None:
    return conn.execute(select(_c.id).where(_c.request_key == request_key)).scalar()


def insert_credit_note(
    conn: Connection, invoice_id: int, note: CreditNote, *, request_key: str, actor: str, issued_at: dt.datetime
) -> tuple[int, str]:
    """Number and store ``note`` (its invoice row locked by the caller): (id, number)."""
    number = next_series_number(conn, CREDIT_NOTE_PREFIX, issued_at.year)
    cur = note.currency
    note_id = conn.execute(
        insert(credit_notes)
        .values(
            number=number,
            invoice_id=invoice_id,
            request_key=request_key,
            currency=cur,
            subtotal_minor=money.to_minor(note.subtotal, cur),
            tax_rate=note.tax_rate,
            tax_minor=money.to_minor(note.tax, cur),
            total_minor=money.to_minor(note.total, cur),
            reason=note.reason,
            actor=actor,
            issued_at=issued_at,
        )
        .returning(_c.id)
    ).scalar_one()
    conn.execute(
        insert(credit_note_lines),
        [
            {
                "credit_note_id": note_id,
                "line_number": i,
                "invoice_line_number": line.invoice_line_number,
                "description": line.description[:1024],
                "amount_minor": money.to_minor(line.amount, cur),
            }
            for i, line in enumerate(note.lines, start=1)
        ],
    )
    return note_id, number


def load_credit_note(bind: Engine | Connection, note_id: int) -> StoredCreditNote:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return load_credit_note(conn, note_id)
    row = bind.execute(
        select(credit_notes, invoices.c.number.label("invoice_number"), invoices.c.org_id)
        .join(invoices, invoices.c.id == _c.invoice_id)
        .where(_c.id == note_id)
    ).one()
    cur = row.currency
    lines = tuple(
        CreditNoteLine(r.description, money.from_minor(r.amount_minor, cur), r.invoice_line_number)
        for r in bind.execute(
            select(credit_note_lines)
            .where(credit_note_lines.c.credit_note_id == note_id)
            .order_by(credit_note_lines.c.line_number)
        )
    )
    note = CreditNote(
        invoice_number=row.invoice_number,
        organization_id=row.org_id,
        currency=cur,
        lines=lines,
        subtotal=money.from_minor(row.subtotal_minor, cur),
        tax_rate=rate_from_row(row.tax_rate),
        tax=money.from_minor(row.tax_minor, cur),
        total=money.from_minor(row.total_minor, cur),
        reason=row.reason,
        number=row.number,
        issued_at=row.issued_at,
    )
    return StoredCreditNote(row.id, row.invoice_id, note, row.actor, row.document_key, row.document_sha256)


def credit_note_ids(engine: Engine, invoice_id: int) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(_c.id).where(_c.invoice_id == invoice_id).order_by(_c.id)).scalars())


def find_number(engine: Engine, number: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(_c.id).where(_c.number == number)).scalar()


def set_document(engine: Engine, note_id: int, key: str, sha256_hex: str) -> None:
    """Record the stored PDF once; a different key or checksum later is a bug and raises."""
    with engine.begin() as conn:
        conn.execute(
            update(credit_notes)
            .where(_c.id == note_id, _c.document_key.is_(None))
            .values(document_key=key, document_sha256=sha256_hex)
        )
        row = conn.execute(select(_c.document_key, _c.document_sha256).where(_c.id == note_id)).one()
    if (row.document_key, row.document_sha256) != (key, sha256_hex):
        raise RuntimeError(f"credit note {note_id}: stored document {row.document_key} differs from {key}")


__all__ = [
    "StoredCreditNote",
    "credit_note_ids",
    "find_by_request",
    "find_number",
    "insert_credit_note",
    "load_credit_note",
    "set_document",
]
